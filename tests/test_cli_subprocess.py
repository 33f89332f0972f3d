"""The main ``jobledger`` commands in real subprocesses (``python -m jobledger``).

What a shell user sees: exit codes, stdout that scripts can capture, one-line errors
on stderr without tracebacks, and no escape sequences when output is piped.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

_LEAKY = ("JOBLEDGER_URL", "JOBLEDGER_TOKEN", "JOBLEDGER_OFFLINE", "JOBLEDGER_PROFILE")


class Shell:
    """Runs ``python -m jobledger`` with a private home, pointed at the service."""

    def __init__(self, home: Path, service: Any) -> None:
        self.env = {k: v for k, v in os.environ.items() if k not in _LEAKY}
        self.env.update(
            JOBLEDGER_HOME=str(home),
            JOBLEDGER_URL=service.url,
            JOBLEDGER_TOKEN=service.token,
            NO_COLOR="",
        )

    def __call__(
        self, *args: str, code: int = 0, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "jobledger", *args],
            capture_output=True,
            text=True,
            input=input,
            env=self.env,
            timeout=60,
            check=False,
        )
        assert done.returncode == code, (
            f"jobledger {' '.join(args)} exited {done.returncode}, expected {code}\n"
            f"stdout: {done.stdout}\nstderr: {done.stderr}"
        )
        assert "\x1b" not in done.stdout + done.stderr  # piped: no colours, no bars
        return done


@pytest.fixture
def sh(jobledger_home: Path, service: Any) -> Shell:
    return Shell(jobledger_home, service)


def test_main_commands_in_subprocesses(sh: Shell, tmp_path: Path, jobledger_home: Path) -> None:
    batch = tmp_path / "batch.json"
    batch.write_text(json.dumps({"shots": 100}))
    job_id = sh("submit", "echo", str(batch), "--alias", "shell_job", "--tag", "cli").stdout
    job_id = job_id.strip()
    assert re.fullmatch(r"J[0-9A-Z]{18}", job_id)

    assert sh("wait", "shell_job", "--timeout", "30").stdout.startswith(f"{job_id} done")
    listed = json.loads(sh("ls", "--json").stdout)
    assert [(j["id"], j["alias"], j["status"]) for j in listed] == [(job_id, "shell_job", "done")]
    table = sh("ls").stdout
    assert job_id in table and "done" in table
    shown = json.loads(sh("show", "shell_job", "--json").stdout)
    assert shown["id"] == job_id and shown["tags"] == ["cli"]
    assert json.loads(sh("result", "shell_job", "--json").stdout) == {"shots": 100}
    assert json.loads(sh("show", job_id, "--json").stdout)["result_stored"] is True

    found = json.loads(sh("paths", "--json").stdout)
    assert {"registry", "store", "config", "runtime"} <= set(found)
    assert Path(found["registry"]).is_relative_to(jobledger_home)
    assert Path(found["registry"]).is_file()


def test_submit_wait_json_from_stdin(sh: Shell) -> None:
    done = sh("submit", "echo", "-", "--wait", "--json", input="[1, 2, 3]")
    job = json.loads(done.stdout)
    assert job["status"] == "done" and job["status_code"] == "DONE"
    assert json.loads(sh("result", job["id"], "--json").stdout) == [1, 2, 3]


def test_token_create_prints_only_the_token(sh: Shell, service: Any) -> None:
    done = sh("token", "create", "dave", "--data", str(service.data))
    assert re.fullmatch(r"\S+", done.stdout.strip()) and len(done.stdout.splitlines()) == 1
    assert "dave" in done.stderr


def test_errors_are_one_line_without_traceback(sh: Shell) -> None:
    sh("submit", "echo", "--alias", "hello")
    unknown = sh("show", "helo", code=1)
    assert unknown.stderr.count("\n") == 1 and "Traceback" not in unknown.stderr
    assert "did you mean hello" in unknown.stderr
    usage = sh("ls", "--bogus", code=2)
    assert "Traceback" not in usage.stderr and "--bogus" in usage.stderr
    bad_param = sh("submit", "echo", "--param", "oops", code=2)
    assert "KEY=VALUE" in bad_param.stderr
    debug = sh("--debug", "show", "helo", code=1)
    assert "Traceback" in debug.stderr


def test_importing_the_cli_stays_light() -> None:
    code = (
        "import sys, jobledger.cli; "
        "print(sorted(m for m in ('requests', 'sqlite3', 'diskcache') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
