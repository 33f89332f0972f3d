"""The client side of the campaign: kill -9 during submit, concurrent submitters, byte flips.

Each attack prints its figures (run with ``-s``) and asserts the ones that must be
zero: submissions lost or duplicated, corrupt bytes returned, "database is locked".
``JOBLEDGER_CAMPAIGN_SCALE`` multiplies the trials; the default keeps the suite quick
(the first campaign ran 240 kills, 8 x 250 submits and 100 flips: scale 24, 10, 5).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import requests
from harness import SCALE

import jobledger
from jobledger.errors import CacheCorruptionError
from jobledger.paths import get_paths

_SUBMITTER = textwrap.dedent(
    """
    import sys, jobledger
    conn = jobledger.connect(url=sys.argv[1], token=sys.argv[2])
    for n in range(int(sys.argv[3]), int(sys.argv[3]) + int(sys.argv[4])):
        conn.submit({"n": n}, "echo", alias=f"run_{n}")
        print(n, flush=True)
    conn.close()
    """
)


def _service_ids(service: Any, token: str) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1000, "order": "asc"}
        if cursor:
            params["cursor"] = cursor
        page = requests.get(
            service.url + "/v1/jobs", headers=service.headers(token), params=params, timeout=30
        ).json()
        ids += [job["id"] for job in page["jobs"]]
        cursor = page.get("next_cursor")
        if not cursor:
            return ids


def test_kill_9_during_submit_loses_and_duplicates_nothing(
    service: Any, jobledger_home: Path
) -> None:
    token = service.create_token(f"killer{time.monotonic_ns()}")
    env = {**os.environ, "JOBLEDGER_HOME": str(jobledger_home)}
    trials = 10 * SCALE
    rng = random.Random(20261121)
    started = 0
    for trial in range(trials):
        proc = subprocess.Popen(
            [sys.executable, "-c", _SUBMITTER, service.url, token, str(trial * 100), "100"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        assert proc.stdout is not None
        proc.stdout.readline()  # the first submit is through: kill during the next ones
        time.sleep(rng.uniform(0.0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        started += 1
    with jobledger.connect(url=service.url, token=token) as conn:
        report = conn.sync()
        rows = conn.registry.query(limit=None)
        recorded_ids = [r.job_id for r in rows if r.job_id]
        pending = [r for r in rows if r.submit_state == "pending"]
        aliases = [r.alias for r in rows]
    on_service = _service_ids(service, token)
    lost = len(set(on_service) - set(recorded_ids))
    duplicated = len(on_service) - len(set(on_service)) + len(aliases) - len(set(aliases))
    print(
        f"\nkill -9 during submit: {started} trials, {len(rows)} recorded, "
        f"{len(on_service)} on the service, {report.resolved} resolved by sync, "
        f"{len(pending)} still pending, lost {lost}, duplicated {duplicated}"
    )
    assert lost == 0 and duplicated == 0 and pending == []
    assert sorted(recorded_ids) == sorted(on_service)


def test_concurrent_submitters_never_see_database_is_locked(
    service: Any, jobledger_home: Path
) -> None:
    token = service.create_token(f"crowd{time.monotonic_ns()}")
    env = {**os.environ, "JOBLEDGER_HOME": str(jobledger_home)}
    processes, each = 4, 10 * SCALE
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _SUBMITTER, service.url, token, str(p * 10_000), str(each)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for p in range(processes)
    ]
    errors = [proc.communicate(timeout=300)[1] for proc in procs]
    failures = [e for e, p in zip(errors, procs, strict=True) if p.returncode != 0]
    with jobledger.connect(url=service.url, token=token, offline=True) as conn:
        recorded = conn.registry.query(limit=None)
    print(
        f"\nconcurrent submits: {processes} x {each}, {len(recorded)} recorded, "
        f"{len(failures)} failed processes"
    )
    assert not failures, failures[0]
    assert all("locked" not in e for e in errors)
    assert len(recorded) == processes * each
    assert len(_service_ids(service, token)) == processes * each


def test_byte_flips_in_the_store_are_never_returned(service: Any, jobledger_home: Path) -> None:
    token = service.create_token(f"flipper{time.monotonic_ns()}")
    flips = 20 * SCALE
    rng = random.Random(7)
    with jobledger.connect(url=service.url, token=token) as conn:
        jobs = [conn.submit({"payload": "x" * rng.randint(10, 2000)}, "echo") for _ in range(5)]
        expected = {str(j.job_id): j.result(timeout=60) for j in jobs}
        digests = {str(j.job_id): j.provenance["result_sha256"] for j in jobs}
    store_db = get_paths().store / "cache.db"
    silent = detected = 0
    for _ in range(flips):
        job_id = rng.choice(sorted(digests))
        with sqlite3.connect(store_db) as db:
            value, filename = db.execute(
                "SELECT value, filename FROM Cache WHERE key = ?", (digests[job_id],)
            ).fetchone()
            if value is not None:  # a small blob lives in the index itself
                flipped = bytearray(value)
                flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
                db.execute(
                    "UPDATE Cache SET value = ? WHERE key = ?", (bytes(flipped), digests[job_id])
                )
        db.close()
        if value is None:  # a larger one in a file of the store's folder
            path = get_paths().store / filename
            flipped = bytearray(path.read_bytes())
            flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
            path.write_bytes(bytes(flipped))
        with jobledger.connect(url=service.url, token=token, offline=True) as offline:
            try:
                value = offline.job(job_id).result()
            except CacheCorruptionError:
                detected += 1
            else:
                silent += value != expected[job_id]
        with jobledger.connect(url=service.url, token=token) as online:
            assert online.job(job_id).result() == expected[job_id]  # healed from the service
    print(f"\nbyte flips: {flips} flips, {detected} detected offline, {silent} silent")
    assert silent == 0 and detected == flips
