"""B4, B6, B9, B11, B16: talking to the service: submitting, waiting, reading results.

Raw baselines use a ``requests.Session`` (keep-alive) with the same token and the same
request bodies jobledger sends. HTTP requests are counted by wrapping
``requests.Session.send`` in this process, so every request jobledger makes counts,
not only the ones it reports itself. Results that must be downloaded come from the
``blob`` backend with a new seed each time: its result differs from the batch (an
``echo`` result is the batch's own bytes, already in the store, so jobledger never
downloads it).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from benchmarks.common import (
    Bench,
    Figure,
    fmt_seconds,
    home,
    median,
    paired_ratio,
    ratio_spread,
    side_by_side,
)

__all__ = [
    "RequestCounter",
    "b4_submit",
    "b6_many_waiters",
    "b9_end_to_end",
    "b11_sequential_results",
    "b16_many_echo_jobs",
]

_SMALL_BATCH = {"circuit": "H 0; CNOT 0 1; MEASURE", "shots": 100}
_RESULT_SIZE = 1024
_FINAL = ("DONE", "ERROR", "CANCELLED", "DELETED")
_seeds = itertools.count(1)


def _blob_params() -> dict[str, int]:
    """Params of a ``blob`` job whose 1 KiB result no earlier job had."""
    return {"size": _RESULT_SIZE, "seed": next(_seeds)}


class RequestCounter:
    """Counts the HTTP requests sent by any ``requests.Session`` in this process.

    :param ignore: a thread whose requests are not counted.
    """

    def __init__(self, ignore: threading.Thread | None = None) -> None:
        self.count = 0
        self._ignore = ignore
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def active(self) -> Iterator[RequestCounter]:
        """Count while inside the block."""
        original = requests.Session.send
        counter = self

        def send(session: requests.Session, request: Any, **kwargs: Any) -> Any:
            if threading.current_thread() is not counter._ignore:
                with counter._lock:
                    counter.count += 1
            return original(session, request, **kwargs)

        requests.Session.send = send  # type: ignore[method-assign]
        try:
            yield self
        finally:
            requests.Session.send = original  # type: ignore[method-assign]


class RawClient:
    """The baseline: protocol v1 spoken with a bare ``requests.Session``."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def submit(
        self,
        batch: Any,
        backend: str,
        tags: list[str] | None = None,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        data = json.dumps(batch, separators=(",", ":"), ensure_ascii=False).encode()
        body = {
            "backend": backend,
            "batch": {
                "media_type": "application/json",
                "data": base64.b64encode(data).decode("ascii"),
                "sha256": hashlib.sha256(data).hexdigest(),
            },
            "params": params or {},
            "tags": tags or [],
            "session_id": None,
        }
        headers = {"Idempotency-Key": uuid.uuid4().hex, "Content-Type": "application/json"}
        with self.session.post(
            self.url + "/v1/jobs",
            data=json.dumps(body, separators=(",", ":")),
            headers=headers,
            timeout=30,
        ) as answer:
            answer.raise_for_status()
            info: dict[str, Any] = answer.json()
        return info

    def get_json(self, path: str) -> dict[str, Any]:
        with self.session.get(self.url + path, timeout=30) as answer:
            answer.raise_for_status()
            info: dict[str, Any] = answer.json()
        return info

    def get_bytes(self, path: str) -> bytes:
        with self.session.get(self.url + path, timeout=30) as answer:
            answer.raise_for_status()
            return answer.content

    def statuses(self, ids: list[str]) -> dict[str, str]:
        """The status of each of *ids* (1,000 per request)."""
        found: dict[str, str] = {}
        for start in range(0, len(ids), 1000):
            body = {"ids": ids[start : start + 1000]}
            with self.session.post(self.url + "/v1/jobs/status", json=body, timeout=60) as answer:
                answer.raise_for_status()
                found.update((j["id"], j["status"]) for j in answer.json()["jobs"])
        return found

    def wait_final(self, ids: list[str], timeout: float = 600) -> None:
        """Wait until every one of *ids* is final on the service (nothing recorded)."""
        deadline = time.monotonic() + timeout
        left = list(ids)
        while left:
            found = self.statuses(left)
            left = [i for i in left if found.get(i) not in _FINAL]
            if left and time.monotonic() > deadline:
                raise RuntimeError(f"{len(left)} jobs did not finish within {timeout} s")
            if left:
                time.sleep(0.1)

    def close(self) -> None:
        self.session.close()


def _client(bench: Bench) -> tuple[Any, RawClient]:
    conn = bench.connect(Path(os.environ["JOBLEDGER_HOME"]))
    raw = RawClient(bench.service.url, bench.service.token)
    bench._stack.callback(raw.close)
    return conn, raw


def b4_submit(bench: Bench) -> Figure:
    """B4: ``conn.submit()`` of a small echo batch against a raw POST of the same body."""
    conn, raw = _client(bench)
    start = time.perf_counter()
    conn.submit(_SMALL_BATCH, "echo")  # the first one also starts the session, provenance
    first = time.perf_counter() - start
    mine, theirs = side_by_side(
        lambda: conn.submit(_SMALL_BATCH, "echo"),
        lambda: raw.submit(_SMALL_BATCH, "echo"),
        bench.settings.pick(60, 2),
    )
    value, base = median(mine), median(theirs)
    ratio = paired_ratio(mine, theirs)
    figure = Figure(
        "B4",
        "conn.submit(), small echo batch",
        fmt_seconds(value),
        fmt_seconds(base),
        f"{ratio:.2f}x",
        "<= 1.15x raw POST",
        ratio <= 1.15,
        spread=ratio_spread(mine, theirs),
    )
    figure.notes.append(f"B4: the first submit of the process took {fmt_seconds(first)}")
    return figure


def b6_many_waiters(bench: Bench) -> Figure:
    """B6: 1,000 handles waiting at once through the shared poller."""
    from concurrent.futures import ThreadPoolExecutor

    conn, raw = _client(bench)
    count = bench.settings.pick(1000, 20)
    # One blocker per service worker keeps the echo jobs queued until every wait has
    # started; cancelling the blockers then lets the queue drain. The echo jobs are
    # submitted raw (faster) and recorded with one remote listing.
    tag = f"b6-{uuid.uuid4().hex[:8]}"
    blockers = [
        conn.submit(None, "sleep", params={"seconds": 900}, tags=[f"{tag}-blocker"])
        for _ in range(bench.service.workers)
    ]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: raw.submit({"i": i}, "echo", tags=[tag]), range(count)))
    jobs = conn.jobs(tags=[tag], limit=count, remote=True)
    if len(jobs) != count:
        raise RuntimeError(f"recorded {len(jobs)} of the {count} jobs submitted")
    errors: list[BaseException] = []

    def wait(job: Any) -> None:
        try:
            job.wait_for_final_state(timeout=600)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=wait, args=(job,), daemon=True) for job in jobs]
    # Only the poller's requests count: the main thread's cancels are not waiting.
    with RequestCounter(ignore=threading.current_thread()).active() as counter:
        poller = conn.poller
        rounds_before = poller._round
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        time.sleep(bench.settings.pick(4, 1))
        queued = sum(job._reload().status.is_final is False for job in jobs)
        for blocker in blockers:
            blocker.cancel()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - start
        rounds = poller._round - rounds_before
        sent = counter.count
    if errors:
        raise RuntimeError(f"{len(errors)} waits failed, first: {errors[0]!r}")
    if rounds == 0 or queued < count:
        raise RuntimeError(f"only {queued} of {count} jobs were still waiting: nothing measured")
    per_round = sent / rounds
    return Figure(
        "B6",
        f"{count:,} handles waiting at once",
        f"{per_round:.1f} requests/round",
        f"{count:,} (one GET per job)",
        f"{sent} req / {rounds} rounds in {seconds:.1f} s",
        "<= 10 requests/round",
        per_round <= 10,
    )


def b9_end_to_end(bench: Bench) -> Figure:
    """B9: submit a job and hold its 1 KiB result, against raw POST + polls + GET."""
    conn, raw = _client(bench)
    ours_requests: list[int] = []
    raw_requests: list[int] = []

    def ours() -> None:
        with RequestCounter().active() as counter:
            value = conn.submit(None, "blob", params=_blob_params()).result(timeout=60)
        ours_requests.append(counter.count)
        assert len(value) == _RESULT_SIZE

    def baseline() -> None:
        job_id = raw.submit(None, "blob", params=_blob_params())["id"]
        sent = 1
        while raw.get_json(f"/v1/jobs/{job_id}")["status"] != "DONE":
            sent += 1
            time.sleep(0.01)
        value = raw.get_bytes(f"/v1/jobs/{job_id}/result")
        raw_requests.append(sent + 1)
        assert len(value) == _RESULT_SIZE

    mine, theirs = side_by_side(ours, baseline, bench.settings.pick(15, 2), warmup=1)
    value, base = median(mine), median(theirs)
    return Figure(
        "B9",
        "end to end: submit -> result (blob, 1 KiB, not the batch)",
        f"{fmt_seconds(value)} ({median([float(n) for n in ours_requests]):.0f} requests)",
        f"{fmt_seconds(base)} ({median([float(n) for n in raw_requests]):.0f} requests)",
        f"{paired_ratio(mine, theirs):.2f}x",
        "report (raw polls every 10 ms)",
        None,
        spread=ratio_spread(mine, theirs),
    )


def _submit_many(conn: Any, count: int, tag: str) -> list[str]:
    """Submit *count* 1 KiB ``blob`` jobs through jobledger (4 threads); their ids."""
    with ThreadPoolExecutor(4) as pool:
        jobs = list(
            pool.map(
                lambda _: conn.submit(None, "blob", params=_blob_params(), tags=[tag]),
                range(count),
            )
        )
    return [str(job.job_id) for job in jobs]


def b11_sequential_results(bench: Bench) -> Figure:
    """B11: ``result()`` of 100 finished, not yet downloaded jobs, one after the other,
    from a fresh connection, against a raw GET of each result."""
    import jobledger

    count = bench.settings.pick(100, 5)
    rounds = bench.settings.pick(7, 2)
    service = bench.service
    mine: list[float] = []
    theirs: list[float] = []
    with home(bench.scratch("b11-client")):
        recorder = jobledger.connect(url=service.url, token=service.token)
        checker = RawClient(service.url, service.token)
        try:
            for i in range(rounds):
                # Recorded as submitted (QUEUED), then finished on the service unseen.
                ids = _submit_many(recorder, count, f"b11-{i}")
                checker.wait_final(ids)

                def ours(ids: list[str] = ids) -> float:
                    fresh = jobledger.connect(url=service.url, token=service.token)
                    try:
                        handles = [fresh.job(job_id) for job_id in ids]
                        start = time.perf_counter()
                        for handle in handles:
                            if len(handle.result(timeout=60)) != _RESULT_SIZE:
                                raise AssertionError("a result is not the 1 KiB blob")
                        return time.perf_counter() - start
                    finally:
                        fresh.close()

                def raw(ids: list[str] = ids) -> float:
                    client = RawClient(service.url, service.token)
                    try:
                        start = time.perf_counter()
                        for job_id in ids:
                            if len(client.get_bytes(f"/v1/jobs/{job_id}/result")) != _RESULT_SIZE:
                                raise AssertionError("a raw result is not the 1 KiB blob")
                        return time.perf_counter() - start
                    finally:
                        client.close()

                if i % 2 == 0:
                    mine.append(ours() / count)
                    theirs.append(raw() / count)
                else:
                    theirs.append(raw() / count)
                    mine.append(ours() / count)
        finally:
            checker.close()
            recorder.close()
    value, base = median(mine), median(theirs)
    ratio = paired_ratio(mine, theirs)
    return Figure(
        "B11",
        f"result() of {count} finished jobs in turn, fresh connection (per job)",
        fmt_seconds(value),
        fmt_seconds(base) + " (raw GET of the result)",
        f"{ratio:.2f}x",
        "<= 1.5x raw GET",
        ratio <= 1.5,
        spread=ratio_spread(mine, theirs),
    )


def _service_times(raw: RawClient, tag: str) -> tuple[float, float, int]:
    """The first start and last end (epoch seconds) of the jobs tagged *tag*, and how
    many there are, from the service's own listing."""
    from datetime import datetime

    starts: list[float] = []
    ends: list[float] = []
    cursor = None
    while True:
        query: dict[str, Any] = {"tag": tag, "limit": 1000}
        if cursor:
            query["cursor"] = cursor
        with raw.session.get(raw.url + "/v1/jobs", params=query, timeout=60) as answer:
            answer.raise_for_status()
            body = answer.json()
        for job in body["jobs"]:
            if job["started_at"] and job["ended_at"]:
                starts.append(datetime.fromisoformat(job["started_at"]).timestamp())
                ends.append(datetime.fromisoformat(job["ended_at"]).timestamp())
        cursor = body.get("next_cursor")
        if not cursor:
            return min(starts), max(ends), len(ends)


def b16_many_echo_jobs(bench: Bench) -> Figure:
    """B16: 1,000 echo jobs end to end (submit each, then read each result) against the
    executor alone running the same 1,000 jobs."""
    conn, raw = _client(bench)
    count = bench.settings.pick(1000, 20)
    run = uuid.uuid4().hex[:8]
    # The executor alone: the jobs are queued behind one blocker per worker, then the
    # blockers are cancelled and the queue drains with no client talking to the service.
    blockers = [
        conn.submit(None, "sleep", params={"seconds": 900}, tags=[f"b16-{run}-blocker"])
        for _ in range(bench.service.workers)
    ]
    alone = f"b16-{run}-alone"
    with ThreadPoolExecutor(4) as pool:
        ids = list(
            pool.map(lambda i: raw.submit({"i": i}, "echo", tags=[alone])["id"], range(count))
        )
    for blocker in blockers:
        blocker.cancel()
    raw.wait_final(ids)
    first, last, ran = _service_times(raw, alone)
    executor_rate = ran / (last - first)
    # End to end, as a user writes it: submit them all, then read every result.
    through = f"b16-{run}-e2e"
    start = time.perf_counter()
    jobs = [conn.submit({"i": i}, "echo", tags=[through]) for i in range(count)]
    submitted = time.perf_counter() - start
    for i, job in enumerate(jobs):
        if job.result(timeout=600) != {"i": i}:
            raise AssertionError(f"job {job.job_id} returned the wrong result")
    wall = time.perf_counter() - start
    e2e_rate = count / wall
    busy_first, busy_last, _ = _service_times(raw, through)
    ratio = e2e_rate / executor_rate
    figure = Figure(
        "B16",
        f"{count:,} echo jobs end to end (submit all, then result() of each)",
        f"{e2e_rate:,.0f} jobs/s ({wall:.1f} s)",
        f"{executor_rate:,.0f} jobs/s (the executor alone)",
        f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.3f}x",
        ">= 0.8x the executor (proposed)",
        ratio >= 0.8,
        spread="one run",
    )
    figure.notes.append(
        f"B16: submitting took {submitted:.1f} s ({count / submitted:,.0f} submits/s), reading "
        f"the results {wall - submitted:.1f} s; the executor was busy "
        f"{busy_last - busy_first:.1f} s of the {wall:.1f} s"
    )
    return figure
