"""``jobledger demo`` runs end to end in a subprocess and leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

from jobledger.demo import STEPS

_LEAKY = ("JOBLEDGER_URL", "JOBLEDGER_TOKEN", "JOBLEDGER_OFFLINE", "JOBLEDGER_PROFILE")


def _serve_processes(marker: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if (
            "jobledger" in cmdline
            and "serve" in cmdline
            and marker in cmdline
            and process.info["status"] != psutil.STATUS_ZOMBIE
        ):
            found.append(process)
    return found


def test_demo_runs_every_step_and_cleans_up(tmp_path: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k not in _LEAKY}
    # The demo makes its own home under TMPDIR; JOBLEDGER_HOME must stay untouched.
    env.update(JOBLEDGER_HOME=str(home), TMPDIR=str(temp))
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "jobledger", "demo"],
        capture_output=True,
        text=True,
        env=env,
        timeout=90,
        check=False,
    )
    elapsed = time.monotonic() - start
    assert done.returncode == 0, done.stdout + done.stderr
    assert elapsed < 60, f"the demo took {elapsed:.1f} s"
    for number, step in enumerate(STEPS, start=1):
        assert f"[{number}/{len(STEPS)}] {step}" in done.stdout
    assert "JobFailureError" in done.stdout
    assert "interim result" in done.stdout
    assert "requests imported: False" in done.stdout
    assert "sqlite-utils tables" in done.stdout and "pip install datasette" in done.stdout
    assert "--keep" in done.stdout
    # The quantum extras are installed with the test dependencies: a real Bell circuit.
    assert "PrimitiveResult again" in done.stdout and "'00'" in done.stdout
    assert "\x1b" not in done.stdout  # piped: plain text
    assert not list(temp.iterdir()), "the demo's temporary folder was not removed"
    assert not home.exists(), "the demo touched the user's JOBLEDGER_HOME"
    assert _serve_processes(str(temp)) == []
