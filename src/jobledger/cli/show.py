"""The ``jobledger`` commands that read what one job recorded: ``show`` and ``result``.

``show`` prints everything the registry knows about a job (status, times, digests,
provenance summary, events); ``result`` prints the job's result, downloading it into
the verified local store first (with a progress bar for big ones on a terminal), or
writes its exact bytes to a file with ``--out``, checking the digest on the way.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from jobledger.cli.common import find_job, job_dict, note, open_connection
from jobledger.cli.output import (
    Progress,
    duration,
    echo_json,
    human_size,
    is_terminal,
    iso,
    style_status,
    when,
)
from jobledger.status import JobStatus

if TYPE_CHECKING:
    from jobledger.client.connection import Connection
    from jobledger.client.job import Job

__all__ = ["result", "show"]

_BIG_DOWNLOAD = 1 << 20

# -- show -------------------------------------------------------------------------------


def _provenance_summary(environment: dict[str, Any] | None) -> dict[str, Any]:
    if not environment:
        return {}
    python = environment.get("python") or {}
    git = environment.get("git") or {}
    program = environment.get("program") or {}
    return {
        "python": python.get("version"),
        "host": environment.get("host"),
        "user": environment.get("user"),
        "jobledger": environment.get("jobledger"),
        "git_commit": git.get("commit"),
        "git_dirty": git.get("dirty"),
        "program": program.get("path") or program.get("kind"),
        "packages": len(environment.get("packages") or {}),
    }


@click.command()
@click.argument("job_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def show(job_id: str, as_json: bool) -> None:
    """Show everything recorded about job ID (an id or an alias)."""
    with open_connection() as conn:
        job = find_job(conn, job_id)
        job.status()  # refreshes a job that is not final yet (recorded one when offline)
        fields = job_dict(conn, job)
        provenance = job.provenance
        info = job.get_info(refresh=False)
        summary = _provenance_summary(provenance.get("environment"))
        batch_digest = provenance["batch_sha256"]
        details = {
            **fields,
            "backend_version": provenance["backend_version"],
            "queue_position": info.queue_position,
            "params": provenance["params"],
            "batch": {
                "sha256": batch_digest,
                "media_type": provenance["batch_media_type"],
                "stored": bool(batch_digest) and conn.store.has(batch_digest),
            },
            "result": {
                "sha256": provenance["result_sha256"],
                "stored": fields["result_stored"],
            },
            "service": {"id": provenance["service_id"], "url": provenance["service_url"]},
            "usage": dict(info.usage),
            "provenance": summary,
            "events": provenance["events"],
        }
        if as_json:
            echo_json(details)
            return
        status = info.status
        lines: list[tuple[str, str]] = [
            ("id", fields["id"]),
            ("alias", fields["alias"] or "-"),
            (
                "backend",
                info.backend + (f" {info.backend_version}" if info.backend_version else ""),
            ),
            ("status", f"{style_status(status)} ({status.value})"),
        ]
        if info.message:
            from jobledger.client.display import short

            where = f"`jobledger show {fields['id']} --json`"
            lines.append(("message", short(info.message, 2000, where=where)))
        if info.queue_position is not None and status is JobStatus.QUEUED:
            lines.append(("queue position", str(info.queue_position)))
        lines += [
            ("submitted", when(info.submission_date)),
            ("started", when(info.starting_date)),
            ("ended", when(info.ending_date)),
        ]
        if info.starting_date and info.ending_date:
            ran = (info.ending_date - info.starting_date).total_seconds()
            lines.append(("ran for", duration(ran)))
        lines += [
            ("tags", ", ".join(info.tags) or "-"),
            ("session", info.session_id or "-"),
            ("params", _params_line(provenance["params"], fields["id"])),
            ("batch", _digest_line(batch_digest, details["batch"]["stored"])),
            ("result", _digest_line(provenance["result_sha256"], fields["result_stored"])),
            ("service", f"{provenance['service_id']} ({provenance['service_url'] or '?'})"),
        ]
        if summary:
            git = summary["git_commit"] or "not a git checkout"
            if summary["git_dirty"]:
                git += " (uncommitted changes)"
            lines += [
                ("python", f"{summary['python']} on {summary['host']} (user {summary['user']})"),
                ("program", str(summary["program"] or "-")),
                ("git", git),
                ("packages", f"{summary['packages']} recorded"),
            ]
        width = max(len(k) for k, _ in lines)
        for key, value in lines:
            click.echo(f"{key + ':':<{width + 1}} {value}")
        from jobledger.client.display import short

        click.echo("events:")
        for event in provenance["events"]:
            at = datetime.fromisoformat(event["at"])
            detail = f" {short(event['detail'], 200)}" if event["detail"] else ""
            click.echo(f"  {iso(at)}  {event['event']}{detail}")


def _params_line(params: dict[str, Any], job_id: str) -> str:
    from jobledger.client.display import short

    if not params:
        return "-"
    return short(json.dumps(params), 500, where=f"`jobledger show {job_id} --json`")


def _digest_line(digest: str | None, stored: bool) -> str:
    if not digest:
        return "-"
    return f"sha256 {digest} ({'stored locally' if stored else 'not stored locally'})"


# -- result -----------------------------------------------------------------------------


def _fetch_with_bar(job: Job) -> None:
    """Download the result into the store when missing, with a bar for big ones."""
    progress = Progress()

    def report(done: int, total: int | None) -> None:
        if total is None or total >= _BIG_DOWNLOAD:
            progress.bar(done, total, label="downloading ")

    try:
        job.fetch_result(progress=report if progress.enabled else None)
    finally:
        progress.clear()


def _has_result(conn: Connection, job: Job) -> bool:
    status = job.status()
    if status is JobStatus.DONE:
        return True
    digest = job.provenance["result_sha256"]
    return status is JobStatus.DELETED and bool(digest) and conn.store.has(digest)


@click.command()
@click.argument("job_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the result value itself as JSON.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="Write the result's bytes to this file ('-' for stdout), checking its digest.",
)
def result(job_id: str, as_json: bool, out: Path | None) -> None:
    """Print the result of job ID (it must have finished; see `jobledger wait`)."""
    with open_connection() as conn:
        job = find_job(conn, job_id)
        if not _has_result(conn, job):
            job.get_result()  # raises the matching error (failed, cancelled, not ready...)
            raise click.ClickException(f"job {job.job_id} has no result")
        _fetch_with_bar(job)
        if out is not None:
            _write_result(conn, job, out)
            return
        value = job.get_result()
        if isinstance(value, bytes):
            if as_json or is_terminal(sys.stdout):
                raise click.ClickException(
                    f"the result of job {job.job_id} is {len(value)} bytes of binary data; "
                    f"save it with `jobledger result {job_id} --out FILE`"
                )
            stream = sys.stdout.buffer
            stream.write(value)
            stream.flush()
            return
        if hasattr(value, "tolist") and as_json:
            value = value.tolist()
        if as_json or not hasattr(value, "tolist"):
            echo_json(value)
        else:
            click.echo(str(value))


def _write_result(conn: Connection, job: Job, out: Path) -> None:
    from jobledger.errors import CacheCorruptionError

    digest = job.provenance["result_sha256"]
    what = f"result of job {job.job_id}"
    if str(out) == "-":
        conn.store.copy_to(digest, sys.stdout.buffer, what=what)
        sys.stdout.buffer.flush()
        return
    partial = out.with_name(f".{out.name}.partial")
    try:
        with open(partial, "wb") as sink:
            size = conn.store.copy_to(digest, sink, what=what)
        os.replace(partial, out)
    except (OSError, CacheCorruptionError):
        partial.unlink(missing_ok=True)
        raise
    note(f"wrote {human_size(size)} to {out} (sha256 {digest} verified)")
