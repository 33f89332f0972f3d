"""The benchmark suite's quick mode runs end to end, so its code cannot rot.

It runs ``python -m benchmarks --quick --no-write`` (tiny sizes, a real service on
loopback, a temporary JOBLEDGER_HOME) and checks that every figure was measured. It
asserts no timing: a slow or shared machine must not fail it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IDS = ("B1", "B2", "B3", "B4", "B5a", "B5b", "B5c", "B6", "B7", "B8", "B9")
IDS += ("Q1a", "Q1b", "Q2a", "Q2b", "Q3a", "Q3b", "P1", "D1")  # quantum SDKs, IBM, Dask


def test_quick_mode_measures_every_figure(tmp_path: Path) -> None:
    doc = tmp_path / "performance.md"
    doc.write_text("untouched\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBLEDGER_")}
    env["JOBLEDGER_HOME"] = str(tmp_path / "home")  # the suite sets its own; belt and braces
    env["TMPDIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--no-write", "--doc", str(doc)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = done.stdout.rsplit("\ntotal ", 1)[0]
    for figure in IDS:
        assert f"\n{figure} " in summary, f"{figure} missing from:\n{summary}"
    assert doc.read_text() == "untouched\n"
    assert not (tmp_path / "home").exists()  # the suite used its own temporary home
