"""Per-job wall-time and memory limits, from `jobledger serve` options and backends."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from backend_plugins import install_test_plugins

from conftest import Http


def _address_space_mb(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().vms // 2**20)


def test_wall_time_and_memory_limits_end_jobs_error_with_the_reason(
    service_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_test_plugins(tmp_path / "plugins", monkeypatch)
    # Measure a worker first: the memory limit counts its whole address space.
    probe = service_factory(workers=1)
    worker = psutil.Process(probe.pid).children()[0]
    limit = _address_space_mb(worker.pid) + 200
    probe.stop()
    monkeypatch.setenv("JOBLEDGER_JOB_TIMEOUT", "0 sleep=1")
    monkeypatch.setenv("JOBLEDGER_JOB_MEMORY", f"hog={limit}")
    running = service_factory(workers=2)
    http = Http(running)
    try:
        listed = {b["name"]: b for b in http.get("/v1/backends").json()["backends"]}
        assert listed["sleep"]["limits"] == {"seconds": 1.0, "memory_mb": 0}
        assert listed["hog"]["limits"] == {"seconds": 0.0, "memory_mb": limit}
        assert listed["slowpoke"]["limits"]["seconds"] == 1.0  # declared by the backend
        assert listed["echo"]["limits"] == {"seconds": 0.0, "memory_mb": 0}

        started = time.monotonic()
        slow = http.submit("sleep", None, params={"seconds": 60, "ignore_cancel": True})
        poke = http.submit("slowpoke", None, params={"seconds": 60})
        for job in (slow, poke):
            info = http.wait(job["id"], timeout=15)
            assert info["status"] == "ERROR", info
            assert info["message"] == "the job exceeded its wall-time limit of 1 s"
        assert time.monotonic() - started < 15

        small = http.wait(http.submit("hog", None, params={"mb": 20})["id"], timeout=30)
        assert small["status"] == "DONE", small
        big = http.wait(http.submit("hog", None, params={"mb": 1024})["id"], timeout=30)
        assert big["status"] == "ERROR"
        assert big["message"] == f"the job exceeded its memory limit of {limit} MiB"
        # Both pools live on.
        assert http.wait(http.submit("echo", 1)["id"])["status"] == "DONE"
        assert http.wait(http.submit("hog", None, params={"mb": 20})["id"])["status"] == "DONE"
    finally:
        http.close()


def test_bad_limit_values_are_refused(tmp_path: Path) -> None:
    from conftest import jobledger_cli

    done = jobledger_cli(
        "serve",
        "--port",
        "0",
        "--data",
        str(tmp_path / "d"),
        "--job-timeout",
        "sleep=x",
        home=tmp_path,
    )
    assert done.returncode != 0 and "--job-timeout" in done.stderr
