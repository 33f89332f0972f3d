"""The local registry: one SQLite file recording every job, its events and provenance.

:class:`Registry` records submissions and the service's answers and answers queries;
the file handling (per-thread connections, retried ``BEGIN IMMEDIATE`` writes) is in
:mod:`jobledger.registry.file`, the schema and migrations in
:mod:`jobledger.registry.schema` and :mod:`jobledger.registry.schema5`, the record
classes and date helpers in :mod:`jobledger.registry.records` (re-exported by the
package), the compact stored values in :mod:`jobledger.registry.codec` and
:mod:`jobledger.registry.keys`, and the statements shared by write transactions in
:mod:`jobledger.registry.writes`. Queries use :mod:`sqlite3` directly so that the read
path (``from jobledger.jobs import X``) stays light. A read-only open of a file still
at schema 4 (nothing migrates it) reads it through the same decoders, with query
values in the text form. The schema is documented in ``docs/registry.md``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from jobledger.errors import RegistryError
from jobledger.registry import writes
from jobledger.registry.audit_reads import AuditReads, ChainedEvent
from jobledger.registry.codec import (
    JOB_COLUMNS,
    JOB_SELECT,
    decode_job,
    digest_text,
    digest_value,
    key_value,
)
from jobledger.registry.file import RegistryFile
from jobledger.registry.keys import Keys
from jobledger.registry.records import (
    STATUS_CODES,
    BlobRef,
    JobRecord,
    ServiceRecord,
    dumps,
    from_micros,
    now_micros,
    parse_date,
    to_iso,
    to_micros,
)
from jobledger.status import JobStatus

if TYPE_CHECKING:
    from pathlib import Path

    from jobledger.providers.base import RemoteJob
    from jobledger.registry.keys import Resolver

__all__ = ["AuditReads", "ChainedEvent", "Registry"]

T = TypeVar("T")
_PAGE = 5000
_NOTHING = object()  # a query value that no row can have (a name never recorded)


class Registry(RegistryFile):
    """The registry file at *path*.

    Cheap to build: nothing is opened until the first query. Each thread gets its
    own SQLite connection. With ``readonly=True`` the file is never created or
    migrated, and a missing file reads as an empty registry.
    """

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        super().__init__(path, readonly=readonly)
        self.keys = Keys(self.rows)

    def write(self, work: Callable[[sqlite3.Connection], T], *, durable: bool = False) -> T:
        """Run *work* in one write transaction (see :meth:`RegistryFile.write`), then
        cache the keys it resolved, as committed."""
        try:
            return super().write(work, durable=durable)
        finally:
            self.keys.settle()

    def _write(
        self, work: Callable[[sqlite3.Connection, Resolver], T], *, durable: bool = False
    ) -> T:
        return self.write(lambda conn: work(conn, self.keys.resolver(conn)), durable=durable)

    @property
    def _legacy(self) -> bool:
        # A read-only open of a file at schema 4 or older: text values, no key tables.
        self._conn()
        return self.version < 5

    # -- services ---------------------------------------------------------------

    def upsert_service(self, record: ServiceRecord) -> None:
        """Record (or update the URL of) a service."""
        now = now_micros()

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO services (id, url, kind, profile, first_seen, last_seen) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET url = excluded.url, "
                "kind = excluded.kind, profile = coalesce(excluded.profile, profile), "
                "first_seen = coalesce(first_seen, excluded.first_seen), "
                "last_seen = excluded.last_seen",
                (record.id, record.url, record.kind, record.profile, now, now),
            )

        self.write(work)

    def service(self, service_id: str) -> ServiceRecord | None:
        """The recorded service with this id."""
        rows = self.rows(
            "SELECT id, url, kind, profile FROM services WHERE id = ? AND kind IS NOT NULL",
            (service_id,),
        )
        return ServiceRecord(*rows[0]) if rows else None

    def services(self) -> list[ServiceRecord]:
        """Every recorded service."""
        # Rows without a kind only name the service of jobs nobody described it for.
        rows = self.rows("SELECT id, url, kind, profile FROM services WHERE kind IS NOT NULL")
        return [ServiceRecord(*r) for r in rows]

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
        provenance: Mapping[str, Any],
        provenance_digest: str,
        idempotency_key: str,
    ) -> int:
        """Record a job about to be submitted; returns its row key. Committed before
        any request leaves, so a crash after this line loses nothing.

        :param provenance: the environment's record (written once per distinct
            *provenance_digest*: a record already stored is not encoded again).
        """
        now = now_micros()
        tag_list = list(tags)

        def work(conn: sqlite3.Connection, resolve: Resolver) -> int:
            if alias is not None:
                writes.check_alias_free(conn, alias, None)
            backend_key = resolve.string(backend)
            status = STATUS_CODES[JobStatus.INITIALIZING]
            cursor = conn.execute(
                "INSERT INTO jobs (service, idempotency_key, alias, backend, status, created_at,"
                " tags, session_id, params, batch_sha256, batch_size, batch_media_type,"
                " provenance, submit_state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    resolve.service(service),
                    key_value(idempotency_key),
                    alias,
                    backend_key,
                    status,
                    now,
                    dumps(tag_list),
                    session_id,
                    dumps(params),
                    digest_value(batch.sha256),
                    batch.size,
                    resolve.string(batch.media_type),
                    resolve.provenance(
                        digest_value(provenance_digest) or provenance_digest,
                        lambda: dumps(provenance),
                        now,
                    ),
                    "pending",
                ),
            )
            pk = int(cursor.lastrowid or 0)
            conn.executemany(
                "INSERT OR IGNORE INTO job_tags (tag, created_at, job_pk, status, backend) "
                "VALUES (?, ?, ?, ?, ?)",
                [(tag, now, pk, status, backend_key) for tag in set(tag_list)],
            )
            writes.add_event(conn, resolve, pk, "submitted", backend, now)
            return pk

        return self._write(work, durable=True)

    def acknowledge(self, pk: int, info: RemoteJob) -> JobRecord:
        """Record the service's answer to a submission (its id, dates, status)."""

        def work(conn: sqlite3.Connection, resolve: Resolver) -> None:
            # created_at stays the client's recording time: job_tags rows carry it too.
            writes.apply_info(conn, resolve, pk, info, {"job_id": info.id, "submit_state": "sent"})

        self._write(work)
        return self.get(pk)

    def refuse_submission(self, pk: int, reason: str) -> JobRecord:
        """Mark a pending submission the service definitely refused: it stays recorded
        (status ERROR, ``submit_state`` ``refused``, the reason as its message) and its
        alias is released for a new submission (the event log keeps it)."""

        def work(conn: sqlite3.Connection, resolve: Resolver) -> None:
            row = conn.execute(
                "SELECT alias, tags, created_at FROM jobs "
                "WHERE pk = ? AND submit_state = 'pending'",
                (pk,),
            ).fetchone()
            if row is None:
                return
            message = f"refused by the service: {reason}"
            now = now_micros()
            error = STATUS_CODES[JobStatus.ERROR]
            conn.execute(
                "UPDATE jobs SET submit_state = 'refused', status = ?, message = ?, alias = NULL,"
                " ended_at = ? WHERE pk = ?",
                (error, message, now, pk),
            )
            for tag in json.loads(row[1] or "[]"):
                conn.execute(
                    "UPDATE job_tags SET status = ? "
                    "WHERE tag = ? AND created_at = ? AND job_pk = ?",
                    (error, tag, row[2], pk),
                )
            detail = dumps({"reason": reason, "alias": row[0]})
            writes.add_event(conn, resolve, pk, "refused", detail, now)

        self._write(work, durable=True)
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

        def work(conn: sqlite3.Connection, resolve: Resolver) -> int:
            new = 0
            service_key = resolve.service(service)
            for info in items:
                row = conn.execute(
                    "SELECT pk FROM jobs WHERE job_id = ? AND service = ?", (info.id, service_key)
                ).fetchone()
                if row is None:
                    if info.backend is None:
                        continue
                    pk = writes.insert_synced(conn, resolve, service, info)
                    new += 1
                else:
                    pk = row[0]
                writes.apply_info(conn, resolve, pk, info)
            return new

        return self._write(work)

    def set_result(self, pk: int, ref: BlobRef, *, downloaded: bool = True) -> None:
        """Record a result's digest (after the bytes were verified and stored)."""

        def work(conn: sqlite3.Connection, resolve: Resolver) -> None:
            conn.execute(
                "UPDATE jobs SET result_sha256 = ?, result_size = ?, result_media_type = ? "
                "WHERE pk = ?",
                (digest_value(ref.sha256), ref.size, resolve.string(ref.media_type), pk),
            )
            if downloaded:
                writes.add_event(conn, resolve, pk, "result-downloaded", ref.sha256, now_micros())

        self._write(work)

    def set_batch(self, pk: int, ref: BlobRef) -> None:
        """Record a batch's digest (for jobs brought in by ``sync``)."""

        def work(conn: sqlite3.Connection, resolve: Resolver) -> None:
            conn.execute(
                "UPDATE jobs SET batch_sha256 = ?, batch_size = ?, batch_media_type = ? "
                "WHERE pk = ?",
                (digest_value(ref.sha256), ref.size, resolve.string(ref.media_type), pk),
            )
            writes.add_event(conn, resolve, pk, "batch-downloaded", ref.sha256, now_micros())

        self._write(work)

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

        def work(conn: sqlite3.Connection, resolve: Resolver) -> None:
            if alias is not None:
                writes.check_alias_free(conn, alias, pk)
            conn.execute("UPDATE jobs SET alias = ? WHERE pk = ?", (alias, pk))
            writes.add_event(conn, resolve, pk, "alias", alias or "", now_micros())

        self._write(work, durable=True)

    def set_tags(self, pk: int, tags: Sequence[str]) -> None:
        """Replace the job's tags."""

        def work(conn: sqlite3.Connection, resolve: Resolver) -> None:
            row = conn.execute("SELECT tags, created_at FROM jobs WHERE pk = ?", (pk,)).fetchone()
            old = json.loads(row[0] or "[]")
            conn.execute("UPDATE jobs SET tags = ? WHERE pk = ?", (dumps(list(tags)), pk))
            writes.set_tags(conn, pk, old, tags, row[1])
            writes.add_event(conn, resolve, pk, "tags", dumps(list(tags)), now_micros())

        self._write(work, durable=True)

    def add_event(self, pk: int, kind: str, detail: str = "") -> None:
        """Append an event to the job's log."""
        self._write(
            lambda conn, resolve: writes.add_event(conn, resolve, pk, kind, detail, now_micros())
        )

    # -- reading ----------------------------------------------------------------

    def job_columns(self) -> str:
        """The select list of ``jobs`` rows for :func:`~jobledger.registry.codec.decode_job`."""
        if not self._legacy:
            return JOB_SELECT
        # An older file read as it is: a column it does not have yet reads as NULL.
        present = {r[1] for r in self.rows("PRAGMA table_info(jobs)")}
        return ", ".join(f"jobs.{c}" if c in present else f"NULL AS {c}" for c in JOB_COLUMNS)

    def _jobs(self, sql: str, params: Sequence[Any] = ()) -> list[JobRecord]:
        """Decode the rows of ``SELECT {select} FROM ...`` (*sql* holds ``{select}``)."""
        keys = self.keys
        rows = self.rows(sql.format(select=self.job_columns()), params)
        return [decode_job(r, keys) for r in rows]

    def get(self, pk: int) -> JobRecord:
        """The job with row key *pk*."""
        found = self._jobs("SELECT {select} FROM jobs WHERE pk = ?", (pk,))
        if not found:
            raise RegistryError(f"no job #{pk} in the registry {self.path}")
        return found[0]

    def find(self, name: str, service: str | None = None) -> list[JobRecord]:
        """Jobs whose id or alias is *name* (several when an id exists on two services)."""
        sql = "SELECT {select} FROM jobs WHERE job_id = ?"
        params: list[Any] = [name]
        if service is not None:
            key = self._service_value(service)
            if key is _NOTHING:
                return self._jobs("SELECT {select} FROM jobs WHERE alias = ?", (name,))
            sql += " AND service = ?"
            params.append(key)
        return self._jobs(sql, params) or self._jobs(
            "SELECT {select} FROM jobs WHERE alias = ?", (name,)
        )

    def names(self) -> list[str]:
        """Every job id and alias, sorted."""
        rows = self.rows(
            "SELECT job_id FROM jobs WHERE job_id IS NOT NULL "
            "UNION SELECT alias FROM jobs WHERE alias IS NOT NULL"
        )
        return sorted(r[0] for r in rows)

    def near_names(self, name: str, limit: int = 2000) -> list[str]:
        """Candidate names for suggestions: aliases, and ids sharing a prefix."""
        prefix = name[:6]
        rows = self.rows(
            "SELECT job_id FROM jobs WHERE job_id >= ? AND job_id < ? LIMIT ?",
            (prefix, prefix + "\uffff", limit),
        )
        rows += self.rows("SELECT alias FROM jobs WHERE alias IS NOT NULL LIMIT ?", (limit,))
        if len(rows) < 50:
            rows += self.rows(
                "SELECT job_id FROM jobs WHERE job_id IS NOT NULL ORDER BY created_at DESC "
                "LIMIT ?",
                (limit,),
            )
        return [r[0] for r in rows]

    # Query values in the file's form: keys and microseconds, or schema 4's text.

    def _date_value(self, value: datetime) -> Any:
        return to_iso(value) if self._legacy else to_micros(value)

    def _status_value(self, status: JobStatus) -> Any:
        return status.value if self._legacy else STATUS_CODES[status]

    def _string_value(self, name: str) -> Any:
        if self._legacy:
            return name
        key = self.keys.string_key(name)
        return _NOTHING if key is None else key

    def _service_value(self, service_id: str) -> Any:
        if self._legacy:
            return service_id
        key = self.keys.service_key(service_id)
        return _NOTHING if key is None else key

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
        """Filter the registry; every filter uses an index.

        With ``skip``, the page is found first in the index alone (``skip`` steps over
        index entries, not over rows), then only its rows are read.
        """
        where: list[str] = []
        params: list[Any] = []
        source = "jobs"
        order_col = "jobs.created_at"
        backend_value = service_value = None
        if backend is not None:
            backend_value = self._string_value(backend)
        if service is not None:
            service_value = self._service_value(service)
        if _NOTHING in (backend_value, service_value):
            return []
        # Since schema 5 the tag index rows carry the job's status and backend, so that
        # filters on them are checked inside the tag's index walk.
        tag_columns = not self._legacy
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
            where.append("t.backend = ?" if tags and tag_columns else "jobs.backend = ?")
            params.append(backend_value)
        if statuses:
            in_tags = tags and (tag_columns or self.version >= 3)
            status_col = "t.status" if in_tags else "jobs.status"
            where.append(f"{status_col} IN ({','.join('?' * len(statuses))})")
            params.extend(self._status_value(s) for s in statuses)
        if created_after is not None:
            where.append(f"{order_col} > ?")
            params.append(self._date_value(created_after))
        if created_before is not None:
            where.append(f"{order_col} < ?")
            params.append(self._date_value(created_before))
        if session_id is not None:
            where.append("jobs.session_id = ?")
            params.append(session_id)
        if service is not None:
            where.append("jobs.service = ?")
            params.append(service_value)
        if pending_submission is not None:
            where.append("jobs.submit_state " + ("=" if pending_submission else "!=") + " ?")
            params.append("pending")
        direction = "DESC" if descending else "ASC"
        pk_col = "t.job_pk" if tags else "jobs.pk"
        conditions = " WHERE " + " AND ".join(where) if where else ""
        # Ordering by the index's own columns lets SQLite stream rows without a sort.
        order = f" ORDER BY {order_col} {direction}, {pk_col} {direction}"
        params.extend([-1 if limit is None else limit, skip])
        if not skip or limit is None:
            sql = f"SELECT {{select}} FROM {source}{conditions}{order} LIMIT ? OFFSET ?"
            return self._jobs(sql, params)
        # A page further on is found in the index alone (OFFSET then steps over index
        # entries, not rows), and only its rows are read.
        if tags and "jobs." not in conditions:
            source = "job_tags t"  # every filter is in the tag index: no row is read
        page = (
            f"SELECT {pk_col} AS page_pk, {order_col} AS page_at FROM {source}{conditions}"
            f"{order} LIMIT ? OFFSET ?"
        )
        sql = (
            f"SELECT {{select}} FROM ({page}) AS page JOIN jobs ON jobs.pk = page.page_pk "
            f"ORDER BY page.page_at {direction}, page.page_pk {direction}"
        )
        return self._jobs(sql, params)

    def count(self) -> int:
        """How many jobs are recorded."""
        rows = self.rows("SELECT count(*) FROM jobs")
        return int(rows[0][0]) if rows else 0

    def events(self, pk: int) -> list[tuple[datetime, str, str]]:
        """The job's event log, oldest first: ``(at, kind, detail)``."""
        rows = self.rows("SELECT at, kind, detail FROM events WHERE job_pk = ? ORDER BY id", (pk,))
        found = []
        for at, kind, detail in rows:
            when = from_micros(at) if isinstance(at, int) else parse_date(at)
            name = self.keys.string(kind) if isinstance(kind, int) else kind
            text = detail.hex() if isinstance(detail, bytes) else detail
            found.append((when or datetime.now(UTC), name, text))
        return found

    def provenance(self, digest: str) -> dict[str, Any] | None:
        """The provenance record with this digest."""
        stored = digest if self._legacy else digest_value(digest)
        rows = self.rows("SELECT record FROM provenance WHERE digest = ?", (stored,))
        return dict(json.loads(rows[0][0])) if rows and rows[0][0] else None

    def _blob_rows(self) -> Iterator[tuple[Any, ...]]:
        """``(pk, job_id, status, batch_sha256, result_sha256, extras)`` of every job,
        in pages of the primary key (never the whole registry in memory)."""
        last = -(2**63)
        while True:
            page = self.rows(
                "SELECT pk, job_id, status, batch_sha256, result_sha256, extras FROM jobs "
                "WHERE pk > ? ORDER BY pk LIMIT ?",
                (last, _PAGE),
            )
            yield from page
            if len(page) < _PAGE:
                return
            last = page[-1][0]

    def referenced_digests(self) -> set[str]:
        """Every digest the registry refers to (batches, results, cached extras)."""
        found: set[str] = set()
        for _, _, _, batch, result, extras in self._blob_rows():
            found.update(d for d in (digest_text(batch), digest_text(result)) if d)
            if extras:
                found.update(json.loads(extras).values())
        return found

    def blob_references(self) -> Iterator[tuple[str, str, str, JobStatus]]:
        """Every digest a job refers to: ``(sha256, job name, part, job status)`` with
        part ``batch``, ``result`` or the name of a cached extra; read in pages."""
        from jobledger.registry.records import STATUSES

        for pk, job_id, status, batch, result, extras in self._blob_rows():
            name = job_id or f"<pending #{pk}>"
            state = STATUSES[status] if isinstance(status, int) else JobStatus(status)
            parts = [("batch", digest_text(batch)), ("result", digest_text(result))]
            parts += list(json.loads(extras or "{}").items())
            for part, digest in parts:
                if digest:
                    yield str(digest), name, part, state

    def refers_to(self, digest: str) -> bool:
        """Whether a job refers to the blob with this digest (batch, result or extra)."""
        stored = digest if self._legacy else digest_value(digest)
        rows = self.rows(
            "SELECT 1 FROM jobs WHERE batch_sha256 = ? OR result_sha256 = ? "
            "OR instr(extras, ?) > 0 LIMIT 1",
            (stored, stored, digest),
        )
        return bool(rows)
