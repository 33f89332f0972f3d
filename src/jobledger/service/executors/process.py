"""The executor: a pool of worker processes fed FIFO by one scheduler thread.

One thread owns the pool. It waits on the workers' pipes, their process sentinels
and a wake-up socket; it claims the oldest queued job for each idle worker, records
what workers report (logs, interim results, metrics, the result), enforces
cancellation (a shared flag first, ``SIGKILL`` after :data:`CANCEL_GRACE` seconds)
and wall-time limits (``SIGKILL`` at the deadline), and replaces any worker that
dies, marking only that worker's job ``ERROR``. Workers
are started with the ``spawn`` context: the server has threads, and forking a
threaded process is unsafe. Request handlers only call :meth:`Executor.cancel` and
:meth:`Executor.wake`.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from jobledger.service.blobs import BlobInfo, BlobStore
from jobledger.service.executors.base import CancelQueue
from jobledger.service.limits import Limit
from jobledger.service.store import STOPPED_MESSAGE, JobStore, now_iso
from jobledger.service.worker import worker_main
from jobledger.status import JobStatus

__all__ = ["CANCEL_GRACE", "Executor"]

CANCEL_GRACE = 1.0
_MP = multiprocessing.get_context("spawn")


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    flag: Any
    # The write end of the worker's lifeline: never written; closing it ends the worker.
    lifeline: Connection
    job_id: str | None = None
    kill_at: float | None = None
    cancel_requested: bool = False
    limit: Limit = field(default_factory=Limit)
    deadline: float | None = None
    # The worker said it exits after its job (e.g. it hit its memory limit): give it
    # no other job, wait for its end and replace it.
    retiring: bool = False
    messages: list[dict[str, Any]] = field(default_factory=list)


class Executor(CancelQueue):
    """Runs queued jobs on *size* worker processes."""

    def __init__(
        self,
        store: JobStore,
        blobs: BlobStore,
        size: int,
        notify: Callable[[str], None],
        limits: Callable[[str], Limit] | None = None,
    ) -> None:
        self._store = store
        self._limits = limits or (lambda name: Limit())
        self._blobs = blobs
        self._size = max(1, size)
        self._notify = notify
        self._workers: list[_Worker] = []
        self._cancels: set[str] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_w.setblocking(False)
        self._thread = threading.Thread(target=self._loop, name="jobledger-executor", daemon=True)

    # -- called from other threads -------------------------------------------------

    def start(self) -> None:
        """Start the scheduler thread, which starts the workers."""
        self._thread.start()

    def wake(self) -> None:
        """Tell the scheduler something changed (a job was queued or cancelled)."""
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"x")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the scheduler and every worker; running jobs end ``ERROR``."""
        self._stopping.set()
        self.wake()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._wake_r.close()
        self._wake_w.close()

    # -- the scheduler thread ------------------------------------------------------

    def _spawn(self) -> _Worker:
        parent, child = _MP.Pipe(duplex=True)
        watched, lifeline = _MP.Pipe(duplex=False)
        flag = _MP.RawValue("b", 0)
        process = _MP.Process(
            target=worker_main,
            args=(child, flag, watched, os.getpid()),
            name="jobledger-worker",
            daemon=True,
        )
        process.start()
        child.close()
        watched.close()
        return _Worker(process, parent, flag, lifeline)

    def _loop(self) -> None:
        try:
            # Started from this thread: a worker's parent-death signal is tied to the
            # thread that started it, and this one lives as long as the executor.
            self._workers = [self._spawn() for _ in range(self._size)]
            while not self._stopping.is_set():
                self._apply_cancels()
                self._assign()
                ready = wait(self._wait_objects(), timeout=self._timeout())
                self._handle(ready)
        finally:
            self._shutdown()

    def _wait_objects(self) -> list[Any]:
        objects: list[Any] = [self._wake_r]
        for worker in self._workers:
            objects.append(worker.conn)
            objects.append(worker.process.sentinel)
        return objects

    def _timeout(self) -> float:
        deadlines = [w.kill_at for w in self._workers if w.kill_at is not None]
        deadlines += [w.deadline for w in self._workers if w.deadline is not None]
        if not deadlines:
            return 1.0
        return max(0.0, min(deadlines) - time.monotonic())

    def _handle(self, ready: list[Any]) -> None:
        if self._wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                self._wake_r.recv(4096)
        for worker in list(self._workers):
            if worker.conn in ready:
                self._drain(worker)
        for index, worker in enumerate(list(self._workers)):
            if worker.process.sentinel in ready or not worker.process.is_alive():
                self._drain(worker)
                self._replace(index, worker, died=True)
            elif worker.kill_at is not None and time.monotonic() >= worker.kill_at:
                worker.process.kill()
                self._replace(index, worker, died=False)
            elif worker.deadline is not None and time.monotonic() >= worker.deadline:
                # Past its wall time: no polite flag first, the limit is the limit.
                worker.process.kill()
                self._replace(index, worker, died=False, reason=worker.limit.timeout_message())

    def _drain(self, worker: _Worker) -> None:
        try:
            while worker.conn.poll():
                self._on_message(worker, json.loads(worker.conn.recv_bytes()))
        except (EOFError, OSError):
            return

    def _apply_cancels(self) -> None:
        with self._lock:
            wanted, self._cancels = self._cancels, set()
        for worker in self._workers:
            if worker.job_id in wanted and not worker.cancel_requested:
                worker.cancel_requested = True
                worker.flag.value = 1
                worker.kill_at = time.monotonic() + CANCEL_GRACE

    def _assign(self) -> None:
        for worker in self._workers:
            if worker.job_id is not None or worker.retiring:
                continue
            record = self._store.claim_next()
            if record is None:
                return
            assert record.batch is not None
            worker.flag.value = 0
            worker.job_id = record.id
            worker.limit = self._limits(record.backend)
            seconds = worker.limit.seconds
            worker.deadline = time.monotonic() + seconds if seconds > 0 else None
            order = {
                "job_id": record.id,
                "backend": record.backend,
                "params": record.params,
                "batch_sha256": record.batch.sha256,
                "batch_media_type": record.batch.media_type,
                "blob_root": str(self._blobs.root),
                "max_memory_mb": worker.limit.memory_mb,
            }
            worker.conn.send_bytes(json.dumps(order).encode("utf-8"))
            self._notify(record.id)

    def _on_message(self, worker: _Worker, message: dict[str, Any]) -> None:
        job_id = message.get("job_id")
        if job_id is None or job_id != worker.job_id:
            return
        kind = message["kind"]
        if kind == "log":
            self._store.add_event(job_id, "log", {"line": message["line"], "at": now_iso()})
        elif kind == "interim":
            self._store.add_event(job_id, "interim", {"value": message["value"]})
        elif kind == "metric":
            data = {"name": message["name"], "value": message["value"]}
            self._store.add_event(job_id, "metric", data)
        else:
            self._end_job(worker, kind, message)
            return
        self._notify(job_id)

    def _end_job(self, worker: _Worker, kind: str, message: dict[str, Any]) -> None:
        job_id = worker.job_id
        assert job_id is not None
        if worker.cancel_requested or kind == "cancelled":
            self._store.finish(job_id, JobStatus.CANCELLED, "cancelled while running")
        elif kind == "done":
            info = BlobInfo(message["sha256"], int(message["size"]), message["media_type"])
            self._store.finish(job_id, JobStatus.DONE, None, result=info)
        else:
            self._store.finish(job_id, JobStatus.ERROR, str(message.get("message")))
        worker.job_id = None
        worker.kill_at = None
        worker.deadline = None
        worker.cancel_requested = False
        worker.retiring = bool(message.get("retire"))
        self._notify(job_id)

    def _replace(
        self, index: int, worker: _Worker, *, died: bool, reason: str | None = None
    ) -> None:
        worker.process.join(5.0)
        worker.conn.close()
        worker.lifeline.close()
        job_id = worker.job_id
        if job_id is not None:
            if worker.cancel_requested:
                note = "cancelled while running (the backend ignored cancellation; its worker "
                note += "process was killed)"
                self._store.finish(job_id, JobStatus.CANCELLED, note)
            elif reason is not None:
                self._store.finish(job_id, JobStatus.ERROR, reason)
            else:
                code = worker.process.exitcode
                message = f"the worker process running the job died (exit code {code})"
                if worker.limit.memory_mb:
                    message += (
                        f"; it may have exceeded its memory limit of {worker.limit.memory_mb} MiB"
                    )
                self._store.finish(job_id, JobStatus.ERROR, message)
            self._notify(job_id)
        if died and job_id is None and self._stopping.is_set():
            return
        self._workers[index] = self._spawn()

    def _shutdown(self) -> None:
        for worker in self._workers:
            if worker.job_id is None:
                with contextlib.suppress(OSError):
                    worker.conn.send_bytes(b'{"op": "stop"}')
            else:
                worker.process.kill()
                self._store.finish(worker.job_id, JobStatus.ERROR, STOPPED_MESSAGE)
                self._notify(worker.job_id)
        deadline = time.monotonic() + 3.0
        for worker in self._workers:
            worker.process.join(max(0.1, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(1.0)
            worker.conn.close()
            worker.lifeline.close()
        self._workers = []
