"""The registry's records: the frozen data classes a query returns, and their row codec.

:class:`JobRecord`, :class:`ServiceRecord` and :class:`BlobRef` are what crosses the
registry's boundary; ``record_from_row`` decodes one ``jobs`` row into a :class:`JobRecord` and
``dumps`` is the one JSON form the registry writes. Dates are stored as UTC ISO 8601
strings: :func:`now_iso`, :func:`parse_date` and :func:`to_iso` convert to and from it.
Re-exported by :mod:`jobledger.registry`.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from jobledger.status import JobStatus

__all__ = ["BlobRef", "JobRecord", "ServiceRecord", "now_iso", "parse_date", "to_iso"]


@dataclass(frozen=True)
class BlobRef:
    """A payload known by its digest: where it came from is the job's business."""

    sha256: str
    size: int
    media_type: str


@dataclass(frozen=True)
class ServiceRecord:
    """A job service the registry has recorded jobs for."""

    id: str
    url: str
    # "local" (the embedded service), "remote" (a jobledger service), "imported" (from a
    # bundle), or the provider of another job service ("ibm-quantum", "braket", "qlmaas")
    kind: str
    profile: str | None


@dataclass(frozen=True)
class JobRecord:
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
    usage: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The id, or a placeholder while the submission is not acknowledged."""
        return self.job_id or f"<pending #{self.pk}>"


def now_iso() -> str:
    """The current UTC time as the registry stores it."""
    return datetime.now(UTC).isoformat()


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


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def record_from_row(row: sqlite3.Row) -> JobRecord:
    keys = row.keys()

    def blob(prefix: str) -> BlobRef | None:
        digest = row[f"{prefix}_sha256"]
        if not digest:
            return None
        return BlobRef(digest, row[f"{prefix}_size"] or 0, row[f"{prefix}_media_type"] or "")

    created = parse_date(row["created_at"])
    assert created is not None
    return JobRecord(
        pk=row["pk"],
        job_id=row["job_id"],
        service=row["service"],
        alias=row["alias"],
        backend=row["backend"],
        backend_version=row["backend_version"],
        status=JobStatus(row["status"]),
        created_at=created,
        started_at=parse_date(row["started_at"]),
        ended_at=parse_date(row["ended_at"]),
        queue_position=row["queue_position"],
        message=row["message"],
        tags=tuple(json.loads(row["tags"] or "[]")),
        session_id=row["session_id"],
        params=json.loads(row["params"] or "{}"),
        batch=blob("batch"),
        result=blob("result"),
        provenance=row["provenance"],
        idempotency_key=row["idempotency_key"],
        submit_state=row["submit_state"],
        last_seen_at=parse_date(row["last_seen_at"]),
        usage=json.loads(row["usage"] or "{}"),
        extras=json.loads(row["extras"] or "{}") if "extras" in keys else {},
    )
