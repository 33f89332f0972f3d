"""D1: short jobs through the service on the local pool and on a 2-worker Dask cluster.

Two services run side by side, each with its own data folder and two job slots:
``jobledger serve`` (the local pool of two worker processes) and ``jobledger serve
--executor dask`` (a LocalCluster of two single-threaded worker processes). For each
round, one sleeping blocker per slot holds the service's queue while the echo jobs
are submitted (raw POSTs from four threads, so submitting is not what is measured);
cancelling the blockers lets the queue drain. Throughput is the number of echo jobs
over the span from the first one's ``started_at`` to the last one's ``ended_at``, as
the service recorded them. Rounds alternate pool, Dask, Dask, pool.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from benchmarks.common import Bench, Figure, Service, fmt_seconds, median
from benchmarks.providers import environment

__all__ = ["ExecutorService", "d1_scale_out"]

SLOTS = 2
_FINAL = {"DONE", "ERROR", "CANCELLED", "DELETED"}


class ExecutorService(Service):
    """:class:`Service` on the executor *executor* (``"process"`` or ``"dask"``).

    With ``"dask"`` the service starts a LocalCluster of *workers* worker processes.
    """

    def __init__(self, root: Path, *, executor: str, workers: int = SLOTS) -> None:
        super().__init__(root, workers=workers)
        self.executor = executor

    def __enter__(self) -> ExecutorService:
        # The child's environment is copied from this process's when it starts.
        with environment({"JOBLEDGER_EXECUTOR": self.executor}):
            super().__enter__()
        return self


@dataclass(frozen=True)
class Drain:
    """One round: *count* echo jobs run from a full queue."""

    count: int
    span: float  # first started_at to last ended_at, seconds
    durations: list[float]  # each job's started_at to ended_at, seconds
    submitting: float  # seconds the raw POSTs of the echo jobs took

    @property
    def rate(self) -> float:
        """Jobs per second."""
        return self.count / self.span

    @property
    def slot_seconds(self) -> float:
        """Seconds of one slot per job: what a job costs the executor."""
        return SLOTS * self.span / self.count


class Client:
    """Protocol v1 over one ``requests.Session``: submit, cancel, many statuses."""

    def __init__(self, service: Service) -> None:
        self.url = service.url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {service.token}"

    def submit(self, batch: Any, backend: str, params: dict[str, Any], tag: str) -> str:
        data = json.dumps(batch).encode()
        body = {
            "backend": backend,
            "batch": {
                "media_type": "application/json",
                "data": base64.b64encode(data).decode("ascii"),
                "sha256": hashlib.sha256(data).hexdigest(),
            },
            "params": params,
            "tags": [tag],
        }
        with self.session.post(
            self.url + "/v1/jobs",
            json=body,
            headers={"Idempotency-Key": uuid.uuid4().hex},
            timeout=60,
        ) as answer:
            answer.raise_for_status()
            return str(answer.json()["id"])

    def cancel(self, job_id: str) -> None:
        with self.session.post(f"{self.url}/v1/jobs/{job_id}/cancel", timeout=60) as answer:
            answer.raise_for_status()

    def statuses(self, ids: list[str]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for start in range(0, len(ids), 1000):
            with self.session.post(
                self.url + "/v1/jobs/status", json={"ids": ids[start : start + 1000]}, timeout=60
            ) as answer:
                answer.raise_for_status()
                found.extend(answer.json()["jobs"])
        return found

    def close(self) -> None:
        self.session.close()


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def drain(service: Service, count: int) -> Drain:
    """Queue *count* echo jobs behind blockers, release them, and time the drain."""
    client = Client(service)
    tag = f"d1-{uuid.uuid4().hex[:8]}"
    try:
        blockers = [
            client.submit(None, "sleep", {"seconds": 900}, f"{tag}-blocker") for _ in range(SLOTS)
        ]
        start = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            ids = list(pool.map(lambda i: client.submit({"i": i}, "echo", {}, tag), range(count)))
        submitting = time.perf_counter() - start
        for blocker in blockers:
            client.cancel(blocker)
        deadline = time.monotonic() + 600
        while True:
            jobs = client.statuses(ids)
            if all(job["status"] in _FINAL for job in jobs):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{service.url}: echo jobs still open after 600 s")
            time.sleep(0.2)
    finally:
        client.close()
    failed = [job for job in jobs if job["status"] != "DONE"]
    if failed or len(jobs) != count:
        raise RuntimeError(f"{len(failed)} of {count} echo jobs did not end DONE: {failed[:1]}")
    started = [_when(job["started_at"]) for job in jobs]
    ended = [_when(job["ended_at"]) for job in jobs]
    return Drain(
        count,
        (max(ended) - min(started)).total_seconds(),
        [(end - start).total_seconds() for start, end in zip(started, ended, strict=True)],
        submitting,
    )


def d1_scale_out(bench: Bench) -> Figure:
    """D1: jobs/s of short jobs on the local pool and on a 2-worker Dask LocalCluster."""
    count = bench.settings.pick(1000, 20)
    with (
        ExecutorService(bench.scratch("pool"), executor="process") as pool,
        ExecutorService(bench.scratch("dask"), executor="dask") as dask,
    ):
        for service in (pool, dask):  # warm-up: worker processes start, imports load
            drain(service, SLOTS * 2)
        rounds: dict[str, list[Drain]] = {"pool": [], "dask": []}
        order = ("pool", "dask", "dask", "pool")[: bench.settings.pick(4, 2)]
        for name in order:
            rounds[name].append(drain(pool if name == "pool" else dask, count))
    on_pool, on_dask = rounds["pool"], rounds["dask"]
    pool_rate = median([r.rate for r in on_pool])
    dask_rate = median([r.rate for r in on_dask])
    overhead = median([r.slot_seconds for r in on_dask]) - median(
        [r.slot_seconds for r in on_pool]
    )
    figure = Figure(
        "D1",
        f"{count:,} short jobs: Dask LocalCluster (2 workers) vs local pool (2)",
        f"{dask_rate:.0f} jobs/s",
        f"{pool_rate:.0f} jobs/s (pool)",
        f"{dask_rate / pool_rate:.2f}x, {_signed(overhead)}/job",
        "reported",
        None,
    )

    def rates(drains: list[Drain]) -> str:
        return ", ".join(f"{r.rate:.0f}" for r in drains)

    def durations(drains: list[Drain]) -> str:
        return fmt_seconds(median([d for r in drains for d in r.durations]))

    figure.notes.append(
        f"D1: jobs/s per round: pool {rates(on_pool)}; dask {rates(on_dask)} "
        f"(order {', '.join(order)}); the overhead per job is the difference in slot time "
        f"per job ({SLOTS} slots x span / jobs)"
    )
    figure.notes.append(
        f"D1: median started_at -> ended_at of one job: pool {durations(on_pool)}, "
        f"dask {durations(on_dask)}"
    )
    intake = median([count / r.submitting for r in on_pool + on_dask])
    bound = ": end to end, taking jobs in bounds the pool" if intake < pool_rate else ""
    figure.notes.append(
        f"D1: the service took in {intake:.0f} submissions/s (raw POSTs from 4 threads, "
        f"median of all rounds){bound}"
    )
    return figure


def _signed(seconds: float) -> str:
    return ("+" if seconds >= 0 else "-") + fmt_seconds(abs(seconds))
