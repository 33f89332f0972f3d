"""Q1-Q3: quantum SDKs through jobledger, next to the same SDK's own local mode.

For each SDK (Q1 Qiskit, Q2 Braket, Q3 myQLM) a Bell circuit runs on the reference
service's backend for it, and two figures are measured side by side in one run:

- ``a``: ``conn.submit(...).result()`` (record, send, the service runs the job in a
  worker process, poll, download, verify, decode) next to the SDK's local simulator
  running the same circuit in this process (its device built once, outside the
  timing). The ratio is the whole cost of tracking a job on a service; the notes
  break it down into the submit call, the service's queue and run, and what follows.
- ``b``: reading the stored result again with a fresh handle
  (``jobledger.jobs.get(id).result()``: registry lookup, store read, sha256 check,
  decode) next to running the simulation again.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import Bench, Figure, fmt_seconds, median, side_by_side

__all__ = ["compare_reads", "q1_qiskit", "q2_braket", "q3_myqlm", "repeat"]


@dataclass(frozen=True)
class Sdk:
    """One SDK's Bell-circuit job: what jobledger submits and what runs locally."""

    key: str
    name: str
    what: str
    backend: str
    params: dict[str, Any]
    batch: Any
    local: Callable[[], Any]
    outcomes: Callable[[Any], dict[str, float]]


@dataclass
class Trip:
    """One timed submit -> result, with the service's timestamps read afterwards."""

    job: Any
    sent: datetime
    submitted: float  # seconds the submit call took
    returned: float  # seconds from the submit call to result() returning
    spans: dict[str, float] = field(default_factory=dict)


def _qiskit() -> Sdk:
    from qiskit import QuantumCircuit
    from qiskit_aer import AerSimulator
    from qiskit_aer.primitives import SamplerV2

    bell = QuantumCircuit(2)
    bell.h(0)
    bell.cx(0, 1)
    bell.measure_all()
    sampler = SamplerV2.from_backend(AerSimulator(), default_shots=1024)
    return Sdk(
        "Q1",
        "Qiskit",
        "SamplerV2 on Aer, Bell, 1,024 shots",
        "qiskit-sampler",
        {"shots": 1024},
        [bell],
        lambda: sampler.run([bell]).result(),
        lambda result: dict(result[0].data.meas.get_counts()),
    )


def _braket() -> Sdk:
    from braket.circuits import Circuit
    from braket.devices import LocalSimulator

    bell = Circuit().h(0).cnot(0, 1)
    device = LocalSimulator("braket_sv")
    return Sdk(
        "Q2",
        "Braket",
        "LocalSimulator braket_sv, Bell, 1,000 shots",
        "braket-local",
        {"shots": 1000},
        bell,
        lambda: device.run(bell, shots=1000).result(),
        lambda result: dict(result.measurement_counts),
    )


def _myqlm() -> Sdk:
    with warnings.catch_warnings():
        # myQLM's module loader emits an ImportWarning on Python 3.11+.
        warnings.simplefilter("ignore", ImportWarning)
        from qat.lang.AQASM import CNOT, H, Program
        from qat.qpus import PyLinalg

    program = Program()
    qubits = program.qalloc(2)
    program.apply(H, qubits[0])
    program.apply(CNOT, qubits)
    job = program.to_circ().to_job()
    qpu = PyLinalg()
    return Sdk(
        "Q3",
        "myQLM",
        "PyLinalg, Bell job (exact probabilities)",
        "myqlm",
        {},
        job,
        lambda: qpu.submit(job),
        lambda result: {str(sample.state): sample.probability for sample in result},
    )


def repeat(work: Callable[[], object], rounds: int) -> list[float]:
    """The durations of *rounds* calls of *work*, in seconds."""
    durations = []
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        durations.append(time.perf_counter() - start)
    return durations


def _times(ratio: float) -> str:
    """A ratio as ``"1.3x"``, or ``"48x"`` from 10 up."""
    return f"{ratio:.1f}x" if ratio < 10 else f"{ratio:.0f}x"


def _seconds(start: datetime | None, end: datetime | None) -> float:
    if start is None or end is None:
        return float("nan")
    return (end - start).total_seconds()


def _breakdown(trips: list[Trip]) -> str:
    """Where the median submit -> result went, from the service's own timestamps."""
    for trip in trips:
        info = trip.job.get_info(refresh=False)
        trip.spans = {
            "submit call": trip.submitted,
            "queued on the service": _seconds(info.submission_date, info.starting_date),
            "running": _seconds(info.starting_date, info.ending_date),
            "after the end until result() returned": trip.returned
            - _seconds(trip.sent, info.ending_date),
        }
    names = list(trips[0].spans)
    return "; ".join(
        f"{name} {fmt_seconds(median([t.spans[name] for t in trips]))}" for name in names
    )


def _check(sdk: Sdk, ours: Any, theirs: Any) -> None:
    """Both sides must have run the Bell circuit: only |00> and |11> outcomes."""
    for side, result in (("jobledger", ours), ("local", theirs)):
        found = {key.strip("|>") for key, value in sdk.outcomes(result).items() if value}
        if not found or not found <= {"00", "11"}:
            raise AssertionError(f"{sdk.name} {side} run is not a Bell pair: {found}")


def submit_vs_local(bench: Bench, sdk: Sdk) -> tuple[Figure, str]:
    """Figure ``a`` for *sdk*; returns it and the id of a finished job to re-read."""
    conn = bench.connect(Path(os.environ["JOBLEDGER_HOME"]))
    trips: list[Trip] = []

    def ours() -> Any:
        sent = datetime.now(UTC)
        start = time.perf_counter()
        job = conn.submit(sdk.batch, sdk.backend, params=sdk.params, tags=["bench-quantum"])
        submitted = time.perf_counter() - start
        value = job.result(timeout=300)
        trips.append(Trip(job, sent, submitted, time.perf_counter() - start))
        return value

    _check(sdk, ours(), sdk.local())
    trips.clear()
    # Two warm-up rounds: the service's two worker processes each import the SDK once.
    mine, theirs = side_by_side(
        ours, sdk.local, bench.settings.pick(15, 2), warmup=bench.settings.pick(2, 1)
    )
    trips = trips[-len(mine) :]
    value, base = median(mine), median(theirs)
    figure = Figure(
        f"{sdk.key}a",
        f"{sdk.name} {sdk.what}: submit -> result",
        fmt_seconds(value),
        f"{fmt_seconds(base)} (SDK local)",
        _times(value / base),
        "reported (tracking overhead)",
        None,
    )
    figure.notes.append(
        f"{sdk.key}a: spread jobledger {fmt_seconds(min(mine))}-{fmt_seconds(max(mine))}, "
        f"local {fmt_seconds(min(theirs))}-{fmt_seconds(max(theirs))}; medians: "
        + _breakdown(trips)
    )
    return figure, str(trips[-1].job.job_id)


def compare_reads(
    key: str,
    title: str,
    cached: Callable[[], Any],
    other: Callable[[], Any],
    rounds: int,
    other_name: str,
) -> Figure:
    """A cached read against *other*, side by side; passes when the cached one is faster."""
    mine, theirs = side_by_side(cached, other, rounds)
    value, base = median(mine), median(theirs)
    ratio = f"{_times(base / value)} faster" if value <= base else f"{_times(value / base)} slower"
    figure = Figure(
        key,
        title,
        fmt_seconds(value),
        f"{fmt_seconds(base)} ({other_name})",
        ratio,
        "cached faster",
        value < base,
    )
    figure.notes.append(
        f"{key}: spread cached {fmt_seconds(min(mine))}-{fmt_seconds(max(mine))}, "
        f"{other_name} {fmt_seconds(min(theirs))}-{fmt_seconds(max(theirs))}"
    )
    return figure


def cached_vs_rerun(bench: Bench, sdk: Sdk, job_id: str) -> Figure:
    """Figure ``b`` for *sdk*: a fresh handle's ``result()`` against re-simulating."""
    import jobledger.jobs

    def cached() -> Any:
        return jobledger.jobs.get(job_id).result()

    first = cached()
    _check(sdk, first, sdk.local())
    if sdk.outcomes(cached()) != sdk.outcomes(first):
        raise AssertionError(f"{sdk.name}: two reads of stored job {job_id} differ")
    rounds = bench.settings.pick(30, 3)
    figure = compare_reads(
        f"{sdk.key}b",
        f"{sdk.name}: cached re-read vs re-running",
        cached,
        sdk.local,
        rounds,
        "re-run",
    )
    handle = jobledger.jobs.get(job_id)
    figure.notes.append(
        f"{sdk.key}b: the same handle's result() again (no lookup, decode included) "
        f"{fmt_seconds(median(repeat(handle.result, rounds)))}"
    )
    return figure


def _measure(bench: Bench, build: Callable[[], Sdk]) -> list[Figure]:
    sdk = build()
    figure, job_id = submit_vs_local(bench, sdk)
    return [figure, cached_vs_rerun(bench, sdk, job_id)]


def q1_qiskit(bench: Bench) -> list[Figure]:
    """Q1a, Q1b: Qiskit's SamplerV2 through ``qiskit-sampler`` and on Aer locally."""
    return _measure(bench, _qiskit)


def q2_braket(bench: Bench) -> list[Figure]:
    """Q2a, Q2b: Braket's ``braket_sv`` through ``braket-local`` and locally."""
    return _measure(bench, _braket)


def q3_myqlm(bench: Bench) -> list[Figure]:
    """Q3a, Q3b: myQLM's PyLinalg through ``myqlm`` and locally."""
    return _measure(bench, _myqlm)
