"""The ``jobledger`` commands that deal with many jobs at once: ``ls`` and ``sync``.

``ls`` reads the local registry (or the service with ``--remote``), refreshing the
statuses of listed open jobs in one call when the service can be reached; ``sync``
brings the whole registry up to date with the service and, with ``--fetch-results``,
downloads every finished result not stored yet. Both take ``--json``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from jobledger.cli.common import note, open_connection, record_dict, spinning
from jobledger.cli.output import duration, echo_json, format_table, relative_time, style_status
from jobledger.status import JobStatus, parse_status

if TYPE_CHECKING:
    from jobledger.client.connection import Connection
    from jobledger.registry import JobRecord

__all__ = ["ls", "sync"]


# -- ls ---------------------------------------------------------------------------------


def _parse_statuses(
    _ctx: click.Context, _param: click.Parameter, values: Sequence[str]
) -> list[JobStatus]:
    out: list[JobStatus] = []
    for value in values:
        try:
            status = parse_status(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
        # "waiting" covers both states QLMaaS calls waiting.
        if status.qlmaas_name == "waiting":
            out += [JobStatus.INITIALIZING, JobStatus.QUEUED]
        else:
            out.append(status)
    return out


def provider_name(kind: str | None) -> str:
    """Where a job runs, from its service's recorded kind."""
    return {"local": "local", "remote": "jobledger", None: "?"}.get(kind, kind or "?")


def _refresh_open(conn: Connection, records: list[JobRecord]) -> list[JobRecord]:
    """Ask the bound service, in one call, for the statuses of listed open jobs."""
    from jobledger.errors import OfflineError

    if conn.offline or all(r.status.is_final or r.job_id is None for r in records):
        return records
    try:
        # Listing only reads: it never starts the embedded service to refresh.
        service = conn.bind(start=False).service.id
        wanted = [
            r.job_id
            for r in records
            if r.job_id and not r.status.is_final and r.service == service
        ]
        if not wanted:
            return records
        found = conn.call(lambda p: p.statuses(wanted)).found
        conn.registry.apply_infos(service, found)
    except OfflineError as exc:
        note(f"note: statuses as last recorded ({exc})")
        return records
    return [conn.registry.get(r.pk) for r in records]


@click.command("ls")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    callback=_parse_statuses,
    help="Only jobs in this status (waiting, running, done, failed, cancelled, deleted).",
)
@click.option("--tag", "tags", multiple=True, help="Only jobs carrying this tag (repeatable).")
@click.option("--backend", help="Only jobs of this backend.")
@click.option(
    "--limit",
    default=20,
    show_default=True,
    type=click.IntRange(min=0),
    help="How many jobs to show, newest first.",
)
@click.option("--all", "all_", is_flag=True, help="Show every job (no limit).")
@click.option("--remote", is_flag=True, help="Ask the service instead of the local registry.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of jobs.")
def ls(
    statuses: list[JobStatus],
    tags: tuple[str, ...],
    backend: str | None,
    limit: int,
    all_: bool,
    remote: bool,
    as_json: bool,
) -> None:
    """List recorded jobs, newest first."""
    wanted = None if all_ else limit
    with open_connection() as conn:
        if remote:
            jobs = conn.jobs(
                limit=wanted,
                backend_name=backend,
                status=statuses or None,
                tags=list(tags),
                remote=True,
            )
            service = conn.service_id
            records = [conn.registry.find(str(j.job_id), service)[0] for j in jobs]
        else:
            records = conn.registry.query(
                limit=wanted, backend=backend, statuses=statuses, tags=list(tags)
            )
            records = _refresh_open(conn, records)
        if as_json:
            kinds = {s.id: s.kind for s in conn.registry.services()}
            echo_json(
                [
                    {
                        **record_dict(r, conn.store),
                        "provider": provider_name(kinds.get(r.service or "")),
                    }
                    for r in records
                ]
            )
            return
        if not records:
            note("no jobs match (submit one with `jobledger submit echo`)")
            return
        now = datetime.now(UTC)
        kinds = {s.id: s.kind for s in conn.registry.services()}
        rows = []
        for r in records:
            ran = ""
            if r.started_at and r.ended_at:
                ran = duration((r.ended_at - r.started_at).total_seconds())
            elif r.started_at:
                ran = duration((now - r.started_at).total_seconds()) + "…"
            rows.append(
                [
                    r.name,
                    r.alias or "",
                    r.backend,
                    provider_name(kinds.get(r.service or "")),
                    style_status(r.status),
                    relative_time(r.created_at, now),
                    ran,
                    ",".join(r.tags),
                ]
            )
        click.echo(
            format_table(
                ["ID", "ALIAS", "BACKEND", "PROVIDER", "STATUS", "SUBMITTED", "RAN", "TAGS"], rows
            )
        )
        if wanted is not None and len(records) == wanted:
            note(f"(the {wanted} most recent; use --limit N or --all for more)")


@click.command()
@click.option(
    "--fetch-results", is_flag=True, help="Also download every finished result not stored yet."
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def sync(fetch_results: bool, as_json: bool) -> None:
    """Bring the registry up to date with the service (only what changed since last time)."""
    with open_connection() as conn:
        start = time.monotonic()
        with spinning(lambda: f"syncing ({duration(time.monotonic() - start)})"):
            report = conn.sync(fetch_results=fetch_results)
        if as_json:
            echo_json(
                {
                    "new": report.new,
                    "updated": report.updated,
                    "resolved": report.resolved,
                    "fetched": report.fetched,
                    "refused": report.refused,
                    "listed": report.listed,
                    "errors": list(report.errors),
                }
            )
        else:
            click.echo(
                f"{report.listed} jobs listed by the service: {report.new} new, "
                f"{report.updated} updated; {report.resolved} pending submissions resolved, "
                f"{report.fetched} results downloaded"
            )
        for error in report.errors:
            note(f"error: {error}")
        if report.errors:
            raise click.ClickException(f"{len(report.errors)} results could not be downloaded")
