"""The Dask executor against the real service: the pool's guarantees on a Dask cluster.

``executor_service`` runs the tests shared by both executors twice: on the local
pool and on ``serve --executor dask`` (which starts a LocalCluster of two worker
processes). ``cluster_service`` is ``serve --executor dask --scheduler ADDRESS``
against a separate two-worker cluster started in its own process, as a real
deployment would have it; it carries the campaign, a lost worker and a restart.
The test process itself never imports distributed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from conftest import Http, RunningService

SLOTS = 2
FINAL = ("DONE", "ERROR", "CANCELLED", "DELETED")

# A cluster like one a user would run: two single-threaded worker processes, and a
# task that was on a lost worker is not retried (allowed-failures 0).
_CLUSTER = textwrap.dedent(
    """
    import sys
    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None, scheduler_port=0,
        )
    print(cluster.scheduler_address, flush=True)
    sys.stdin.read()
    cluster.close()
    """
)


def _start(data: Path, env: dict[str, str]) -> RunningService:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        return RunningService(data, workers=SLOTS)


@pytest.fixture(scope="module", params=["process", "dask"])
def executor_service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningService]:
    running = _start(tmp_path_factory.mktemp(request.param), {"JOBLEDGER_EXECUTOR": request.param})
    yield running
    running.stop()


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[subprocess.Popen[str]]:
    log = tmp_path_factory.mktemp("cluster") / "cluster.log"
    with open(log, "w") as err:
        process = subprocess.Popen(
            [sys.executable, "-c", _CLUSTER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    assert process.stdout is not None
    address = process.stdout.readline().strip()
    assert address.startswith("tcp://127.0.0.1:"), log.read_text()
    process.address = address  # type: ignore[attr-defined]
    yield process
    assert process.stdin is not None
    process.stdin.close()
    process.stdout.close()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def cluster_service(
    dask_cluster: subprocess.Popen[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningService]:
    env = {
        "JOBLEDGER_EXECUTOR": "dask",
        "JOBLEDGER_DASK_SCHEDULER": dask_cluster.address,  # type: ignore[attr-defined]
    }
    running = _start(tmp_path_factory.mktemp("on-cluster"), env)
    yield running
    running.stop()


@pytest.fixture
def http(executor_service: RunningService) -> Iterator[Http]:
    if not executor_service.alive():
        executor_service.start()
    client = Http(executor_service)
    yield client
    client.close()


def _sse(http: Http, job_id: str) -> list[dict[str, Any]]:
    url = f"{http.service.url}/v1/jobs/{job_id}/events"
    events: list[dict[str, Any]] = []
    with requests.get(url, headers=http.service.headers(), stream=True, timeout=30) as answer:
        assert answer.status_code == 200
        current: dict[str, Any] = {}
        for line in answer.iter_lines(decode_unicode=True):
            if line.startswith("event: "):
                current["event"] = line[7:]
            elif line.startswith("data: "):
                current["data"] = json.loads(line[6:])
            elif not line and current:
                events.append(current)
                current = {}
    return events


def test_every_status_fifo_positions_and_cancel_of_queued_and_running(http: Http) -> None:
    sleepers = [
        http.submit("sleep", None, params={"seconds": 30, "interval": 0.1}) for _ in range(SLOTS)
    ]
    second = http.submit("echo", "b")
    third = http.submit("echo", "c")
    assert second["status"] == "QUEUED"
    for job in sleepers:
        http.wait(job["id"], until=lambda i: i["status"] == "RUNNING")
    assert http.get(f"/v1/jobs/{second['id']}").json()["queue_position"] == 1
    assert http.get(f"/v1/jobs/{third['id']}").json()["queue_position"] == 2
    cancel = http.post(f"/v1/jobs/{second['id']}/cancel").json()
    assert cancel == {"cancelled": True, "status": "CANCELLED"}
    info = http.get(f"/v1/jobs/{third['id']}").json()
    assert info["status"] == "QUEUED" and info["queue_position"] == 1
    started = time.monotonic()
    cancel = http.post(f"/v1/jobs/{sleepers[0]['id']}/cancel").json()
    assert cancel == {"cancelled": True, "status": "CANCELLED"}
    assert time.monotonic() - started < 2.0
    done = http.wait(third["id"])
    assert done["status"] == "DONE"
    assert http.get(f"/v1/jobs/{third['id']}/result").json() == "c"
    assert http.get(f"/v1/jobs/{second['id']}/result").status_code == 409
    http.post(f"/v1/jobs/{sleepers[1]['id']}/cancel")
    assert http.wait(sleepers[1]["id"])["status"] == "CANCELLED"
    assert http.delete(f"/v1/jobs/{third['id']}/files").json()["status"] == "DELETED"
    assert http.get(f"/v1/jobs/{third['id']}/result").status_code == 410


def test_running_job_ignoring_cancel_is_killed_within_two_seconds(http: Http) -> None:
    job = http.submit("sleep", None, params={"seconds": 60, "ignore_cancel": True})
    http.wait(job["id"], until=lambda i: i["status"] == "RUNNING")
    started = time.monotonic()
    http.post(f"/v1/jobs/{job['id']}/cancel")
    info = http.wait(job["id"], timeout=2.0)
    elapsed = time.monotonic() - started
    assert info["status"] == "CANCELLED" and elapsed < 2.0, elapsed
    assert "killed" in info["message"]
    assert http.wait(http.submit("echo", 1)["id"])["status"] == "DONE"


def test_crashing_backend_errors_only_its_own_job(http: Http) -> None:
    neighbour = http.submit("sleep", None, params={"seconds": 1.5, "interval": 0.5})
    http.wait(neighbour["id"], until=lambda i: i["status"] == "RUNNING")
    crashed = http.wait(http.submit("fail", None, params={"mode": "exit"})["id"])
    assert crashed["status"] == "ERROR"
    assert "died (exit code 3)" in crashed["message"]
    raised = http.wait(http.submit("fail", None, params={"message": "no luck"})["id"])
    assert raised["status"] == "ERROR" and "RuntimeError: no luck" in raised["message"]
    assert http.get(f"/v1/jobs/{raised['id']}/logs").text == "failing on purpose: no luck\n"
    assert http.wait(neighbour["id"])["status"] == "DONE"
    assert http.wait(http.submit("echo", [1, 2])["id"])["status"] == "DONE"


def test_interim_results_logs_and_metrics_stream_over_sse(http: Http) -> None:
    job = http.submit("sleep", None, params={"seconds": 1.0, "interval": 0.2})
    events = _sse(http, job["id"])
    statuses = [e["data"]["status"] for e in events if e["event"] == "status"]
    assert statuses == ["QUEUED", "RUNNING", "DONE"]
    interim = [e["data"]["value"]["elapsed"] for e in events if e["event"] == "interim"]
    assert len(interim) >= 3 and interim == sorted(interim)
    # Every interim result and log line arrives before the job's end.
    assert events[-1]["event"] == "status"
    assert [e["event"] for e in events].count("log") == len(interim)
    assert http.get(f"/v1/jobs/{job['id']}/interim").json()["interim"] == [
        e["data"]["value"] for e in events if e["event"] == "interim"
    ]


def _cluster_http(cluster_service: RunningService) -> Http:
    if not cluster_service.alive():
        cluster_service.start()
    return Http(cluster_service)


def test_two_hundred_jobs_on_a_cluster_all_done_in_fifo_order(
    cluster_service: RunningService,
) -> None:
    http = _cluster_http(cluster_service)
    try:
        jobs = [http.submit("echo", i) for i in range(200)]
        finished = [http.wait(job["id"], timeout=60) for job in jobs]
        assert [j["status"] for j in finished] == ["DONE"] * 200
        started = [j["started_at"] for j in finished]
        assert started == sorted(started)
        assert http.get(f"/v1/jobs/{jobs[199]['id']}/result").json() == 199
    finally:
        http.close()


def _backend_processes(root: psutil.Process) -> list[psutil.Process]:
    found = []
    for process in root.children(recursive=True):
        try:
            if "jobledger.service.executors.dask_child" in process.cmdline():
                found.append(process)
        except psutil.NoSuchProcess:
            continue
    return found


def test_lost_worker_errors_its_job_and_the_queue_resumes(
    cluster_service: RunningService, dask_cluster: subprocess.Popen[str]
) -> None:
    http = _cluster_http(cluster_service)
    try:
        jobs = [
            http.submit("sleep", None, params={"seconds": 60, "interval": 0.1})
            for _ in range(SLOTS)
        ]
        for job in jobs:
            http.wait(job["id"], until=lambda i: i["status"] == "RUNNING")
        backends = _backend_processes(psutil.Process(dask_cluster.pid))
        workers = {p.ppid() for p in backends}
        assert len(workers) == SLOTS, backends
        killed = min(workers)
        orphans = [p for p in backends if p.ppid() == killed]
        psutil.Process(killed).send_signal(signal.SIGKILL)
        http.wait(
            jobs[0]["id"],
            until=lambda i: any(
                http.get(f"/v1/jobs/{j['id']}").json()["status"] == "ERROR" for j in jobs
            ),
        )
        infos = [http.get(f"/v1/jobs/{j['id']}").json() for j in jobs]
        lost = [i for i in infos if i["status"] == "ERROR"]
        assert len(lost) == 1 and "Dask worker running the job was lost" in lost[0]["message"]
        # The other job runs on; the killed worker's backend process ended with it.
        assert [i["status"] for i in infos if i not in lost] == ["RUNNING"]
        assert not psutil.wait_procs(orphans, timeout=5)[1]
        survivor = next(i for i in infos if i not in lost)
        http.post(f"/v1/jobs/{survivor['id']}/cancel")
        after = [http.submit("echo", i) for i in range(6)]
        finished = [http.wait(j["id"], timeout=30) for j in after]
        assert [j["status"] for j in finished] == ["DONE"] * 6
        started = [j["started_at"] for j in finished]
        assert started == sorted(started)
    finally:
        http.close()


def test_restart_errors_jobs_running_on_the_cluster_and_frees_their_workers(
    cluster_service: RunningService,
) -> None:
    http = _cluster_http(cluster_service)
    try:
        busy = [
            http.submit("sleep", None, params={"seconds": 60, "ignore_cancel": True})
            for _ in range(SLOTS)
        ]
        for job in busy:
            http.wait(job["id"], until=lambda i: i["status"] == "RUNNING")
        cluster_service.restart()
        for job in busy:
            info = http.get(f"/v1/jobs/{job['id']}").json()
            assert info["status"] == "ERROR" and "service stopped" in info["message"]
        # The cluster's workers were freed: new jobs run long before the sleeps would end.
        after = [http.wait(http.submit("echo", i)["id"], timeout=20) for i in range(SLOTS)]
        assert [j["status"] for j in after] == ["DONE"] * SLOTS
    finally:
        http.close()


def test_serve_refuses_an_unreachable_scheduler(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBLEDGER_")}
    env["JOBLEDGER_HOME"] = str(tmp_path / "home")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "jobledger",
            "serve",
            "--port",
            "0",
            "--data",
            str(tmp_path / "d"),
            "--executor",
            "dask",
            "--scheduler",
            "tcp://127.0.0.1:9",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode != 0
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in done.stderr
