"""The embedded local service: one per JOBLEDGER_HOME, shared, stale-proof, stoppable."""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import requests

from conftest import jobledger_cli
from jobledger.paths import get_paths
from jobledger.service import local

_START = "from jobledger.service.local import ensure_running as e; s = e(); print(s.pid, s.url)"


def _gone(pids: list[int]) -> list[int]:
    left = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                left.append(pid)
        except psutil.NoSuchProcess:
            pass
    return left


@pytest.mark.slow
def test_two_concurrent_starts_share_one_service_and_stop_ends_all(jobledger_home: Path) -> None:
    starters = [
        subprocess.Popen(
            [sys.executable, "-c", _START],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60) for p in starters]
    assert all(p.returncode == 0 for p in starters), outputs
    assert outputs[0][0] == outputs[1][0], "both processes got the same service"
    pid = int(outputs[0][0].split()[0])
    try:
        paths = get_paths()
        found = local.find_running(paths)
        assert found is not None and found.pid == pid and found.url.startswith("http://127.0.0.1:")
        assert found.data == paths.local_service_data
        token_file = paths.tokens / "@local-service"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(paths.tokens.stat().st_mode) == 0o700
        assert token_file.read_text().strip() == found.token
        record = json.loads((paths.runtime / "local-service.json").read_text())
        assert {
            "url",
            "pid",
            "port",
            "service_id",
            "token_file",
            "data",
            "started_at",
            "version",
        } <= set(record)
        with requests.get(
            found.url + "/v1/jobs", timeout=5, headers={"Authorization": f"Bearer {found.token}"}
        ) as answer:
            assert answer.status_code == 200
        status = jobledger_cli("service", "status", "--json", home=jobledger_home)
        assert json.loads(status.stdout)["pid"] == pid
        processes = [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]
        assert len(processes) >= 3, "the server and its workers"
    finally:
        stopped = local.stop()
    assert stopped is True
    assert _gone(processes) == []
    assert local.find_running() is None and local.stop() is False
    status = jobledger_cli("service", "status", "--json", home=jobledger_home)
    assert json.loads(status.stdout) == {"running": False}


def test_stale_runtime_file_is_replaced(jobledger_home: Path) -> None:
    paths = get_paths()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    paths.runtime.mkdir(parents=True)
    runtime = paths.runtime / "local-service.json"
    runtime.write_text(
        json.dumps(
            {
                "url": "http://127.0.0.1:9",
                "pid": dead.pid,
                "port": 9,
                "service_id": "Sold",
                "data": "x",
            }
        )
    )
    assert local.find_running(paths) is None
    assert not runtime.exists(), "a runtime file naming a dead pid is removed"
    runtime.write_text(
        json.dumps(
            {
                "url": "http://127.0.0.1:9",
                "pid": dead.pid,
                "port": 9,
                "service_id": "Sold",
                "data": "x",
            }
        )
    )
    started = local.ensure_running(paths)
    try:
        assert started.pid != dead.pid
        assert json.loads(runtime.read_text())["pid"] == started.pid
        again = local.ensure_running(paths)
        assert again == started
    finally:
        assert local.stop(paths) is True
    assert _gone([started.pid]) == []


def test_token_create_prints_only_the_token(tmp_path: Path) -> None:
    done = jobledger_cli(
        "token", "create", "carol", "--data", str(tmp_path / "d"), home=tmp_path / "home"
    )
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}\n", done.stdout)
    assert "carol" in done.stderr
    bad = jobledger_cli(
        "token", "create", " ", "--data", str(tmp_path / "d"), home=tmp_path / "home"
    )
    assert bad.returncode != 0 and bad.stdout == ""


def test_local_module_imports_no_server_or_http_stack() -> None:
    code = (
        "import sys, jobledger.service.local\n"
        "print([m for m in ('starlette', 'uvicorn', 'requests') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
