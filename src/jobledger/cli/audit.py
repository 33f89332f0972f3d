"""The audit commands: ``audit verify``, ``export``, ``import`` and ``provenance``.

``audit verify`` re-checks the store's blobs, the event log's hash chain and every
job's provenance reference, offline and without changing anything; it exits 1 with one
line per failure. ``export`` writes jobs as an RO-Crate (a folder or a ``.zip``),
``import`` records such a bundle after checking every file, and ``provenance`` says
what produced a job's result and how it differs from another job's. The work is done
by :mod:`jobledger.audit`; this module only parses options and prints.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from jobledger.cli.output import Progress, echo_json, human_size

__all__ = ["audit", "export", "import_", "provenance"]


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


@click.command("export")
@click.argument("names", nargs=-1, metavar="[ID|ALIAS]...")
@click.option("--tag", "tags", multiple=True, help="Add the jobs with this tag (repeatable).")
@click.option("--all", "everything", is_flag=True, help="Export every recorded job.")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(path_type=Path),
    help="The bundle to write: a folder, or a .zip.",
)
@click.option("--license", "license_url", metavar="URL", help="The bundle's license (a URL).")
def export(
    names: tuple[str, ...],
    tags: tuple[str, ...],
    everything: bool,
    out: Path,
    license_url: str | None,
) -> None:
    """Write jobs, their bytes, events and provenance as an RO-Crate bundle."""
    from jobledger.audit import export as export_bundle

    if not (names or tags or everything):
        raise click.UsageError("name the jobs to export (ID or ALIAS), give --tag T, or --all")
    if everything and (names or tags):
        raise click.UsageError("--all exports every job: give it alone")
    report = export_bundle(
        out, jobs=list(names) or None, tags=list(tags) or None, license=license_url
    )
    if (names or tags) and not report.jobs:
        click.echo("note: no job matched; the bundle is empty", err=True)
    click.echo(
        f"exported {len(report.jobs)} jobs ({report.files} files, "
        f"{human_size(report.bytes)}) to {report.path}"
    )
    for name in report.skipped:
        click.echo(f"note: {name} was left out: the service never acknowledged it", err=True)


@click.command("import")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--rename-aliases",
    is_flag=True,
    help="Give an imported job whose alias is taken here a suffixed alias instead.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def import_(path: Path, rename_aliases: bool, as_json: bool) -> None:
    """Record the jobs of an exported bundle, after checking every file's digest."""
    from jobledger.audit import import_bundle

    report = import_bundle(path, rename_aliases=rename_aliases)
    if as_json:
        echo_json(report.as_dict())
        return
    click.echo(
        f"imported {len(report.imported)} jobs from {path}"
        + (f"; {len(report.present)} were already recorded" if report.present else "")
    )
    for old, new in report.renamed:
        click.echo(f"alias {old!r} is taken here: the imported job is {new!r}")


@click.command("provenance")
@click.argument("name", metavar="ID|ALIAS")
@click.option("--diff", "other", metavar="OTHER", help="Compare with another job.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def provenance(name: str, other: str | None, as_json: bool) -> None:
    """What produced a job's result: code, inputs, params, environment, backend."""
    from jobledger.audit import compare, explain

    if other is not None:
        differences = compare(name, other)
        if as_json:
            echo_json({"a": name, "b": other, "differences": [vars(d) for d in differences]})
            return
        if not differences:
            click.echo(f"{name} and {other} were produced alike")
        for diff in differences:
            click.echo(f"{diff.field}: {_text(diff.a)} -> {_text(diff.b)}")
        return
    lineage = explain(name)
    if as_json:
        echo_json(lineage)
        return
    for line in _lines(lineage):
        click.echo(line)


def _text(value: Any) -> str:
    return "-" if value is None else json.dumps(value, ensure_ascii=False, default=str)


def _lines(lineage: dict[str, Any], prefix: str = "") -> list[str]:
    lines = []
    for key, value in lineage.items():
        if isinstance(value, dict) and value:
            lines.append(f"{prefix}{key}:")
            lines.extend(_lines(value, prefix + "  "))
        else:
            lines.append(f"{prefix}{key}: {_text(value) if not isinstance(value, str) else value}")
    return lines
