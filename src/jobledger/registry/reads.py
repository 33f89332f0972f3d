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

import contextlib
import json
from collections.abc import Collection, Iterator, Sequence
from datetime import UTC, datetime

from jobledger.errors import RegistryError
from jobledger.registry.codec import (
    JOB_COLUMNS,
    JOB_SELECT,
    decode_job,
    digest_text,
    digest_value,
    hex_sql,
)
from jobledger.registry.file import RegistryFile
from jobledger.registry.keys import Keys
from jobledger.registry.records import (
    STATUS_CODES,
    STATUSES,
    JobRecord,
    ServiceRecord,
    dumps,
    from_micros,
    parse_date,
    to_iso,
    to_micros,
)
from jobledger.status import JobStatus

TYPE_CHECKING = False  # typing's flag without importing typing (see docs/architecture.md)
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

__all__ = ["RegistryReads"]

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

    # -- names for jobledger.jobs: bounded reads through the indexes -------------------

    def recent_ids(self, limit: int) -> list[str]:
        """The ids of the *limit* most recently recorded jobs, newest first.

        Walks the ``created_at`` index backwards, so the cost does not grow with the
        registry (an id recorded for two services appears twice).
        """
        # "+job_id" keeps the planner on the created_at index whatever its statistics.
        rows = self.rows(
            "SELECT job_id FROM jobs WHERE +job_id IS NOT NULL ORDER BY created_at DESC LIMIT ?",
            (limit,),
        )
        return [r[0] for r in rows]

    def aliases(self, limit: int | None = None) -> list[str]:
        """Aliases in sorted order, at most *limit* of them (read from the alias index)."""
        rows = self.rows(
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
        ids = self.rows(
            f"SELECT DISTINCT job_id FROM jobs WHERE {where.format('job_id')} "
            "ORDER BY job_id LIMIT ?",
            [*params, cap],
        )
        aliases = self.rows(
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
        where = ["jobs.pk > ?"]
        params: list[Any] = [after_pk]
        if service is not None:
            service_value = self._service_value(service)
            if service_value is _NOTHING:
                return []
            where.append("+jobs.service = ?")
            params.append(service_value)
        if statuses:
            # The unary + keeps SQLite on the row-key order instead of the status index,
            # which would sort every matching row for each page.
            where.append(f"+jobs.status IN ({','.join('?' * len(statuses))})")
            params.extend(self._status_value(s) for s in statuses)
        if pending_submission is not None:
            where.append("jobs.submit_state " + ("=" if pending_submission else "!=") + " ?")
            params.append("pending")
        sql = f"SELECT {{select}} FROM jobs WHERE {' AND '.join(where)} ORDER BY jobs.pk LIMIT ?"
        return self._jobs(sql, [*params, limit])

    def pending_count(self, service: str) -> int:
        """How many submissions to *service* still wait for the service's answer."""
        service_value = self._service_value(service)
        if service_value is _NOTHING:
            return 0
        rows = self.rows(
            "SELECT count(*) FROM jobs WHERE submit_state = 'pending' AND service = ?",
            (service_value,),
        )
        return int(rows[0][0]) if rows else 0

    def done_results_page(
        self, service: str, *, after_pk: int = 0, limit: int = 1000
    ) -> list[tuple[int, str | None]]:
        """``(pk, result digest or None)`` of up to *limit* DONE jobs of *service*
        above row key *after_pk*, in row-key order: what a result download needs to
        decide, without decoding whole records."""
        service_value = self._service_value(service)
        if service_value is _NOTHING:
            return []
        rows = self.rows(
            "SELECT pk, result_sha256 FROM jobs WHERE pk > ? AND +service = ? "
            "AND +status = ? AND job_id IS NOT NULL ORDER BY pk LIMIT ?",
            (after_pk, service_value, self._status_value(JobStatus.DONE), limit),
        )
        return [(int(pk), digest_text(result)) for pk, result in rows]

    def sync_cursor(self, service: str) -> str | None:
        """The change token up to which jobs of *service* are recorded (``None``: none
        yet), kept in ``meta`` as ``sync_cursor:<service id>``."""
        rows = self.rows("SELECT value FROM meta WHERE key = ?", (f"sync_cursor:{service}",))
        return str(rows[0][0]) if rows else None

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

    # -- digests: what the store's blobs are to the jobs ---------------------------
    # Digests are compared and sorted in their text form (hex_sql): a digest stored as
    # a BLOB otherwise never equals the store's hex name, and sorts after every text.

    def referenced_digests_sorted(self) -> Iterator[str]:
        """Every digest the registry refers to (batches, results, cached extras), each
        once, in sorted order (the store's order), streamed: SQLite sorts them on disk
        if need be, so memory stays bounded whatever the registry's size."""
        sql = (
            f"SELECT {hex_sql('batch_sha256')} FROM jobs WHERE batch_sha256 IS NOT NULL "
            f"UNION SELECT {hex_sql('result_sha256')} FROM jobs WHERE result_sha256 IS NOT NULL "
            f"UNION SELECT e.value FROM jobs, json_each({_EXTRAS}) e "
            "WHERE jobs.extras IS NOT NULL ORDER BY 1"
        )
        for (value,) in self._stream(sql):
            if isinstance(value, str) and value:
                yield value

    def referenced_among(self, digests: Collection[str]) -> set[str]:
        """Those of *digests* some job refers to now (batch, result or cached extra), in
        one pass over the registry whatever their number."""
        if not digests:
            return set()
        wanted = dumps(sorted(set(digests)))
        among = "IN (SELECT value FROM json_each(?))"
        rows = self.rows(
            f"SELECT {hex_sql('batch_sha256')} AS d FROM jobs WHERE d {among} "
            f"UNION SELECT {hex_sql('result_sha256')} AS d FROM jobs WHERE d {among} "
            f"UNION SELECT e.value FROM jobs, json_each({_EXTRAS}) e "
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
        among = "IN (SELECT value FROM json_each(?))"
        sql = (
            "SELECT pk, job_id, status, batch_sha256, result_sha256, extras FROM jobs "
            f"WHERE {hex_sql('batch_sha256')} {among} OR {hex_sql('result_sha256')} {among} "
            "OR (extras IS NOT NULL AND extras != '{}') ORDER BY pk"
        )
        listed = dumps(sorted(wanted))
        for pk, job_id, status, batch, result, extras in self._stream(sql, (listed, listed)):
            parts = [("batch", digest_text(batch)), ("result", digest_text(result))]
            if extras and extras != "{}":
                with contextlib.suppress(ValueError):
                    parts += list(json.loads(extras).items())
            for part, found in parts:
                if found in wanted:
                    name = job_id or f"<pending #{pk}>"
                    state = STATUSES[status] if isinstance(status, int) else JobStatus(status)
                    owners.setdefault(found, []).append((name, part, state))
        return owners

    def prunable_results(
        self, service: str, ended_before: datetime
    ) -> Iterator[tuple[str, tuple[str, ...]]]:
        """Result digests referred to only as results of jobs of *service* that ended
        DONE before *ended_before* (never by a batch, a cached extra, or any other
        job), each with those jobs' ids; sorted by digest and streamed."""
        service_value = self._service_value(service)
        if service_value is _NOTHING:
            return
        sql = (
            "SELECT d, group_concat(job_id, ' ') FROM ("
            f" SELECT {hex_sql('result_sha256')} AS d, job_id, (service = ? AND status = ?"
            " AND job_id IS NOT NULL AND ended_at IS NOT NULL AND ended_at < ?) AS ok"
            " FROM jobs WHERE result_sha256 IS NOT NULL"
            f" UNION ALL SELECT {hex_sql('batch_sha256')}, NULL, 0 FROM jobs"
            " WHERE batch_sha256 IS NOT NULL"
            f" UNION ALL SELECT e.value, NULL, 0 FROM jobs, json_each({_EXTRAS}) e"
            " WHERE jobs.extras IS NOT NULL"
            ") GROUP BY d HAVING min(ok) = 1 ORDER BY d"
        )
        params = (
            service_value,
            self._status_value(JobStatus.DONE),
            self._date_value(ended_before),
        )
        for digest, ids in self._stream(sql, params):
            yield str(digest), tuple(str(ids or "").split())


_EXTRAS = "CASE WHEN json_valid(jobs.extras) THEN jobs.extras ELSE '{}' END"
"""A job's cached extras for ``json_each`` (an unreadable value reads as none)."""
