"""The ``jobledger`` command line (click)."""

from __future__ import annotations

import click

from jobledger.service.commands import register as register_service_commands


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="jobledger")
def cli() -> None:
    """jobledger: track jobs on remote job services, with a verified local cache."""


register_service_commands(cli)


def main() -> None:
    """Entry point of the ``jobledger`` console script."""
    cli()
