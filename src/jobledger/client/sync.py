"""Bringing the registry into agreement with the service.

:func:`resolve_pending` re-sends submissions whose answer was lost, with their
original idempotency keys (so none is duplicated); :func:`remote_jobs` lists jobs on
the service and records them; :func:`sync` does both for every job and refreshes
non-final statuses with batch calls. :class:`~jobledger.client.connection.Connection`
calls these (``Connection.sync``, ``jobs(remote=True)``, and on binding).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from jobledger.errors import (
    AuthenticationError,
    CacheCorruptionError,
    OfflineError,
    ServiceError,
)
from jobledger.providers.base import JobQuery, RemoteJob, Submission
from jobledger.status import FINAL_STATES, JobStatus

if TYPE_CHECKING:
    from jobledger.client.binding import Binding
    from jobledger.client.connection import Connection
    from jobledger.client.job import Job
    from jobledger.providers.base import Provider
    from jobledger.registry import JobRecord

__all__ = ["Resolution", "SyncReport", "is_refusal", "remote_jobs", "resolve_pending", "sync"]


@dataclass(frozen=True)
class SyncReport:
    """What :meth:`Connection.sync` did."""

    new: int = 0
    updated: int = 0
    resolved: int = 0
    fetched: int = 0
    errors: tuple[str, ...] = field(default_factory=tuple)
    refused: int = 0


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
    pending = conn.registry.query(limit=None, pending_submission=True, service=binding.service.id)
    resolved = refused = 0
    problems: list[str] = []
    provider = binding.provider
    for record in pending:
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
                f"{len(pending) - resolved - refused} pending submission(s) left pending: {exc}"
            )
            if isinstance(exc, AuthenticationError) or exc.status_code in (401, 403, 409):
                break  # the same answer would come for every row
            continue
        conn.registry.acknowledge(record.pk, info)
        resolved += 1
    return Resolution(resolved, refused, tuple(problems))


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

    Resolves pending submissions, records jobs that exist on the service but not
    here, refreshes every non-final status with batch calls, and with
    ``fetch_results=True`` downloads every finished result not yet stored.

    :param resolved_before: pending submissions already resolved when the connection
        was bound, counted in the report.
    """
    from jobledger.client.job import Job

    binding = conn.bind()
    service = binding.service.id
    earlier = resolved_before or Resolution()
    now = resolve_pending(conn, binding)
    before = conn.registry.count()
    infos: list[RemoteJob] = []
    listing = JobQuery(descending=False)
    conn.call(lambda p: infos.extend(p.list_jobs(listing)))
    conn.registry.apply_infos(service, infos)
    new = conn.registry.count() - before
    open_jobs = conn.registry.query(
        limit=None, service=service, statuses=[s for s in JobStatus if s not in FINAL_STATES]
    )
    ids = [r.job_id for r in open_jobs if r.job_id]
    found = conn.call(lambda p: p.statuses(ids)).found
    conn.registry.apply_infos(service, found)
    fetched = 0
    errors: list[str] = list(now.problems)
    if fetch_results:
        for record in conn.registry.query(limit=None, service=service, statuses=[JobStatus.DONE]):
            if record.result and conn.store.has(record.result.sha256):
                continue
            try:
                Job(record, conn).fetch_result()
                fetched += 1
            except (ServiceError, OfflineError) as exc:
                errors.append(f"{record.name}: {exc}")
    return SyncReport(
        new=new,
        updated=len(found),
        resolved=earlier.resolved + now.resolved,
        fetched=fetched,
        errors=tuple(errors),
        refused=earlier.refused + now.refused,
    )
