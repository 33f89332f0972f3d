"""Job states and the job info record, with the mappings of both dialects.

The service speaks the names of :class:`JobStatus` on the wire. QLMaaS users see
lower-case names (``"waiting"``, ``"done"``...) or their historical integers; Qiskit
Runtime users see :class:`JobStatus` itself, a ``str`` enum equal to its name.
``JobInfo`` is importable from here too; it is defined in :mod:`jobledger.job_info`
and loaded on first use, so that reading a job's status or result never builds it.
"""

from __future__ import annotations

import enum

TYPE_CHECKING = False  # typing's flag without importing typing (see docs/architecture.md)
if TYPE_CHECKING:
    from typing import Any

    from jobledger.job_info import JobInfo

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


def __getattr__(name: str) -> Any:
    if name == "JobInfo":
        from jobledger.job_info import JobInfo

        return JobInfo
    raise AttributeError(f"module 'jobledger.status' has no attribute {name!r}")
