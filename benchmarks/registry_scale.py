"""B5: a registry of 1,000,000 jobs: filtered listing, id/alias lookup, bytes per job.

The registry is the 1M scale fixture (:mod:`benchmarks.fixtures`): filled through the
project's own write path, job after job, as users fill it. B5c measures its bytes per
job, and checks the fixture against the real thing: a registry filled by submitting
the same jobs to the real service and reading their results, one transaction per call
as a user's process makes them, must take the same bytes per job as a fixture of the
same size.
"""

from __future__ import annotations

import random
import sqlite3
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from benchmarks.common import Bench, Figure, fmt_seconds, home, median, side_by_side, spread
from benchmarks.fixtures import recipe, registry_bytes, scale_fixture
from benchmarks.scale import prepare, size_name, sizes

__all__ = ["b5_large_registry", "real_path_registry"]

_FINAL = ("DONE", "ERROR", "CANCELLED", "DELETED")


def _per_call(work: Callable[[], object], calls: int, rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            work()
        samples.append((time.perf_counter() - start) / calls)
    return samples


def real_path_registry(bench: Bench, count: int) -> Path:
    """A registry filled by submitting jobs 0..count-1 of the fixture recipe to the real
    service, then ``sync(fetch_results=True)`` once they have all ended; its path."""
    import jobledger

    service = bench.service
    token = service.create_token(f"b5-{uuid.uuid4().hex[:8]}")
    root = bench.scratch("b5-real")
    with home(root):
        conn = jobledger.connect(url=service.url, token=token)
        try:
            ids = []
            for i in range(count):
                job = recipe(i)
                submitted = conn.submit(
                    job.batch,
                    job.backend,
                    params=job.params,
                    tags=job.tags,
                    alias=job.alias,
                    session_id=job.session_id,
                )
                ids.append(str(submitted.job_id))
            _wait_final(service.url, token, ids)
            report = conn.sync(fetch_results=True)
            if report.errors:
                raise RuntimeError(f"sync of the real-path registry failed: {report.errors[:2]}")
            return Path(conn.paths.registry)
        finally:
            conn.close()


def _wait_final(url: str, token: str, ids: list[str]) -> None:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    deadline = time.monotonic() + 600
    try:
        left = list(ids)
        while left:
            found: dict[str, str] = {}
            for start in range(0, len(left), 1000):
                body = {"ids": left[start : start + 1000]}
                with session.post(url + "/v1/jobs/status", json=body, timeout=60) as answer:
                    answer.raise_for_status()
                    found.update((j["id"], j["status"]) for j in answer.json()["jobs"])
            left = [i for i in left if found.get(i) not in _FINAL]
            if left and time.monotonic() > deadline:
                raise RuntimeError(f"{len(left)} jobs did not end within 10 minutes")
            time.sleep(0.2 if left else 0)
    finally:
        session.close()


def b5_large_registry(bench: Bench) -> list[Figure]:
    """B5: listing, lookups and size of a 1,000,000-job registry."""
    import jobledger
    import jobledger.jobs

    count = sizes(bench)[-1]
    scale = prepare(bench, count)
    registry_file = scale.registry
    rounds = bench.settings.pick(15, 2)
    with home(scale.home):
        db = sqlite3.connect(f"file:{registry_file}?mode=ro", uri=True)
        conn = jobledger.connect(offline=True)
        try:
            tag_sql = (
                "SELECT jobs.* FROM job_tags t JOIN jobs ON jobs.pk = t.job_pk WHERE t.tag = ? "
            )
            second = (
                "AND EXISTS (SELECT 1 FROM job_tags u WHERE u.tag = ? AND "
                "u.created_at = t.created_at AND u.job_pk = t.job_pk) "
            )
            # Statuses are small integers named in the registry's `statuses` table.
            order = (
                "AND t.status IN (SELECT code FROM statuses WHERE name = ?) "
                "ORDER BY t.created_at DESC, t.job_pk DESC LIMIT 100"
            )
            # (name, Connection.jobs filters, the same query in raw SQL, its parameters)
            queries: list[tuple[str, dict[str, Any], str, tuple[str, ...]]] = [
                (
                    "tag exp-07 + done",
                    {"tags": ["exp-07"], "status": "done"},
                    tag_sql + order,
                    ("exp-07", "DONE"),
                ),
                (
                    "tags exp-07,user-3 + failed",
                    {"tags": ["exp-07", "user-3"], "status": "failed"},
                    tag_sql + second + order,
                    ("exp-07", "user-3", "ERROR"),
                ),
            ]
            unmatched = [n for n, f, _, _ in queries if not conn.jobs(limit=100, **f)]
            listing: list[tuple[str, list[float], list[float] | None]] = []
            for name, filters, sql, args in queries:
                try:
                    db.execute(sql, args).fetchall()
                except sqlite3.Error:  # the raw query is written for one schema
                    samples = _per_call(lambda f=filters: conn.jobs(limit=100, **f), 1, rounds)
                    listing.append((name, samples, None))
                    continue
                ours = len(conn.jobs(limit=100, **filters))
                raw = len(db.execute(sql, args).fetchall())
                if ours != raw:  # a baseline that finds other rows measures nothing
                    raise RuntimeError(f"B5a {name}: raw SQL found {raw} jobs, jobledger {ours}")
                mine, theirs = side_by_side(
                    lambda f=filters: conn.jobs(limit=100, **f),
                    lambda q=sql, a=args: db.execute(q, a).fetchall(),
                    rounds * 3,
                )
                listing.append((name, mine, theirs))
            rows = db.execute(
                "SELECT job_id FROM jobs WHERE pk % ? = 0", (max(1, count // 200),)
            ).fetchall()
            ids = [r[0] for r in rows if r[0]]
            aliases = [a for a in (recipe(i).alias for i in range(count)) if a]
            pick = random.Random(5)

            def by_id() -> object:
                return jobledger.jobs.get(pick.choice(ids))

            def by_alias() -> object:
                return jobledger.jobs.get(pick.choice(aliases))

            def offline_job() -> object:
                return conn.job(pick.choice(ids))

            def raw_lookup() -> object:
                return db.execute(
                    "SELECT * FROM jobs WHERE job_id = ?", (pick.choice(ids),)
                ).fetchall()

            by_id()
            lookups = [
                ("jobs.get(id)", _per_call(by_id, 200, rounds)),
                ("jobs.get(alias)", _per_call(by_alias, 200, rounds)),
                ("offline conn.job(id)", _per_call(offline_job, 200, rounds)),
            ]
            raw_lookup_time = median(_per_call(raw_lookup, 200, rounds))
        finally:
            conn.close()
            db.close()
            for registry, store in jobledger.jobs._opened.values():
                registry.close()
                store.close()
            jobledger.jobs._opened.clear()
    name, worst, raw = max(listing, key=lambda item: median(item[1]))
    worst_query = median(worst)
    query = Figure(
        "B5a",
        f"{size_name(count)}-job registry: jobs(tags, status, limit=100)",
        fmt_seconds(worst_query),
        fmt_seconds(median(raw)) + " (raw SQL)" if raw else "n/a (raw SQL of another schema)",
        "absolute",
        "<= 20 ms",
        worst_query <= 0.020,
        spread=spread(worst) + f" ({name})",
    )
    if unmatched:
        query.notes.append(f"B5a: no job matched {', '.join(unmatched)} (a fixture too small)")
    query.notes.append(
        "B5a: "
        + "; ".join(
            f"{n} {fmt_seconds(median(t))}" + (f" (raw SQL {fmt_seconds(median(r))})" if r else "")
            for n, t, r in listing
        )
    )
    worst_name, worst_samples = max(lookups, key=lambda item: median(item[1]))
    lookup = Figure(
        "B5b",
        f"{size_name(count)}-job registry: id/alias lookup, warm",
        fmt_seconds(median(worst_samples)),
        fmt_seconds(raw_lookup_time) + " (raw SQL)",
        "absolute",
        "<= 1 ms",
        median(worst_samples) <= 0.001,
        spread=spread(worst_samples) + f" ({worst_name})",
    )
    lookup.notes.append("B5b: " + "; ".join(f"{n} {fmt_seconds(median(t))}" for n, t in lookups))
    return [
        query,
        lookup,
        _bytes_per_job(bench, count, registry_file, scale.fixture.build_seconds),
    ]


def _bytes_per_job(bench: Bench, count: int, registry: Path, built: float | None) -> Figure:
    """B5c: the fixture's bytes per job, and the check of the fixture against the real path."""
    size = registry_bytes(registry)
    per_job = size / count
    check = bench.settings.pick(1000, 20)
    real = registry_bytes(real_path_registry(bench, check)) / check
    small = scale_fixture(check, cache=False, scratch=bench.scratch("b5-check"))
    built_small = registry_bytes(small.registry) / check
    figure = Figure(
        "B5c",
        f"{size_name(count)}-job registry (real write path): file size",
        f"{per_job:.0f} B/job",
        f"{size / 2**20:,.0f} MiB total",
        "absolute",
        "<= 720 B/job",
        per_job <= 720,
    )
    figure.notes.append(
        f"B5c: at {check:,} jobs, a registry filled through the real service (one transaction "
        f"per call) takes {real:.0f} B/job and the fixture builder {built_small:.0f} B/job "
        f"({built_small / real:.3f}x)"
    )
    if abs(built_small / real - 1) > 0.05:
        figure.notes.append(
            "B5c: WARNING: the fixture builder and the real write path differ by more than 5 %"
        )
    if built is not None:
        figure.notes.append(f"B5: the {size_name(count)}-job fixture was built in {built:.0f} s")
    return figure
