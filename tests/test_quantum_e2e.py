"""Quantum SDKs end to end: native objects in, native results out, read again offline.

Each test submits native SDK objects through ``jobledger.connect`` to the real service
(which runs the real simulators), checks the native result, then reads the same jobs
by alias in a fresh process with ``JOBLEDGER_OFFLINE=1``: results and batches must come
back from the store equal to the first read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import jobledger
from jobledger.client.connection import Connection

# myQLM's module loader emits an ImportWarning on Python 3.11+.
pytestmark = [
    pytest.mark.usefixtures("jobledger_home"),
    pytest.mark.filterwarnings("ignore::ImportWarning"),
]

TIMEOUT = 120


@pytest.fixture
def conn(service: Any) -> Iterator[Connection]:
    with jobledger.connect(url=service.url, token=service.token) as connection:
        yield connection


def offline_python(code: str, home: Path) -> Any:
    """Run *code* in a fresh process that may not use the network; return its JSON."""
    env = {**os.environ, "JOBLEDGER_HOME": str(home), "JOBLEDGER_OFFLINE": "1"}
    prelude = (
        "import socket\n"
        "def refuse(*args, **kwargs):\n"
        "    raise OSError('network used')\n"
        "socket.socket.connect = refuse\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_qiskit_sampler_and_estimator(conn: Connection, jobledger_home: Path) -> None:
    from qiskit import QuantumCircuit
    from qiskit.primitives import PrimitiveResult
    from qiskit.quantum_info import SparsePauliOp

    bell = QuantumCircuit(2)
    bell.h(0)
    bell.cx(0, 1)
    measured = bell.measure_all(inplace=False)
    observables = [SparsePauliOp(label) for label in ("ZZ", "XX", "ZI")]

    ideal = conn.submit(
        [measured], "qiskit-sampler", params={"shots": 200, "seed": 7}, alias="q_bell"
    )
    noisy = conn.submit(
        [measured],
        "qiskit-sampler",
        params={"shots": 200, "seed": 7, "backend": "fake_manila"},
        alias="q_manila",
    )
    exact = conn.submit([(bell, observables)], "qiskit-estimator", alias="q_evs")
    noisy_evs = conn.submit(
        [(bell, observables)],
        "qiskit-estimator",
        params={"seed": 3, "backend": "fake_manila"},
        alias="q_evs_manila",
    )

    result = ideal.result(timeout=TIMEOUT)
    assert isinstance(result, PrimitiveResult)
    counts = result[0].data.meas.get_counts()
    assert set(counts) == {"00", "11"} and sum(counts.values()) == 200
    assert ideal.metrics()["metrics"]["shots"] == 200
    assert ideal.metrics()["metrics"]["qubits"] == 2
    assert ideal.interim_results() == [{"pub": 0, "of": 1, "counts": {"meas": counts}}]

    noisy_counts = noisy.result(timeout=TIMEOUT)[0].data.meas.get_counts()
    assert sum(noisy_counts.values()) == 200
    assert noisy_counts.get("00", 0) + noisy_counts.get("11", 0) >= 160
    assert noisy.metrics()["metrics"]["qubits"] == 5  # transpiled for the 5-qubit device

    evs = exact.result(timeout=TIMEOUT)[0].data.evs
    assert evs.tolist() == pytest.approx([1.0, 1.0, 0.0], abs=1e-9)
    evs_manila = noisy_evs.result(timeout=TIMEOUT)[0].data.evs.tolist()
    assert 0.6 < evs_manila[0] < 1.0 and abs(evs_manila[2]) < 0.2

    assert ideal.inputs["batch"][0] == measured
    assert "Aer" in ideal.logs()

    again = offline_python(
        """
        import json
        from jobledger.jobs import q_bell, q_manila, q_evs, q_evs_manila
        from qiskit import QuantumCircuit
        batch = q_bell.get_batch()
        print(json.dumps({
            "bell": q_bell.result()[0].data.meas.get_counts(),
            "manila": q_manila.result()[0].data.meas.get_counts(),
            "evs": q_evs.result()[0].data.evs.tolist(),
            "evs_manila": q_evs_manila.result()[0].data.evs.tolist(),
            "batch_type": type(batch[0]).__name__,
            "circuit_qasm_ops": [i.operation.name for i in batch[0].data],
            "observables": str(q_evs.inputs["batch"][0][1]),
        }))
        """,
        jobledger_home,
    )
    assert again["bell"] == counts
    assert again["manila"] == noisy_counts
    assert again["evs"] == evs.tolist()
    assert again["evs_manila"] == evs_manila
    assert again["batch_type"] == "QuantumCircuit"
    assert again["circuit_qasm_ops"] == [i.operation.name for i in measured.data]
    assert again["observables"] == str(observables)


def test_braket_local(conn: Connection, jobledger_home: Path) -> None:
    from braket.circuits import Circuit
    from braket.tasks import GateModelQuantumTaskResult

    bell = Circuit().h(0).cnot(0, 1)
    noisy = Circuit().h(0).cnot(0, 1).bit_flip(0, 0.1).probability()

    sampled = conn.submit(bell, "braket-local", params={"shots": 100}, alias="b_bell")
    exact = conn.submit(
        noisy, "braket-local", params={"shots": 0, "device": "braket_dm"}, alias="b_noisy"
    )

    result = sampled.result(timeout=TIMEOUT)
    assert isinstance(result, GateModelQuantumTaskResult)
    counts = dict(result.measurement_counts)
    assert set(counts) == {"00", "11"} and sum(counts.values()) == 100
    assert sampled.metrics()["metrics"]["shots"] == 100

    probabilities = exact.result(timeout=TIMEOUT).values[0].tolist()
    assert probabilities == pytest.approx([0.45, 0.05, 0.05, 0.45])

    submitted = sampled.get_batch()
    assert isinstance(submitted, Circuit)
    assert submitted.to_ir().source == bell.to_ir().source

    again = offline_python(
        """
        import json
        from jobledger.jobs import b_bell, b_noisy
        print(json.dumps({
            "counts": dict(b_bell.result().measurement_counts),
            "probabilities": b_noisy.result().values[0].tolist(),
            "bell_source": b_bell.get_batch().to_ir().source,
            "noisy_source": b_noisy.inputs["batch"].to_ir().source,
        }))
        """,
        jobledger_home,
    )
    assert again["counts"] == counts
    assert again["probabilities"] == probabilities
    assert again["bell_source"] == bell.to_ir().source
    assert again["noisy_source"] == noisy.to_ir().source


def _bell_job(nbshots: int) -> Any:
    from qat.lang.AQASM import CNOT, H, Program

    program = Program()
    qubits = program.qalloc(2)
    program.apply(H, qubits[0])
    program.apply(CNOT, qubits)
    return program.to_circ().to_job(nbshots=nbshots)


def _x_job() -> Any:
    from qat.lang.AQASM import Program, X

    program = Program()
    qubits = program.qalloc(2)
    program.apply(X, qubits[1])
    return program.to_circ().to_job()


def test_myqlm_job_and_batch(conn: Connection, jobledger_home: Path) -> None:
    from qat.core import Batch, BatchResult, Result

    bell = _bell_job(nbshots=0)
    batch = Batch(jobs=[_bell_job(nbshots=50), _x_job()], meta_data={"figure": "3"})

    single = conn.submit(bell, "myqlm", alias="m_bell")
    several = conn.submit(batch, "myqlm", params={"qpu": "PyLinalg"}, alias="m_batch")

    result = single.result(timeout=TIMEOUT)
    assert isinstance(result, Result)
    exact = sorted((str(s.state), s.probability) for s in result)
    assert [state for state, _ in exact] == ["|00>", "|11>"]
    assert [p for _, p in exact] == pytest.approx([0.5, 0.5])

    results = several.result(timeout=TIMEOUT)
    assert isinstance(results, BatchResult) and len(results.results) == 2
    shots = sorted((str(s.state), s.probability) for s in results.results[0])
    assert {state for state, _ in shots} <= {"|00>", "|11>"}
    assert [str(s.state) for s in results.results[1]] == ["|01>"]
    assert several.interim_results()[-1]["of"] == 2
    assert several.metrics()["metrics"]["jobs"] == 2

    assert single.get_batch().circuit.ops == bell.circuit.ops

    again = offline_python(
        """
        import json, warnings
        warnings.simplefilter("ignore", ImportWarning)
        from jobledger.jobs import m_bell, m_batch
        print(json.dumps({
            "exact": sorted((str(s.state), s.probability) for s in m_bell.result()),
            "shots": sorted((str(s.state), s.probability) for s in m_batch.result().results[0]),
            "ops": [[op.gate, op.qbits] for job in m_batch.get_batch().jobs
                    for op in job.circuit.ops],
            "meta": m_batch.get_batch().meta_data,
        }))
        """,
        jobledger_home,
    )
    assert [tuple(item) for item in again["exact"]] == exact
    assert [tuple(item) for item in again["shots"]] == shots
    assert again["ops"] == [[op.gate, op.qbits] for job in batch.jobs for op in job.circuit.ops]
    assert again["meta"] == {"figure": "3"}
