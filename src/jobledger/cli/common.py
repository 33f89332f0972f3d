"""Helpers shared by the ``jobledger`` commands: connecting, finding a job, job dicts.

:func:`open_connection` opens (and always closes) a
:class:`~jobledger.client.connection.Connection` through :func:`jobledger.connect`;
:func:`find_job` resolves an id or alias and raises with suggestions when nothing
matches; :func:`job_dict` and :func:`record_dict` build the JSON shape of a job
documented in ``docs/cli.md``; :func:`wait_for` and :func:`spinning` show progress on a
terminal only. Nothing heavy is imported here at import time: the registry, store and
network stack load when a command runs.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import click

from jobledger.cli.output import Progress, job_fields, wait_with_progress
from jobledger.status import JobStatus

if TYPE_CHECKING:
    from jobledger.client.connection import Connection
    from jobledger.client.job import Job
    from jobledger.registry import JobRecord
    from jobledger.store import Store

__all__ = [
    "find_job",
    "job_dict",
    "note",
    "open_connection",
    "record_dict",
    "report_final",
    "spinning",
    "wait_for",
]


@contextlib.contextmanager
def open_connection() -> Iterator[Connection]:
    import jobledger

    conn = jobledger.connect()
    try:
        yield conn
    finally:
        conn.close()


def find_job(conn: Connection, name: str) -> Job:
    """The job named *name* (id or alias); an unknown name raises with suggestions."""
    from jobledger.errors import JobNotFoundError, OfflineError
    from jobledger.ids import ID_PATTERN

    if conn.registry.find(name):
        return conn.job(name)
    asked = ""
    if ID_PATTERN.match(name) and not conn.offline:
        try:
            return conn.job(name)
        except JobNotFoundError:
            asked = f"; the service at {conn.url} does not know it either"
        except OfflineError as exc:
            asked = f"; the service could not be asked ({exc})"
    from jobledger.names import describe_unknown

    message = describe_unknown(name, conn.registry)
    hint = " (list recorded jobs with `jobledger ls`)"
    if asked:
        message = message.replace(hint, asked + hint) if hint in message else message + asked
    raise JobNotFoundError(message)


def job_dict(conn: Connection, job: Job) -> dict[str, Any]:
    info = job.get_info(refresh=False)
    digest = job.provenance["result_sha256"]
    return job_fields(
        job_id=str(job.job_id),
        alias=job.alias,
        status=info.status,
        backend=info.backend,
        submitted_at=info.submission_date,
        started_at=info.starting_date,
        ended_at=info.ending_date,
        tags=info.tags,
        result_stored=bool(digest) and conn.store.has(digest),
        message=info.message,
        session_id=info.session_id,
    )


def record_dict(record: JobRecord, store: Store) -> dict[str, Any]:
    return job_fields(
        job_id=record.name,
        alias=record.alias,
        status=record.status,
        backend=record.backend,
        submitted_at=record.created_at,
        started_at=record.started_at,
        ended_at=record.ended_at,
        tags=record.tags,
        result_stored=record.result is not None and store.has(record.result.sha256),
        message=record.message,
        session_id=record.session_id,
    )


def note(message: str) -> None:
    click.echo(message, err=True)


def wait_for(job: Job, *, timeout: float | None, follow: bool = False) -> JobStatus:
    """Wait for *job* (spinner on a terminal); with *follow*, print each interim
    result as one JSON line on stdout as it arrives."""

    def show(value: Any) -> None:
        click.echo(json.dumps(value, ensure_ascii=False, default=str))

    return wait_with_progress(job, timeout=timeout, on_interim=show if follow else None)


def report_final(job: Job, status: JobStatus) -> None:
    """Raise (exit 1) with the service's message when *job* failed or was cancelled."""
    if status is JobStatus.ERROR:
        from jobledger.client.display import short

        where = f"`jobledger show {job.job_id} --json`"
        reason = short(job.error_message() or "no reason given", 500, where=where)
        raise click.ClickException(f"job {job.job_id} failed: {reason}")
    if status is JobStatus.CANCELLED:
        raise click.ClickException(f"job {job.job_id} was cancelled")


@contextlib.contextmanager
def spinning(message: Callable[[], str]) -> Iterator[Progress]:
    """Animate a spinner (on a terminal) while the block runs."""
    import threading

    progress = Progress()
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(0.1):
            progress.spin(message())

    thread = threading.Thread(target=run, daemon=True, name="jobledger-spinner")
    if progress.enabled:
        thread.start()
    try:
        yield progress
    finally:
        stop.set()
        if thread.is_alive():
            thread.join()
        progress.clear()
