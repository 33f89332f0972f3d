"""B1-B3: reading a result that is already in the local store, warm and cold.

The raw floor is what any cache of verified JSON has to do at least: one sqlite3
primary-key lookup of the job's row, one diskcache get, one sha256 and one
``json.loads`` of the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diskcache

from benchmarks.common import Bench, Figure, clean_env, fmt_seconds, median, side_by_side

__all__ = ["b1_warm_result", "b2_cold_process", "b3_first_vs_cached"]

_KIB_PAYLOAD = {"values": [round(i * 0.1, 1) for i in range(150)], "label": "x" * 64}


@dataclass(frozen=True)
class CachedJob:
    """A finished echo job whose 1 KiB JSON result is in the client's store."""

    job_id: str
    pk: int
    registry: Path
    data: bytes
    floor_cache: Path  # a plain diskcache folder holding the same bytes


def cached_job(bench: Bench) -> CachedJob:
    """Submit a 1 KiB echo job once per run, download its result; reuse it."""
    found: CachedJob | None = getattr(bench, "_cached_job", None)
    if found is not None:
        return found
    conn = bench.connect(Path(os.environ["JOBLEDGER_HOME"]))
    job = conn.submit(_KIB_PAYLOAD, "echo")
    job.result(timeout=60)
    record = job._record
    assert record.result is not None
    data = conn.store.get_bytes(record.result.sha256)
    floor_cache = bench.scratch("floor-cache")
    with diskcache.Cache(str(floor_cache)) as cache:
        cache.set(record.result.sha256, data)
    found = CachedJob(str(job.job_id), record.pk, conn.paths.registry, data, floor_cache)
    bench._cached_job = found  # type: ignore[attr-defined]
    return found


def _floor_reader(job: CachedJob) -> tuple[Any, Any]:
    db = sqlite3.connect(job.registry)
    cache = diskcache.Cache(str(job.floor_cache))
    digest = hashlib.sha256(job.data).hexdigest()

    def read() -> Any:
        db.execute("SELECT * FROM jobs WHERE pk = ?", (job.pk,)).fetchone()
        data = cache.get(digest)
        if hashlib.sha256(data).hexdigest() != digest:
            raise AssertionError("floor cache corrupt")
        return json.loads(data)

    def close() -> None:
        cache.close()
        db.close()

    return read, close


def b1_warm_result(bench: Bench) -> Figure:
    """B1: ``job.result()`` of a cached 1 KiB JSON result, handle already imported."""
    import jobledger.jobs

    job = cached_job(bench)
    handle = jobledger.jobs.get(job.job_id)
    floor, close = _floor_reader(job)
    calls = bench.settings.pick(200, 5)

    def ours() -> None:
        for _ in range(calls):
            handle.result()

    def raw() -> None:
        for _ in range(calls):
            floor()

    try:
        if handle.result() != floor():
            raise AssertionError("jobledger and the floor read different values")
        mine, theirs = side_by_side(ours, raw, bench.settings.pick(15, 2))
    finally:
        close()
    value, base = median(mine) / calls, median(theirs) / calls
    ratio = value / base
    return Figure(
        "B1",
        "warm job.result(), cached 1 KiB JSON",
        fmt_seconds(value),
        fmt_seconds(base),
        f"{ratio:.2f}x",
        "<= 2x floor",
        ratio <= 2.0,
    )


def _env(home: Path, pycache: Path | None) -> dict[str, str]:
    env = clean_env(home)
    if pycache is not None:
        # As after `pip install`: bytecode is cached (this checkout may run with
        # PYTHONDONTWRITEBYTECODE=1; the cache goes outside the source tree).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _python(code: str, home: Path, pycache: Path | None) -> float:
    env = _env(home, pycache)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def _importtime(code: str, home: Path, pycache: Path, top: int = 6) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        env=_env(home, pycache),
        check=True,
        capture_output=True,
        text=True,
    )
    rows: list[tuple[int, str]] = []
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if match:
            rows.append((int(match.group(1)), match.group(4)))
    rows.sort(reverse=True)
    return [f"{name} {us / 1000:.1f} ms" for us, name in rows[:top]]


def b2_cold_process(bench: Bench) -> Figure:
    """B2: a new process importing a job and reading its cached result."""
    job = cached_job(bench)
    home = Path(os.environ["JOBLEDGER_HOME"])
    ours = f"from jobledger.jobs import {job.job_id} as X; X.result()"
    digest = hashlib.sha256(job.data).hexdigest()
    raw = (
        "import sqlite3, diskcache, hashlib, json\n"
        f"db = sqlite3.connect({str(job.registry)!r})\n"
        f"db.execute('SELECT * FROM jobs WHERE pk = ?', ({job.pk},)).fetchone()\n"
        f"data = diskcache.Cache({str(job.floor_cache)!r}).get({digest!r})\n"
        f"assert hashlib.sha256(data).hexdigest() == {digest!r}\n"
        "json.loads(data)\n"
    )
    pycache = bench.scratch("pycache")
    mine, theirs = side_by_side(
        lambda: _python(ours, home, pycache),
        lambda: _python(raw, home, pycache),
        bench.settings.pick(21, 1),
        warmup=bench.settings.pick(2, 1),
    )
    value, base = median(mine), median(theirs)
    ratio = value / base
    figure = Figure(
        "B2",
        "cold process: import a job, result() (cached)",
        fmt_seconds(value),
        fmt_seconds(base),
        f"{ratio:.2f}x",
        "<= 1.5x floor",
        ratio <= 1.5,
    )
    uncached, floor = side_by_side(
        lambda: _python(ours, home, None),
        lambda: _python(raw, home, None),
        bench.settings.pick(7, 1),
        warmup=0,
    )
    figure.notes.append(
        f"B2: without cached bytecode (PYTHONDONTWRITEBYTECODE=1, uncompiled source) "
        f"{fmt_seconds(median(uncached))} vs {fmt_seconds(median(floor))} "
        f"({median(uncached) / median(floor):.2f}x)"
    )
    if not figure.passed:
        figure.notes.append(
            "B2 slowest imports (self time, `-X importtime`): "
            + ", ".join(_importtime(ours, home, pycache))
        )
    return figure


def b3_first_vs_cached(bench: Bench) -> Figure:
    """B3: the first read of a result (a download) against a cached read of it."""
    job = cached_job(bench)
    conn = bench.connect(Path(os.environ["JOBLEDGER_HOME"]))
    handle = conn.job(job.job_id)
    digest = hashlib.sha256(job.data).hexdigest()
    first: list[float] = []
    cached: list[float] = []
    for _ in range(bench.settings.pick(25, 2)):
        conn.store.delete(digest)
        start = time.perf_counter()
        handle.result()
        first.append(time.perf_counter() - start)
        start = time.perf_counter()
        handle.result()
        cached.append(time.perf_counter() - start)
    value, base = median(cached), median(first)
    speedup = base / value
    return Figure(
        "B3",
        "cached read vs first read (download)",
        fmt_seconds(value),
        fmt_seconds(base),
        f"{speedup:.0f}x faster",
        ">= 50x faster",
        speedup >= 50,
    )
