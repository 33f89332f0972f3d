"""The Dask executor: the service's jobs run on a Dask cluster, one supervisor task each.

``jobledger serve --executor dask --scheduler ADDRESS`` connects to an existing
cluster; without ``--scheduler`` a :class:`~distributed.LocalCluster` of worker
processes on the loopback interface is started for trying it out. One thread of the
service owns the Dask client, as one thread owns the local pool: it claims the
oldest queued job from the :class:`~jobledger.service.store.JobStore` whenever fewer
jobs are in flight than the cluster has worker threads (so a job waits in the
service's queue, where its position means something, not in Dask's), submits
:func:`~.dask_supervisor.run_job` with JSON text only (``retries=0``), and records
what comes back: worker events on the executor's topic (logs, interim results,
metrics) and the task's final message. The store stays the only writer. Cancelling
a running job sets its :class:`distributed.Event`, which the supervisor polls; a job
whose Dask worker is lost ends ``ERROR`` (the task is never retried). Batches and
results are blobs in the service's blob folder, which every Dask worker must see
at the same path.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jobledger.errors import ConfigError
from jobledger.service.blobs import BlobInfo, BlobStore
from jobledger.service.executors.base import CancelQueue
from jobledger.service.executors.dask_supervisor import run_job
from jobledger.service.limits import Limit
from jobledger.service.store import STOPPED_MESSAGE, JobStore, now_iso
from jobledger.status import JobStatus

__all__ = ["DaskExecutor"]

# How long the service waits for a scheduler to answer, and for a LocalCluster to start.
CONNECT_TIMEOUT = 30.0
# How long an unreachable --scheduler is tried before the service gives up starting.
SCHEDULER_TIMEOUT = 10.0
# How often the cluster's number of worker threads is asked again.
_CAPACITY_EVERY = 1.0


@dataclass
class _InFlight:
    job_id: str
    future: Any
    cancel_event: str
    cancel_requested: bool = False


class DaskExecutor(CancelQueue):
    """Runs queued jobs on a Dask cluster (at *scheduler*, or a LocalCluster of *size*)."""

    def __init__(
        self,
        store: JobStore,
        blobs: BlobStore,
        size: int,
        notify: Callable[[str], None],
        limits: Callable[[str], Limit] | None = None,
        *,
        scheduler: str | None = None,
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._size = max(1, size)
        self._notify = notify
        self._limits = limits or (lambda name: Limit())
        self._scheduler = scheduler
        self._topic = f"jobledger-events-{uuid.uuid4().hex}"
        self._client: Any = None
        self._cluster: Any = None
        self._inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._flight: dict[str, _InFlight] = {}
        self._cancels: set[str] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._capacity = 1
        self._capacity_at = 0.0
        self._thread = threading.Thread(target=self._loop, name="jobledger-dask", daemon=True)

    # -- called from other threads -------------------------------------------------

    def start(self) -> None:
        """Connect to the cluster (or start one) and the scheduler thread.

        :raises ConfigError: when distributed is missing or the cluster cannot be reached.
        """
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            raise self._failure

    def wake(self) -> None:
        """Tell the scheduler thread something changed (a job was queued or cancelled)."""
        self._inbox.put(("wake", None))

    def stop(self, timeout: float = 5.0) -> None:
        """Stop: running jobs are cancelled on the cluster and end ``ERROR``."""
        self._stopping.set()
        self.wake()
        if self._thread.is_alive():
            self._thread.join(timeout + 5.0)

    # -- the scheduler thread ------------------------------------------------------

    def _connect(self) -> None:
        try:
            import dask
            from distributed import Client, LocalCluster
        except ImportError as exc:
            raise ConfigError(
                f"--executor dask needs distributed ({exc}); install jobledger[dask]"
            ) from None
        if self._scheduler is None:
            # A job is never run twice: a worker lost with it ends it ERROR at once.
            with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
                self._cluster = LocalCluster(
                    n_workers=self._size,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=None,
                    scheduler_port=0,
                )
            self._client = Client(self._cluster, timeout=CONNECT_TIMEOUT)
        else:
            try:
                self._client = Client(self._scheduler, timeout=SCHEDULER_TIMEOUT)
            except (OSError, TimeoutError) as exc:
                raise ConfigError(
                    f"cannot reach the Dask scheduler at {self._scheduler}: {exc}; "
                    "check the address given to --scheduler and that the scheduler runs"
                ) from None
        self._client.subscribe_topic(self._topic, self._on_event)

    def _on_event(self, event: tuple[float, Any]) -> None:
        # Runs on the client's event loop thread, before the task's completion is
        # reported there: the inbox keeps a job's events ahead of its end.
        self._inbox.put(("event", event[1]))

    def _on_done(self, future: Any) -> None:
        self._inbox.put(("done", future))

    def _loop(self) -> None:
        try:
            self._connect()
        except BaseException as exc:
            self._failure = exc
            self._ready.set()
            self._close()
            return
        self._ready.set()
        try:
            while not self._stopping.is_set():
                self._apply_cancels()
                self._assign()
                try:
                    item = self._inbox.get(timeout=_CAPACITY_EVERY)
                except queue.Empty:
                    continue
                self._handle(item)
                while True:
                    try:
                        self._handle(self._inbox.get_nowait())
                    except queue.Empty:
                        break
        finally:
            self._shutdown()

    def _handle(self, item: tuple[str, Any]) -> None:
        kind, value = item
        if kind == "event":
            self._on_message(value)
        elif kind == "done":
            self._end_job(value)

    def _capacity_now(self) -> int:
        now = time.monotonic()
        if now - self._capacity_at >= _CAPACITY_EVERY:
            self._capacity_at = now
            with contextlib.suppress(OSError, TimeoutError):
                threads = sum(self._client.nthreads().values())
                # One job in flight even without workers, so an adaptive cluster scales up.
                self._capacity = max(1, int(threads))
        return self._capacity

    def _apply_cancels(self) -> None:
        from distributed import Event

        with self._lock:
            wanted, self._cancels = self._cancels, set()
        for job_id in wanted:
            flight = self._flight.get(job_id)
            if flight is not None and not flight.cancel_requested:
                flight.cancel_requested = True
                with contextlib.suppress(OSError, TimeoutError):
                    Event(flight.cancel_event, client=self._client).set()

    def _assign(self) -> None:
        while len(self._flight) < self._capacity_now():
            record = self._store.claim_next()
            if record is None:
                return
            assert record.batch is not None
            limit = self._limits(record.backend)
            cancel_event = f"jobledger-cancel-{record.id}"
            order = {
                "job_id": record.id,
                "backend": record.backend,
                "params": record.params,
                "batch_sha256": record.batch.sha256,
                "batch_media_type": record.batch.media_type,
                "blob_root": str(self._blobs.root),
                "max_memory_mb": limit.memory_mb,
                "max_seconds": limit.seconds,
                "topic": self._topic,
                "cancel_event": cancel_event,
            }
            future = self._client.submit(
                run_job, json.dumps(order), key=f"jobledger-{record.id}", pure=False, retries=0
            )
            self._flight[record.id] = _InFlight(record.id, future, cancel_event)
            future.add_done_callback(self._on_done)
            self._notify(record.id)

    def _on_message(self, raw: Any) -> None:
        try:
            message = json.loads(raw)
            job_id = message["job_id"]
            kind = message["kind"]
        except (TypeError, ValueError, KeyError):
            return
        if job_id not in self._flight:
            return
        if kind == "log":
            self._store.add_event(job_id, "log", {"line": message["line"], "at": now_iso()})
        elif kind == "interim":
            self._store.add_event(job_id, "interim", {"value": message["value"]})
        elif kind == "metric":
            data = {"name": message["name"], "value": message["value"]}
            self._store.add_event(job_id, "metric", data)
        else:
            return
        self._notify(job_id)

    def _outcome(self, future: Any) -> dict[str, Any]:
        """The task's final message, or an ``error`` saying why there is none."""
        if future.status == "finished":
            try:
                result = json.loads(future.result(timeout=CONNECT_TIMEOUT))
            except (OSError, TimeoutError, ValueError) as exc:
                return {"kind": "error", "message": f"the job's outcome was lost: {exc}"}
            return result if isinstance(result, dict) else {"kind": "error"}
        if future.status == "error":
            with contextlib.suppress(OSError, TimeoutError):
                failure = future.exception(timeout=CONNECT_TIMEOUT)
                if type(failure).__name__ == "KilledWorker":
                    message = "the Dask worker running the job was lost (the job is not retried)"
                else:
                    message = f"the job's Dask task failed: {type(failure).__name__}: {failure}"
                return {"kind": "error", "message": message}
        return {"kind": "error", "message": f"the Dask cluster lost the job ({future.status})"}

    def _end_job(self, future: Any) -> None:
        job_id = next((j for j, f in self._flight.items() if f.future is future), None)
        if job_id is None:
            return
        flight = self._flight.pop(job_id)
        message = self._outcome(future)
        kind = message.get("kind")
        if flight.cancel_requested or kind == "cancelled":
            note = message.get("message") if kind == "cancelled" else None
            self._store.finish(job_id, JobStatus.CANCELLED, str(note or "cancelled while running"))
        elif kind == "done":
            info = BlobInfo(message["sha256"], int(message["size"]), message["media_type"])
            self._store.finish(job_id, JobStatus.DONE, None, result=info)
        else:
            self._store.finish(job_id, JobStatus.ERROR, str(message.get("message")))
        if flight.cancel_requested:
            self._forget_event(flight.cancel_event)
        self._notify(job_id)

    def _forget_event(self, name: str) -> None:
        from distributed import Event

        # A cleared event is deleted from the scheduler; set ones would pile up.
        with contextlib.suppress(OSError, TimeoutError):
            Event(name, client=self._client).clear()

    def _shutdown(self) -> None:
        from distributed import Event

        for flight in self._flight.values():
            with contextlib.suppress(OSError, TimeoutError):
                Event(flight.cancel_event, client=self._client).set()
            self._store.finish(flight.job_id, JobStatus.ERROR, STOPPED_MESSAGE)
            self._notify(flight.job_id)
        # Give the supervisors a moment to see their events and end their processes.
        deadline = time.monotonic() + 2.0
        while self._flight and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                kind, value = self._inbox.get(timeout=0.1)
                if kind == "done":
                    self._flight = {j: f for j, f in self._flight.items() if f.future is not value}
        for flight in self._flight.values():
            self._forget_event(flight.cancel_event)
        self._flight = {}
        self._close()

    def _close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(OSError, TimeoutError, RuntimeError):
                self._client.close(timeout=5)
        if self._cluster is not None:
            with contextlib.suppress(OSError, TimeoutError, RuntimeError):
                self._cluster.close(timeout=10)
