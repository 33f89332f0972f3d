"""Live job events: the thread-to-asyncio notifier and the server-sent-events stream.

Events are stored in the database (so a stream can be replayed and resumed with
``Last-Event-ID``); the :class:`Broker` only says "job X has something new". The
executor thread calls :meth:`Broker.notify`; each open stream waits on an
:class:`asyncio.Event` set through ``call_soon_threadsafe``, re-reads the events
table, and ends once the job is final and every event has been sent.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

from jobledger.service.store import JobStore

__all__ = ["KEEP_ALIVE_SECONDS", "Broker", "sse_stream"]

KEEP_ALIVE_SECONDS = 15.0


class Broker:
    """Wakes the streams watching a job when that job has new events."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watchers: dict[str, set[asyncio.Event]] = {}
        self._lock = threading.Lock()
        self.closed = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Remember the server's event loop (called at startup)."""
        self._loop = loop

    def notify(self, job_id: str) -> None:
        """Wake every stream of *job_id*; safe to call from any thread."""
        with self._lock:
            waiters = list(self._watchers.get(job_id, ()))
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        for event in waiters:
            loop.call_soon_threadsafe(event.set)

    def close(self) -> None:
        """Wake every stream so that it ends (server shutdown)."""
        self.closed = True
        with self._lock:
            job_ids = list(self._watchers)
        for job_id in job_ids:
            self.notify(job_id)

    @contextmanager
    def watch(self, job_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever *job_id* changes, for the duration of the block."""
        event = asyncio.Event()
        with self._lock:
            self._watchers.setdefault(job_id, set()).add(event)
        try:
            yield event
        finally:
            with self._lock:
                watchers = self._watchers.get(job_id)
                if watchers is not None:
                    watchers.discard(event)
                    if not watchers:
                        del self._watchers[job_id]


def _frame(seq: int, kind: str, data: object) -> bytes:
    return f"id: {seq}\nevent: {kind}\ndata: {json.dumps(data)}\n\n".encode()


async def sse_stream(
    store: JobStore,
    broker: Broker,
    job_id: str,
    after: int,
    keep_alive: float = KEEP_ALIVE_SECONDS,
) -> AsyncIterator[bytes]:
    """Replay the events of *job_id* after *after*, then follow it until final."""
    last = after
    with broker.watch(job_id) as changed:
        while not broker.closed:
            changed.clear()
            for event in store.events_after(job_id, last):
                last = event.seq
                yield _frame(event.seq, event.kind, event.data)
            record = store.get(job_id)
            if record is None or (record.status.is_final and not store.events_after(job_id, last)):
                return
            try:
                await asyncio.wait_for(changed.wait(), keep_alive)
            except TimeoutError:
                yield b": keep-alive\n\n"
