"""One status poller per connection, shared by every handle that waits.

Handles that wait register their job id; a single background thread asks the service
for all of them with the batch status call (one request per 1,000 jobs), records what
changed in the registry, and wakes the waiters whose job reached a final state. A job
newly waited for wakes the thread at once, so its first status read is not delayed by
the pause between rounds; waiters that arrive together (or while a round is in
flight) share the next round, so 1,000 handles waiting at once still cost one request
per round. A job first seen still running is asked about again soon (after
:data:`QUICK_INTERVAL`, doubling up to the first interval), so a short job's result is
not held back by a fixed pause; after that it polls gently: from 0.2 s, backing off to
a few seconds while nothing changes, and it stops when nobody waits.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from functools import partial
from typing import TYPE_CHECKING

from jobledger.errors import JobledgerError, JobNotFoundError, JobTimeoutError
from jobledger.status import JobStatus

if TYPE_CHECKING:
    from jobledger.client.connection import Connection
    from jobledger.providers.base import Provider, StatusBatch

__all__ = ["Poller"]

FIRST_INTERVAL = 0.2
MAX_INTERVAL = 3.0
#: the pause after a round that saw a job for the first time, not yet final: short
#: jobs (most of them, on a local service) are done within a few such rounds
QUICK_INTERVAL = 0.02


class Poller:
    """Waits for many jobs of one connection with one request per poll round.

    :param first_interval: the pause after a round in which a status changed (seconds).
    :param max_interval: the longest pause, reached while nothing changes.
    """

    def __init__(
        self,
        connection: Connection,
        *,
        first_interval: float = FIRST_INTERVAL,
        max_interval: float = MAX_INTERVAL,
    ) -> None:
        self._conn = connection
        lock = threading.Lock()
        # Two conditions on one lock: waiters sleep on one, the polling thread on the
        # other, so a new waiter wakes the thread without waking every other waiter.
        self._cond = threading.Condition(lock)
        self._wakeup = threading.Condition(lock)
        self._wake = False
        self._waiting: Counter[str] = Counter()
        self._final: set[str] = set()
        self._failed: dict[str, JobledgerError] = {}
        self._round = 0
        self._error: tuple[int, JobledgerError] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._first_interval = first_interval
        self._max_interval = max(first_interval, max_interval)
        self.requests = 0

    @property
    def rounds(self) -> int:
        """How many poll rounds this poller has made."""
        return self._round

    def wait(
        self, job_id: str, timeout: float | None = None, poll_interval: float | None = None
    ) -> None:
        """Block until *job_id* is final (as recorded in the registry).

        :raises JobTimeoutError: when *timeout* seconds pass first.
        :raises OfflineError: when the service cannot be reached.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            if poll_interval is not None:
                self._max_interval = max(
                    self._first_interval, min(self._max_interval, poll_interval)
                )
            self._waiting[job_id] += 1
            self._final.discard(job_id)
            if self._waiting[job_id] == 1:
                # A job nobody waited for: read its status in the next round, now.
                self._wake = True
                self._wakeup.notify()
            start_round = self._round
            self._start()
            try:
                while job_id not in self._final:
                    if job_id in self._failed:
                        raise self._failed.pop(job_id)
                    if self._error is not None and self._error[0] > start_round:
                        raise self._error[1]
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise JobTimeoutError(
                            f"job {job_id} did not reach a final state within {timeout} s; "
                            f"wait longer, or check it with `jobledger show {job_id}`"
                        )
                    self._cond.wait(1.0 if remaining is None else min(remaining, 1.0))
            finally:
                self._waiting[job_id] -= 1
                if self._waiting[job_id] <= 0:
                    del self._waiting[job_id]

    def stop(self) -> None:
        """Stop the polling thread."""
        self._stop.set()
        with self._wakeup:
            self._wakeup.notify()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="jobledger-poller", daemon=True)
            self._thread.start()

    def _pause(self, seconds: float) -> None:
        """Sleep between rounds until *seconds* pass, a new job is waited for, or
        :meth:`stop` is called."""
        deadline = time.monotonic() + seconds
        with self._wakeup:
            while not self._wake and not self._stop.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._wakeup.wait(remaining)

    def _run(self) -> None:
        interval = self._first_interval
        seen: dict[str, JobStatus] = {}
        while not self._stop.is_set():
            with self._cond:
                ids = sorted(self._waiting)
                if not ids:
                    self._thread = None
                    return
                # Whoever registered until now is in this round.
                self._wake = False
            changed = fresh = False
            try:
                batch = self._conn.call(partial(_statuses, ids=ids))
                found, missing = batch.found, batch.missing
                self.requests += (len(ids) + 999) // 1000
                self._conn.registry.apply_infos(self._conn.service_id, found)
            except JobledgerError as exc:
                with self._cond:
                    self._round += 1
                    self._error = (self._round, exc)
                    self._cond.notify_all()
                self._pause(interval)
                interval = min(interval * 2, self._max_interval)
                continue
            with self._cond:
                self._round += 1
                self._error = None
                for info in found:
                    if info.id not in seen and not info.status.is_final:
                        fresh = True
                    if seen.get(info.id) is not info.status:
                        changed = True
                        seen[info.id] = info.status
                    if info.status.is_final:
                        self._final.add(info.id)
                for job_id in missing:
                    self._failed[job_id] = JobNotFoundError(
                        f"the service no longer knows job {job_id}"
                    )
                self._cond.notify_all()
            interval = self._next_interval(interval, fresh=fresh, changed=changed)
            self._pause(interval)

    def _next_interval(self, interval: float, *, fresh: bool, changed: bool) -> float:
        """The pause before the next round, after one that took *interval*."""
        if fresh:
            return min(QUICK_INTERVAL, self._first_interval)
        if interval < self._first_interval:  # still ramping up after a new job
            return min(interval * 2, self._max_interval)
        if changed:
            return self._first_interval
        return min(interval * 1.5, self._max_interval)


def _statuses(provider: Provider, ids: list[str]) -> StatusBatch:
    return provider.statuses(ids)
