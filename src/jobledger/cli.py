"""The ``jobledger`` command line (click).

Every command works through :func:`jobledger.connect` (so ``JOBLEDGER_URL``,
``JOBLEDGER_TOKEN``, ``JOBLEDGER_OFFLINE`` and the config file apply) and looks jobs
up with :meth:`Connection.job`, which resolves ids and aliases locally first. Errors
become one line on stderr and exit code 1 (usage errors exit 2); ``--debug`` shows
the traceback instead. Commands that print data take ``--json``, whose field names
are documented in ``docs/cli.md``. This module imports nothing heavy at import time:
the registry, store and network stack load inside the commands that need them.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import click

from jobledger import __version__
from jobledger.cli_output import (
    Progress,
    duration,
    echo_json,
    format_table,
    human_size,
    is_terminal,
    iso,
    job_fields,
    relative_time,
    style_status,
    wait_with_progress,
    when,
)
from jobledger.errors import JobledgerError
from jobledger.service.commands import register as register_service_commands
from jobledger.status import JobStatus, parse_status

if TYPE_CHECKING:
    from jobledger.connection import Connection
    from jobledger.job import Job
    from jobledger.registry import JobRecord
    from jobledger.store import Store

__all__ = ["cli", "main"]

_MEDIA_NAMES = {
    "json": "application/json",
    "bytes": "application/octet-stream",
    "npy": "application/x-npy",
}
_BIG_DOWNLOAD = 1 << 20


class _Group(click.Group):
    """The root group: turns jobledger errors into one line on stderr and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise
        except (JobledgerError, TypeError, ValueError, OSError) as exc:
            if ctx.params.get("debug") or os.environ.get("JOBLEDGER_DEBUG"):
                raise
            raise click.ClickException(_one_line(exc)) from None


def _one_line(exc: BaseException) -> str:
    text = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
    if isinstance(exc, OSError) and exc.filename and not text:
        text = f"{exc.strerror}: {exc.filename}"
    return text or type(exc).__name__


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="jobledger")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
def cli(debug: bool) -> None:
    """jobledger: track jobs on remote job services, with a verified local cache."""


register_service_commands(cli)


def main() -> None:
    """Entry point of the ``jobledger`` console script."""
    try:
        cli(prog_name="jobledger")
    except BrokenPipeError:
        # The reader went away (``jobledger ls | head``): stop quietly, like git does.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)


# -- shared helpers ---------------------------------------------------------------------


@contextlib.contextmanager
def _connection() -> Iterator[Connection]:
    import jobledger

    conn = jobledger.connect()
    try:
        yield conn
    finally:
        conn.close()


def _find_job(conn: Connection, name: str) -> Job:
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
    from jobledger.jobs import _unknown

    message = _unknown(name, conn.registry)
    hint = " (list recorded jobs with `jobledger ls`)"
    if asked:
        message = message.replace(hint, asked + hint) if hint in message else message + asked
    raise JobNotFoundError(message)


def _job_dict(conn: Connection, job: Job) -> dict[str, Any]:
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


def _record_dict(record: JobRecord, store: Store) -> dict[str, Any]:
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


def _note(message: str) -> None:
    click.echo(message, err=True)


def _wait(job: Job, *, timeout: float | None, follow: bool = False) -> JobStatus:
    """Wait for *job* (spinner on a terminal); with *follow*, print each interim
    result as one JSON line on stdout as it arrives."""

    def show(value: Any) -> None:
        click.echo(json.dumps(value, ensure_ascii=False, default=str))

    return wait_with_progress(job, timeout=timeout, on_interim=show if follow else None)


def _report_final(job: Job, status: JobStatus) -> None:
    """Raise (exit 1) with the service's message when *job* failed or was cancelled."""
    if status is JobStatus.ERROR:
        reason = job.error_message() or "no reason given"
        raise click.ClickException(f"job {job.job_id} failed: {reason}")
    if status is JobStatus.CANCELLED:
        raise click.ClickException(f"job {job.job_id} was cancelled")


# -- submit -----------------------------------------------------------------------------


def _parse_params(
    _ctx: click.Context, _param: click.Parameter, values: Sequence[str]
) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(
                f"{item!r} is not KEY=VALUE (e.g. --param seconds=2 or --param 'names=[\"a\"]')"
            )
        try:
            params[key.strip()] = json.loads(raw)
        except ValueError:
            params[key.strip()] = raw
    return params


def _parse_media_type(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> str | None:
    if value is None:
        return None
    from jobledger.codecs import MEDIA_TYPES

    media_type = _MEDIA_NAMES.get(value.lower(), value.lower())
    if media_type not in MEDIA_TYPES:
        raise click.BadParameter(
            f"{value!r} is not supported; use json, bytes, npy or one of {', '.join(MEDIA_TYPES)}"
        )
    return media_type


def _read_batch(file: BinaryIO | None, media_type: str | None) -> Any:
    if file is None:
        return None
    data = file.read()
    where = "standard input" if file is sys.stdin.buffer else repr(getattr(file, "name", "?"))
    if media_type == _MEDIA_NAMES["bytes"]:
        return data
    if media_type == _MEDIA_NAMES["npy"]:
        from jobledger.codecs import NPY, decode

        return decode(data, NPY)
    try:
        return json.loads(data)
    except ValueError as exc:
        raise click.ClickException(
            f"the batch in {where} is not valid JSON ({exc}); pass --media-type bytes to "
            "send it as raw bytes, or --media-type npy for a NumPy .npy file"
        ) from None


@cli.command()
@click.argument("backend")
@click.argument("file", required=False, type=click.File("rb"))
@click.option(
    "--param",
    "params",
    multiple=True,
    callback=_parse_params,
    metavar="KEY=VALUE",
    help="A backend parameter; VALUE is parsed as JSON when it parses, else a string.",
)
@click.option("--tag", "tags", multiple=True, help="A tag for the job (repeatable).")
@click.option("--alias", help="A name to import the job by (a Python identifier).")
@click.option(
    "--media-type",
    callback=_parse_media_type,
    help="How to read FILE: json (default), bytes, npy, or a full media type.",
)
@click.option("--session", "session_id", help="The session the job belongs to.")
@click.option("--wait", "wait_", is_flag=True, help="Wait for the job to finish.")
@click.option("--json", "as_json", is_flag=True, help="Print the job as a JSON object.")
def submit(
    backend: str,
    file: BinaryIO | None,
    params: dict[str, Any],
    tags: tuple[str, ...],
    alias: str | None,
    media_type: str | None,
    session_id: str | None,
    wait_: bool,
    as_json: bool,
) -> None:
    """Submit a job to BACKEND with the batch read from FILE ('-' for stdin).

    Without FILE the batch is null. The job id is printed on stdout, so
    scripts can capture it: ID=$(jobledger submit echo batch.json).
    """
    batch = _read_batch(file, media_type)
    with _connection() as conn:
        job = conn.submit(
            batch,
            backend,
            params=params,
            tags=list(tags),
            alias=alias,
            session_id=session_id,
        )
        named = f" (alias {job.alias})" if job.alias else ""
        _note(f"submitted job {job.job_id}{named} to backend {backend!r}")
        if not as_json:
            click.echo(str(job.job_id))
            sys.stdout.flush()  # a script reading the id need not wait for the job
        status = _wait(job, timeout=None) if wait_ else job.status()
        if as_json:
            echo_json(_job_dict(conn, job))
        if wait_:
            _report_final(job, status)
            _note(f"job {job.job_id} {status.qlmaas_name}")


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


def _refresh_open(conn: Connection, records: list[JobRecord]) -> list[JobRecord]:
    """Ask the bound service, in one call, for the statuses of listed open jobs."""
    from jobledger.errors import OfflineError

    if conn.offline or all(r.status.is_final or r.job_id is None for r in records):
        return records
    try:
        service = conn.service_id
        wanted = [
            r.job_id
            for r in records
            if r.job_id and not r.status.is_final and r.service == service
        ]
        if not wanted:
            return records
        found, _missing = conn.call(lambda t: t.statuses(wanted))
        conn.registry.apply_infos(service, found)
    except OfflineError as exc:
        _note(f"note: statuses as last recorded ({exc})")
        return records
    return [conn.registry.get(r.pk) for r in records]


@cli.command("ls")
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
    with _connection() as conn:
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
            echo_json([_record_dict(r, conn.store) for r in records])
            return
        if not records:
            _note("no jobs match (submit one with `jobledger submit echo`)")
            return
        now = datetime.now(UTC)
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
                    style_status(r.status),
                    relative_time(r.created_at, now),
                    ran,
                    ",".join(r.tags),
                ]
            )
        click.echo(
            format_table(["ID", "ALIAS", "BACKEND", "STATUS", "SUBMITTED", "RAN", "TAGS"], rows)
        )
        if wanted is not None and len(records) == wanted:
            _note(f"(the {wanted} most recent; use --limit N or --all for more)")


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


@cli.command()
@click.argument("job_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def show(job_id: str, as_json: bool) -> None:
    """Show everything recorded about job ID (an id or an alias)."""
    with _connection() as conn:
        job = _find_job(conn, job_id)
        job.status()  # refreshes a job that is not final yet (recorded one when offline)
        fields = _job_dict(conn, job)
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
            lines.append(("message", info.message))
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
            ("params", json.dumps(provenance["params"]) if provenance["params"] else "-"),
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
        click.echo("events:")
        for event in provenance["events"]:
            at = datetime.fromisoformat(event["at"])
            detail = f" {event['detail']}" if event["detail"] else ""
            click.echo(f"  {iso(at)}  {event['event']}{detail}")


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


@cli.command()
@click.argument("job_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the result value itself as JSON.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="Write the result's bytes to this file ('-' for stdout), checking its digest.",
)
def result(job_id: str, as_json: bool, out: Path | None) -> None:
    """Print the result of job ID (it must have finished; see `jobledger wait`)."""
    with _connection() as conn:
        job = _find_job(conn, job_id)
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
    _note(f"wrote {human_size(size)} to {out} (sha256 {digest} verified)")


# -- wait, cancel, delete ------------------------------------------------------------------


@cli.command()
@click.argument("job_id", metavar="ID")
@click.option(
    "--timeout", type=click.FloatRange(min=0), help="Give up after this many seconds (exit 1)."
)
@click.option("--follow", is_flag=True, help="Print interim results as JSON lines as they arrive.")
@click.option("--json", "as_json", is_flag=True, help="Print the final job as a JSON object.")
def wait(job_id: str, timeout: float | None, follow: bool, as_json: bool) -> None:
    """Wait until job ID finishes; exit 1 when it failed or was cancelled."""
    with _connection() as conn:
        job = _find_job(conn, job_id)
        status = _wait(job, timeout=timeout, follow=follow)
        if as_json:
            echo_json(_job_dict(conn, job))
        else:
            ran = ""
            info = job.get_info(refresh=False)
            if info.starting_date and info.ending_date:
                seconds = (info.ending_date - info.starting_date).total_seconds()
                ran = f" (ran {duration(seconds)})"
            click.echo(f"{job.job_id} {style_status(status)}{ran}")
        _report_final(job, status)


@cli.command()
@click.argument("job_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def cancel(job_id: str, as_json: bool) -> None:
    """Ask the service to cancel job ID."""
    with _connection() as conn:
        job = _find_job(conn, job_id)
        before = job.status()
        if before.is_final:
            raise click.ClickException(
                f"job {job.job_id} is already {before.qlmaas_name}; nothing to cancel"
            )
        cancelled = job.cancel()
        status = job.status()
        if as_json:
            echo_json(
                {
                    "id": str(job.job_id),
                    "cancelled": cancelled,
                    "status": status.qlmaas_name,
                    "status_code": status.value,
                }
            )
        elif cancelled:
            click.echo(f"cancelled job {job.job_id} (now {style_status(status)})")
        else:
            raise click.ClickException(
                f"the service did not cancel job {job.job_id}; it is {status.qlmaas_name}"
            )


@cli.command()
@click.argument("job_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the job as a JSON object.")
def delete(job_id: str, as_json: bool) -> None:
    """Delete the service's files of job ID; a stored result stays readable locally.

    A finished result not yet stored locally is downloaded first.
    """
    with _connection() as conn:
        job = _find_job(conn, job_id)
        deleted = job.delete_files()
        fields = _job_dict(conn, job)
        if as_json:
            echo_json(fields)
            return
        if not deleted:
            click.echo(f"job {job.job_id}: its files were already deleted on the service")
            return
        kept = (
            "its result stays readable from the local store"
            if fields["result_stored"]
            else "no result was stored locally"
        )
        click.echo(f"deleted the files of job {job.job_id} on the service; {kept}")


# -- sync, paths, alias ----------------------------------------------------------------------


@contextlib.contextmanager
def _spinning(message: Callable[[], str]) -> Iterator[Progress]:
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


@cli.command()
@click.option(
    "--fetch-results", is_flag=True, help="Also download every finished result not stored yet."
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def sync(fetch_results: bool, as_json: bool) -> None:
    """Bring the registry up to date with the service (one batch status call)."""
    with _connection() as conn:
        start = time.monotonic()
        with _spinning(lambda: f"syncing ({duration(time.monotonic() - start)})"):
            report = conn.sync(fetch_results=fetch_results)
        if as_json:
            echo_json(
                {
                    "new": report.new,
                    "updated": report.updated,
                    "resolved": report.resolved,
                    "fetched": report.fetched,
                    "errors": list(report.errors),
                }
            )
        else:
            click.echo(
                f"{report.new} new, {report.updated} updated, {report.resolved} pending "
                f"submissions resolved, {report.fetched} results downloaded"
            )
        for error in report.errors:
            _note(f"error: {error}")
        if report.errors:
            raise click.ClickException(f"{len(report.errors)} results could not be downloaded")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def paths(as_json: bool) -> None:
    """Show where jobledger keeps the registry, store, config and runtime files."""
    from jobledger.paths import get_paths

    found = get_paths().as_dict()
    if as_json:
        echo_json(found)
        return
    width = max(len(k) for k in found)
    for key, value in found.items():
        click.echo(f"{key:<{width}}  {value}")


@cli.command()
@click.argument("job_id", metavar="ID")
@click.argument("name", required=False)
@click.option("--remove", is_flag=True, help="Remove the job's alias.")
def alias(job_id: str, name: str | None, remove: bool) -> None:
    """Give job ID the alias NAME (importable: from jobledger.jobs import NAME)."""
    if remove == (name is not None):
        raise click.UsageError("give either NAME or --remove")
    with _connection() as conn:
        job = _find_job(conn, job_id)
        old = job.alias
        job.alias = name
        if name is None:
            click.echo(f"removed the alias {old!r} of job {job.job_id}" if old else "no alias")
        else:
            click.echo(f"job {job.job_id} is now importable as {name}")


# -- config ----------------------------------------------------------------------------------


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@click.pass_context
def config(ctx: click.Context, as_json: bool) -> None:
    """Show the resolved configuration and where each value comes from.

    Tokens are never printed: only whether one is set, and from where.
    """
    if ctx.invoked_subcommand is not None:
        return
    from jobledger.config import load_profiles, resolve
    from jobledger.paths import get_paths

    found = get_paths()
    resolved = resolve(paths=found)
    default, profiles = load_profiles(found)
    token_source = resolved.sources.get("token", "")
    if resolved.token is None and resolved.url is None:
        token_source = f"managed by the embedded local service ({found.tokens / 'local'})"
    body: dict[str, Any] = {
        "url": {"value": resolved.url, "source": resolved.sources.get("url")},
        "token": {"set": resolved.token is not None, "source": token_source},
        "offline": {"value": resolved.offline, "source": resolved.sources.get("offline")},
        "verify": {"value": resolved.verify, "source": resolved.sources.get("verify")},
        "profile": {"value": resolved.profile, "source": resolved.sources.get("profile")},
        "config_file": str(found.config_file),
        "profiles": [
            {
                "name": p.name,
                "url": p.url,
                "verify": p.verify,
                "offline": p.offline,
                "token_set": p.token is not None,
                "default": p.name == default,
            }
            for p in sorted(profiles.values(), key=lambda p: p.name)
        ],
    }
    if as_json:
        echo_json(body)
        return
    token_value = f"set (from {token_source})" if resolved.token else f"not set ({token_source})"
    lines = [
        ("url", resolved.url or "embedded local service", body["url"]["source"]),
        ("token", token_value, None),
        ("offline", str(resolved.offline).lower(), body["offline"]["source"]),
        ("verify", str(resolved.verify).lower(), body["verify"]["source"]),
        ("profile", resolved.profile or "-", body["profile"]["source"]),
    ]
    for key, value, source in lines:
        click.echo(f"{key + ':':<9} {value}" + (f" (from {source})" if source else ""))
    exists = "" if found.config_file.exists() else " (not created yet)"
    click.echo(f"\nconfig file: {found.config_file}{exists}")
    if profiles:
        click.echo("profiles:")
        for entry in body["profiles"]:
            mark = "*" if entry["default"] else " "
            token = "token set" if entry["token_set"] else "no token"
            click.echo(f" {mark} {entry['name']}  {entry['url'] or 'embedded'}  ({token})")


@config.command("add-profile")
@click.argument("name")
@click.option("--url", required=True, help="The service's URL, e.g. https://host:8765.")
@click.option("--token-stdin", is_flag=True, help="Read the token from standard input.")
@click.option("--default", "make_default", is_flag=True, help="Make it the default profile.")
@click.option("--no-verify", is_flag=True, help="Do not verify TLS certificates (unsafe).")
def config_add_profile(
    name: str, url: str, token_stdin: bool, make_default: bool, no_verify: bool
) -> None:
    """Create or replace the profile NAME; the token goes to a private token file."""
    from jobledger.config import save_profile

    token = None
    if token_stdin:
        token = sys.stdin.read().strip()
        if not token:
            raise click.UsageError("--token-stdin was given but standard input is empty")
    path = save_profile(
        name, url=url, token=token, verify=not no_verify, make_default=make_default
    )
    stored = " (token stored in its own file, mode 0600)" if token else ""
    click.echo(f"saved profile {name!r} for {url} in {path}{stored}")


@config.command("use")
@click.argument("name")
def config_use(name: str) -> None:
    """Make the profile NAME the default."""
    from jobledger.config import set_default_profile

    set_default_profile(name)
    click.echo(f"default profile is now {name!r}")


# -- cache -----------------------------------------------------------------------------------


def _cache_info(as_json: bool) -> None:
    with _connection() as conn:
        stats = conn.store.stats()
        referenced = conn.registry.referenced_digests()
        stored = set(conn.store.digests())
        body = {
            "store": str(conn.store.path),
            "registry": str(conn.registry.path),
            "count": stats.count,
            "size": stats.size,
            "jobs": conn.registry.count(),
            "unreferenced": len(stored - referenced),
        }
    if as_json:
        echo_json(body)
        return
    click.echo(f"store:    {body['store']}")
    click.echo(f"blobs:    {body['count']} ({human_size(stats.size)})")
    click.echo(f"jobs:     {body['jobs']} recorded in {body['registry']}")
    if body["unreferenced"]:
        click.echo(
            f"unreferenced blobs: {body['unreferenced']} "
            "(remove with `jobledger cache prune --unreferenced`)"
        )


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object (as `cache info`).")
@click.pass_context
def cache(ctx: click.Context, as_json: bool) -> None:
    """The local store of batches and results (same as `cache info` alone)."""
    if ctx.invoked_subcommand is None:
        _cache_info(as_json)


@cache.command("info")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def cache_info(as_json: bool) -> None:
    """Show the store's size and how many blobs it holds."""
    _cache_info(as_json)


def _owners(conn: Connection) -> dict[str, list[tuple[str, str, JobStatus]]]:
    """Every digest the registry refers to: ``[(job name, part, status)]``."""
    owners: dict[str, list[tuple[str, str, JobStatus]]] = {}
    rows = conn.registry.read(
        "SELECT pk, job_id, status, batch_sha256, result_sha256, extras FROM jobs"
    )
    for row in rows:
        name = row["job_id"] or f"<pending #{row['pk']}>"
        status = JobStatus(row["status"])
        parts = [("batch", row["batch_sha256"]), ("result", row["result_sha256"])]
        parts += [(key, digest) for key, digest in json.loads(row["extras"] or "{}").items()]
        for part, digest in parts:
            if digest:
                owners.setdefault(digest, []).append((name, part, status))
    return owners


@cache.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def cache_verify(as_json: bool) -> None:
    """Check every stored blob against its digest; exit 1 if any is corrupt.

    Corrupt blobs that the service can send again are dropped (they are downloaded
    again on the next read); those of jobs whose service files were deleted are kept.
    """
    with _connection() as conn:
        checked = sum(1 for _ in conn.store.digests())
        with _spinning(lambda: f"verifying {checked} blobs"):
            bad = conn.store.verify()
        owners = _owners(conn) if bad else {}
        corrupt: list[dict[str, Any]] = []
        for digest in bad:
            refs = owners.get(digest, [])
            # Without the service's copy, the damaged bytes are all there is: keep them.
            keep = any(status is JobStatus.DELETED for _, _, status in refs)
            if not keep:
                conn.store.delete(digest)
            corrupt.append(
                {
                    "sha256": digest,
                    "jobs": [{"id": name, "part": part} for name, part, _ in refs],
                    "dropped": not keep,
                }
            )
    if as_json:
        echo_json({"checked": checked, "ok": not corrupt, "corrupt": corrupt})
    elif not corrupt:
        click.echo(f"checked {checked} blobs: all match their digests")
    else:
        for entry in corrupt:
            jobs = ", ".join(f"{j['part']} of {j['id']}" for j in entry["jobs"]) or "no job"
            fate = (
                "dropped; it is downloaded again on next read"
                if entry["dropped"]
                else "kept: the service no longer has a copy"
            )
            click.echo(f"corrupt: {entry['sha256']} ({jobs}) {fate}")
    if corrupt:
        ids = sorted({j["id"] for entry in corrupt for j in entry["jobs"]})
        raise click.ClickException(
            f"{len(corrupt)} of {checked} stored blobs are corrupt"
            + (f" (jobs: {', '.join(ids)})" if ids else "")
        )


def _old_results(conn: Connection, days: float) -> tuple[set[str], list[str]]:
    """Result digests of done jobs that ended more than *days* ago and whose result
    the service confirms it still has; returns ``(digests, job ids)``."""
    cutoff = datetime.now(UTC) - timedelta(days=days)
    service = conn.service_id
    candidates = [
        r
        for r in conn.registry.query(limit=None, statuses=[JobStatus.DONE], service=service)
        if r.job_id and r.result and r.ended_at and r.ended_at < cutoff
    ]
    if not candidates:
        return set(), []
    wanted = [r.job_id for r in candidates if r.job_id]
    found, _missing = conn.call(lambda t: t.statuses(wanted))
    conn.registry.apply_infos(service, found)
    confirmed = {i["id"] for i in found if i.get("status") == JobStatus.DONE.value}
    chosen = [r for r in candidates if r.job_id in confirmed]
    digests = {r.result.sha256 for r in chosen if r.result}
    # A digest shared with anything else (a batch, a job the service deleted) stays.
    for digest, refs in _owners(conn).items():
        if digest in digests and any(
            part != "result" or name not in confirmed for name, part, _ in refs
        ):
            digests.discard(digest)
    ids = [r.job_id for r in chosen if r.result and r.result.sha256 in digests and r.job_id]
    return {d for d in digests if conn.store.has(d)}, ids


def _blob_size(store: Store, digest: str) -> int:
    path = store.path_of(digest)
    if path is not None:
        return path.stat().st_size if path.exists() else 0
    try:
        return len(store.get_bytes(digest))  # small blobs live inline in the database
    except (KeyError, JobledgerError):
        return 0


@cache.command("prune")
@click.option("--unreferenced", is_flag=True, help="Remove blobs no recorded job refers to.")
@click.option(
    "--older-than",
    "days",
    type=click.FloatRange(min=0),
    metavar="DAYS",
    help="Remove results of jobs done more than DAYS ago that the service still has.",
)
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def cache_prune(
    unreferenced: bool, days: float | None, dry_run: bool, yes: bool, as_json: bool
) -> None:
    """Free space in the local store, safely.

    Batches are never removed, nor results the service no longer has (deleted
    files): only what can be downloaded again, or what nothing refers to.
    """
    if unreferenced == (days is not None):
        raise click.UsageError("give exactly one of --unreferenced or --older-than DAYS")
    with _connection() as conn:
        jobs: list[str] = []
        if unreferenced:
            digests = set(conn.store.digests()) - conn.registry.referenced_digests()
        else:
            assert days is not None
            digests, jobs = _old_results(conn, days)
        total = sum(_blob_size(conn.store, d) for d in digests)
        if digests and not dry_run and not yes:
            click.confirm(
                f"remove {len(digests)} blobs ({human_size(total)}) from {conn.store.path}?",
                abort=True,
                err=True,
            )
        removed = []
        if not dry_run:
            removed = [d for d in sorted(digests) if conn.store.delete(d)]
    body = {
        "dry_run": dry_run,
        "count": len(digests) if dry_run else len(removed),
        "bytes": total,
        "sha256": sorted(digests) if dry_run else removed,
        "jobs": jobs,
    }
    if as_json:
        echo_json(body)
        return
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {body['count']} blobs ({human_size(total)})")
    if jobs:
        click.echo(f"results of: {', '.join(jobs)} (downloaded again on next read)")


# -- demo ------------------------------------------------------------------------------------


@cli.command()
@click.option("--keep", is_flag=True, help="Keep the demo's temporary folder and say where.")
def demo(keep: bool) -> None:
    """A guided tour on the embedded local service, in a temporary folder (< 30 s)."""
    from jobledger.demo import run_demo

    run_demo(keep=keep)
