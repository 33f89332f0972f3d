"""B7 and B8: large results, and 8 processes submitting at once.

Both run their clients in child processes (``python -m benchmarks.worker``), so that
memory is measured on a clean process and the processes really are separate.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from benchmarks.common import Bench, Figure, clean_env, median, paired_ratio, ratio_spread
from benchmarks.worker import TOKEN_ENV

__all__ = ["b7_large_result", "b8_concurrent_submits"]

_MIB = 1 << 20


def _worker(args: list[str], home: Path, token: str) -> subprocess.Popen[str]:
    env = clean_env(home)
    env[TOKEN_ENV] = token
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.worker", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _answer(process: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    if process.returncode != 0:
        raise RuntimeError(f"benchmark worker failed: {err.strip()[-2000:]}")
    answer: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return answer


def _blob_job(bench: Bench, size: int, seed: int) -> str:
    """A finished ``blob`` job of *size* bytes on the shared service; its id."""
    service = bench.service
    session = requests.Session()
    session.headers.update(service.headers)
    try:
        body = {
            "backend": "blob",
            "batch": {"media_type": "application/json", "data": "bnVsbA=="},
            "params": {"size": size, "seed": seed},
        }
        with session.post(service.url + "/v1/jobs", json=body, timeout=30) as answer:
            answer.raise_for_status()
            job_id: str = answer.json()["id"]
        deadline = time.monotonic() + 300
        while True:
            with session.get(f"{service.url}/v1/jobs/{job_id}", timeout=30) as answer:
                status = answer.json()["status"]
            if status == "DONE":
                return job_id
            if status in ("ERROR", "CANCELLED", "DELETED") or time.monotonic() > deadline:
                raise RuntimeError(f"the blob job ended {status}")
            time.sleep(0.2)
    finally:
        session.close()


def b7_large_result(bench: Bench) -> Figure:
    """B7: download a large result into the store: throughput (15 interleaved pairs of
    256 MiB) and peak RSS growth (those, and one 1 GiB download)."""
    size = bench.settings.pick(256 * _MIB, 4 * _MIB)
    big = bench.settings.pick(1 << 30, 8 * _MIB)
    service = bench.service
    job_id = _blob_job(bench, size, 7)
    home = bench.scratch("b7-client")
    out = bench.scratch("b7-raw") / "result.bin"
    ours: list[dict[str, Any]] = []
    raw: list[dict[str, Any]] = []
    common = ["download", "--url", service.url, "--job", job_id]
    for i in range(bench.settings.pick(15, 2)):
        order = [(ours, []), (raw, ["--raw", "--out", str(out)])]
        for results, extra in order if i % 2 == 0 else order[::-1]:
            results.append(_answer(_worker(common + extra, home, service.token), 600))
    if any(r["bytes"] != size for r in ours + raw):
        raise RuntimeError("a download did not return the whole result")
    whole = _answer(
        _worker(
            ["download", "--url", service.url, "--job", _blob_job(bench, big, 8)],
            home,
            service.token,
        ),
        900,
    )
    if whole["bytes"] != big:
        raise RuntimeError("the large download did not return the whole result")
    mine = [r["seconds"] for r in ours]
    theirs = [r["seconds"] for r in raw]
    ours_speed = size / median(mine)
    raw_speed = size / median(theirs)
    growth = max(r["rss_growth"] for r in [*ours, whole])
    ratio = paired_ratio(theirs, mine)  # throughput: the inverse of time
    figure = Figure(
        "B7",
        f"{size / _MIB:,.0f} MiB result: download into the store",
        f"{ours_speed / _MIB:,.0f} MiB/s, peak RSS +{growth / _MIB:.1f} MiB",
        f"{raw_speed / _MIB:,.0f} MiB/s (raw stream to a file)",
        f"{ratio:.2f}x throughput",
        ">= 0.7x, RSS <= +100 MiB",
        ratio >= 0.7 and growth <= 100 * _MIB,
        # Throughput is the inverse of time: the pair ratios of raw/ours times.
        spread=ratio_spread(theirs, mine),
    )
    raw_growth = max(r["rss_growth"] for r in raw)
    figure.notes.append(
        f"B7: {big / _MIB:,.0f} MiB in one download: {big / whole['seconds'] / _MIB:,.0f} MiB/s, "
        f"peak RSS +{whole['rss_growth'] / _MIB:.1f} MiB; raw requests streaming peaks at "
        f"+{raw_growth / _MIB:.1f} MiB RSS"
    )
    return figure


def _service_count(bench: Bench, token: str) -> int:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    total, cursor = 0, None
    try:
        while True:
            query: dict[str, Any] = {"limit": 1000}
            if cursor:
                query["cursor"] = cursor
            with session.get(bench.service.url + "/v1/jobs", params=query, timeout=60) as page:
                page.raise_for_status()
                body = page.json()
            total += len(body["jobs"])
            cursor = body.get("next_cursor")
            if not cursor:
                return total
    finally:
        session.close()


def b8_concurrent_submits(bench: Bench) -> Figure:
    """B8: 8 processes x 250 submissions into one registry, all at once."""
    processes = bench.settings.pick(8, 2)
    each = bench.settings.pick(250, 5)
    token = bench.service.create_token(f"b8-{time.monotonic_ns()}")
    home = bench.scratch("b8-client")
    start_at = time.time() + bench.settings.pick(4, 1)  # time for every child to start
    args = ["submit", "--url", bench.service.url, "--count", str(each)]
    children = [
        _worker([*args, "--start-at", str(start_at)], home, token) for _ in range(processes)
    ]
    answers = [_answer(child, 900) for child in children]
    wall = max(a["seconds"] for a in answers)
    errors = sum(a["error_count"] for a in answers)
    db = sqlite3.connect(home / "data" / "registry.db")
    try:
        recorded, acknowledged = db.execute(
            "SELECT count(*), count(job_id) FROM jobs WHERE submit_state != 'pending'"
        ).fetchone()
    finally:
        db.close()
    on_service = _service_count(bench, token)
    expected = processes * each
    lost = expected - min(acknowledged, on_service)
    figure = Figure(
        "B8",
        f"{processes} processes x {each} submissions at once",
        f"{lost} lost, {errors} errors, {expected / wall:.0f} submits/s",
        f"{expected} expected; registry {acknowledged}, service {on_service}",
        f"{lost} lost / {errors} errors",
        "0 lost, 0 errors",
        lost == 0 and errors == 0 and recorded == expected and on_service == expected,
    )
    for answer in answers:
        figure.notes.extend(f"B8 error: {e}" for e in answer["errors"][:2])
    return figure
