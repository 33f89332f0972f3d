"""The task the Dask executor runs on a Dask worker: one supervisor per job.

:func:`run_job` takes and returns JSON text only, so nothing of a user's reaches
Dask's serialization: the order names the job, its backend, its params and the
digest of its batch in the shared blob folder. The supervisor hands the order to a
backend process (:mod:`.dask_child`, the pool's worker protocol), relays the logs,
interim results and metrics it reports as Dask worker events (``log_event`` on the
executor's topic), and returns the final message: ``done`` with the result's digest
(the result itself is a blob the backend process wrote), ``error`` or
``cancelled``. It polls the job's :class:`distributed.Event` and, once it is set,
signals its backend process, then kills it after :data:`CANCEL_GRACE` seconds. It
kills it at the job's wall-time limit too, and reports a backend process that died
(``os._exit``, a segfault, the OOM killer) as an ``error`` of this job alone.

A backend process is kept per worker thread and reused for the next job, as the
pool reuses its workers; one that was cancelled, killed, or asked to retire is not.
Each is started by the thread that uses it, because its parent-death signal is
tied to that thread. This module imports :mod:`distributed` only inside the task.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

__all__ = ["CANCEL_GRACE", "CANCEL_SIGNAL", "POLL_SECONDS", "run_job"]

# What the supervisor sends its backend process to cancel the job (see .dask_child).
CANCEL_SIGNAL = signal.SIGUSR1
# What a backend process sends first, once it can take CANCEL_SIGNAL.
READY = b'{"kind": "ready"}'
# How long a backend process may take to start (imports and backends loaded).
START_TIMEOUT = 60.0

CANCEL_GRACE = 1.0
# How often the job's cancel event and its Dask task state are looked at.
POLL_SECONDS = 0.1


@dataclass
class _Child:
    process: subprocess.Popen[bytes]
    conn: Connection
    # The write end of the child's lifeline: never written; closing it ends the child.
    lifeline: int

    def close(self, *, kill: bool) -> None:
        if kill and self.process.poll() is None:
            self.process.kill()
        with contextlib.suppress(OSError):
            self.conn.close()
        with contextlib.suppress(OSError):
            os.close(self.lifeline)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5.0)


_local = threading.local()


def _spawn() -> _Child:
    ours, theirs = socket.socketpair()
    watched, lifeline = os.pipe()
    try:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jobledger.service.executors.dask_child",
                str(theirs.fileno()),
                str(watched),
                str(os.getpid()),
            ],
            pass_fds=(theirs.fileno(), watched),
            stdin=subprocess.DEVNULL,
        )
    except OSError:
        ours.close()
        os.close(lifeline)
        raise
    finally:
        theirs.close()
        os.close(watched)
    child = _Child(process, Connection(ours.detach()), lifeline)
    try:
        hello = child.conn.recv_bytes() if child.conn.poll(START_TIMEOUT) else b""
    except (EOFError, OSError):
        hello = b""
    if hello != READY:
        code = process.poll()
        child.close(kill=True)
        raise RuntimeError(
            f"the backend process did not start on this Dask worker (exit code {code}); "
            "check that jobledger and the backends' packages are installed where it runs"
        )
    return child


def _child() -> _Child:
    """This thread's idle backend process, started if there is none (or it died)."""
    child: _Child | None = getattr(_local, "child", None)
    if child is not None and child.process.poll() is not None:
        child.close(kill=True)
        child = None
    if child is None:
        child = _spawn()
        _local.child = child
    return child


def _discard(child: _Child) -> None:
    child.close(kill=True)
    if getattr(_local, "child", None) is child:
        _local.child = None


class _Task:
    """What the supervisor asks of Dask: is the job cancelled, and report an event."""

    def __init__(self, order: dict[str, Any]) -> None:
        from distributed import Event, get_worker

        self._worker = get_worker()
        self._key = self._worker.get_current_task()
        self._topic = str(order["topic"])
        self._cancel = Event(str(order["cancel_event"]))

    def report(self, raw: str) -> None:
        self._worker.log_event(self._topic, raw)

    def cancelled(self) -> bool:
        """Whether the job was cancelled, or the service let go of it (it stopped)."""
        if self._key is not None:
            state = self._worker.state.tasks.get(self._key)
            if state is None or state.state in ("cancelled", "released", "forgotten"):
                return True
        return bool(self._cancel.is_set())


_KILLED = {
    "kind": "cancelled",
    "message": "cancelled while running (the backend ignored cancellation; "
    "its worker process was killed)",
}


def _ended(child: _Child, memory_mb: int, kill_at: float | None) -> dict[str, Any]:
    """The final message for a backend process that ended without one."""
    code = child.process.wait(5.0)
    if kill_at is not None:
        return dict(_KILLED)
    message = f"the worker process running the job died (exit code {code})"
    if memory_mb:
        message += f"; it may have exceeded its memory limit of {memory_mb} MiB"
    return {"kind": "error", "message": message}


def _supervise(order: dict[str, Any], task: _Task, child: _Child) -> tuple[dict[str, Any], bool]:
    """Run *order* on *child*; return the final message and whether to keep the child."""
    seconds = float(order.get("max_seconds") or 0)
    memory_mb = int(order.get("max_memory_mb") or 0)
    deadline = time.monotonic() + seconds if seconds > 0 else None
    kill_at: float | None = None
    next_poll = time.monotonic()
    while True:
        now = time.monotonic()
        try:
            ready = child.conn.poll(max(0.0, min(next_poll - now, 0.05)))
        except (EOFError, OSError):
            ready = True
        if ready:
            try:
                raw = child.conn.recv_bytes().decode("utf-8")
            except (EOFError, OSError):
                return _ended(child, memory_mb, kill_at), False
            message = json.loads(raw)
            if message.get("kind") not in ("log", "interim", "metric"):
                if kill_at is not None:
                    return {"kind": "cancelled", "message": "cancelled while running"}, False
                return message, not message.get("retire")
            # Relayed, then the checks below still run however chatty the backend is.
            task.report(raw)
        if child.process.poll() is not None and not child.conn.poll():
            return _ended(child, memory_mb, kill_at), False
        now = time.monotonic()
        if kill_at is None and now >= next_poll:
            next_poll = now + POLL_SECONDS
            if task.cancelled():
                with contextlib.suppress(ProcessLookupError):
                    child.process.send_signal(CANCEL_SIGNAL)
                kill_at = now + CANCEL_GRACE
        if kill_at is not None and now >= kill_at:
            return dict(_KILLED), False
        if deadline is not None and now >= deadline:
            # Past its wall time: no polite signal first, the limit is the limit.
            message = f"the job exceeded its wall-time limit of {seconds:g} s"
            return {"kind": "error", "message": message}, False


def run_job(order_json: str) -> str:
    """Run one job order (JSON text) on this Dask worker; return the final message as JSON.

    The order holds ``job_id``, ``backend``, ``params``, ``batch_sha256``,
    ``batch_media_type``, ``blob_root`` (the shared blob folder), ``max_memory_mb``,
    ``max_seconds``, ``topic`` (where events go) and ``cancel_event`` (the name of
    the job's :class:`distributed.Event`).
    """
    order = json.loads(order_json)
    task = _Task(order)
    keys = ("job_id", "backend", "params", "batch_sha256", "batch_media_type", "blob_root")
    work = {key: order[key] for key in keys}
    work["max_memory_mb"] = int(order.get("max_memory_mb") or 0)
    child = _child()
    try:
        child.conn.send_bytes(json.dumps(work).encode("utf-8"))
    except OSError:
        # The idle process died between two jobs: start another one once.
        _discard(child)
        child = _child()
        child.conn.send_bytes(json.dumps(work).encode("utf-8"))
    try:
        final, keep = _supervise(order, task, child)
    except BaseException:
        _discard(child)
        raise
    if not keep:
        _discard(child)
    final["job_id"] = order["job_id"]
    return json.dumps(final)
