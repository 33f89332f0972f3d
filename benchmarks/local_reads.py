"""B1-B3: reading a result that is already in the local store, warm and cold.

The job is an ``echo`` job whose 1 KiB JSON result was downloaded, so it is stored the
way every downloaded result is (an echo result is the batch's own bytes, stored at
submission, so it is dropped from the store first and read once to download it).

B1's floor is exactly what reading a stored result has to do: find the blob by its
digest in the store's index (``cache.db``, read-only ``sqlite3``), read its bytes (a
file, or the index row itself for a blob kept inline), check their sha256, and
``json.loads`` them; a warm handle of a final job needs nothing from the registry.
B2's floor is a new ``python -c`` that finds the job's row by its id (``sqlite3``),
gets the same bytes from a plain ``diskcache`` folder, checks and decodes them (the
floor of issue 6, kept so that B2 stays comparable); a note gives the ratio to the
tightest floor too (the B1 floor in a new process: ``sqlite3`` only, no diskcache).
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

from benchmarks.common import (
    Bench,
    Figure,
    clean_env,
    fmt_seconds,
    median,
    paired_ratio,
    ratio_spread,
    side_by_side,
)

__all__ = ["b1_warm_result", "b2_cold_process", "b3_first_vs_cached"]

_KIB_PAYLOAD = {"values": [round(i * 0.1, 1) for i in range(150)], "label": "x" * 64}
_FLOOR_READ = (
    "SELECT filename, value FROM Cache WHERE key = ? AND raw = 1"  # diskcache's own table
)


@dataclass(frozen=True)
class CachedJob:
    """A finished echo job whose 1 KiB JSON result was downloaded into the store."""

    job_id: str
    registry: Path
    store: Path
    data: bytes
    floor_cache: Path  # a plain diskcache folder holding the same bytes (B2's floor)

    @property
    def digest(self) -> str:
        """The result's sha256."""
        return hashlib.sha256(self.data).hexdigest()


def cached_job(bench: Bench) -> CachedJob:
    """Submit a 1 KiB echo job once per run and download its result; reuse it."""
    found: CachedJob | None = getattr(bench, "_cached_job", None)
    if found is not None:
        return found
    conn = bench.connect(Path(os.environ["JOBLEDGER_HOME"]))
    job = conn.submit(_KIB_PAYLOAD, "echo")
    job.result(timeout=60)
    record = job._record
    assert record.result is not None
    conn.store.delete(record.result.sha256)  # stored as the batch: download it instead
    downloaded = conn.job(str(job.job_id))
    if downloaded.result() != _KIB_PAYLOAD:
        raise AssertionError("the echo job did not return its batch")
    data = conn.store.get_bytes(record.result.sha256)
    floor_cache = bench.scratch("floor-cache")
    with diskcache.Cache(str(floor_cache)) as cache:
        cache.set(record.result.sha256, data)
    found = CachedJob(str(job.job_id), conn.paths.registry, conn.paths.store, data, floor_cache)
    bench._cached_job = found  # type: ignore[attr-defined]
    return found


def _floor_reader(job: CachedJob) -> tuple[Any, Any]:
    index = sqlite3.connect(f"file:{job.store / 'cache.db'}?mode=ro", uri=True)
    digest = job.digest

    def read() -> Any:
        filename, value = index.execute(_FLOOR_READ, (digest,)).fetchone()
        if filename:
            with open(job.store / filename, "rb") as blob:
                data = blob.read()
        else:
            data = bytes(value)
        if hashlib.sha256(data).hexdigest() != digest:
            raise AssertionError("floor read corrupt bytes")
        return json.loads(data)

    return read, index.close


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
    ratio = paired_ratio(mine, theirs)
    return Figure(
        "B1",
        "warm job.result(), stored 1 KiB JSON",
        fmt_seconds(value),
        fmt_seconds(base) + " (index read, sha256, json.loads)",
        f"{ratio:.2f}x",
        "<= 2x floor",
        ratio <= 2.0,
        spread=ratio_spread(mine, theirs),
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
    """B2: a new process importing a job and reading its stored result."""
    job = cached_job(bench)
    home = Path(os.environ["JOBLEDGER_HOME"])
    ours = f"from jobledger.jobs import {job.job_id} as X; X.result()"
    row = (
        "import sqlite3, hashlib, json\n"
        f"db = sqlite3.connect('file:{job.registry}?mode=ro', uri=True)\n"
        f"db.execute('SELECT * FROM jobs WHERE job_id = ?', ({job.job_id!r},)).fetchone()\n"
    )
    raw = row + (
        "import diskcache\n"
        f"data = diskcache.Cache({str(job.floor_cache)!r}).get({job.digest!r})\n"
        f"assert hashlib.sha256(data).hexdigest() == {job.digest!r}\n"
        "json.loads(data)\n"
    )
    tight = row + (
        f"index = sqlite3.connect('file:{job.store / 'cache.db'}?mode=ro', uri=True)\n"
        f"filename, value = index.execute({_FLOOR_READ!r}, ({job.digest!r},)).fetchone()\n"
        f"data = open({str(job.store)!r} + '/' + filename, 'rb').read() if filename "
        "else bytes(value)\n"
        f"assert hashlib.sha256(data).hexdigest() == {job.digest!r}\n"
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
    ratio = paired_ratio(mine, theirs)
    figure = Figure(
        "B2",
        "cold process: import a job, result() (stored)",
        fmt_seconds(value),
        fmt_seconds(base) + " (python -c: row by id, diskcache get, sha256, json.loads)",
        f"{ratio:.2f}x",
        "<= 1.2x floor",
        ratio <= 1.2,
        spread=ratio_spread(mine, theirs),
    )
    mine_tight, tightest = side_by_side(
        lambda: _python(ours, home, pycache),
        lambda: _python(tight, home, pycache),
        bench.settings.pick(15, 1),
        warmup=0,
    )
    figure.notes.append(
        f"B2: against the tightest floor (python -c: row by id, the store's index read with "
        f"sqlite3, sha256, json.loads; no diskcache) {fmt_seconds(median(tightest))}: "
        f"{paired_ratio(mine_tight, tightest):.2f}x ({ratio_spread(mine_tight, tightest)})"
    )
    uncached, floor = side_by_side(
        lambda: _python(ours, home, None),
        lambda: _python(raw, home, None),
        bench.settings.pick(15, 1),
        warmup=0,
    )
    figure.notes.append(
        f"B2: without cached bytecode (PYTHONDONTWRITEBYTECODE=1, uncompiled source) "
        f"{fmt_seconds(median(uncached))} vs {fmt_seconds(median(floor))} "
        f"({paired_ratio(uncached, floor):.2f}x, {ratio_spread(uncached, floor)})"
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
    digest = job.digest
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
    speedup = paired_ratio(first, cached)
    return Figure(
        "B3",
        "cached read vs first read (download)",
        fmt_seconds(value),
        fmt_seconds(base),
        f"{speedup:.0f}x faster",
        ">= 50x faster",
        speedup >= 50,
        spread=ratio_spread(first, cached),
    )
