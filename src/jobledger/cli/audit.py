"""The audit commands: ``audit verify``, ``export``, ``import`` and ``provenance``.

``audit verify`` re-checks the store's blobs, the event log's hash chain and every
job's provenance reference, offline and without changing anything; it exits 1 with one
line per failure. ``export`` writes jobs as an RO-Crate (a folder or a ``.zip``),
``import`` records such a bundle after checking every file, and ``provenance`` says
what produced a job's result and how it differs from another job's. The work is done
by :mod:`jobledger.audit`; this module only parses options and prints.
"""

from __future__ import annotations

import click

from jobledger.cli.output import Progress, echo_json, human_size

__all__ = ["audit"]


@click.group()
def audit() -> None:
    """Audits of the local ledger (see also `export`, `import` and `provenance`)."""


@audit.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def audit_verify(as_json: bool) -> None:
    """Check every stored blob, the event hash chain and every provenance reference.

    Runs offline and changes nothing. Exit 0 when everything holds; 1 with one line
    per failure, naming the job.
    """
    from jobledger.audit import verify

    progress = Progress()
    try:
        report = verify(progress=lambda done, total: progress.bar(done, total, "verifying "))
    finally:
        progress.clear()
    if as_json:
        echo_json(report.as_dict())
    else:
        for finding in report.failures:
            click.echo(finding.line())
        for finding in report.notes:
            click.echo(f"note: {finding.line()}", err=True)
        if report.ok:
            click.echo(
                f"checked {report.jobs} jobs, {report.blobs} blobs "
                f"({human_size(report.bytes)}) and {report.events} events: all hold"
            )
    if not report.ok:
        raise click.ClickException(
            f"{len(report.failures)} audit check(s) failed in {report.registry}"
        )
