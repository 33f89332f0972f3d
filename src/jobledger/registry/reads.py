"""The registry's queries: jobs by id, alias and filters, events, provenance, digests.

:class:`RegistryReads` is the reading half of :class:`~jobledger.registry.Registry`:
every query decodes its rows through :mod:`jobledger.registry.codec` (cheaply: this
is the path of every listing) and turns its values into the file's form first (keys,
microseconds, status codes), through the :class:`~jobledger.registry.keys.Keys` cache.
A read-only open of a file still at schema 4 (nothing migrates it) is read with the
same decoders, its query values in the text form it stores. Every filter walks an
index (see ``docs/registry.md``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from jobledger.errors import RegistryError
from jobledger.registry.codec import JOB_COLUMNS, JOB_SELECT, decode_job, digest_text, digest_value
from jobledger.registry.file import RegistryFile
from jobledger.registry.keys import Keys
from jobledger.registry.records import (
    STATUS_CODES,
    STATUSES,
    JobRecord,
    ServiceRecord,
    from_micros,
    parse_date,
    to_iso,
    to_micros,
)
from jobledger.status import JobStatus

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["RegistryReads"]

_PAGE = 5000
_NOTHING = object()  # a query value that no row can have (a name never recorded)


class RegistryReads(RegistryFile):
    """The queries of a registry file (the base of :class:`~jobledger.registry.Registry`)."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        super().__init__(path, readonly=readonly)
        self.keys = Keys(self.rows)

    @property
    def _legacy(self) -> bool:
        # A read-only open of a file at schema 4 or older: text values, no key tables.
        self._conn()
        return self.version < 5

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
