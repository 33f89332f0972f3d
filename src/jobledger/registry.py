"""The local registry: one SQLite file recording every job, its events and provenance.

Schema and migrations are applied with sqlite-utils; queries use :mod:`sqlite3`
directly so that the read path (``from jobledger.jobs import X``) stays light. The
file is in WAL mode with a busy timeout, and every write runs in a ``BEGIN
IMMEDIATE`` transaction retried with bounded backoff, so several processes and
threads can record and read at once. The schema is documented in ``docs/registry.md``.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from jobledger.errors import RegistryError
from jobledger.status import JobStatus

__all__ = ["SCHEMA_VERSION", "BlobRef", "JobRecord", "Registry", "ServiceRecord"]

SCHEMA_VERSION = 2
T = TypeVar("T")
_WRITE_ATTEMPTS = 10


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
    kind: str  # "local" (the embedded service) or "remote"
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
    submit_state: str  # "pending" (not acknowledged yet), "sent", or "synced"
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


class Registry:
    """The registry file at *path*.

    Cheap to build: nothing is opened until the first query. Each thread gets its
    own SQLite connection. With ``readonly=True`` the file is never created or
    migrated, and a missing file reads as an empty registry.
    """

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._ready = False

    # -- connections ------------------------------------------------------------

    def exists(self) -> bool:
        """Whether the registry file exists."""
        return self.path.exists()

    def _conn(self) -> sqlite3.Connection | None:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if (self.readonly or not self._ready) and not self.path.exists():
            if self.readonly:
                return None
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if self.readonly:
                conn = sqlite3.connect(
                    f"file:{self.path}?mode=ro",
                    uri=True,
                    timeout=30,
                    isolation_level=None,
                    check_same_thread=False,
                )
            else:
                conn = sqlite3.connect(
                    self.path, timeout=30, isolation_level=None, check_same_thread=False
                )
            conn.execute("PRAGMA busy_timeout = 30000")
        except sqlite3.Error as exc:
            raise RegistryError(f"cannot open the registry {self.path}: {exc}") from exc
        conn.row_factory = sqlite3.Row
        self._local.conn = conn
        with self._lock:
            self._all.append(conn)
        if not self._ready:
            self._check_schema(conn)
        return conn

    def close(self) -> None:
        """Close every connection this registry opened (in any thread)."""
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
        self._local = threading.local()

    def _check_schema(self, conn: sqlite3.Connection) -> None:
        version = _schema_version(conn)
        if version > SCHEMA_VERSION:
            raise RegistryError(
                f"the registry {self.path} was made by a newer jobledger (schema "
                f"{version}; this version reads up to {SCHEMA_VERSION}); upgrade with "
                "`pip install -U jobledger`. The file was not changed."
            )
        if version < SCHEMA_VERSION and not self.readonly:
            self._retry(lambda: _migrate(conn, self.path))
        self._ready = True

    def _retry(self, work: Callable[[], T]) -> T:
        for attempt in range(_WRITE_ATTEMPTS):
            try:
                return work()
            except sqlite3.OperationalError as exc:
                text = str(exc)
                if ("locked" not in text and "busy" not in text) or (
                    attempt == _WRITE_ATTEMPTS - 1
                ):
                    raise RegistryError(f"cannot write the registry {self.path}: {exc}") from exc
                time.sleep(min(1.0, 0.02 * 2**attempt) * random.uniform(0.5, 1.5))
        raise AssertionError("unreachable")

    def write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run *work* in one ``BEGIN IMMEDIATE`` transaction, retried when busy."""
        if self.readonly:
            raise RegistryError(f"the registry {self.path} was opened read-only")
        conn = self._conn()
        assert conn is not None

        def attempt() -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return self._retry(attempt)

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Run a query; a missing read-only registry has no rows."""
        conn = self._conn()
        if conn is None:
            return []
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise RegistryError(f"cannot read the registry {self.path}: {exc}") from exc

    # -- services ---------------------------------------------------------------

    def upsert_service(self, record: ServiceRecord) -> None:
        """Record (or update the URL of) a service."""
        now = now_iso()

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO services (id, url, kind, profile, first_seen, last_seen) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET url = excluded.url, "
                "kind = excluded.kind, profile = coalesce(excluded.profile, profile), "
                "last_seen = excluded.last_seen",
                (record.id, record.url, record.kind, record.profile, now, now),
            )

        self.write(work)

    def service(self, service_id: str) -> ServiceRecord | None:
        """The recorded service with this id."""
        rows = self.read("SELECT id, url, kind, profile FROM services WHERE id = ?", (service_id,))
        return ServiceRecord(*rows[0]) if rows else None

    def services(self) -> list[ServiceRecord]:
        """Every recorded service."""
        return [
            ServiceRecord(*r) for r in self.read("SELECT id, url, kind, profile FROM services")
        ]

    # -- recording --------------------------------------------------------------

    def record_submission(
        self,
        *,
        service: str,
        backend: str,
        batch: BlobRef,
        params: dict[str, Any],
        tags: Sequence[str],
        alias: str | None,
        session_id: str | None,
        provenance: dict[str, Any],
        provenance_digest: str,
        idempotency_key: str,
    ) -> int:
        """Record a job about to be submitted; returns its row key. Committed before
        any request leaves, so a crash after this line loses nothing."""
        now = now_iso()

        def work(conn: sqlite3.Connection) -> int:
            if alias is not None:
                _check_alias_free(conn, alias, None)
            conn.execute(
                "INSERT OR IGNORE INTO provenance (digest, record, first_seen) VALUES (?, ?, ?)",
                (provenance_digest, _dumps(provenance), now),
            )
            cursor = conn.execute(
                "INSERT INTO jobs (service, idempotency_key, alias, backend, status, created_at,"
                " tags, session_id, params, batch_sha256, batch_size, batch_media_type,"
                " provenance, submit_state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    service,
                    idempotency_key,
                    alias,
                    backend,
                    JobStatus.INITIALIZING.value,
                    now,
                    _dumps(list(tags)),
                    session_id,
                    _dumps(params),
                    batch.sha256,
                    batch.size,
                    batch.media_type,
                    provenance_digest,
                    "pending",
                ),
            )
            pk = int(cursor.lastrowid or 0)
            _set_tags(conn, pk, (), tags, now)
            _event(conn, pk, "submitted", backend, now)
            return pk

        return self.write(work)

    def acknowledge(self, pk: int, info: dict[str, Any]) -> JobRecord:
        """Record the service's answer to a submission (its id, dates, status)."""

        def work(conn: sqlite3.Connection) -> None:
            # created_at stays the client's recording time: job_tags rows carry it too.
            conn.execute(
                "UPDATE jobs SET job_id = ?, submit_state = 'sent' WHERE pk = ?", (info["id"], pk)
            )
            _apply_info(conn, pk, info)

        self.write(work)
        return self.get(pk)

    def forget_submission(self, pk: int) -> None:
        """Remove a pending row the service refused (it never became a job)."""

        def work(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM job_tags WHERE job_pk = ?", (pk,))
            conn.execute("DELETE FROM events WHERE job_pk = ?", (pk,))
            conn.execute("DELETE FROM jobs WHERE pk = ? AND submit_state = 'pending'", (pk,))

        self.write(work)

    def apply_infos(self, service: str, infos: Iterable[dict[str, Any]]) -> int:
        """Update (or, for jobs not recorded yet, insert) jobs from service answers.

        Accepts full info objects and the short entries of the batch status call.
        Returns how many jobs were new to the registry.
        """
        items = list(infos)
        if not items:
            return 0

        def work(conn: sqlite3.Connection) -> int:
            new = 0
            for info in items:
                row = conn.execute(
                    "SELECT pk FROM jobs WHERE job_id = ? AND service = ?", (info["id"], service)
                ).fetchone()
                if row is None:
                    if "backend" not in info:
                        continue
                    pk = _insert_synced(conn, service, info)
                    new += 1
                else:
                    pk = row[0]
                _apply_info(conn, pk, info)
            return new

        return self.write(work)

    def set_result(self, pk: int, ref: BlobRef, *, downloaded: bool = True) -> None:
        """Record a result's digest (after the bytes were verified and stored)."""

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE jobs SET result_sha256 = ?, result_size = ?, result_media_type = ? "
                "WHERE pk = ?",
                (ref.sha256, ref.size, ref.media_type, pk),
            )
            if downloaded:
                _event(conn, pk, "result-downloaded", ref.sha256, now_iso())

        self.write(work)

    def set_batch(self, pk: int, ref: BlobRef) -> None:
        """Record a batch's digest (for jobs brought in by ``sync``)."""

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE jobs SET batch_sha256 = ?, batch_size = ?, batch_media_type = ? "
                "WHERE pk = ?",
                (ref.sha256, ref.size, ref.media_type, pk),
            )
            _event(conn, pk, "batch-downloaded", ref.sha256, now_iso())

        self.write(work)

    def set_extra(self, pk: int, key: str, sha256: str) -> None:
        """Record the digest of a cached extra (logs, interim results, metrics)."""

        def work(conn: sqlite3.Connection) -> None:
            row = conn.execute("SELECT extras FROM jobs WHERE pk = ?", (pk,)).fetchone()
            extras = json.loads(row[0]) if row and row[0] else {}
            extras[key] = sha256
            conn.execute("UPDATE jobs SET extras = ? WHERE pk = ?", (_dumps(extras), pk))

        self.write(work)

    def set_alias(self, pk: int, alias: str | None) -> None:
        """Give the job an alias (``None`` removes it); aliases are unique."""

        def work(conn: sqlite3.Connection) -> None:
            if alias is not None:
                _check_alias_free(conn, alias, pk)
            conn.execute("UPDATE jobs SET alias = ? WHERE pk = ?", (alias, pk))
            _event(conn, pk, "alias", alias or "", now_iso())

        self.write(work)

    def set_tags(self, pk: int, tags: Sequence[str]) -> None:
        """Replace the job's tags."""

        def work(conn: sqlite3.Connection) -> None:
            row = conn.execute("SELECT tags, created_at FROM jobs WHERE pk = ?", (pk,)).fetchone()
            old = json.loads(row[0] or "[]")
            conn.execute("UPDATE jobs SET tags = ? WHERE pk = ?", (_dumps(list(tags)), pk))
            _set_tags(conn, pk, old, tags, row[1])
            _event(conn, pk, "tags", _dumps(list(tags)), now_iso())

        self.write(work)

    def add_event(self, pk: int, kind: str, detail: str = "") -> None:
        """Append an event to the job's log."""
        self.write(lambda conn: _event(conn, pk, kind, detail, now_iso()))

    # -- reading ----------------------------------------------------------------

    def get(self, pk: int) -> JobRecord:
        """The job with row key *pk*."""
        rows = self.read("SELECT * FROM jobs WHERE pk = ?", (pk,))
        if not rows:
            raise RegistryError(f"no job #{pk} in the registry {self.path}")
        return _record(rows[0])

    def find(self, name: str, service: str | None = None) -> list[JobRecord]:
        """Jobs whose id or alias is *name* (several when an id exists on two services)."""
        sql = "SELECT * FROM jobs WHERE job_id = ?"
        params: list[Any] = [name]
        if service is not None:
            sql += " AND service = ?"
            params.append(service)
        rows = self.read(sql, params)
        if not rows:
            rows = self.read("SELECT * FROM jobs WHERE alias = ?", (name,))
        return [_record(r) for r in rows]

    def find_by_key(self, idempotency_key: str) -> JobRecord | None:
        """The job recorded with this idempotency key."""
        rows = self.read("SELECT * FROM jobs WHERE idempotency_key = ?", (idempotency_key,))
        return _record(rows[0]) if rows else None

    def names(self) -> list[str]:
        """Every job id and alias, sorted."""
        rows = self.read(
            "SELECT job_id FROM jobs WHERE job_id IS NOT NULL "
            "UNION SELECT alias FROM jobs WHERE alias IS NOT NULL"
        )
        return sorted(r[0] for r in rows)

    def near_names(self, name: str, limit: int = 2000) -> list[str]:
        """Candidate names for suggestions: aliases, and ids sharing a prefix."""
        prefix = name[:6]
        rows = self.read(
            "SELECT job_id FROM jobs WHERE job_id >= ? AND job_id < ? LIMIT ?",
            (prefix, prefix + "\uffff", limit),
        )
        rows += self.read("SELECT alias FROM jobs WHERE alias IS NOT NULL LIMIT ?", (limit,))
        if len(rows) < 50:
            rows += self.read(
                "SELECT job_id FROM jobs WHERE job_id IS NOT NULL ORDER BY created_at DESC "
                "LIMIT ?",
                (limit,),
            )
        return [r[0] for r in rows]

    def query(
        self,
        *,
        limit: int | None = 10,
        skip: int = 0,
        backend: str | None = None,
        statuses: Sequence[JobStatus] | None = None,
        tags: Sequence[str] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        session_id: str | None = None,
        service: str | None = None,
        descending: bool = True,
        pending_submission: bool | None = None,
    ) -> list[JobRecord]:
        """Filter the registry; every filter uses an index."""
        where: list[str] = []
        params: list[Any] = []
        source = "jobs"
        order_col = "jobs.created_at"
        if tags:
            # Walk the first tag's (tag, created_at) index in order; check the others.
            source = "job_tags t JOIN jobs ON jobs.pk = t.job_pk"
            where.append("t.tag = ?")
            params.append(tags[0])
            order_col = "t.created_at"
            for tag in tags[1:]:
                where.append(
                    "EXISTS (SELECT 1 FROM job_tags u WHERE u.tag = ? AND "
                    "u.created_at = t.created_at AND u.job_pk = t.job_pk)"
                )
                params.append(tag)
        if backend is not None:
            where.append("jobs.backend = ?")
            params.append(backend)
        if statuses:
            where.append(f"jobs.status IN ({','.join('?' * len(statuses))})")
            params.extend(s.value for s in statuses)
        if created_after is not None:
            where.append(f"{order_col} > ?")
            params.append(to_iso(created_after))
        if created_before is not None:
            where.append(f"{order_col} < ?")
            params.append(to_iso(created_before))
        if session_id is not None:
            where.append("jobs.session_id = ?")
            params.append(session_id)
        if service is not None:
            where.append("jobs.service = ?")
            params.append(service)
        if pending_submission is not None:
            where.append("jobs.submit_state " + ("=" if pending_submission else "!=") + " ?")
            params.append("pending")
        sql = f"SELECT jobs.* FROM {source}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {order_col} {'DESC' if descending else 'ASC'}, jobs.pk "
        sql += "DESC" if descending else "ASC"
        sql += " LIMIT ? OFFSET ?"
        params.extend([-1 if limit is None else limit, skip])
        return [_record(r) for r in self.read(sql, params)]

    def count(self) -> int:
        """How many jobs are recorded."""
        rows = self.read("SELECT count(*) FROM jobs")
        return int(rows[0][0]) if rows else 0

    def events(self, pk: int) -> list[tuple[datetime, str, str]]:
        """The job's event log, oldest first: ``(at, kind, detail)``."""
        rows = self.read("SELECT at, kind, detail FROM events WHERE job_pk = ? ORDER BY id", (pk,))
        return [(parse_date(r[0]) or datetime.now(UTC), r[1], r[2]) for r in rows]

    def provenance(self, digest: str) -> dict[str, Any] | None:
        """The provenance record with this digest."""
        rows = self.read("SELECT record FROM provenance WHERE digest = ?", (digest,))
        return dict(json.loads(rows[0][0])) if rows else None

    def referenced_digests(self) -> set[str]:
        """Every digest the registry refers to (batches, results, cached extras)."""
        found: set[str] = set()
        for row in self.read("SELECT batch_sha256, result_sha256, extras FROM jobs"):
            found.update(d for d in (row[0], row[1]) if d)
            if row[2]:
                found.update(json.loads(row[2]).values())
        return found


# -- helpers ----------------------------------------------------------------------


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _schema_version(conn: sqlite3.Connection) -> int:
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return 0
        raise
    return int(row[0]) if row else 0


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _schema_version(conn)
        if version > SCHEMA_VERSION:
            raise RegistryError(f"the registry {path} was made by a newer jobledger")
        for target in range(version + 1, SCHEMA_VERSION + 1):
            _MIGRATIONS[target](conn)
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (str(target),),
            )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _migration_1(conn: sqlite3.Connection) -> None:
    import sqlite_utils

    db = sqlite_utils.Database(conn)
    db.table("meta").create({"key": str, "value": str}, pk="key")
    db.table("services").create(
        {"id": str, "url": str, "kind": str, "profile": str, "first_seen": str, "last_seen": str},
        pk="id",
    )
    db.table("provenance").create({"digest": str, "record": str, "first_seen": str}, pk="digest")
    db.table("jobs").create(
        {
            "pk": int,
            "job_id": str,
            "service": str,
            "idempotency_key": str,
            "alias": str,
            "backend": str,
            "backend_version": str,
            "status": str,
            "created_at": str,
            "started_at": str,
            "ended_at": str,
            "queue_position": int,
            "message": str,
            "tags": str,
            "session_id": str,
            "params": str,
            "batch_sha256": str,
            "batch_size": int,
            "batch_media_type": str,
            "result_sha256": str,
            "result_size": int,
            "result_media_type": str,
            "provenance": str,
            "usage": str,
            "submit_state": str,
            "last_seen_at": str,
        },
        pk="pk",
        not_null={"idempotency_key", "backend", "status", "created_at", "submit_state"},
    )
    db.table("events").create(
        {"id": int, "job_pk": int, "at": str, "kind": str, "detail": str}, pk="id"
    )
    conn.execute(
        "CREATE TABLE job_tags (tag TEXT NOT NULL, created_at TEXT NOT NULL, "
        "job_pk INTEGER NOT NULL, PRIMARY KEY (tag, created_at, job_pk)) WITHOUT ROWID"
    )
    for sql in (
        "CREATE UNIQUE INDEX jobs_id ON jobs (job_id, service)",
        "CREATE UNIQUE INDEX jobs_key ON jobs (idempotency_key)",
        "CREATE UNIQUE INDEX jobs_alias ON jobs (alias) WHERE alias IS NOT NULL",
        "CREATE INDEX jobs_created ON jobs (created_at)",
        "CREATE INDEX jobs_status ON jobs (status, created_at)",
        "CREATE INDEX jobs_backend ON jobs (backend, created_at)",
        "CREATE INDEX events_job ON events (job_pk)",
    ):
        conn.execute(sql)


def _migration_2(conn: sqlite3.Connection) -> None:
    # Version 2 caches logs, interim results and metrics of finished jobs.
    conn.execute("ALTER TABLE jobs ADD COLUMN extras TEXT")
    conn.execute(
        "CREATE INDEX jobs_submit_state ON jobs (submit_state) WHERE submit_state = 'pending'"
    )


_MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _migration_1, 2: _migration_2}


def _event(conn: sqlite3.Connection, pk: int, kind: str, detail: str, at: str) -> None:
    conn.execute(
        "INSERT INTO events (job_pk, at, kind, detail) VALUES (?, ?, ?, ?)", (pk, at, kind, detail)
    )


def _set_tags(
    conn: sqlite3.Connection, pk: int, old: Iterable[str], new: Iterable[str], created: str
) -> None:
    old_set, new_set = set(old), set(new)
    for tag in old_set - new_set:
        conn.execute(
            "DELETE FROM job_tags WHERE tag = ? AND created_at = ? AND job_pk = ?",
            (tag, created, pk),
        )
    for tag in new_set - old_set:
        conn.execute(
            "INSERT OR IGNORE INTO job_tags (tag, created_at, job_pk) VALUES (?, ?, ?)",
            (tag, created, pk),
        )


def _check_alias_free(conn: sqlite3.Connection, alias: str, pk: int | None) -> None:
    row = conn.execute(
        "SELECT pk, job_id FROM jobs WHERE alias = ? OR job_id = ?", (alias, alias)
    ).fetchone()
    if row is not None and row[0] != pk:
        raise ValueError(
            f"the alias {alias!r} is already used by job {row[1] or '#' + str(row[0])}; "
            "choose another name or remove it there first"
        )


def _insert_synced(conn: sqlite3.Connection, service: str, info: dict[str, Any]) -> int:
    created = to_iso(info.get("created_at")) or now_iso()
    tags = list(info.get("tags") or [])
    backend = info.get("backend") or {}
    cursor = conn.execute(
        "INSERT INTO jobs (job_id, service, idempotency_key, backend, status, created_at, tags,"
        " session_id, params, submit_state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'synced')",
        (
            info["id"],
            service,
            f"synced:{service}:{info['id']}",
            backend.get("name", "?") if isinstance(backend, dict) else str(backend),
            info.get("status", JobStatus.QUEUED.value),
            created,
            _dumps(tags),
            info.get("session_id"),
            _dumps(info.get("params") or {}),
        ),
    )
    pk = int(cursor.lastrowid or 0)
    _set_tags(conn, pk, (), tags, created)
    _event(conn, pk, "synced", "", now_iso())
    return pk


def _apply_info(conn: sqlite3.Connection, pk: int, info: dict[str, Any]) -> None:
    row = conn.execute("SELECT status FROM jobs WHERE pk = ?", (pk,)).fetchone()
    old_status = row[0] if row else None
    status = info.get("status", old_status)
    sets = {
        "status": status,
        "queue_position": info.get("queue_position"),
        "message": info.get("message"),
        "last_seen_at": now_iso(),
    }
    for key in ("started_at", "ended_at"):
        if info.get(key):
            sets[key] = to_iso(info[key])
    backend = info.get("backend")
    if isinstance(backend, dict) and backend.get("version"):
        sets["backend_version"] = backend["version"]
    if "usage" in info:
        sets["usage"] = _dumps(info.get("usage") or {})
    known = conn.execute(
        "SELECT result_sha256, batch_sha256 FROM jobs WHERE pk = ?", (pk,)
    ).fetchone()
    for part, recorded in zip(("result", "batch"), known or (None, None), strict=True):
        blob = info.get(part)
        # The service's digest is recorded once; the bytes are checked against it on download.
        if isinstance(blob, dict) and blob.get("sha256") and not recorded:
            sets[f"{part}_sha256"] = blob["sha256"]
            sets[f"{part}_size"] = blob.get("size")
            sets[f"{part}_media_type"] = blob.get("media_type")
    assignments = ", ".join(f"{k} = ?" for k in sets)
    conn.execute(f"UPDATE jobs SET {assignments} WHERE pk = ?", (*sets.values(), pk))
    if status != old_status:
        _event(conn, pk, "status", str(status), now_iso())


def _record(row: sqlite3.Row) -> JobRecord:
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
