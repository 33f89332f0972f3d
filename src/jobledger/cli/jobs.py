"""The ``jobledger`` commands that act on one job: submit, wait, cancel, delete, alias.

``submit`` reads the batch (JSON by default, raw bytes or a NumPy ``.npy`` file with
``--media-type``), sends it to a backend and prints the new job's id on stdout before
any waiting, so scripts can capture it. ``wait`` exits 1 when the job failed or was
cancelled; ``cancel`` and ``delete`` ask the service, and ``alias`` names a job so it
can be imported with ``from jobledger.jobs import NAME``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import click

from jobledger.cli.common import find_job, job_dict, note, open_connection, report_final, wait_for
from jobledger.cli.output import duration, echo_json, style_status
from jobledger.errors import JobledgerError, StorageFullError

__all__ = ["alias", "cancel", "delete", "submit", "wait"]

# Below this much free space, a failure to write is taken for a full disk.
_NEARLY_FULL = 1 << 20

_MEDIA_NAMES = {
    "json": "application/json",
    "bytes": "application/octet-stream",
    "npy": "application/x-npy",
}

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


def _piped_stdin() -> BinaryIO | None:
    """Standard input when it is a pipe or a file with something to read (``cat
    batch.json | jobledger submit echo``); ``None`` for a terminal, ``/dev/null``, or
    a pipe with nothing in it yet (then a note says to pass ``-``)."""
    import select
    import stat

    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (OSError, ValueError):  # no standard input at all
        return None
    if stat.S_ISREG(mode):
        return sys.stdin.buffer
    if not stat.S_ISFIFO(mode):
        return None
    ready, _, _ = select.select([sys.stdin], [], [], 0.2)
    if ready:
        return sys.stdin.buffer
    note(
        "note: standard input is a pipe with nothing in it yet, so the batch is null; "
        "pass `-` as FILE to wait for it"
    )
    return None


def _read_batch(file: BinaryIO | None, media_type: str | None) -> Any:
    if file is None:
        file = _piped_stdin()
    if file is None:
        return None
    data = file.read()
    if not data and file is sys.stdin.buffer:
        return None  # an empty pipe (`< /dev/null`, `true |`): no batch, as without FILE
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


@contextlib.contextmanager
def _full_disk_is_one_line(data: Path) -> Iterator[None]:
    """Turn a write that failed on a full disk, in the store or the registry, into
    one clear line. The batch is stored, and the job recorded in one transaction,
    before anything is sent, so such a failure leaves nothing recorded."""
    try:
        yield
    except StorageFullError as exc:
        raise click.ClickException(str(exc)) from None
    except (JobledgerError, OSError) as exc:
        if not _nearly_full(data):
            raise
        raise click.ClickException(
            f"no space left on device while storing the batch in {data}; free space and "
            "retry — nothing was recorded"
        ) from exc


def _nearly_full(folder: Path) -> bool:
    try:
        info = os.statvfs(folder)
    except (OSError, AttributeError):  # AttributeError: no statvfs on Windows
        return False
    return info.f_bavail * info.f_frsize < _NEARLY_FULL


@click.command()
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

    Without FILE the batch is read from standard input when something is piped in,
    else it is null. The job id is printed on stdout, so
    scripts can capture it: ID=$(jobledger submit echo batch.json).
    """
    batch = _read_batch(file, media_type)
    with open_connection() as conn:
        with _full_disk_is_one_line(conn.paths.data):
            job = conn.submit(
                batch,
                backend,
                params=params,
                tags=list(tags),
                alias=alias,
                session_id=session_id,
            )
        named = f" (alias {job.alias})" if job.alias else ""
        note(f"submitted job {job.job_id}{named} to backend {backend!r}")
        if not as_json:
            click.echo(str(job.job_id))
            sys.stdout.flush()  # a script reading the id need not wait for the job
        status = wait_for(job, timeout=None) if wait_ else job.status()
        if as_json:
            echo_json(job_dict(conn, job))
        if wait_:
            report_final(job, status)
            note(f"job {job.job_id} {status.qlmaas_name}")


# -- wait, cancel, delete ------------------------------------------------------------------


@click.command()
@click.argument("job_id", metavar="ID")
@click.option(
    "--timeout", type=click.FloatRange(min=0), help="Give up after this many seconds (exit 1)."
)
@click.option("--follow", is_flag=True, help="Print interim results as JSON lines as they arrive.")
@click.option("--json", "as_json", is_flag=True, help="Print the final job as a JSON object.")
def wait(job_id: str, timeout: float | None, follow: bool, as_json: bool) -> None:
    """Wait until job ID finishes; exit 1 when it failed or was cancelled."""
    with open_connection() as conn:
        job = find_job(conn, job_id)
        status = wait_for(job, timeout=timeout, follow=follow)
        if as_json:
            echo_json(job_dict(conn, job))
        else:
            ran = ""
            info = job.get_info(refresh=False)
            if info.starting_date and info.ending_date:
                seconds = (info.ending_date - info.starting_date).total_seconds()
                ran = f" (ran {duration(seconds)})"
            # With --follow, stdout carries JSON lines only: the summary is a message.
            click.echo(f"{job.job_id} {style_status(status)}{ran}", err=follow)
        report_final(job, status)


@click.command()
@click.argument("job_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def cancel(job_id: str, as_json: bool) -> None:
    """Ask the service to cancel job ID."""
    with open_connection() as conn:
        job = find_job(conn, job_id)
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


@click.command()
@click.argument("job_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the job as a JSON object.")
def delete(job_id: str, as_json: bool) -> None:
    """Delete the service's files of job ID; a stored result stays readable locally.

    A finished result not yet stored locally is downloaded first.
    """
    with open_connection() as conn:
        job = find_job(conn, job_id)
        deleted = job.delete_files()
        fields = job_dict(conn, job)
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


@click.command()
@click.argument("job_id", metavar="ID")
@click.argument("name", required=False)
@click.option("--remove", is_flag=True, help="Remove the job's alias.")
def alias(job_id: str, name: str | None, remove: bool) -> None:
    """Give job ID the alias NAME (importable: from jobledger.jobs import NAME)."""
    if remove == (name is not None):
        raise click.UsageError("give either NAME or --remove")
    with open_connection() as conn:
        job = find_job(conn, job_id)
        old = job.alias
        job.alias = name
        if name is None:
            click.echo(f"removed the alias {old!r} of job {job.job_id}" if old else "no alias")
        else:
            click.echo(f"job {job.job_id} is now importable as {name}")
