"""Bringing the registry into agreement with the service.

:func:`resolve_pending` re-sends submissions whose answer was lost, with their
original idempotency keys (so none is duplicated); :func:`remote_jobs` lists jobs on
the service and records them; :func:`sync` keeps the registry up to date with every
job. :class:`~jobledger.client.connection.Connection` calls these (``Connection.sync``,
``jobs(remote=True)``, and on binding).

A service that lists its changes (protocol v1's ``updated_after``) is asked only for
the jobs that changed since the last sync: the registry keeps, per service, the token
up to which changes are recorded, and moves it only once a page's jobs are committed,
so a sync killed at any point resumes without skipping a change. Any other service is
listed in full, and the statuses of the jobs still open are refreshed with batch calls.
Everything goes a page (:data:`PAGE_SIZE` jobs) at a time: no step holds the registry
or the service's listing in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from jobledger.errors import (
    AuthenticationError,
    CacheCorruptionError,
    OfflineError,
    ServiceError,
)
from jobledger.providers.base import ChangeFeed, ChangePage, JobQuery, RemoteJob, Submission
from jobledger.status import FINAL_STATES, JobStatus

if TYPE_CHECKING:
    from jobledger.client.binding import Binding
    from jobledger.client.connection import Connection
    from jobledger.client.job import Job
    from jobledger.providers.base import Provider, StatusBatch
    from jobledger.registry import JobRecord

__all__ = [
    "PAGE_SIZE",
    "Resolution",
    "SyncReport",
    "is_refusal",
    "remote_jobs",
    "resolve_pending",
    "sync",
]

#: how many jobs are listed, recorded or checked at a time
PAGE_SIZE = 1000
_OPEN_STATES = tuple(s for s in JobStatus if s not in FINAL_STATES)


@dataclass(frozen=True)
class SyncReport:
    """What :meth:`Connection.sync` did."""

    new: int = 0
    updated: int = 0
    resolved: int = 0
    fetched: int = 0
    errors: tuple[str, ...] = field(default_factory=tuple)
    refused: int = 0
    #: how many jobs the service listed (only those changed since the last sync, when
    #: it lists changes)
    listed: int = 0


#: HTTP statuses that refuse the job itself (bad batch, params or size): only these
#: end a pending submission. 401/403 (credentials), 409 (a key sent under another
#: identity), 404 and 5xx say nothing about the job, so it stays pending.
REFUSAL_STATUSES = frozenset({400, 413, 422})


def is_refusal(exc: ServiceError) -> bool:
    """Whether *exc* is the service refusing the submitted job itself."""
    return not isinstance(exc, AuthenticationError) and exc.status_code in REFUSAL_STATUSES


@dataclass(frozen=True)
class Resolution:
    """What :func:`resolve_pending` did: how many it resolved and why it stopped early."""

    resolved: int = 0
    refused: int = 0
    problems: tuple[str, ...] = ()


def resolve_pending(conn: Connection, binding: Binding) -> Resolution:
    """Send again the submissions whose answer never arrived, with their original keys.

    A pending row is never deleted: a definite refusal of that very job marks it
    refused (with the reason), credentials the service refuses stop the resolve and
    leave every row pending, and a row whose batch is missing or damaged in the local
    store is looked up by its key instead of being sent again.
    """
    service = binding.service.id
    total = conn.registry.pending_count(service)
    resolved = refused = 0
    problems: list[str] = []
    provider = binding.provider
    for record in _pages(
        lambda after: conn.registry.jobs_page(
            after_pk=after, limit=PAGE_SIZE, service=service, pending_submission=True
        )
    ):
        data = _stored_batch(conn, record)
        try:
            if data is None:
                info = provider.find_submission(record.idempotency_key)
                if info is None:
                    conn.registry.refuse_submission(
                        record.pk,
                        "its batch is missing from the local store and the service never "
                        "received it; submit it again",
                    )
                    refused += 1
                    continue
            else:
                assert record.batch is not None
                submission = Submission(
                    record.backend,
                    data,
                    record.batch.media_type,
                    record.batch.sha256,
                    dict(record.params),
                    record.tags,
                    record.session_id,
                )
                info = provider.submit(submission, idempotency_key=record.idempotency_key)
        except OfflineError:
            break
        except ServiceError as exc:
            if is_refusal(exc):
                conn.registry.refuse_submission(record.pk, exc.message)
                refused += 1
                continue
            problems.append(
                f"{max(total - resolved - refused, 1)} pending submission(s) left pending: {exc}"
            )
            if isinstance(exc, AuthenticationError) or exc.status_code in (401, 403, 409):
                break  # the same answer would come for every row
            continue
        conn.registry.acknowledge(record.pk, info)
        resolved += 1
    return Resolution(resolved, refused, tuple(problems))


def _pages(page: Callable[[int], list[JobRecord]]) -> Iterator[JobRecord]:
    """The records of *page* (a keyset query taking the last row key seen), one page
    at a time."""
    after = 0
    while records := page(after):
        yield from records
        after = records[-1].pk


def _stored_batch(conn: Connection, record: JobRecord) -> bytes | None:
    """The pending row's batch from the store, or ``None`` when it is missing or
    damaged (a damaged copy must never be sent, and must not block other rows)."""
    if record.batch is None or not conn.store.has(record.batch.sha256):
        return None
    try:
        return conn.store.get_bytes(record.batch.sha256, what=f"batch of {record.name}")
    except CacheCorruptionError:
        return None


def remote_jobs(conn: Connection, query: JobQuery, *, limit: int | None, skip: int) -> list[Job]:
    """Jobs listed by the service (recorded on the way), for ``Connection.jobs(remote=True)``."""
    from jobledger.client.job import Job

    wanted = None if limit is None else skip + limit
    infos: list[RemoteJob] = []

    def fetch(provider: Provider) -> None:
        for info in provider.list_jobs(query):
            infos.append(info)
            if wanted is not None and len(infos) >= wanted:
                return

    conn.call(fetch)
    infos = infos[skip:]
    service = conn.service_id
    conn.registry.apply_infos(service, infos)
    out = []
    for info in infos:
        found = conn.registry.find(info.id, service)
        if found:
            out.append(Job(found[0], conn))
    return out


def sync(
    conn: Connection, *, fetch_results: bool = False, resolved_before: Resolution | None = None
) -> SyncReport:
    """Bring the registry up to date with the service.

    Resolves pending submissions and records what changed on the service since the
    last sync (every job, from a service that cannot list its changes, and then the
    statuses of the jobs still open); with ``fetch_results=True`` downloads every
    finished result not yet stored.

    :param resolved_before: pending submissions already resolved when the connection
        was bound, counted in the report.
    """
    binding = conn.bind()
    service = binding.service.id
    earlier = resolved_before or Resolution()
    now = resolve_pending(conn, binding)
    listing = _record_changes(conn, service)
    if listing is None:
        listing = _record_everything(conn, service)
    errors: list[str] = list(now.problems)
    fetched = _fetch_results(conn, service, errors) if fetch_results else 0
    return SyncReport(
        new=listing.new,
        updated=listing.updated,
        resolved=earlier.resolved + now.resolved,
        fetched=fetched,
        errors=tuple(errors),
        refused=earlier.refused + now.refused,
        listed=listing.listed,
    )


@dataclass
class _Listing:
    new: int = 0
    updated: int = 0
    listed: int = 0

    def add(self, service: str, conn: Connection, infos: list[RemoteJob]) -> None:
        fresh = conn.registry.apply_infos(service, infos)
        self.new += fresh
        self.listed += len(infos)


def _record_changes(conn: Connection, service: str) -> _Listing | None:
    """Record the jobs changed since the service's token, page by page, moving the
    token after each page is committed; ``None`` when the service lists no changes."""

    def first(provider: Provider) -> Iterator[ChangePage] | None:
        if not isinstance(provider, ChangeFeed):
            return None
        return provider.changes(conn.registry.sync_cursor(service) or "", page_size=PAGE_SIZE)

    pages = conn.call(first)
    if pages is None:
        return None
    listing = _Listing()
    for page in pages:
        listing.add(service, conn, page.jobs)
        # Only now: a crash before this line lists the same page again next time.
        conn.registry.set_sync_cursor(service, page.through)
    listing.updated = listing.listed - listing.new
    return listing


def _record_everything(conn: Connection, service: str) -> _Listing:
    """List every job of the service, recording a page at a time, then refresh the
    statuses of the jobs still open (the listing may not show them all)."""
    listing = _Listing()

    def record_all(provider: Provider) -> None:
        chunk: list[RemoteJob] = []
        for info in provider.list_jobs(JobQuery(descending=False, page_size=PAGE_SIZE)):
            chunk.append(info)
            if len(chunk) >= PAGE_SIZE:
                listing.add(service, conn, chunk)
                chunk = []
        if chunk:
            listing.add(service, conn, chunk)

    conn.call(record_all)
    for ids in _pages_of_ids(conn, service):
        found = conn.call(partial(_statuses, ids=ids)).found
        conn.registry.apply_infos(service, found)
        listing.updated += len(found)
    return listing


def _statuses(provider: Provider, ids: list[str]) -> StatusBatch:
    return provider.statuses(ids)


def _pages_of_ids(conn: Connection, service: str) -> Iterator[list[str]]:
    """The ids of the service's jobs that are not final, a page at a time."""
    after = 0
    while page := conn.registry.jobs_page(
        after_pk=after, limit=PAGE_SIZE, service=service, statuses=_OPEN_STATES
    ):
        after = page[-1].pk
        ids = [r.job_id for r in page if r.job_id]
        if ids:
            yield ids


def _fetch_results(conn: Connection, service: str, errors: list[str]) -> int:
    """Download the results of DONE jobs that the store lacks; return how many.

    Pages of row keys and digests are checked against the store in one query each;
    only the jobs whose result is missing are read whole.
    """
    from jobledger.client.job import Job

    fetched = after = 0
    while page := conn.registry.done_results_page(service, after_pk=after, limit=PAGE_SIZE):
        after = page[-1][0]
        stored = conn.store.stored_among(digest for _, digest in page if digest)
        for pk, digest in page:
            if digest is not None and digest in stored:
                continue
            record = conn.registry.get(pk)
            try:
                Job(record, conn).fetch_result()
                fetched += 1
            except OfflineError as exc:
                # Every other download would fail the same way: say it once.
                errors.append(f"{record.name}: {exc}; the results left are fetched next time")
                return fetched
            except ServiceError as exc:
                errors.append(f"{record.name}: {exc}")
    return fetched
