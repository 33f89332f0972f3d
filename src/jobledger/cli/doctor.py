"""The ``jobledger doctor`` command: check the registry, restore it, re-learn from the service.

Without options it only looks: whether the registry is missing, empty or damaged, its
schema, and the backups there are; it changes nothing. ``--restore`` puts the newest
sound backup (or the one named) in place, keeping the damaged file aside, then re-learns
from the service what it still knows and says what could not be recovered. ``--reset``
starts a new registry, keeping the old file aside: only when the user says so.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from jobledger.cli.output import echo_json

__all__ = ["doctor"]


def _examine(registry: Path) -> dict[str, Any]:
    from jobledger.registry.backup import backups, integrity_problems, stamp_path

    exists = registry.exists()
    size = registry.stat().st_size if exists else 0
    state = "missing" if not exists else ("empty" if size == 0 else "present")
    problems = integrity_problems(registry) if state == "present" else []
    found = backups(registry)
    return {
        "registry": str(registry),
        "state": state if not problems else "damaged",
        "existed_before": stamp_path(registry).exists(),
        "problems": problems,
        "backups": [str(p) for p in found],
        "newest_backup_at": (
            datetime.fromtimestamp(found[0].stat().st_mtime, UTC).isoformat() if found else None
        ),
    }


@click.command()
@click.option(
    "--restore",
    "restore_from",
    is_flag=False,
    flag_value="newest",
    default=None,
    metavar="[BACKUP]",
    help="Restore the newest sound backup (or the file given).",
)
@click.option(
    "--reset", is_flag=True, help="Start a new, empty registry; the old file is kept aside."
)
@click.option("--no-sync", is_flag=True, help="After --restore, do not ask the service.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def doctor(restore_from: str | None, reset: bool, no_sync: bool, as_json: bool) -> None:
    """Check the registry; with --restore or --reset, repair it."""
    from jobledger.paths import get_paths
    from jobledger.registry.backup import backups, integrity_problems, restore

    registry = get_paths().registry
    report = _examine(registry)
    healthy = report["state"] == "present" or (
        report["state"] == "missing" and not report["existed_before"]
    )
    if restore_from and reset:
        raise click.UsageError("choose one of --restore and --reset")
    actions: list[str] = []
    if restore_from:
        candidates = (
            backups(registry) if restore_from == "newest" else [Path(restore_from).expanduser()]
        )
        chosen = next((b for b in candidates if not integrity_problems(b)), None)
        if chosen is None:
            raise click.ClickException(
                "no sound backup to restore; `jobledger doctor --reset` starts a new registry "
                "and `jobledger sync` re-learns the jobs the service still knows"
            )
        aside = restore(registry, chosen)
        actions.append(f"restored {chosen}")
        if aside is not None:
            actions.append(f"kept the replaced file as {aside}")
        actions.extend(_relearn(no_sync, chosen))
    elif reset:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        for suffix in ("", "-wal", "-shm"):
            current = registry.with_name(registry.name + suffix)
            if current.exists():
                os.replace(current, current.with_name(f"{current.name}.reset-{stamp}"))
                actions.append(f"kept {current.name} aside as {current.name}.reset-{stamp}")
        registry.with_name(registry.name + ".stamp").unlink(missing_ok=True)
        actions.append(
            "a new registry is created by the next command; `jobledger sync` "
            "re-learns the jobs the service still knows"
        )
    if actions:
        report = {**_examine(registry), "actions": actions}
        healthy = True
    if as_json:
        echo_json({**report, "healthy": healthy})
    else:
        _print(report, healthy)
    if not healthy:
        raise SystemExit(1)


def _relearn(no_sync: bool, backup: Path) -> list[str]:
    taken = datetime.fromtimestamp(backup.stat().st_mtime, UTC).isoformat(timespec="seconds")
    lost = (
        f"what was recorded after {taken} and that the service cannot tell (aliases, tags, "
        "provenance of later submissions, submissions it never received) could not be recovered"
    )
    if no_sync:
        return [lost, "the service was not asked (--no-sync): run `jobledger sync` later"]
    import jobledger
    from jobledger.errors import JobledgerError

    try:
        with jobledger.connect() as conn:
            report = conn.sync()
    except JobledgerError as exc:
        return [lost, f"the service could not be asked ({exc}); run `jobledger sync` later"]
    return [
        f"re-learnt from the service: {report.new} job(s) recorded, "
        f"{report.updated} status(es) refreshed, {report.resolved} pending resolved",
        lost,
    ]


def _print(report: dict[str, Any], healthy: bool) -> None:
    click.echo(f"registry: {report['registry']} ({report['state']})")
    for problem in report["problems"][:10]:
        click.echo(f"  problem: {problem}")
    if report["state"] in ("missing", "empty") and report["existed_before"]:
        click.echo("  it held jobs before: restore it with `jobledger doctor --restore`")
    click.echo(
        f"backups: {len(report['backups'])}"
        + (f", newest at {report['newest_backup_at']}" if report["backups"] else "")
    )
    for action in report.get("actions", []):
        click.echo(f"- {action}")
    if not healthy:
        click.echo(
            "run `jobledger doctor --restore` to put the newest sound backup in place", err=True
        )
