"""B4, B6, B9: talking to the service: submitting, waiting for many jobs, a round trip.

Raw baselines use one warm ``requests.Session`` (keep-alive) with the same token and
the same request bodies jobledger sends. HTTP requests are counted by wrapping
``requests.Session.send`` in this process, so every request jobledger makes counts,
not only the ones it reports itself.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from benchmarks.common import Bench, Figure, fmt_seconds, median, side_by_side

__all__ = ["RequestCounter", "b4_submit", "b6_many_waiters", "b9_end_to_end"]

_SMALL_BATCH = {"circuit": "H 0; CNOT 0 1; MEASURE", "shots": 100}


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

    def submit(self, batch: Any, backend: str, tags: list[str] | None = None) -> dict[str, Any]:
        data = json.dumps(batch, separators=(",", ":"), ensure_ascii=False).encode()
        body = {
            "backend": backend,
            "batch": {
                "media_type": "application/json",
                "data": base64.b64encode(data).decode("ascii"),
                "sha256": hashlib.sha256(data).hexdigest(),
            },
            "params": {},
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
    ratio = value / base
    figure = Figure(
        "B4",
        "conn.submit(), small echo batch",
        fmt_seconds(value),
        fmt_seconds(base),
        f"{ratio:.2f}x",
        "<= 1.25x raw POST",
        ratio <= 1.25,
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
    """B9: submit an echo job and hold its result, against raw POST + polls + GET."""
    conn, raw = _client(bench)
    ours_requests: list[int] = []
    raw_requests: list[int] = []

    def ours() -> None:
        with RequestCounter().active() as counter:
            value = conn.submit(_SMALL_BATCH, "echo").result(timeout=60)
        ours_requests.append(counter.count)
        assert value == _SMALL_BATCH

    def baseline() -> None:
        job_id = raw.submit(_SMALL_BATCH, "echo")["id"]
        sent = 1
        while raw.get_json(f"/v1/jobs/{job_id}")["status"] != "DONE":
            sent += 1
            time.sleep(0.01)
        value = json.loads(raw.get_bytes(f"/v1/jobs/{job_id}/result"))
        raw_requests.append(sent + 2)
        assert value == _SMALL_BATCH

    mine, theirs = side_by_side(ours, baseline, bench.settings.pick(15, 2), warmup=1)
    value, base = median(mine), median(theirs)
    return Figure(
        "B9",
        "end to end: submit -> result (echo)",
        f"{fmt_seconds(value)} ({median([float(n) for n in ours_requests]):.0f} requests)",
        f"{fmt_seconds(base)} ({median([float(n) for n in raw_requests]):.0f} requests)",
        f"{value / base:.2f}x",
        "report (raw polls every 10 ms)",
        None,
    )
