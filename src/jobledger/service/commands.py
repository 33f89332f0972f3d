"""The service's commands: ``serve``, ``service start|stop|status``, ``token create``.

:func:`register` adds them to the ``jobledger`` click group. Heavy imports (Starlette,
uvicorn) happen inside ``serve`` only, so ``jobledger --help`` and the client's
commands stay fast and work without the ``server`` extra. ``token create`` prints the
token alone on stdout, so scripts can capture it; everything else goes to stderr.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import click

from jobledger.errors import ConfigError

__all__ = ["register"]

_DEFAULT_MAX_BODY = 256 * 1024 * 1024


def _default_data() -> Path:
    from jobledger.paths import get_paths

    return get_paths().local_service_data


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port",
    default=8765,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to bind; 0 picks a free port.",
)
@click.option(
    "--data",
    "data",
    type=click.Path(file_okay=False, path_type=Path),
    help="The service's data folder (default: the embedded local service's).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes (default: the number of CPUs).",
)
@click.option(
    "--max-body",
    type=click.IntRange(min=1),
    default=_DEFAULT_MAX_BODY,
    show_default=True,
    help="Largest accepted request body, in bytes.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    envvar="JOBLEDGER_MAX_CONNECTIONS",
    help="Open connections at most (lowered to fit the descriptor limit).",
)
@click.option(
    "--request-timeout",
    type=click.FloatRange(min=0.1),
    default=20.0,
    show_default=True,
    envvar="JOBLEDGER_REQUEST_TIMEOUT",
    help="Seconds a request head may take to arrive, and a request body may stall.",
)
@click.option(
    "--keep-alive",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    envvar="JOBLEDGER_KEEP_ALIVE",
    help="Seconds an idle keep-alive connection stays open.",
)
@click.option(
    "--job-timeout",
    multiple=True,
    metavar="[BACKEND=]SECONDS",
    envvar="JOBLEDGER_JOB_TIMEOUT",
    help="Wall-time limit of a job (0: none, the default); repeat with BACKEND=SECONDS "
    "for one backend.",
)
@click.option(
    "--job-memory",
    multiple=True,
    metavar="[BACKEND=]MIB",
    envvar="JOBLEDGER_JOB_MEMORY",
    help="Address-space limit of a job in MiB (0: none, the default); repeat with "
    "BACKEND=MIB for one backend.",
)
@click.option(
    "--executor",
    type=click.Choice(["process", "dask"]),
    default="process",
    show_default=True,
    envvar="JOBLEDGER_EXECUTOR",
    help="Where jobs run: the local pool of worker processes, or a Dask cluster "
    "(needs jobledger[dask]).",
)
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    envvar="JOBLEDGER_DASK_SCHEDULER",
    help="The Dask scheduler to run jobs on (e.g. tcp://10.0.0.5:8786); without it, "
    "--executor dask starts a LocalCluster on this machine.",
)
@click.option(
    "--dask-workers",
    type=click.IntRange(min=1),
    default=None,
    envvar="JOBLEDGER_DASK_WORKERS",
    help="Worker processes of the LocalCluster that --executor dask starts "
    "(default: --workers, else the number of CPUs).",
)
@click.option("--runtime-file", type=click.Path(dir_okay=False, path_type=Path), hidden=True)
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path), hidden=True)
def serve(
    host: str,
    port: int,
    data: Path | None,
    workers: int | None,
    max_body: int,
    max_connections: int,
    request_timeout: float,
    keep_alive: int,
    job_timeout: tuple[str, ...],
    job_memory: tuple[str, ...],
    executor: str,
    scheduler: str | None,
    dask_workers: int | None,
    runtime_file: Path | None,
    token_file: Path | None,
) -> None:
    """Run the reference job service in the foreground (Ctrl-C stops it)."""
    from jobledger.service.limits import JobLimits, parse_limit_options

    try:
        seconds, backend_seconds = parse_limit_options(job_timeout, "--job-timeout")
        memory, backend_memory = parse_limit_options(job_memory, "--job-memory")
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    limits = JobLimits(
        seconds,
        int(memory),
        backend_seconds,
        {name: int(mib) for name, mib in backend_memory.items()},
    )
    missing = [m for m in ("starlette", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise click.ClickException(
            f"{', '.join(missing)} not installed: install jobledger[server] to serve"
        )
    if executor != "dask" and (scheduler or dask_workers):
        raise click.UsageError("--scheduler and --dask-workers need --executor dask")
    if executor == "dask" and importlib.util.find_spec("distributed") is None:
        raise click.ClickException(
            "distributed not installed: install jobledger[dask] to use --executor dask"
        )
    size = workers or os.cpu_count() or 1
    if executor == "dask":
        size = dask_workers or size
    from jobledger.service.server import serve as run

    try:
        run(
            host=host,
            port=port,
            data_dir=(data or _default_data()).absolute(),
            workers=size,
            max_body=max_body,
            runtime_file=runtime_file,
            token_file=token_file,
            max_connections=max_connections,
            request_timeout=request_timeout,
            keep_alive=keep_alive,
            limits=limits,
            executor=executor,
            scheduler=scheduler,
        )
    except KeyboardInterrupt:
        # Ctrl-C is how a foreground service is meant to stop: uvicorn has shut down
        # gracefully and re-raised the signal; that is a normal end, not a failure.
        return
    except OSError as exc:
        raise click.ClickException(f"cannot serve on {host}:{port}: {exc}") from None


@click.group()
def service() -> None:
    """The embedded local service (started on demand by the client)."""


@service.command("start")
def service_start() -> None:
    """Start the local service if it is not running; print its URL."""
    from jobledger.service.local import ensure_running

    try:
        found = ensure_running()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(found.url)
    click.echo(f"pid {found.pid}, data {found.data}", err=True)


@service.command("stop")
@click.option("--force", is_flag=True, help="Stop even when jobs are queued or running.")
def service_stop(force: bool) -> None:
    """Stop the local service and its workers (asks first when jobs would be ended)."""
    import sys

    from jobledger.service.local import find_running, stop

    running = find_running()
    busy = _unfinished_jobs(running.url, running.token) if running is not None else 0
    if busy and not force:
        what = f"{busy} job{'s are' if busy != 1 else ' is'} queued or running"
        if not sys.stdin.isatty():
            raise click.ClickException(
                f"{what} on the local service; stopping it ends them (they are marked "
                "failed): wait for them (`jobledger ls --status running`) or stop it with "
                "`jobledger service stop --force`"
            )
        if not click.confirm(f"{what}; stopping the service ends them. Stop it?", err=True):
            click.echo("left running", err=True)
            return  # the user's answer, not a failure
    click.echo("stopped" if stop() else "not running", err=True)


def _unfinished_jobs(url: str, token: str) -> int:
    """How many jobs of the local service are queued or running (0 if it cannot say)."""
    import json
    import urllib.error
    import urllib.request

    query = "status=QUEUED&status=RUNNING&limit=1000"
    request = urllib.request.Request(
        f"{url}/v1/jobs?{query}", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return len(json.loads(answer.read()).get("jobs", []))
    except (OSError, ValueError, urllib.error.URLError):
        return 0


@service.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def service_status(as_json: bool) -> None:
    """Say whether the local service runs, and where."""
    from jobledger.service.local import find_running

    found = find_running()
    if as_json:
        body: dict[str, object] = {"running": found is not None}
        if found is not None:
            body.update(
                url=found.url,
                pid=found.pid,
                port=found.port,
                service_id=found.service_id,
                data=str(found.data),
            )
        click.echo(json.dumps(body))
    elif found is None:
        click.echo("not running")
    else:
        click.echo(f"running at {found.url} (pid {found.pid}, data {found.data})")


@click.group()
def token() -> None:
    """Tokens of a service (stored on the service side as hashes only)."""


@token.command("create")
@click.argument("name")
@click.option(
    "--data",
    "data",
    type=click.Path(file_okay=False, path_type=Path),
    help="The service's data folder (default: the embedded local service's).",
)
def token_create(name: str, data: Path | None) -> None:
    """Create a token for user NAME; print the token alone on stdout."""
    from jobledger.service.auth import create_token

    folder = (data or _default_data()).absolute()
    try:
        secret = create_token(folder, name)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(secret)
    click.echo(f"token for user {name!r} created for the service in {folder}", err=True)


def register(cli: click.Group) -> None:
    """Add the service's commands to the ``jobledger`` command group."""
    cli.add_command(serve)
    cli.add_command(service)
    cli.add_command(token)
