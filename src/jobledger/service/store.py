"""Jobs, idempotency keys and events in the service database.

:class:`JobStore` is the only code that reads or writes the ``jobs``, ``idempotency``
and ``events`` tables. Every status change is a conditional ``UPDATE`` (``WHERE
status = ...``), so a cancel racing with the scheduler or a worker has exactly one
winner, and every change appends an event that the SSE stream replays. Queue order is
the insertion order (``seq``); a queued job's position is computed from it. Each row
also carries the number of its last change (``changed``, stamped by the database's
triggers, see :mod:`jobledger.service.db`), by which :meth:`JobStore.list_jobs` lists
the jobs changed after a given number.

A submission is acknowledged only once it would survive a power failure, at the cost
of as few ``fsync`` calls as possible: its row is committed with the write-ahead log
flushed, and a small batch's bytes go into ``inline_blobs`` in that same commit (its
file in the blob folder is written without ``fsync``). Should a power failure cut such
a file short, :meth:`JobStore.restore_batches` writes it again from the database
before any job runs, and downloads are answered from the database meanwhile.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jobledger.service.blobs import BlobInfo, BlobStore
from jobledger.service.db import Database
from jobledger.status import JobStatus

__all__ = ["Event", "JobFilter", "JobRecord", "JobStore", "now_iso"]

STOPPED_MESSAGE = "the service stopped while the job was running; submit it again"


def now_iso() -> str:
    """The current UTC time in the protocol's date format."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _no_constant(name: str) -> None:
    return None


def _finite_or_none(text: str) -> float | None:
    value = float(text)
    return value if math.isfinite(value) else None


def _stored_json(text: str | None, kind: type[Any]) -> Any:
    """Decode a JSON column, forgiving what older versions let through.

    Rows written before non-finite numbers were refused at the door may hold
    ``NaN`` or ``Infinity``; those read as ``null``, so one such row can always
    be answered as JSON. A column that is not JSON at all reads as empty.
    """
    try:
        value = json.loads(text or "", parse_constant=_no_constant, parse_float=_finite_or_none)
    except (ValueError, RecursionError):
        return kind()
    return value if isinstance(value, kind) else kind()


def _dumps(value: Any) -> str:
    # Refuse NaN and Infinity: they are not JSON, and no reader could answer them.
    return json.dumps(value, allow_nan=False)


@dataclass(frozen=True)
class JobRecord:
    """One row of the ``jobs`` table, decoded."""

    seq: int
    id: str
    owner: str
    backend: str
    backend_version: str
    status: JobStatus
    created_at: str
    started_at: str | None
    ended_at: str | None
    message: str | None
    tags: list[str]
    session_id: str | None
    params: dict[str, Any]
    batch: BlobInfo | None
    result: BlobInfo | None
    usage_seconds: float | None
    metrics: dict[str, Any]
    queue_position: int | None = None
    changed: int = 0

    @classmethod
    def from_row(cls, row: sqlite3.Row, queue_position: int | None = None) -> JobRecord:
        """Decode a ``jobs`` row."""

        def blob(prefix: str) -> BlobInfo | None:
            digest = row[f"{prefix}_sha256"]
            if digest is None:
                return None
            return BlobInfo(digest, int(row[f"{prefix}_size"]), row[f"{prefix}_media_type"])

        return cls(
            seq=row["seq"],
            id=row["id"],
            owner=row["owner"],
            backend=row["backend"],
            backend_version=row["backend_version"],
            status=JobStatus(row["status"]),
            created_at=row["created_at"],
            started_at=row["started_at"],
            ended_at=row["ended_at"],
            message=row["message"],
            tags=_stored_json(row["tags"], list),
            session_id=row["session_id"],
            params=_stored_json(row["params"], dict),
            batch=blob("batch"),
            result=blob("result"),
            usage_seconds=row["usage_seconds"],
            metrics=_stored_json(row["metrics"], dict),
            queue_position=queue_position,
            changed=int(row["changed"] or 0),
        )


@dataclass(frozen=True)
class Event:
    """One event of a job, as replayed by the SSE stream."""

    seq: int
    kind: str
    data: dict[str, Any]


@dataclass(frozen=True)
class JobFilter:
    """The filters of ``GET /v1/jobs``."""

    statuses: tuple[str, ...] = ()
    backend: str | None = None
    tags: tuple[str, ...] = ()
    created_after: str | None = None
    created_before: str | None = None
    session_id: str | None = None


# For one job: count the queued jobs up to it through the (status, seq) index.
_QUEUE_POSITION = (
    "CASE WHEN j.status = 'QUEUED' THEN "
    "(SELECT COUNT(*) FROM jobs q WHERE q.status = 'QUEUED' AND q.seq <= j.seq) END"
)
# For many jobs: number the queued jobs once, in one ordered scan of that index,
# instead of one count per job (which is quadratic in the queue's length).
_QUEUE_POSITIONS = (
    "SELECT seq, pos FROM (SELECT seq, ROW_NUMBER() OVER (ORDER BY seq) AS pos "
    "FROM jobs WHERE status = 'QUEUED' AND seq <= ?) "
    "WHERE seq IN (SELECT value FROM json_each(?))"
)


class JobStore:
    """Reads and writes jobs and their events."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- reading -------------------------------------------------------------------

    def get(self, job_id: str, owner: str | None = None) -> JobRecord | None:
        """The job *job_id* (of *owner* when given), or ``None``."""
        sql = f"SELECT j.*, {_QUEUE_POSITION} AS qpos FROM jobs j WHERE j.id = ?"
        args: list[Any] = [job_id]
        if owner is not None:
            sql += " AND j.owner = ?"
            args.append(owner)
        row = self.db.conn().execute(sql, args).fetchone()
        return None if row is None else JobRecord.from_row(row, row["qpos"])

    def _records(self, rows: Iterable[sqlite3.Row]) -> list[JobRecord]:
        """Decode *rows*, with queue positions found in one scan; skip unreadable rows."""
        rows = list(rows)
        queued = [int(row["seq"]) for row in rows if row["status"] == "QUEUED"]
        positions: dict[int, int] = {}
        if queued:
            found = self.db.conn().execute(_QUEUE_POSITIONS, (max(queued), json.dumps(queued)))
            positions = {int(seq): int(pos) for seq, pos in found}
        records = []
        for row in rows:
            try:
                records.append(JobRecord.from_row(row, positions.get(int(row["seq"]))))
            except (ValueError, KeyError, TypeError) as exc:
                # One damaged row must not take a whole listing down.
                print(
                    f"jobledger service: skipping unreadable job row {row['id']!r}: {exc}",
                    file=sys.stderr,
                )
        return records

    def many(self, owner: str, ids: Iterable[str]) -> dict[str, JobRecord]:
        """The jobs of *owner* among *ids*, keyed by id."""
        wanted = list(dict.fromkeys(ids))
        rows: list[sqlite3.Row] = []
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows += self.db.conn().execute(
                f"SELECT j.* FROM jobs j WHERE j.owner = ? AND j.id IN ({marks})",
                [owner, *chunk],
            )
        return {record.id: record for record in self._records(rows)}

    def list_jobs(
        self,
        owner: str,
        flt: JobFilter,
        *,
        limit: int,
        after_seq: int | None,
        descending: bool,
        changed_after: int | None = None,
    ) -> list[JobRecord]:
        """A page of *owner*'s jobs matching *flt*, after the cursor *after_seq*.

        :param changed_after: list only jobs whose last change is numbered above it,
            oldest change first (through the ``(owner, changed)`` index); *after_seq*
            and *descending* are then ignored: the caller pages by change number.
        """
        where = ["j.owner = ?"]
        args: list[Any] = [owner]
        if flt.statuses:
            where.append(f"j.status IN ({','.join('?' * len(flt.statuses))})")
            args.extend(flt.statuses)
        for column, value in (
            ("backend", flt.backend),
            ("session_id", flt.session_id),
        ):
            if value is not None:
                where.append(f"j.{column} = ?")
                args.append(value)
        if flt.created_after is not None:
            where.append("j.created_at > ?")
            args.append(flt.created_after)
        if flt.created_before is not None:
            where.append("j.created_at < ?")
            args.append(flt.created_before)
        for tag in flt.tags:
            # CASE keeps json_each away from a damaged tags column.
            where.append(
                "CASE WHEN json_valid(j.tags) THEN "
                "EXISTS (SELECT 1 FROM json_each(j.tags) t WHERE t.value = ?) ELSE 0 END"
            )
            args.append(tag)
        if changed_after is not None:
            where.append("j.changed > ?")
            args.append(changed_after)
            order = "j.changed ASC"
        else:
            if after_seq is not None:
                where.append("j.seq < ?" if descending else "j.seq > ?")
                args.append(after_seq)
            order = "j.seq DESC" if descending else "j.seq ASC"
        sql = f"SELECT j.* FROM jobs j WHERE {' AND '.join(where)} ORDER BY {order} LIMIT ?"
        return self._records(self.db.conn().execute(sql, [*args, limit]))

    def events_after(self, job_id: str, seq: int) -> list[Event]:
        """The events of *job_id* with a sequence number above *seq*, in order."""
        rows = self.db.conn().execute(
            "SELECT seq, kind, data FROM events WHERE job_id = ? AND seq > ? ORDER BY seq",
            (job_id, seq),
        )
        return [Event(row["seq"], row["kind"], _stored_json(row["data"], dict)) for row in rows]

    def idempotent_job(self, owner: str, key: str) -> str | None:
        """The job id submitted earlier by *owner* with idempotency *key*, if any."""
        row = (
            self.db.conn()
            .execute("SELECT job_id FROM idempotency WHERE owner = ? AND key = ?", (owner, key))
            .fetchone()
        )
        return None if row is None else str(row["job_id"])

    def key_owner(self, key: str) -> str | None:
        """The user who first sent idempotency *key*, if anyone did."""
        row = (
            self.db.conn()
            .execute("SELECT owner FROM idempotency WHERE key = ? LIMIT 1", (key,))
            .fetchone()
        )
        return None if row is None else str(row["owner"])

    def blob_in_use(self, digest: str, except_job: str) -> bool:
        """Whether a job other than *except_job* still needs the blob *digest*."""
        row = (
            self.db.conn()
            .execute(
                "SELECT 1 FROM jobs WHERE id != ? AND status != 'DELETED' "
                "AND (batch_sha256 = ? OR result_sha256 = ?) LIMIT 1",
                (except_job, digest, digest),
            )
            .fetchone()
        )
        return row is not None

    # -- writing -------------------------------------------------------------------

    def _event(self, conn: sqlite3.Connection, job_id: str, kind: str, data: Any) -> int:
        row = conn.execute(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE job_id = ?", (job_id,)
        ).fetchone()
        seq = int(row[0])
        conn.execute(
            "INSERT INTO events (job_id, seq, kind, data, at) VALUES (?, ?, ?, ?, ?)",
            (job_id, seq, kind, _dumps(data), now_iso()),
        )
        return seq

    def _status_event(
        self,
        conn: sqlite3.Connection,
        job_id: str,
        status: JobStatus,
        message: str | None,
        at: str,
    ) -> None:
        self._event(conn, job_id, "status", {"status": status.value, "message": message, "at": at})

    def insert(
        self, record: JobRecord, idempotency_key: str | None, inline: bytes | None = None
    ) -> tuple[JobRecord, bool]:
        """Insert a new queued job; return ``(job, created)``.

        With an idempotency key already used by the same owner, the earlier job is
        returned and nothing is inserted. The new row is on disk (``fsync``) before this
        returns: the service acknowledges it, so a power failure must not lose it.

        :param inline: the batch's bytes, kept in the database with the row (for a
            small batch whose file was written without ``fsync``).
        """
        with self.db.write(durable=True) as conn:
            if idempotency_key is not None:
                earlier = self.idempotent_job(record.owner, idempotency_key)
                if earlier is not None:
                    found = self.get(earlier)
                    if found is not None:
                        return found, False
                conn.execute(
                    "INSERT INTO idempotency (owner, key, job_id) VALUES (?, ?, ?)",
                    (record.owner, idempotency_key, record.id),
                )
            batch = record.batch
            conn.execute(
                "INSERT INTO jobs (id, owner, backend, backend_version, status, created_at, "
                "tags, session_id, params, batch_sha256, batch_size, batch_media_type) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    record.owner,
                    record.backend,
                    record.backend_version,
                    JobStatus.QUEUED.value,
                    record.created_at,
                    _dumps(record.tags),
                    record.session_id,
                    _dumps(record.params),
                    batch.sha256 if batch else None,
                    batch.size if batch else None,
                    batch.media_type if batch else None,
                ),
            )
            self._status_event(conn, record.id, JobStatus.QUEUED, None, record.created_at)
            if inline is not None and batch is not None:
                conn.execute(
                    "INSERT OR IGNORE INTO inline_blobs (sha256, data) VALUES (?, ?)",
                    (batch.sha256, inline),
                )
        created = self.get(record.id)
        assert created is not None
        return created, True

    def claim_next(self) -> JobRecord | None:
        """Mark the oldest queued job RUNNING and return it (``None`` if none)."""
        with self.db.write() as conn:
            row = conn.execute(
                "SELECT id FROM jobs WHERE status = 'QUEUED' ORDER BY seq LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            at = now_iso()
            conn.execute(
                "UPDATE jobs SET status = 'RUNNING', started_at = ? WHERE id = ?",
                (at, row["id"]),
            )
            self._status_event(conn, row["id"], JobStatus.RUNNING, None, at)
        return self.get(row["id"])

    def finish(
        self,
        job_id: str,
        status: JobStatus,
        message: str | None,
        *,
        result: BlobInfo | None = None,
        only_from: tuple[JobStatus, ...] = (JobStatus.RUNNING,),
    ) -> bool:
        """Move *job_id* to the final *status*, if it is in one of *only_from*."""
        at = now_iso()
        with self.db.write() as conn:
            row = conn.execute("SELECT status, started_at FROM jobs WHERE id = ?", (job_id,))
            current = row.fetchone()
            if current is None or current["status"] not in {s.value for s in only_from}:
                return False
            usage = None
            if current["started_at"] is not None:
                started = datetime.fromisoformat(current["started_at"])
                usage = round((datetime.fromisoformat(at) - started).total_seconds(), 6)
            conn.execute(
                "UPDATE jobs SET status = ?, ended_at = ?, message = ?, usage_seconds = ?, "
                "result_sha256 = ?, result_size = ?, result_media_type = ? WHERE id = ?",
                (
                    status.value,
                    at,
                    message,
                    usage,
                    result.sha256 if result else None,
                    result.size if result else None,
                    result.media_type if result else None,
                    job_id,
                ),
            )
            self._status_event(conn, job_id, status, message, at)
        return True

    def mark_deleted(self, job_id: str) -> JobRecord | None:
        """Set a final job DELETED (files to be removed by the caller); return it before."""
        with self.db.write() as conn:
            before = self.get(job_id)
            if before is None or not before.status.is_final:
                return before
            if before.status is JobStatus.DELETED:
                return before
            conn.execute("UPDATE jobs SET status = 'DELETED' WHERE id = ?", (job_id,))
            self._status_event(conn, job_id, JobStatus.DELETED, before.message, now_iso())
        return before

    def add_event(self, job_id: str, kind: str, data: dict[str, Any]) -> None:
        """Append a log, interim or metric event (metrics are also merged in the row)."""
        with self.db.write() as conn:
            self._event(conn, job_id, kind, data)
            if kind == "metric":
                row = conn.execute("SELECT metrics FROM jobs WHERE id = ?", (job_id,)).fetchone()
                metrics = _stored_json(row["metrics"], dict) if row else {}
                metrics[data["name"]] = data["value"]
                conn.execute("UPDATE jobs SET metrics = ? WHERE id = ?", (_dumps(metrics), job_id))

    def inline_blob(self, digest: str) -> bytes | None:
        """The bytes of a small batch kept in the database, if any."""
        row = (
            self.db.conn()
            .execute("SELECT data FROM inline_blobs WHERE sha256 = ?", (digest,))
            .fetchone()
        )
        return None if row is None else bytes(row["data"])

    def forget_inline(self, digest: str) -> None:
        """Drop the database's copy of a batch whose files were deleted."""
        with self.db.write() as conn:
            conn.execute("DELETE FROM inline_blobs WHERE sha256 = ?", (digest,))

    def restore_batches(self, blobs: BlobStore) -> list[str]:
        """At startup, before any job runs: write again, durably, the batch file of each
        queued job that a power failure cut short or lost (from its copy in the
        database); return the digests restored."""
        rows = self.db.conn().execute(
            "SELECT DISTINCT j.batch_sha256, j.batch_size, j.batch_media_type, b.data "
            "FROM jobs j JOIN inline_blobs b ON b.sha256 = j.batch_sha256 "
            "WHERE j.status = 'QUEUED'"
        )
        restored = []
        for row in rows:
            path = blobs.path(row["batch_sha256"])
            try:
                intact = path.stat().st_size == row["batch_size"] and (
                    hashlib.sha256(path.read_bytes()).hexdigest() == row["batch_sha256"]
                )
            except OSError:
                intact = False
            if not intact:
                blobs.restore(bytes(row["data"]), row["batch_media_type"])
                restored.append(str(row["batch_sha256"]))
        return restored

    def recover(self) -> list[str]:
        """At startup: jobs left RUNNING become ERROR; return their ids."""
        rows = self.db.conn().execute("SELECT id FROM jobs WHERE status = 'RUNNING'")
        stale = [str(row["id"]) for row in rows]
        for job_id in stale:
            self.finish(job_id, JobStatus.ERROR, STOPPED_MESSAGE)
        return stale
