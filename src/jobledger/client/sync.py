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

from jobledger.errors import OfflineError, ServiceError
from jobledger.providers.base import JobQuery, RemoteJob, Submission
from jobledger.status import FINAL_STATES, JobStatus

if TYPE_CHECKING:
    from jobledger.client.binding import Binding
    from jobledger.client.connection import Connection
    from jobledger.client.job import Job
    from jobledger.providers.base import Provider

__all__ = ["SyncReport", "remote_jobs", "resolve_pending", "sync"]


@dataclass(frozen=True)
class SyncReport:
    """What :meth:`Connection.sync` did."""

    new: int = 0
    updated: int = 0
    resolved: int = 0
    fetched: int = 0
    errors: tuple[str, ...] = field(default_factory=tuple)


def resolve_pending(conn: Connection, binding: Binding) -> int:
    """Re-send submissions whose answer never arrived, with their original keys."""
    pending = conn.registry.query(limit=None, pending_submission=True, service=binding.service.id)
    resolved = 0
    for record in pending:
        if record.batch is None or not conn.store.has(record.batch.sha256):
            continue
        data = conn.store.get_bytes(record.batch.sha256, what=f"batch of {record.name}")
        submission = Submission(
            record.backend,
            data,
            record.batch.media_type,
            record.batch.sha256,
            dict(record.params),
            record.tags,
            record.session_id,
        )
        try:
            info = binding.provider.submit(submission, idempotency_key=record.idempotency_key)
        except ServiceError as exc:
            if exc.status_code is not None and 400 <= exc.status_code < 500:
                conn.registry.forget_submission(record.pk)
            continue
        except OfflineError:
            break
        conn.registry.acknowledge(record.pk, info)
        resolved += 1
    return resolved


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


def sync(conn: Connection, *, fetch_results: bool = False, resolved_before: int = 0) -> SyncReport:
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
    resolved = resolve_pending(conn, binding) + resolved_before
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
    errors: list[str] = []
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
        new=new, updated=len(found), resolved=resolved, fetched=fetched, errors=tuple(errors)
    )
