"""The benchmark suite's quick mode runs end to end, so its code cannot rot.

It runs ``python -m benchmarks --quick --no-write`` (tiny sizes, a real service on
loopback, a temporary JOBLEDGER_HOME, scale fixtures of a few hundred jobs) and checks
that every figure and every row of the scale table was measured. It asserts no
timing: a slow or shared machine must not fail it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IDS = (
    *("B1", "B2", "B3", "B4", "B5a", "B5b", "B5c", "B6", "B7", "B8", "B9", "B10", "B11"),
    *("B12a", "B12b", "B12c", "B12d", "B13a", "B13b", "B14a", "B14b", "B14c"),
    *("B15a", "B15b", "B15c", "B15d", "B15e", "B16", "S"),
    *("Q1a", "Q1b", "Q2a", "Q2b", "Q3a", "Q3b", "P1", "D1"),  # quantum SDKs, IBM, Dask
)
SCALE_ROWS = (
    "dir(jobledger.jobs)",
    "jobledger.jobs.__all__",
    "IPython completion",
    "IPython completion (jedi)",
    "conn.jobs(limit=100)",
    "conn.sync(), nothing new",
    "conn.sync(fetch_results=True)",
    "jobledger cache info (process)",
)


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
        assert "failed: " not in summary.split(f"\n{figure} ", 1)[1].split("\n", 1)[0]
    table = summary.split("\nscale table", 1)[1]
    for row in SCALE_ROWS:
        line = next((t for t in table.splitlines() if t.startswith(f"| {row} |")), None)
        assert line is not None, f"{row} missing from the scale table:\n{table}"
        assert line.count(" ms") + line.count(" s ·") + line.count("µs") >= 3, line
    assert doc.read_text() == "untouched\n"
    assert not (tmp_path / "home").exists()  # the suite used its own temporary home
