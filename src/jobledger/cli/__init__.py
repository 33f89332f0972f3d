"""The ``jobledger`` command line (click): the root group, error handling, ``main()``.

Every command works through :func:`jobledger.connect` (so ``JOBLEDGER_URL``,
``JOBLEDGER_TOKEN``, ``JOBLEDGER_OFFLINE`` and the config file apply) and looks jobs
up with :meth:`Connection.job`, which resolves ids and aliases locally first. Errors
become one line on stderr and exit code 1 (usage errors exit 2); ``--debug`` shows
the traceback instead. Commands that print data take ``--json``, whose field names
are documented in ``docs/cli.md``. The commands live by topic: :mod:`.jobs` (submit,
wait, cancel, delete, alias), :mod:`.listing` (ls, sync), :mod:`.show` (show,
result), :mod:`.config` (config, paths), :mod:`.cache` (cache info|verify|prune),
:mod:`.audit` (audit verify, export, import, provenance) and
:mod:`jobledger.service.commands` (serve, service, token); :mod:`.common` holds their
shared helpers and :mod:`.output` the tables, colours and progress displays. Nothing
heavy is imported at import time: the registry, store and network stack load inside
the commands that need them.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from jobledger import __version__
from jobledger.cli import audit, cache, config, doctor, jobs, listing, show
from jobledger.errors import JobledgerError
from jobledger.service.commands import register as register_service_commands

__all__ = ["cli", "main"]


class _Group(click.Group):
    """The root group: turns jobledger errors into one line on stderr and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise
        except KeyboardInterrupt:
            # Ctrl-C is the user's choice, not a failure: no "Aborted!", the shell's 130.
            raise SystemExit(130) from None
        except (JobledgerError, TypeError, ValueError, OSError) as exc:
            if ctx.params.get("debug") or os.environ.get("JOBLEDGER_DEBUG"):
                raise
            raise click.ClickException(_one_line(exc)) from None


def _one_line(exc: BaseException) -> str:
    from jobledger.client.display import short

    text = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
    if isinstance(exc, OSError) and exc.filename and not text:
        text = f"{exc.strerror}: {exc.filename}"
    # A service's failure message can be huge: the whole of it stays in the record.
    where = "`jobledger show ID --json` or `jobledger.jobs.get(ID).error_message()`"
    return short(text, 500, where=where) or type(exc).__name__


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="jobledger")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
def cli(debug: bool) -> None:
    """jobledger: track jobs on remote job services, with a verified local cache."""


@click.command()
@click.option("--keep", is_flag=True, help="Keep the demo's temporary folder and say where.")
def demo(keep: bool) -> None:
    """A guided tour on the embedded local service, in a temporary folder (< 30 s)."""
    from jobledger.demo import run_demo

    run_demo(keep=keep)


register_service_commands(cli)
for _command in (
    jobs.submit,
    listing.ls,
    show.show,
    show.result,
    jobs.wait,
    jobs.cancel,
    jobs.delete,
    listing.sync,
    config.paths,
    jobs.alias,
    config.config,
    cache.cache,
    doctor.doctor,
    audit.audit,
    audit.export,
    audit.import_,
    audit.provenance,
    demo,
):
    cli.add_command(_command)


def main() -> None:
    """Entry point of the ``jobledger`` console script."""
    try:
        cli(prog_name="jobledger")
    except BrokenPipeError:
        # The reader went away (``jobledger ls | head``): stop quietly, like git does.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
