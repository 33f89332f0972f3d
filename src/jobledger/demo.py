"""``jobledger demo``: a guided tour of jobledger on the embedded local service.

The tour runs in a fresh temporary ``JOBLEDGER_HOME`` with nothing configured, so it
leaves the user's registry, store and config untouched: it submits a few jobs
(an echo job with an alias, a sleep job whose interim results stream live, a failing
job, and a Bell circuit on the Qiskit sampler when the ``qiskit`` extra is installed),
imports a handle in a fresh Python process, stops the service and reads the
same result offline, shows the recorded provenance and where the registry lives.
The service is always stopped at the end; the folder is removed unless ``keep``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from jobledger.cli.output import is_terminal, style, wait_with_progress

__all__ = ["ALIAS", "STEPS", "run_demo"]

ALIAS = "hello"
STEPS = (
    "Start the embedded local service in a temporary folder",
    "Submit an echo job with an alias",
    "Wait for it, with progress",
    "Stream the interim results of a sleep job",
    "A failing job explains itself",
    "A quantum circuit, as a native Qiskit object",
    "Import the job by its alias in a fresh Python process",
    "Stop the service and read the same result offline",
    "What was recorded at submission (provenance)",
    "Where the registry lives, and how to browse it",
    "Clean up",
)
_ENV = (
    "JOBLEDGER_HOME",
    "JOBLEDGER_URL",
    "JOBLEDGER_TOKEN",
    "JOBLEDGER_OFFLINE",
    "JOBLEDGER_PROFILE",
)


def _heading(number: int) -> None:
    text = f"[{number}/{len(STEPS)}] {STEPS[number - 1]}"
    click.echo("\n" + style(text, "cyan", bold=True))


def _say(text: str) -> None:
    click.echo(f"    {text}")


@contextmanager
def _isolated_home(home: Path) -> Iterator[None]:
    """Point every JOBLEDGER_* setting of this process at *home* for the block."""
    saved = {name: os.environ.get(name) for name in _ENV}
    for name in _ENV:
        os.environ.pop(name, None)
    os.environ["JOBLEDGER_HOME"] = str(home)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _python(code: str, **env: str) -> str:
    """Run *code* in a fresh interpreter with this environment (plus *env*)."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the fresh Python process failed: {done.stderr.strip()}")
    return done.stdout.strip()


def run_demo(*, keep: bool = False) -> None:
    """Run the tour; the service is stopped and (unless *keep*) the folder removed.

    :raises JobledgerError: when a step fails (after cleaning up).
    """
    started = time.monotonic()
    home = Path(tempfile.mkdtemp(prefix="jobledger-demo-"))
    try:
        with _isolated_home(home):
            try:
                _tour(home, keep)
            finally:
                from jobledger.service.local import stop

                stop()
    except BaseException:
        if keep:
            click.echo(f"the demo's folder is kept: {home}", err=True)
        else:
            shutil.rmtree(home, ignore_errors=True)
        raise
    _heading(len(STEPS))
    _say("the local service is stopped; no process is left running")
    if keep:
        _say(f"kept the demo's folder: {home}")
        _say(f"look around with: JOBLEDGER_HOME={home} jobledger ls")
    else:
        shutil.rmtree(home, ignore_errors=True)
        _say(f"removed the demo's folder {home} (keep it next time with --keep)")
    _say(f"done in {time.monotonic() - started:.1f} s")
    _say("to go on, in your own folder: `jobledger submit echo batch.json`, `jobledger ls`,")
    _say("`jobledger --help`; the guides start at docs/quickstart.md")


def _tour(home: Path, keep: bool) -> None:
    import jobledger
    from jobledger.errors import JobFailureError
    from jobledger.paths import get_paths
    from jobledger.service.local import find_running, stop

    paths = get_paths()
    _heading(1)
    _say(f"JOBLEDGER_HOME={home} (nothing configured: the embedded service is used)")
    conn = jobledger.connect()
    try:
        backends = ", ".join(b.name for b in conn.backends())
        running = find_running(paths)
        where = f" at {running.url} (pid {running.pid})" if running else ""
        _say(f"service running{where}; backends: {backends}")

        _heading(2)
        batch = {"greeting": "hello, ledger", "values": [1, 2, 3]}
        job = conn.submit(batch, "echo", params={"delay": 1}, tags=["demo"], alias=ALIAS)
        _say(f">>> job = conn.submit({json.dumps(batch)}, 'echo', alias={ALIAS!r})")
        _say(f"recorded locally, then submitted: {job.job_id} (alias {job.alias})")

        _heading(3)
        status = wait_with_progress(job, timeout=60)
        _say(f"{job.job_id} is {status.qlmaas_name}; result: {job.result()}")

        _heading(4)
        sleeper = conn.submit(None, "sleep", params={"seconds": 2, "interval": 0.5})
        _say(f"{sleeper.job_id} sleeps 2 s and publishes its progress every 0.5 s:")

        def show(value: Any) -> None:
            _say(f"  interim result: {json.dumps(value)}")

        status = wait_with_progress(sleeper, timeout=60, on_interim=show)
        _say(f"{sleeper.job_id} is {status.qlmaas_name}; result: {sleeper.result()}")

        _heading(5)
        failing = conn.submit(None, "fail", params={"message": "the demo asked me to fail"})
        wait_with_progress(failing, timeout=60)
        try:
            failing.result()
        except JobFailureError as exc:
            _say(f"job.result() raised JobFailureError: {exc}")

        _heading(6)
        _quantum_step(conn)
        environment = job.provenance.get("environment") or {}
    finally:
        conn.close()

    _heading(7)
    code = f"from jobledger.jobs import {ALIAS}; print({ALIAS}.result())"
    _say(f"$ python -c '{code}'")
    _say(_python(code))

    _heading(8)
    stop(paths)
    _say(f"service stopped (running now: {'yes' if find_running(paths) else 'no'})")
    offline_code = (
        f"import sys; from jobledger.jobs import {ALIAS}; print({ALIAS}.result()); "
        "print('requests imported:', 'requests' in sys.modules)"
    )
    _say(f'$ JOBLEDGER_OFFLINE=1 python -c "from jobledger.jobs import {ALIAS}; ..."')
    for line in _python(offline_code, JOBLEDGER_OFFLINE="1").splitlines():
        _say(line)

    _heading(9)
    python = environment.get("python") or {}
    git = environment.get("git") or {}
    commit = git.get("commit") or "not a git checkout"
    _say(f"python:   {python.get('version')} ({python.get('executable')})")
    _say(f"host:     {environment.get('host')} (user {environment.get('user')})")
    _say(f"git:      {commit}{' (uncommitted changes)' if git.get('dirty') else ''}")
    _say(f"packages: {len(environment.get('packages') or {})} versions recorded")

    _heading(10)
    _say(f"registry: {paths.registry} (SQLite; table `jobs`)")
    _say(f"store:    {paths.store} (verified content-addressed blobs)")
    if keep:
        _say("this demo's folder is kept (--keep), so these work after the demo:")
    else:
        _say("this demo's folder is removed at the end; `jobledger demo --keep` keeps it, and")
        _say("then these work after the demo:")
    _say(f"  JOBLEDGER_HOME={home} jobledger show {ALIAS} --json")
    _say(f"  sqlite-utils tables {paths.registry} --counts   (sqlite-utils comes with jobledger)")
    _say(f"  datasette {paths.registry}   (after `pip install datasette`)")
    if not is_terminal():
        sys.stdout.flush()


def _quantum_step(conn: Any) -> None:
    """Submit a Bell circuit to the Qiskit sampler, when Qiskit is installed here."""
    import importlib.util

    offered = {b.name for b in conn.backends()}
    if importlib.util.find_spec("qiskit") is None or "qiskit-sampler" not in offered:
        _say("Qiskit is not installed here: `pip install 'jobledger[qiskit]'` (or")
        _say("`jobledger[quantum]` for Braket and myQLM too) adds a real circuit to this tour")
        return
    from qiskit import QuantumCircuit

    bell = QuantumCircuit(2)
    bell.h(0)
    bell.cx(0, 1)
    bell.measure_all()
    circuit = conn.submit([bell], "qiskit-sampler", params={"shots": 200, "seed": 7})
    _say(">>> conn.submit([bell], 'qiskit-sampler', params={'shots': 200, 'seed': 7})")
    wait_with_progress(circuit, timeout=120)
    counts = circuit.result()[0].data.meas.get_counts()
    _say(f"{circuit.job_id}: a PrimitiveResult again, read from the store; counts {counts}")
