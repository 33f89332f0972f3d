"""The local registry: one SQLite file recording every job, its events and provenance.

:class:`Registry` records submissions and the service's answers; its queries are in
:mod:`jobledger.registry.reads`, the file handling (per-thread connections, retried
``BEGIN IMMEDIATE`` writes) in :mod:`jobledger.registry.file`, the schema and migrations in
:mod:`jobledger.registry.schema` and :mod:`jobledger.registry.schema5`, the record
classes and date helpers in :mod:`jobledger.registry.records` (re-exported by the
package), the compact stored values in :mod:`jobledger.registry.codec` and
:mod:`jobledger.registry.keys`, and the statements shared by write transactions in
:mod:`jobledger.registry.writes`. Queries use :mod:`sqlite3` directly so that the read
path (``from jobledger.jobs import X``) stays light. The schema is documented in
``docs/registry.md``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence

from jobledger.registry import writes
from jobledger.registry.codec import digest_value, key_value
from jobledger.registry.reads import RegistryReads
from jobledger.registry.records import (
    STATUS_CODES,
    BlobRef,
    JobRecord,
    ServiceRecord,
    dumps,
    now_micros,
)
from jobledger.status import JobStatus

TYPE_CHECKING = False  # typing's flag without importing typing (see docs/architecture.md)
if TYPE_CHECKING:
    from typing import Any, TypeVar

    from jobledger.providers.base import RemoteJob
    from jobledger.registry.keys import Resolver

    T = TypeVar("T")

__all__ = ["Registry"]


class Registry(RegistryReads):
    """The registry file at *path*.

    Cheap to build: nothing is opened until the first query. Each thread gets its
    own SQLite connection. With ``readonly=True`` the file is never created or
    migrated, and a missing file reads as an empty registry.
    """

    def write(self, work: Callable[[sqlite3.Connection], T], *, durable: bool = False) -> T:
        """Run *work* in one write transaction (see :meth:`RegistryFile.write`), then
        cache the keys it resolved, as committed."""
        result = super().write(work, durable=durable)
        # (After a failed write the hints are left: nothing they name was committed.)
        self.keys.settle()
        return result

    def _write(
        self, work: Callable[[sqlite3.Connection, Resolver], T], *, durable: bool = False
    ) -> T:
        return self.write(lambda conn: work(conn, self.keys.resolver(conn)), durable=durable)

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
            if tag_list:
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

    # -- sync marks -------------------------------------------------------------

    def set_sync_cursor(self, service: str, token: str) -> None:
        """Remember that every change of *service* up to *token* is recorded (read back
        by :meth:`sync_cursor`); called only after those changes were committed, so a
        crash never skips one."""

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (f"sync_cursor:{service}", token),
            )

        self.write(work)
