"""Job states and the job info record, with the mappings of both dialects.

The service speaks the names of :class:`JobStatus` on the wire. QLMaaS users see
lower-case names (``"waiting"``, ``"done"``...) or their historical integers; Qiskit
Runtime users see :class:`JobStatus` itself, a ``str`` enum equal to its name.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

__all__ = ["FINAL_STATES", "JobInfo", "JobStatus", "parse_status"]


class JobStatus(enum.StrEnum):
    """The state of a job, as Qiskit Runtime names it."""

    INITIALIZING = "INITIALIZING"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    DONE = "DONE"
    ERROR = "ERROR"
    CANCELLED = "CANCELLED"
    DELETED = "DELETED"

    @property
    def is_final(self) -> bool:
        """Whether the job can no longer change state (except to DELETED)."""
        return self in FINAL_STATES

    @property
    def qlmaas_name(self) -> str:
        """The lower-case QLMaaS name of this state."""
        return _QLMAAS_NAMES[self]

    @property
    def qlmaas_code(self) -> int:
        """The QLMaaS integer code of this state."""
        return _QLMAAS_CODES[self]


FINAL_STATES = frozenset({JobStatus.DONE, JobStatus.ERROR, JobStatus.CANCELLED, JobStatus.DELETED})

_QLMAAS_NAMES = {
    JobStatus.INITIALIZING: "waiting",
    JobStatus.QUEUED: "waiting",
    JobStatus.RUNNING: "running",
    JobStatus.DONE: "done",
    JobStatus.ERROR: "failed",
    JobStatus.CANCELLED: "cancelled",
    JobStatus.DELETED: "deleted",
}
_QLMAAS_CODES = {
    JobStatus.INITIALIZING: 1,
    JobStatus.QUEUED: 1,
    JobStatus.RUNNING: 2,
    JobStatus.DONE: 3,
    JobStatus.CANCELLED: 4,
    JobStatus.DELETED: 7,
    JobStatus.ERROR: 9,
}
_ALIASES = {
    "waiting": JobStatus.QUEUED,
    "pending": JobStatus.QUEUED,
    "queued": JobStatus.QUEUED,
    "running": JobStatus.RUNNING,
    "done": JobStatus.DONE,
    "completed": JobStatus.DONE,
    "failed": JobStatus.ERROR,
    "error": JobStatus.ERROR,
    "cancelled": JobStatus.CANCELLED,
    "canceled": JobStatus.CANCELLED,
    "deleted": JobStatus.DELETED,
    "initializing": JobStatus.INITIALIZING,
}


def parse_status(value: str | JobStatus) -> JobStatus:
    """Return the :class:`JobStatus` named by *value* in either dialect.

    Accepts the enum names (``"DONE"``), the QLMaaS names (``"done"``,
    ``"failed"``) and common spellings, in any case.

    :raises ValueError: naming the value and the accepted names.
    """
    if isinstance(value, JobStatus):
        return value
    key = str(value).strip().lower()
    try:
        return _ALIASES[key]
    except KeyError:
        known = ", ".join(sorted({s.value.lower() for s in JobStatus} | set(_ALIASES)))
        raise ValueError(f"unknown job status {value!r}; use one of: {known}") from None


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
