"""The executor against the real service: FIFO queue, cancellation, restarts."""

from __future__ import annotations

import signal
import time
from typing import Any

import psutil
import pytest

from conftest import Http


def test_fifo_queue_positions_and_cancel_of_queued_and_running(service_factory: Any) -> None:
    running = service_factory(workers=1)
    http = Http(running)
    try:
        first = http.submit("sleep", None, params={"seconds": 30, "interval": 0.1})
        second = http.submit("echo", "b")
        third = http.submit("echo", "c")
        assert http.wait(first["id"], until=lambda i: i["status"] == "RUNNING")
        assert http.get(f"/v1/jobs/{second['id']}").json()["queue_position"] == 1
        assert http.get(f"/v1/jobs/{third['id']}").json()["queue_position"] == 2
        cancel = http.post(f"/v1/jobs/{second['id']}/cancel").json()
        assert cancel == {"cancelled": True, "status": "CANCELLED"}
        info = http.get(f"/v1/jobs/{third['id']}").json()
        assert info["status"] == "QUEUED" and info["queue_position"] == 1
        started = time.monotonic()
        cancel = http.post(f"/v1/jobs/{first['id']}/cancel").json()
        assert cancel == {"cancelled": True, "status": "CANCELLED"}
        assert time.monotonic() - started < 2.0
        assert http.wait(third["id"])["status"] == "DONE"
        assert http.get(f"/v1/jobs/{second['id']}/result").status_code == 409
    finally:
        http.close()


def test_running_job_ignoring_cancel_is_killed_within_two_seconds(service_factory: Any) -> None:
    running = service_factory(workers=1)
    http = Http(running)
    try:
        job = http.submit("sleep", None, params={"seconds": 60, "ignore_cancel": True})
        http.wait(job["id"], until=lambda i: i["status"] == "RUNNING")
        workers_before = {p.pid for p in psutil.Process(running.pid).children()}
        started = time.monotonic()
        http.post(f"/v1/jobs/{job['id']}/cancel")
        info = http.wait(job["id"], timeout=2.0)
        elapsed = time.monotonic() - started
        print(f"cancel of a job ignoring cancellation took {elapsed:.2f} s")
        assert info["status"] == "CANCELLED" and elapsed < 2.0, elapsed
        assert "killed" in info["message"]
        # The pool lives on with a replacement worker.
        assert http.wait(http.submit("echo", 1)["id"])["status"] == "DONE"
        workers_after = {p.pid for p in psutil.Process(running.pid).children()}
        assert workers_after != workers_before
    finally:
        http.close()


@pytest.mark.slow
def test_restart_keeps_queued_jobs_and_errors_running_ones(service_factory: Any) -> None:
    running = service_factory(workers=1)
    http = Http(running)
    try:
        busy = http.submit("sleep", None, params={"seconds": 60, "interval": 0.2})
        queued = [http.submit("echo", i) for i in range(3)]
        http.wait(busy["id"], until=lambda i: i["status"] == "RUNNING")
        server = psutil.Process(running.pid)
        workers = server.children(recursive=True)
        running.stop(signal.SIGKILL)  # the service dies without any clean-up
        for worker in workers:
            if worker.is_running():
                worker.kill()
        running.start()
        lost = http.wait(busy["id"])
        assert lost["status"] == "ERROR" and "service stopped" in lost["message"]
        finished = [http.wait(j["id"]) for j in queued]
        assert [j["status"] for j in finished] == ["DONE"] * 3
        assert [j["started_at"] for j in finished] == sorted(j["started_at"] for j in finished)
        # A clean stop also marks the running job and leaves no process behind.
        again = http.submit("sleep", None, params={"seconds": 60})
        http.wait(again["id"], until=lambda i: i["status"] == "RUNNING")
        children = psutil.Process(running.pid).children(recursive=True)
        running.restart()
        assert not [c for c in children if c.is_running() and c.status() != "zombie"]
        assert http.get(f"/v1/jobs/{again['id']}").json()["status"] == "ERROR"
    finally:
        http.close()
