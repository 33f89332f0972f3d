"""The registry's records: the frozen records a query returns, dates and statuses.

:class:`JobRecord`, :class:`ServiceRecord` and :class:`BlobRef` are what crosses the
registry's boundary (digests as hex text, dates as timezone-aware UTC datetimes,
services by their id), whatever the file stores. Schema 5 stores dates as integer
microseconds since 1970 (:func:`to_micros`, :func:`from_micros`) and statuses as the
small integers of :data:`STATUS_CODES`; the text forms are UTC ISO 8601 strings
(:func:`now_iso`, :func:`parse_date`, :func:`to_iso`, :func:`iso_from_micros`) and the
status names. ``dumps`` is the one JSON form the registry writes. Rows are decoded in
:mod:`jobledger.registry.codec`. Re-exported by :mod:`jobledger.registry`.

The records are :class:`~jobledger.frozen.Frozen` (frozen like a dataclass, without
importing :mod:`dataclasses`: every cold read builds them).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

from jobledger.frozen import Frozen
from jobledger.status import JobStatus

TYPE_CHECKING = False  # typing's flag without importing typing (see docs/architecture.md)
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "STATUS_CODES",
    "BlobRef",
    "JobRecord",
    "ServiceRecord",
    "from_micros",
    "iso_from_micros",
    "now_iso",
    "now_micros",
    "parse_date",
    "to_iso",
    "to_micros",
]

STATUS_CODES: dict[JobStatus, int] = {
    JobStatus.INITIALIZING: 0,
    JobStatus.QUEUED: 1,
    JobStatus.RUNNING: 2,
    JobStatus.DONE: 3,
    JobStatus.ERROR: 4,
    JobStatus.CANCELLED: 5,
    JobStatus.DELETED: 6,
}
"""The integer each status is stored as (schema 5; the ``statuses`` table names them)."""

STATUSES: tuple[JobStatus, ...] = tuple(sorted(STATUS_CODES, key=STATUS_CODES.__getitem__))
"""The statuses by code: ``STATUSES[code]``."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_FAST_LIMIT = 4_000_000_000 * 1_000_000  # year 2096
_fromtimestamp = datetime.fromtimestamp


class BlobRef(Frozen):
    """A payload known by its digest: where it came from is the job's business."""

    sha256: str
    size: int
    media_type: str

    def __init__(self, sha256: str, size: int, media_type: str) -> None:
        self.__dict__.update(sha256=sha256, size=size, media_type=media_type)


class ServiceRecord(Frozen):
    """A job service the registry has recorded jobs for."""

    id: str
    url: str
    # "local" (the embedded service), "remote" (a jobledger service), "imported" (from a
    # bundle), or the provider of another job service ("ibm-quantum", "braket", "qlmaas")
    kind: str
    profile: str | None

    def __init__(self, id: str, url: str, kind: str, profile: str | None) -> None:
        self.__dict__.update(id=id, url=url, kind=kind, profile=profile)


class JobRecord(Frozen):
    """One row of the ``jobs`` table, decoded."""

    pk: int
    job_id: str | None
    service: str | None
    alias: str | None
    backend: str
    backend_version: str | None
    status: JobStatus
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    queue_position: int | None
    message: str | None
    tags: tuple[str, ...]
    session_id: str | None
    params: dict[str, Any]
    batch: BlobRef | None
    result: BlobRef | None
    provenance: str | None
    idempotency_key: str
    submit_state: str  # "pending" (not acknowledged yet), "sent", "synced" or "refused"
    last_seen_at: datetime | None
    usage: dict[str, Any]
    extras: dict[str, Any]

    def __init__(
        self,
        pk: int,
        job_id: str | None,
        service: str | None,
        alias: str | None,
        backend: str,
        backend_version: str | None,
        status: JobStatus,
        created_at: datetime,
        started_at: datetime | None,
        ended_at: datetime | None,
        queue_position: int | None,
        message: str | None,
        tags: tuple[str, ...],
        session_id: str | None,
        params: dict[str, Any],
        batch: BlobRef | None,
        result: BlobRef | None,
        provenance: str | None,
        idempotency_key: str,
        submit_state: str,
        last_seen_at: datetime | None,
        usage: dict[str, Any] | None = None,
        extras: dict[str, Any] | None = None,
    ) -> None:
        self.__dict__.update(
            pk=pk,
            job_id=job_id,
            service=service,
            alias=alias,
            backend=backend,
            backend_version=backend_version,
            status=status,
            created_at=created_at,
            started_at=started_at,
            ended_at=ended_at,
            queue_position=queue_position,
            message=message,
            tags=tags,
            session_id=session_id,
            params=params,
            batch=batch,
            result=result,
            provenance=provenance,
            idempotency_key=idempotency_key,
            submit_state=submit_state,
            last_seen_at=last_seen_at,
            usage={} if usage is None else usage,
            extras={} if extras is None else extras,
        )

    @property
    def name(self) -> str:
        """The id, or a placeholder while the submission is not acknowledged."""
        return self.job_id or f"<pending #{self.pk}>"


def now_iso() -> str:
    """The current UTC time in the registry's text form (ISO 8601)."""
    return datetime.now(UTC).isoformat()


def now_micros() -> int:
    """The current UTC time as the registry stores it: microseconds since 1970."""
    return time.time_ns() // 1000


def parse_date(value: str | None) -> datetime | None:
    """Parse an ISO 8601 date (naive ones are taken as UTC)."""
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def to_iso(value: datetime | str | None) -> str | None:
    """Normalise a date to the registry's UTC ISO form (naive ones are taken as UTC)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


def to_micros(value: datetime | str | None) -> int | None:
    """A date as the registry stores it (schema 5): integer microseconds since
    1970-01-01 UTC. Naive dates are taken as UTC; exact, no float rounding."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _MICROSECOND


def from_micros(value: int) -> datetime:
    """The timezone-aware UTC datetime of a stored date (see :func:`to_micros`)."""
    if 0 <= value < _FAST_LIMIT:
        # Through a float is 3x faster; below the limit its error stays under half a
        # microsecond, so fromtimestamp's rounding gives the exact value back.
        return _fromtimestamp(value / 1e6, UTC)
    return _EPOCH + timedelta(microseconds=value)


def iso_from_micros(value: int) -> str:
    """The text form (UTC ISO 8601, as :func:`to_iso` writes it) of a stored date."""
    return from_micros(value).isoformat()


def dumps(value: Any) -> str:
    """The one JSON form the registry writes: compact, keys sorted."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True)
