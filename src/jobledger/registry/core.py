"""The local registry: one SQLite file recording every job, its events and provenance.

:class:`Registry` records submissions and the service's answers and answers queries;
the file handling (per-thread connections, retried ``BEGIN IMMEDIATE`` writes) is in
:mod:`jobledger.registry.file`, the schema and migrations in
:mod:`jobledger.registry.schema`, the record classes and date helpers in
:mod:`jobledger.registry.records` (re-exported by the package), and the statements shared by
write transactions in :mod:`jobledger.registry.writes`. Queries use :mod:`sqlite3`
directly so that the read path (``from jobledger.jobs import X``) stays light. The
schema is documented in ``docs/registry.md``.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from jobledger.errors import RegistryError
from jobledger.registry import writes
from jobledger.registry.file import RegistryFile, damaged
from jobledger.registry.records import (
    BlobRef,
    JobRecord,
    ServiceRecord,
    dumps,
    now_iso,
    parse_date,
    record_from_row,
    to_iso,
)
from jobledger.status import JobStatus

if TYPE_CHECKING:
    from jobledger.providers.base import RemoteJob

__all__ = ["Registry"]


class Registry(RegistryFile):
    """The registry file at *path*.

    Cheap to build: nothing is opened until the first query. Each thread gets its
    own SQLite connection. With ``readonly=True`` the file is never created or
    migrated, and a missing file reads as an empty registry.
    """

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
                writes.check_alias_free(conn, alias, None)
            conn.execute(
                "INSERT OR IGNORE INTO provenance (digest, record, first_seen) VALUES (?, ?, ?)",
                (provenance_digest, dumps(provenance), now),
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
                    dumps(list(tags)),
                    session_id,
                    dumps(params),
                    batch.sha256,
                    batch.size,
                    batch.media_type,
                    provenance_digest,
                    "pending",
                ),
            )
            pk = int(cursor.lastrowid or 0)
            writes.set_tags(conn, pk, (), tags, now)
            writes.add_event(conn, pk, "submitted", backend, now)
            return pk

        return self.write(work, durable=True)

    def acknowledge(self, pk: int, info: RemoteJob) -> JobRecord:
        """Record the service's answer to a submission (its id, dates, status)."""

        def work(conn: sqlite3.Connection) -> None:
            # created_at stays the client's recording time: job_tags rows carry it too.
            conn.execute(
                "UPDATE jobs SET job_id = ?, submit_state = 'sent' WHERE pk = ?", (info.id, pk)
            )
            writes.apply_info(conn, pk, info)

        self.write(work)
        return self.get(pk)

    def refuse_submission(self, pk: int, reason: str) -> JobRecord:
        """Mark a pending submission the service definitely refused: it stays recorded
        (status ERROR, ``submit_state`` ``refused``, the reason as its message) and its
        alias is released for a new submission (the event log keeps it)."""

        def work(conn: sqlite3.Connection) -> None:
            row = conn.execute(
                "SELECT alias, tags, created_at FROM jobs "
                "WHERE pk = ? AND submit_state = 'pending'",
                (pk,),
            ).fetchone()
            if row is None:
                return
            message = f"refused by the service: {reason}"
            conn.execute(
                "UPDATE jobs SET submit_state = 'refused', status = ?, message = ?, alias = NULL,"
                " ended_at = ? WHERE pk = ?",
                (JobStatus.ERROR.value, message, now_iso(), pk),
            )
            for tag in json.loads(row[1] or "[]"):
                conn.execute(
                    "UPDATE job_tags SET status = ? "
                    "WHERE tag = ? AND created_at = ? AND job_pk = ?",
                    (JobStatus.ERROR.value, tag, row[2], pk),
                )
            detail = dumps({"reason": reason, "alias": row[0]})
            writes.add_event(conn, pk, "refused", detail, now_iso())

        self.write(work, durable=True)
        return self.get(pk)

    def apply_infos(self, service: str, infos: Iterable[RemoteJob]) -> int:
        """Update (or, for jobs not recorded yet, insert) jobs from service answers.

        Accepts full descriptions and the short entries of a status round (which
        carry no backend, so they never insert a job).
        Returns how many jobs were new to the registry.
        """
        items = list(infos)
        if not items:
            return 0

        def work(conn: sqlite3.Connection) -> int:
            new = 0
            for info in items:
                row = conn.execute(
                    "SELECT pk FROM jobs WHERE job_id = ? AND service = ?", (info.id, service)
                ).fetchone()
                if row is None:
                    if info.backend is None:
                        continue
                    pk = writes.insert_synced(conn, service, info)
                    new += 1
                else:
                    pk = row[0]
                writes.apply_info(conn, pk, info)
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
                writes.add_event(conn, pk, "result-downloaded", ref.sha256, now_iso())

        self.write(work)

    def set_batch(self, pk: int, ref: BlobRef) -> None:
        """Record a batch's digest (for jobs brought in by ``sync``)."""

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE jobs SET batch_sha256 = ?, batch_size = ?, batch_media_type = ? "
                "WHERE pk = ?",
                (ref.sha256, ref.size, ref.media_type, pk),
            )
            writes.add_event(conn, pk, "batch-downloaded", ref.sha256, now_iso())

        self.write(work)

    def set_extra(self, pk: int, key: str, sha256: str) -> None:
        """Record the digest of a cached extra (logs, interim results, metrics)."""

        def work(conn: sqlite3.Connection) -> None:
            row = conn.execute("SELECT extras FROM jobs WHERE pk = ?", (pk,)).fetchone()
            extras = json.loads(row[0]) if row and row[0] else {}
            extras[key] = sha256
            conn.execute("UPDATE jobs SET extras = ? WHERE pk = ?", (dumps(extras), pk))

        self.write(work)

    def set_alias(self, pk: int, alias: str | None) -> None:
        """Give the job an alias (``None`` removes it); aliases are unique."""

        def work(conn: sqlite3.Connection) -> None:
            if alias is not None:
                writes.check_alias_free(conn, alias, pk)
            conn.execute("UPDATE jobs SET alias = ? WHERE pk = ?", (alias, pk))
            writes.add_event(conn, pk, "alias", alias or "", now_iso())

        self.write(work, durable=True)

    def set_tags(self, pk: int, tags: Sequence[str]) -> None:
        """Replace the job's tags."""

        def work(conn: sqlite3.Connection) -> None:
            row = conn.execute("SELECT tags, created_at FROM jobs WHERE pk = ?", (pk,)).fetchone()
            old = json.loads(row[0] or "[]")
            conn.execute("UPDATE jobs SET tags = ? WHERE pk = ?", (dumps(list(tags)), pk))
            writes.set_tags(conn, pk, old, tags, row[1])
            writes.add_event(conn, pk, "tags", dumps(list(tags)), now_iso())

        self.write(work, durable=True)

    def add_event(self, pk: int, kind: str, detail: str = "") -> None:
        """Append an event to the job's log."""
        self.write(lambda conn: writes.add_event(conn, pk, kind, detail, now_iso()))

    # -- reading ----------------------------------------------------------------

    def get(self, pk: int) -> JobRecord:
        """The job with row key *pk*."""
        rows = self.read("SELECT * FROM jobs WHERE pk = ?", (pk,))
        if not rows:
            raise RegistryError(f"no job #{pk} in the registry {self.path}")
        return record_from_row(rows[0])

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
        return [record_from_row(r) for r in rows]

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
            status_col = "t.status" if tags else "jobs.status"
            where.append(f"{status_col} IN ({','.join('?' * len(statuses))})")
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
        # Ordering by the index's own columns lets SQLite stream rows without a sort.
        pk_col = "t.job_pk" if tags else "jobs.pk"
        sql += f" ORDER BY {order_col} {'DESC' if descending else 'ASC'}, {pk_col} "
        sql += "DESC" if descending else "ASC"
        sql += " LIMIT ? OFFSET ?"
        params.extend([-1 if limit is None else limit, skip])
        return [record_from_row(r) for r in self.read(sql, params)]

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

    # -- names for jobledger.jobs: bounded reads through the indexes -------------------

    def recent_ids(self, limit: int) -> list[str]:
        """The ids of the *limit* most recently recorded jobs, newest first.

        Walks the ``created_at`` index backwards, so the cost does not grow with the
        registry (an id recorded for two services appears twice).
        """
        # "+job_id" keeps the planner on the created_at index whatever its statistics.
        rows = self.read(
            "SELECT job_id FROM jobs WHERE +job_id IS NOT NULL ORDER BY created_at DESC LIMIT ?",
            (limit,),
        )
        return [r[0] for r in rows]

    def aliases(self, limit: int | None = None) -> list[str]:
        """Aliases in sorted order, at most *limit* of them (read from the alias index)."""
        rows = self.read(
            "SELECT alias FROM jobs WHERE alias IS NOT NULL ORDER BY alias LIMIT ?",
            (-1 if limit is None else limit,),
        )
        return [r[0] for r in rows]

    def names_with_prefix(self, prefix: str, limit: int | None = None) -> list[str]:
        """Job ids and aliases starting with *prefix*, sorted, at most *limit* of them.

        Two range scans, of the id index and of the alias index: the cost grows with
        the number of matches, not with the registry.
        """
        above = self._above_prefix(prefix)
        where = "{0} >= ?" if above is None else "{0} >= ? AND {0} < ?"
        params = [prefix] if above is None else [prefix, above]
        cap = -1 if limit is None else limit
        ids = self.read(
            f"SELECT DISTINCT job_id FROM jobs WHERE {where.format('job_id')} "
            "ORDER BY job_id LIMIT ?",
            [*params, cap],
        )
        aliases = self.read(
            f"SELECT alias FROM jobs WHERE {where.format('alias')} ORDER BY alias LIMIT ?",
            [*params, cap],
        )
        found = sorted({r[0] for r in ids} | {r[0] for r in aliases})
        return found if limit is None else found[:limit]

    @staticmethod
    def _above_prefix(prefix: str) -> str | None:
        """The smallest string above every string starting with *prefix* (``None``:
        none, e.g. for ``""``). SQLite compares text as UTF-8 bytes, which sort as
        their code points do."""
        for end in range(len(prefix) - 1, -1, -1):
            code = ord(prefix[end]) + 1
            if code <= 0x10FFFF:
                # Skip the surrogates, which UTF-8 cannot encode.
                return prefix[:end] + chr(0xE000 if 0xD800 <= code <= 0xDFFF else code)
        return None

    # -- paging and sync marks ---------------------------------------------------
    # Keyset paging on the row key: each page costs the same however far in it is,
    # and no call holds more than one page of the registry in memory.

    def jobs_page(
        self,
        *,
        after_pk: int = 0,
        limit: int = 1000,
        service: str | None = None,
        statuses: Sequence[JobStatus] | None = None,
        pending_submission: bool | None = None,
    ) -> list[JobRecord]:
        """Up to *limit* jobs with row keys above *after_pk*, in row-key order; pass
        the last one's ``pk`` back for the next page."""
        where = ["pk > ?"]
        params: list[Any] = [after_pk]
        if service is not None:
            where.append("+service = ?")
            params.append(service)
        if statuses:
            # The unary + keeps SQLite on the row-key order instead of the status index,
            # which would sort every matching row for each page.
            where.append(f"+status IN ({','.join('?' * len(statuses))})")
            params.extend(s.value for s in statuses)
        if pending_submission is not None:
            where.append("submit_state " + ("=" if pending_submission else "!=") + " 'pending'")
        sql = f"SELECT * FROM jobs WHERE {' AND '.join(where)} ORDER BY pk LIMIT ?"
        return [record_from_row(r) for r in self.read(sql, [*params, limit])]

    def pending_count(self, service: str) -> int:
        """How many submissions to *service* still wait for the service's answer."""
        rows = self.read(
            "SELECT count(*) FROM jobs WHERE submit_state = 'pending' AND service = ?", (service,)
        )
        return int(rows[0][0]) if rows else 0

    def done_results_page(
        self, service: str, *, after_pk: int = 0, limit: int = 1000
    ) -> list[tuple[int, str | None]]:
        """``(pk, result digest or None)`` of up to *limit* DONE jobs of *service*
        above row key *after_pk*, in row-key order: what a result download needs to
        decide, without decoding whole records."""
        rows = self.read(
            "SELECT pk, result_sha256 FROM jobs WHERE pk > ? AND +service = ? "
            "AND +status = 'DONE' AND job_id IS NOT NULL ORDER BY pk LIMIT ?",
            (after_pk, service, limit),
        )
        return [(int(r[0]), r[1]) for r in rows]

    def referenced_digests_sorted(self) -> Iterator[str]:
        """Every digest the registry refers to (batches, results, cached extras), each
        once, in sorted order, streamed: SQLite sorts them on disk if need be, so memory
        stays bounded whatever the registry's size (unlike :meth:`referenced_digests`)."""
        sql = (
            "SELECT batch_sha256 FROM jobs WHERE batch_sha256 IS NOT NULL "
            "UNION SELECT result_sha256 FROM jobs WHERE result_sha256 IS NOT NULL "
            "UNION SELECT e.value FROM jobs, json_each(CASE WHEN json_valid(jobs.extras) "
            "THEN jobs.extras ELSE '{}' END) e WHERE jobs.extras IS NOT NULL ORDER BY 1"
        )
        for row in self._stream(sql):
            if isinstance(row[0], str) and row[0]:
                yield row[0]

    def referenced_among(self, digests: Collection[str]) -> set[str]:
        """Those of *digests* some job refers to now (batch, result or cached extra), in
        one pass over the registry whatever their number."""
        if not digests:
            return set()
        wanted = dumps(sorted(set(digests)))
        among = "IN (SELECT value FROM json_each(?))"
        rows = self.read(
            f"SELECT batch_sha256 FROM jobs WHERE batch_sha256 {among} "
            f"UNION SELECT result_sha256 FROM jobs WHERE result_sha256 {among} "
            "UNION SELECT e.value FROM jobs, json_each(CASE WHEN json_valid(jobs.extras) "
            "THEN jobs.extras ELSE '{}' END) e "
            f"WHERE jobs.extras IS NOT NULL AND e.value {among}",
            (wanted, wanted, wanted),
        )
        return {str(r[0]) for r in rows}

    def digest_owners(
        self, digests: Collection[str]
    ) -> dict[str, list[tuple[str, str, JobStatus]]]:
        """For each of *digests* (a few: damaged or missing blobs), the jobs that refer
        to it: ``[(job name, part, status)]``. One pass over the registry, holding only
        the matches."""
        wanted = set(digests)
        owners: dict[str, list[tuple[str, str, JobStatus]]] = {}
        if not wanted:
            return owners
        sql = "SELECT pk, job_id, status, batch_sha256, result_sha256, extras FROM jobs"
        for row in self._stream(sql):
            parts = [("batch", row[3]), ("result", row[4])]
            if row[5] and row[5] != "{}":
                with contextlib.suppress(ValueError):
                    parts += list(json.loads(row[5]).items())
            for part, digest in parts:
                if digest in wanted:
                    name = row[1] or f"<pending #{row[0]}>"
                    owners.setdefault(digest, []).append((name, part, JobStatus(row[2])))
        return owners

    def prunable_results(
        self, service: str, ended_before: datetime
    ) -> Iterator[tuple[str, tuple[str, ...]]]:
        """Result digests referred to only as results of jobs of *service* that ended
        DONE before *ended_before* (never by a batch, a cached extra, or any other
        job), each with those jobs' ids; sorted by digest and streamed."""
        sql = (
            "SELECT d, group_concat(job_id, ' ') FROM ("
            " SELECT result_sha256 AS d, job_id, (service = ? AND status = 'DONE' AND"
            " job_id IS NOT NULL AND ended_at IS NOT NULL AND ended_at < ?) AS ok"
            " FROM jobs WHERE result_sha256 IS NOT NULL"
            " UNION ALL SELECT batch_sha256, NULL, 0 FROM jobs WHERE batch_sha256 IS NOT NULL"
            " UNION ALL SELECT e.value, NULL, 0 FROM jobs, json_each(CASE WHEN"
            " json_valid(jobs.extras) THEN jobs.extras ELSE '{}' END) e"
            " WHERE jobs.extras IS NOT NULL"
            ") GROUP BY d HAVING min(ok) = 1 ORDER BY d"
        )
        for row in self._stream(sql, (service, to_iso(ended_before))):
            yield str(row[0]), tuple(str(row[1] or "").split())

    def sync_cursor(self, service: str) -> str | None:
        """The change token up to which jobs of *service* are recorded (``None``: none
        yet), kept in ``meta`` as ``sync_cursor:<service id>``."""
        rows = self.read("SELECT value FROM meta WHERE key = ?", (f"sync_cursor:{service}",))
        return str(rows[0][0]) if rows else None

    def set_sync_cursor(self, service: str, token: str) -> None:
        """Remember that every change of *service* up to *token* is recorded; called
        only after those changes were committed, so a crash never skips one."""

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (f"sync_cursor:{service}", token),
            )

        self.write(work)

    def _stream(self, sql: str, params: Sequence[Any] = ()) -> Iterator[sqlite3.Row]:
        """Rows of a long read, fetched a thousand at a time on a read-only connection
        of its own (a snapshot: the caller may write on its connection meanwhile)."""
        if not self.path.exists():
            return
        self._conn()  # checks the schema (and migrates) first, as every read does
        conn = self._open_readonly()
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            try:
                cursor = conn.execute(sql, params)
                while rows := cursor.fetchmany(1000):
                    yield from rows
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    return
                raise RegistryError(f"cannot read the registry {self.path}: {exc}") from exc
            except sqlite3.DatabaseError as exc:
                raise damaged(self.path, exc) from exc
        finally:
            conn.close()


# -- audit reads ------------------------------------------------------------------------
# Read-only queries for jobledger.audit (verify, export, provenance); they never write.


@dataclass(frozen=True)
class ChainedEvent:
    """One row of the ``events`` table with its place in the hash chain (schema 4)."""

    id: int
    job_pk: int | None
    at: str
    kind: str
    detail: str
    sha256: str | None
    prev_sha256: str | None


def _chained(row: sqlite3.Row) -> ChainedEvent:
    return ChainedEvent(
        row["id"],
        row["job_pk"],
        row["at"],
        row["kind"],
        row["detail"] or "",
        row["sha256"],
        row["prev_sha256"],
    )


class AuditReads:
    """The queries of an audit, on a (read-only) :class:`Registry`."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def schema_version(self) -> int:
        """The file's schema version (0 when there is no registry yet)."""
        rows = self.registry.read("SELECT value FROM meta WHERE key = 'schema_version'")
        return int(rows[0][0]) if rows else 0

    def events_head(self) -> tuple[int, str] | None:
        """The id and hash of the last event jobledger wrote (``meta.events_head``)."""
        rows = self.registry.read("SELECT value FROM meta WHERE key = 'events_head'")
        if not rows or not rows[0][0]:
            return None
        event_id, _, digest = str(rows[0][0]).partition(" ")
        return int(event_id), digest

    def event_page(self, after: int, limit: int = 10000) -> list[ChainedEvent]:
        """Events with ids above *after*, in id order, at most *limit* of them."""
        rows = self.registry.read(
            "SELECT id, job_pk, at, kind, detail, sha256, prev_sha256 FROM events "
            "WHERE id > ? ORDER BY id LIMIT ?",
            (after, limit),
        )
        return [_chained(r) for r in rows]

    def job_events(self, pk: int) -> list[ChainedEvent]:
        """The job's events with their hashes, oldest first."""
        rows = self.registry.read(
            "SELECT id, job_pk, at, kind, detail, sha256, prev_sha256 FROM events "
            "WHERE job_pk = ? ORDER BY id",
            (pk,),
        )
        return [_chained(r) for r in rows]

    def provenance_text(self, digest: str) -> str | None:
        """The provenance record with this digest, as stored (JSON text)."""
        rows = self.registry.read("SELECT record FROM provenance WHERE digest = ?", (digest,))
        return str(rows[0][0]) if rows else None

    def job_row(self, pk: int) -> dict[str, Any]:
        """The job's ``jobs`` row, column by column, as stored."""
        rows = self.registry.read("SELECT * FROM jobs WHERE pk = ?", (pk,))
        if not rows:
            raise RegistryError(f"no job #{pk} in the registry {self.registry.path}")
        return dict(zip(rows[0].keys(), rows[0], strict=True))

    def service_row(self, service_id: str) -> dict[str, Any] | None:
        """The service's ``services`` row, as stored (it never holds a token)."""
        rows = self.registry.read("SELECT * FROM services WHERE id = ?", (service_id,))
        return dict(zip(rows[0].keys(), rows[0], strict=True)) if rows else None
