"""What a job's handle reports about it: :class:`JobInfo` and :class:`QueueInfo`.

``JobInfo`` is public as ``jobledger.JobInfo`` and ``jobledger.status.JobInfo``, which
load this module on first use; ``QueueInfo`` is what ``job.queue_info()`` returns.
They live apart from :mod:`jobledger.status` and :mod:`jobledger.client.job` because
building a data class costs more at import than the rest of either module, and the
offline read path (``from jobledger.jobs import X; X.result()``) needs neither.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from jobledger.status import JobStatus

__all__ = ["JobInfo", "QueueInfo"]


@dataclass(frozen=True)
class JobInfo:
    """What is known about a job, from the registry or the service."""

    job_id: str
    status: JobStatus
    backend: str
    submission_date: datetime | None
    starting_date: datetime | None = None
    ending_date: datetime | None = None
    queue_position: int | None = None
    message: str | None = None
    tags: tuple[str, ...] = ()
    session_id: str | None = None
    backend_version: str | None = None
    usage: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class QueueInfo:
    """A queued job's place (Qiskit's ``queue_info()``)."""

    job_id: str
    position: int
