"""The ``jobledger cache`` commands: info, verify and prune of the local store.

``cache info`` (or ``cache`` alone) reports the store's size; ``cache verify`` checks
every blob against its digest and drops corrupt ones the service can send again;
``cache repair`` rebuilds a damaged index from the blob files;
``cache prune`` frees space without ever removing a batch, or a result the service
no longer has: only unreferenced blobs, or old results the service confirms it keeps.
A blob stored less than ``PRUNE_MIN_AGE`` seconds ago is never pruned as unreferenced:
a submission stores its batch before it records the job that refers to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from jobledger.cli.common import open_connection, spinning
from jobledger.cli.output import duration, echo_json, human_size
from jobledger.errors import JobledgerError
from jobledger.status import JobStatus

if TYPE_CHECKING:
    from jobledger.client.connection import Connection
    from jobledger.store import Store

__all__ = ["PRUNE_MIN_AGE", "cache", "remove_unreferenced", "unreferenced_candidates"]

PRUNE_MIN_AGE = 3600.0


# -- cache -----------------------------------------------------------------------------------


def _cache_info(as_json: bool) -> None:
    with open_connection() as conn:
        partial = conn.store.partial_files()
        partial_size = sum(p.size for p in partial)
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
            "partial": len(partial),
            "partial_size": partial_size,
        }
    if as_json:
        echo_json(body)
        return
    click.echo(f"store:    {body['store']}")
    click.echo(f"blobs:    {body['count']} ({human_size(stats.size)})")
    click.echo(f"jobs:     {body['jobs']} recorded in {body['registry']}")
    if partial:
        click.echo(
            f"partial downloads: {len(partial)} ({human_size(partial_size)}) in "
            f"{partial[0].path.parent} (removed once their writer is gone)"
        )
    if body["unreferenced"]:
        click.echo(
            f"unreferenced blobs: {body['unreferenced']} "
            "(remove with `jobledger cache prune --unreferenced`)"
        )


@click.group(invoke_without_command=True)
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


@cache.command("repair")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def cache_repair(as_json: bool) -> None:
    """Rebuild the store's index from its blob files (after `cache.db` was damaged).

    Every blob file is hashed and indexed again under its digest. Small blobs lived
    inside the index: those it no longer holds are counted, and downloaded again on
    next read when the service is reachable. Run it while nothing else uses the store.
    """
    from jobledger.store_repair import repair

    with open_connection() as conn:
        report = repair(conn.store)
        missing = sorted(conn.registry.referenced_digests() - set(conn.store.digests()))
        owners = _owners(conn) if missing else {}
        lost_for_good = sorted(
            {
                name
                for digest in missing
                for name, _, status in owners.get(digest, [])
                if status is JobStatus.DELETED
            }
        )
        body = {
            "store": str(conn.store.path),
            "files": report.files,
            "duplicates": report.duplicates,
            "inline": report.inline,
            "damaged_index": str(report.damaged_index) if report.damaged_index else None,
            "partial_removed": report.partial_removed,
            "not_recovered": len(missing),
            "not_recovered_jobs": sorted({n for d in missing for n, _, _ in owners.get(d, [])}),
            "lost_for_good": lost_for_good,
        }
    if as_json:
        echo_json(body)
        return
    click.echo(
        f"rebuilt the index of {body['store']}: {report.files} blob files indexed again, "
        f"{report.inline} small blobs kept from the old index"
    )
    if report.damaged_index:
        click.echo(f"the damaged index is kept as {report.damaged_index} (delete it at will)")
    if missing:
        click.echo(
            f"{len(missing)} blobs recorded jobs refer to could not be recovered (small "
            "blobs lived inside the damaged index); they are downloaded again on next "
            "read while the service is reachable"
        )
    if lost_for_good:
        click.echo("lost for good (the service deleted its copy): " + ", ".join(lost_for_good))


def _owners(conn: Connection) -> dict[str, list[tuple[str, str, JobStatus]]]:
    """Every digest the registry refers to: ``[(job name, part, status)]``."""
    owners: dict[str, list[tuple[str, str, JobStatus]]] = {}
    for digest, name, part, status in conn.registry.blob_references():
        owners.setdefault(digest, []).append((name, part, status))
    return owners


@cache.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def cache_verify(as_json: bool) -> None:
    """Check every stored blob against its digest; exit 1 if any is corrupt.

    Corrupt blobs that the service can send again are dropped (they are downloaded
    again on the next read); those of jobs whose service files were deleted are kept.
    """
    with open_connection() as conn:
        checked = sum(1 for _ in conn.store.digests())
        with spinning(lambda: f"verifying {checked} blobs"):
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
    found = conn.call(lambda p: p.statuses(wanted)).found
    conn.registry.apply_infos(service, found)
    confirmed = {i.id for i in found if i.status is JobStatus.DONE}
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


def unreferenced_candidates(conn: Connection, *, min_age: float) -> tuple[set[str], int]:
    """Blobs no job refers to, stored more than *min_age* seconds ago; returns
    ``(digests, how many unreferenced blobs are younger and kept)``."""
    referenced = conn.registry.referenced_digests()
    cutoff = time.time() - min_age
    old: set[str] = set()
    young = 0
    for entry in conn.store.entries():
        if entry.sha256 in referenced:
            continue
        if entry.stored_at < cutoff:
            old.add(entry.sha256)
        else:
            young += 1
    return old, young


def remove_unreferenced(conn: Connection, digests: set[str], *, min_age: float) -> list[str]:
    """Remove those of *digests* that are still unreferenced and older than *min_age*
    seconds when their turn comes; return the removed ones, sorted.

    Each blob is checked again while the store is locked: a submission that stored it
    meanwhile made it young again, one that recorded its job made it referenced.
    """
    cutoff = time.time() - min_age
    return [
        digest
        for digest in sorted(digests)
        if conn.store.delete_if(digest, stored_before=cutoff, unused=_unreferenced_in(conn))
    ]


def _unreferenced_in(conn: Connection) -> Callable[[str], bool]:
    def unused(digest: str) -> bool:
        return not conn.registry.refers_to(digest)

    return unused


@cache.command("prune")
@click.option("--unreferenced", is_flag=True, help="Remove blobs no recorded job refers to.")
@click.option(
    "--older-than",
    "days",
    type=click.FloatRange(min=0),
    metavar="DAYS",
    help="Remove results of jobs done more than DAYS ago that the service still has.",
)
@click.option(
    "--min-age",
    type=click.FloatRange(min=0),
    default=PRUNE_MIN_AGE,
    show_default=True,
    metavar="SECONDS",
    help="With --unreferenced: keep blobs stored less than SECONDS ago (a submission "
    "stores its batch just before it records the job).",
)
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def cache_prune(
    unreferenced: bool,
    days: float | None,
    min_age: float,
    dry_run: bool,
    yes: bool,
    as_json: bool,
) -> None:
    """Free space in the local store, safely.

    Batches are never removed, nor results the service no longer has (deleted
    files): only what can be downloaded again, or what nothing refers to.
    """
    if unreferenced == (days is not None):
        raise click.UsageError("give exactly one of --unreferenced or --older-than DAYS")
    with open_connection() as conn:
        jobs: list[str] = []
        young = 0
        if unreferenced:
            digests, young = unreferenced_candidates(conn, min_age=min_age)
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
        if not dry_run and unreferenced:
            removed = remove_unreferenced(conn, digests, min_age=min_age)
        elif not dry_run:
            removed = [d for d in sorted(digests) if conn.store.delete(d)]
    body = {
        "dry_run": dry_run,
        "count": len(digests) if dry_run else len(removed),
        "bytes": total,
        "sha256": sorted(digests) if dry_run else removed,
        "jobs": jobs,
        "kept_young": young,
    }
    if as_json:
        echo_json(body)
        return
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {body['count']} blobs ({human_size(total)})")
    if young:
        click.echo(
            f"kept {young} unreferenced blobs stored less than {duration(min_age)} ago "
            "(a submission may be about to record them; see --min-age)"
        )
    if jobs:
        click.echo(f"results of: {', '.join(jobs)} (downloaded again on next read)")
