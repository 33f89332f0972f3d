"""What every executor shares: cancelling a queued job at once, a running one by request.

An executor records a running job's cancellation in ``_cancels`` and wakes its
scheduler thread, which stops the job its own way (a flag and a kill for the local
pool, a Dask ``Event`` for a cluster).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from jobledger.service.store import JobStore
from jobledger.status import JobStatus

__all__ = ["CancelQueue"]


class CancelQueue:
    """The cancel path of an executor (a mixin: the executor sets the attributes)."""

    _store: JobStore
    _notify: Callable[[str], None]
    _lock: threading.Lock
    _cancels: set[str]

    def wake(self) -> None:
        """Tell the scheduler thread something changed."""
        raise NotImplementedError

    def cancel(self, job_id: str) -> bool:
        """Cancel *job_id*: at once if queued, through the scheduler thread if running.

        :returns: whether a cancellation happened or was started.
        """
        if self._store.finish(
            job_id, JobStatus.CANCELLED, "cancelled while queued", only_from=(JobStatus.QUEUED,)
        ):
            self._notify(job_id)
            return True
        record = self._store.get(job_id)
        if record is None or record.status is not JobStatus.RUNNING:
            return False
        with self._lock:
            self._cancels.add(job_id)
        self.wake()
        return True
