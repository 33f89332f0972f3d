"""The worker process: runs one job at a time for the executor, and reports back.

A worker is started by :mod:`jobledger.service.executors.process` with the ``spawn`` context
(never a fork of the threaded server). It reads job orders from its pipe, runs the
backend, and sends JSON messages back (``log``, ``interim``, ``metric``, then exactly
one of ``done``, ``error`` or ``cancelled``). Messages are JSON bytes, never pickles.
The result is written by the worker itself into the blob folder through a
:class:`~jobledger.service.blobs.BlobWriter`, hashed on the way, so a large result
never crosses the pipe or sits whole in memory. Cancellation is a shared flag that
``ctx.cancelled()`` reads; the executor kills a worker that ignores it. A worker
never outlives the server: it dies with it, even when the server is killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import signal
import sys
import threading
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO, Any

from jobledger import codecs
from jobledger.service.blobs import BlobInfo, BlobStore, BlobWriter
from jobledger.service.plugin import Backend, Payload, load_backends

__all__ = ["worker_main"]


class WorkerContext:
    """The :class:`~jobledger.service.plugin.Context` given to a running backend."""

    def __init__(self, conn: Connection, job_id: str, cancel_flag: Any, blobs: BlobStore) -> None:
        self.job_id = job_id
        self._conn = conn
        self._flag = cancel_flag
        self._blobs = blobs
        self._parent = os.getppid()
        self.writer: BlobWriter | None = None

    def _send(self, kind: str, **data: Any) -> None:
        try:
            body = json.dumps({"kind": kind, "job_id": self.job_id, **data}, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{kind} value is not JSON-serializable: {exc}") from None
        self._conn.send_bytes(body.encode("utf-8"))

    def log(self, line: str) -> None:
        """Append *line* to the job's log."""
        for part in str(line).splitlines() or [""]:
            self._send("log", line=part)

    def publish(self, value: Any) -> None:
        """Publish an interim result (a JSON value)."""
        self._send("interim", value=value)

    def set_metric(self, name: str, value: Any) -> None:
        """Set the metric *name* to a JSON value."""
        self._send("metric", name=str(name), value=value)

    def cancelled(self) -> bool:
        """Whether the job was cancelled (or the service went away)."""
        return bool(self._flag.value) or os.getppid() != self._parent

    def open_result(self, media_type: str) -> IO[bytes]:
        """Open the result for writing; return ``None`` from ``run`` afterwards."""
        if media_type not in codecs.MEDIA_TYPES:
            raise ValueError(f"unsupported result media type {media_type!r}")
        if self.writer is not None:
            raise RuntimeError("open_result() was already called for this job")
        self.writer = self._blobs.writer(media_type)
        return self.writer  # type: ignore[return-value]


def _store_result(value: Any, ctx: WorkerContext, blobs: BlobStore) -> BlobInfo:
    if ctx.writer is not None:
        if value is not None:
            ctx.writer.discard()
            raise TypeError("run() returned a value after writing its result through open_result")
        return ctx.writer.commit()
    if isinstance(value, Payload):
        return blobs.put(value.data, value.media_type)
    data, media_type = codecs.encode(value)
    return blobs.put(data, media_type)


@contextlib.contextmanager
def _address_space(limit_mb: int) -> Iterator[None]:
    """Limit this process's address space to *limit_mb* MiB (0: leave it) for a job."""
    if not limit_mb:
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    wanted = limit_mb * 1024 * 1024
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_AS, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _run(order: dict[str, Any], backends: dict[str, Backend], conn: Connection, flag: Any) -> bool:
    """Run one job order; return whether this worker should carry on afterwards."""
    blobs = BlobStore(Path(order["blob_root"]))
    ctx = WorkerContext(conn, order["job_id"], flag, blobs)
    backend = backends.get(order["backend"])
    if backend is None:
        ctx._send("error", message=f"backend {order['backend']!r} is not installed on the worker")
        return True
    limit_mb = int(order.get("max_memory_mb") or 0)
    try:
        with _address_space(limit_mb):
            batch = Payload(blobs.read(order["batch_sha256"]), order["batch_media_type"])
            value = backend.run(batch, order["params"], ctx)
            del batch
            if ctx.cancelled():
                if ctx.writer is not None:
                    ctx.writer.discard()
                ctx._send("cancelled")
                return True
            info = _store_result(value, ctx, blobs)
    except MemoryError:
        if ctx.writer is not None and ctx.writer.info is None:
            ctx.writer.discard()
        message = f"the job exceeded its memory limit of {limit_mb} MiB" if limit_mb else None
        ctx._send("error", message=message or "MemoryError: out of memory", retire=True)
        # A heap that hit its limit may be fragmented or half-built: start afresh.
        return False
    except Exception as exc:
        if ctx.writer is not None and ctx.writer.info is None:
            ctx.writer.discard()
        ctx._send("error", message=f"{type(exc).__name__}: {exc}")
        return True
    ctx._send("done", sha256=info.sha256, size=info.size, media_type=info.media_type)
    return True


_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int, lifeline: Connection) -> None:
    """End this process when the server ends, however it ends (even ``kill -9``).

    Two independent ways, because either alone has a gap: the kernel's parent-death
    signal (Linux; it fires when the *thread* that started us ends, which is the
    executor's scheduler thread, alive as long as the server), and a pipe whose only
    writer is the server: it reads end-of-file once the server is gone.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # no prctl: the lifeline below still works
    if os.getppid() != parent_pid:
        os._exit(1)  # the server died before the signal was armed

    def watch() -> None:
        with contextlib.suppress(EOFError, OSError):
            lifeline.recv_bytes()
        os._exit(1)

    threading.Thread(target=watch, name="jobledger-lifeline", daemon=True).start()


def worker_main(conn: Connection, cancel_flag: Any, lifeline: Connection, parent_pid: int) -> None:
    """The worker's main loop: run job orders from *conn* until told to stop.

    *lifeline* is the read end of a pipe the server (*parent_pid*) never writes to;
    the worker exits as soon as it closes.
    """
    _die_with_parent(parent_pid, lifeline)
    # Ctrl-C in a terminal reaches the whole process group; the server decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    backends = load_backends()
    while True:
        try:
            raw = conn.recv_bytes()
        except (EOFError, OSError):
            return
        order = json.loads(raw)
        if order.get("op") == "stop":
            return
        if not _run(order, backends, conn, cancel_flag):
            return
