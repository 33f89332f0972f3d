"""Executors: where the reference service runs its jobs.

An executor takes queued jobs from the service's :class:`~jobledger.service.store.JobStore`
in FIFO order, runs each with its backend, and reports status, logs, interim results
and the result back; the store stays the only writer. :mod:`.process` is the local
pool of worker processes (the default); :mod:`.dask` runs them on a Dask cluster,
one :mod:`.dask_supervisor` task per job. Both have the interface of
:class:`JobExecutor`. Modules here may import ``jobledger.service``
(store, blobs, worker protocol) and ``jobledger.status``; never the client.
"""

from __future__ import annotations

from typing import Protocol

from jobledger.service.executors.dask import DaskExecutor
from jobledger.service.executors.process import Executor

__all__ = ["DaskExecutor", "Executor", "JobExecutor"]


class JobExecutor(Protocol):
    """What the service asks of an executor."""

    def start(self) -> None:
        """Start running jobs."""

    def wake(self) -> None:
        """Something changed: a job was queued or cancelled."""

    def cancel(self, job_id: str) -> bool:
        """Cancel *job_id*; return whether a cancellation happened or was started."""

    def stop(self, timeout: float = 5.0) -> None:
        """Stop; running jobs end ``ERROR``."""
