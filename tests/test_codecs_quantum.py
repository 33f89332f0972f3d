"""The SDK codecs: round trips through the media-type table, and hostile payloads.

Each hostile payload is planted so that decoding it the SDK's own way runs code (a
pickle that creates a marker file, or a module on the path that creates it when
imported); the test shows jobledger's decoder refuses or scrubs it and the marker is
never created, then shows the same bytes do create it through the SDK's own path,
so the payload is real. A blocked SDK import must give a CodecError naming the extra.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import subprocess
import sys
import textwrap
import uuid
import zlib
from pathlib import Path
from typing import Any

import pytest

from jobledger import codecs
from jobledger.errors import CodecError

# myQLM's module loader emits an ImportWarning on Python 3.11+.
pytestmark = pytest.mark.filterwarnings("ignore::ImportWarning")

QISKIT = "application/vnd.qiskit.runtime+json"
PROGRAM = "application/vnd.braket.ir.openqasm+json"
TASK_RESULT = "application/vnd.braket.task-result+json"


class Planted:
    """Unpickling this creates *marker* (through pathlib, no shell)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def _bell_qiskit() -> Any:
    from qiskit import QuantumCircuit

    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    return circuit.measure_all(inplace=False)


# -- Qiskit -----------------------------------------------------------------------


def test_qiskit_pubs_and_results_round_trip() -> None:
    from qiskit.primitives import PrimitiveResult, StatevectorSampler
    from qiskit.quantum_info import SparsePauliOp

    bell = _bell_qiskit()
    pubs = [bell, (bell, None, 10), (bell.remove_final_measurements(False), SparsePauliOp("ZZ"))]
    data, media_type = codecs.encode(pubs)
    assert media_type == QISKIT
    back = codecs.decode(data, media_type)
    assert back[0] == bell and back[1] == [bell, None, 10]
    assert back[2][1] == SparsePauliOp("ZZ")

    result = StatevectorSampler(seed=5).run([bell], shots=64).result()
    data, media_type = codecs.encode(result)
    again = codecs.decode(data, media_type)
    assert isinstance(again, PrimitiveResult)
    assert again[0].data.meas.get_counts() == result[0].data.meas.get_counts()
    assert again is not codecs.decode(data, media_type)  # a fresh object each time


def test_qiskit_settings_naming_a_module_is_refused_before_any_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import qiskit.quantum_info.operators as operators
    from qiskit_ibm_runtime import RuntimeDecoder

    marker = tmp_path / "imported"
    name = f"jl_planted_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nclass Boom:\n    def __init__(self, **kw): pass\n"
    )
    # RuntimeDecoder imports any module under this package that a payload names.
    monkeypatch.setattr(operators, "__path__", [*operators.__path__, str(tmp_path)])
    module = f"qiskit.quantum_info.operators.{name}"
    payload = json.dumps(
        [{"__type__": "settings", "__module__": module, "__class__": "Boom", "__value__": {}}]
    ).encode()

    with pytest.raises(CodecError, match=f"{name}.Boom is not on jobledger's allowlist"):
        codecs.decode(payload, QISKIT)
    assert not marker.exists()

    json.loads(payload, cls=RuntimeDecoder)  # the SDK's decoder alone imports it
    assert marker.exists()
    monkeypatch.delitem(sys.modules, module)


def test_qiskit_object_array_holding_a_pickle_is_refused(tmp_path: Path) -> None:
    import numpy as np

    marker = tmp_path / "unpickled"
    buffer = io.BytesIO()
    np.save(buffer, np.array([Planted(marker)], dtype=object), allow_pickle=True)
    packed = base64.standard_b64encode(zlib.compress(buffer.getvalue())).decode()
    payload = json.dumps({"__type__": "ndarray", "__value__": packed}).encode()

    with pytest.raises(CodecError, match="object dtype"):
        codecs.decode(payload, QISKIT)
    assert not marker.exists()

    np.load(io.BytesIO(buffer.getvalue()), allow_pickle=True)  # unsafe loading runs it
    assert marker.exists()


@pytest.mark.parametrize(
    "element",
    [
        {"__type__": "pickle", "__value__": "gASVAAAAAAAAAAA="},
        {"__type__": "spmatrix", "__value__": "UEsDBA=="},
        {"__type__": "NoiseModel", "__value__": {}},
        {"__type__": "_json", "__module__": "os", "__class__": "system", "__value__": {}},
        {"__type__": "settings", "__module__": "builtins", "__class__": "eval", "__value__": {}},
    ],
)
def test_qiskit_tags_outside_the_allowlist_are_refused(element: dict[str, Any]) -> None:
    with pytest.raises(CodecError, match="allowlist"):
        codecs.decode(json.dumps({"wrapped": [element]}).encode(), QISKIT)


def test_qiskit_malformed_and_unencodable() -> None:
    with pytest.raises(CodecError, match="malformed"):
        codecs.decode(b"{not json", QISKIT)
    with pytest.raises(CodecError, match="malformed"):
        codecs.decode(b'{"__type__": "QuantumCircuit", "__value__": "AAAA"}', QISKIT)
    from qiskit.quantum_info import Clifford

    with pytest.raises(TypeError, match="Clifford"):
        codecs.encode([Clifford.from_label("XX")])


# -- Braket -----------------------------------------------------------------------


def test_braket_circuits_programs_and_results_round_trip() -> None:
    from braket.circuits import Circuit, FreeParameter
    from braket.devices import LocalSimulator
    from braket.ir.openqasm import Program
    from braket.tasks import GateModelQuantumTaskResult

    bell = Circuit().h(0).cnot(0, 1).rx(1, FreeParameter("theta"))
    data, media_type = codecs.encode(bell)
    assert media_type == PROGRAM
    back = codecs.decode(data, media_type)
    assert isinstance(back, Circuit) and back.parameters == bell.parameters
    assert back.to_ir().source == bell.to_ir().source

    bound = Program(source=bell.to_ir().source, inputs={"theta": 0.5})
    assert codecs.decode(*codecs.encode(bound)) == bound  # inputs: kept as a Program

    sampled = LocalSimulator().run(bell.make_bound_circuit({"theta": 0.0}), shots=20).result()
    data, media_type = codecs.encode(sampled)
    assert media_type == TASK_RESULT
    again = codecs.decode(data, media_type)
    assert isinstance(again, GateModelQuantumTaskResult)
    assert again.measurement_counts == sampled.measurement_counts

    exact = Circuit().h(0).cnot(0, 1).probability().amplitude(["00", "11"])
    result = LocalSimulator().run(exact, shots=0).result()
    probabilities, amplitudes = codecs.decode(*codecs.encode(result)).values
    assert probabilities.tolist() == result.values[0].tolist()
    assert amplitudes == result.values[1]


def test_braket_program_with_an_include_is_not_interpreted(tmp_path: Path) -> None:
    from braket.circuits import Circuit
    from braket.ir.openqasm import Program

    local_file = tmp_path / "on-the-reader.inc"
    local_file.write_text("gate planted q { x q; }\n")
    source = f'OPENQASM 3.0;\ninclude "{local_file}";\nqubit[1] q;\nplanted q[0];\n'
    program = Program(source=source, inputs={})

    value = codecs.decode(*codecs.encode(program))
    assert isinstance(value, Program) and value.source == source

    # Braket's interpreter alone opens the file named in the payload.
    assert [i.operator.name for i in Circuit.from_ir(program).instructions] == ["X"]


def test_braket_malformed_and_unencodable() -> None:
    from braket.circuits import Circuit

    for media_type in (PROGRAM, TASK_RESULT):
        for data in (b'{"inputs": 3}', b"[1, 2"):
            with pytest.raises(CodecError, match="malformed Braket payload"):
                codecs.decode(data, media_type)
    with pytest.raises(TypeError, match=r"one braket\.circuits\.Circuit"):
        codecs.encode([Circuit().h(0), Circuit().x(0)])


# -- myQLM ------------------------------------------------------------------------


def _bell_job() -> Any:
    from qat.lang.AQASM import CNOT, H, Program

    program = Program()
    qubits = program.qalloc(2)
    program.apply(H, qubits[0])
    program.apply(CNOT, qubits)
    return program.to_circ().to_job()


def _thrift(struct: Any) -> bytes:
    from thrift.protocol.TBinaryProtocol import TBinaryProtocolFactory
    from thrift.TSerialization import serialize

    data: bytes = serialize(struct, TBinaryProtocolFactory())
    return data


def _raw(name: str, data: bytes) -> Any:
    from qat.comm.shared import ttypes
    from thrift.protocol.TBinaryProtocol import TBinaryProtocolFactory
    from thrift.TSerialization import deserialize

    return deserialize(getattr(ttypes, name)(), data, TBinaryProtocolFactory())


def test_myqlm_round_trip_writes_no_pickle() -> None:
    from qat.core import Batch, BatchResult, Job, Result
    from qat.qpus import PyLinalg

    job = _bell_job()
    assert job.circuit._serialized_gate_set.startswith(b"\x80")  # myQLM's own pickle
    data, media_type = codecs.encode(job)
    assert media_type == "application/vnd.qat.job+thrift"
    assert _raw("Job", data).circuit._serialized_gate_set is None
    back = codecs.decode(data, media_type)
    assert isinstance(back, Job) and back.circuit.ops == job.circuit.ops

    result = PyLinalg().submit(back)
    again = codecs.decode(*codecs.encode(result))
    assert isinstance(again, Result)
    assert [(str(s.state), s.probability) for s in again] == [
        (str(s.state), s.probability) for s in result
    ]

    batch = Batch(jobs=[job, job], meta_data={"k": "v"})
    data, media_type = codecs.encode(batch)
    assert media_type == "application/vnd.qat.batch+thrift"
    assert isinstance(codecs.decode(data, media_type), Batch)
    results = PyLinalg().submit(batch)
    data, media_type = codecs.encode(results)
    assert media_type == "application/vnd.qat.batchresult+thrift"
    assert isinstance(codecs.decode(data, media_type), BatchResult)


def test_myqlm_pickled_gate_set_is_dropped_not_loaded(tmp_path: Path) -> None:
    from qat.core import Job
    from qat.qpus import PyLinalg

    marker = tmp_path / "unpickled"
    raw = _raw("Job", codecs.encode(_bell_job())[0])
    raw.circuit._serialized_gate_set = pickle.dumps(Planted(marker))
    planted = _thrift(raw)

    job = codecs.decode(planted, "application/vnd.qat.job+thrift")
    assert not marker.exists()
    assert len(PyLinalg().submit(job).raw_data) == 2  # still a runnable job

    Job.from_thrift(_raw("Job", planted))  # myQLM's own path unpickles it
    assert marker.exists()


def test_myqlm_result_data_is_withheld_and_typed_registers_import_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qat.comm.datamodel.ttypes import QRegisterMetadata
    from qat.comm.shared.ttypes import ResData
    from qat.core import Result
    from qat.qpus import PyLinalg

    unpickled, imported = tmp_path / "unpickled", tmp_path / "imported"
    name = f"jl_planted_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(f"open({str(imported)!r}, 'w').close()\nclass C: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    data, media_type = codecs.encode(PyLinalg().submit(_bell_job()))

    raw = _raw("Result", data)
    raw.data = ResData(_serialized=pickle.dumps(Planted(unpickled)))
    planted_data = _thrift(raw)
    result = codecs.decode(planted_data, media_type)
    assert result.data is None and result.meta_data["jobledger.withheld"] == "data"

    raw = _raw("Result", data)
    raw.qregs[0]._subtype_metadata = QRegisterMetadata(
        subtype=f"{name}:C", serialized_attributes=b""
    )
    planted_register = _thrift(raw)
    assert len(codecs.decode(planted_register, media_type).raw_data) == 2
    assert not unpickled.exists() and not imported.exists()

    Result.from_thrift(_raw("Result", planted_data))  # myQLM's own path unpickles...
    assert unpickled.exists()
    with pytest.raises(AttributeError):
        Result.from_thrift(_raw("Result", planted_register))
    assert imported.exists()  # ...and imports the module the payload names
    monkeypatch.delitem(sys.modules, name)


def test_myqlm_fields_that_only_travel_pickled_are_refused(tmp_path: Path) -> None:
    from qat.comm.shared.ttypes import ResData

    marker = tmp_path / "unpickled"
    raw = _raw("Job", codecs.encode(_bell_job())[0])
    raw.psi_0_ptr = ResData(_serialized=pickle.dumps(Planted(marker)))
    with pytest.raises(CodecError, match=r"Job\.psi_0_ptr is a pickled initial state"):
        codecs.decode(_thrift(raw), "application/vnd.qat.job+thrift")
    assert not marker.exists()

    job = _bell_job()
    job.psi_0_ptr = ResData(_serialized=pickle.dumps(0))
    with pytest.raises(TypeError, match="psi_0_ptr"):
        codecs.encode(job)


def test_myqlm_malformed_and_unencodable() -> None:
    for media_type in ("application/vnd.qat.job+thrift", "application/vnd.qat.result+thrift"):
        with pytest.raises(CodecError, match="malformed myQLM"):
            codecs.decode(b"\x0b\x00\x01\xff\xff\xff\xff", media_type)
    with pytest.raises(TypeError, match=r"circuit\.to_job\(\)"):
        codecs.encode(_bell_job().circuit)


# -- without the SDK --------------------------------------------------------------


def test_missing_sdk_raises_codec_error_naming_the_extra(tmp_path: Path) -> None:
    payloads = {
        "qiskit": codecs.encode([_bell_qiskit()]),
        "braket": codecs.encode(__import__("braket.circuits").circuits.Circuit().h(0)),
        "qlm": codecs.encode(_bell_job()),
    }
    for extra, (data, media_type) in payloads.items():
        (tmp_path / extra).write_bytes(data)
        (tmp_path / f"{extra}.type").write_text(media_type)
    code = f"""
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("qiskit", "qiskit_ibm_runtime", "braket", "qat"):
                    raise ImportError(f"{{name}} is blocked")
                return None
        sys.meta_path.insert(0, Block())
        from pathlib import Path
        from jobledger import codecs
        from jobledger.errors import CodecError
        assert codecs.decode(b'{{"a": 1}}', "application/json") == {{"a": 1}}
        root = Path({str(tmp_path)!r})
        for extra in ("qiskit", "braket", "qlm"):
            try:
                codecs.decode((root / extra).read_bytes(), (root / f"{{extra}}.type").read_text())
            except CodecError as exc:
                print(exc)
            else:
                raise SystemExit(f"{{extra}} payload decoded without its SDK")
    """
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3
    for line, extra in zip(lines, ("qiskit", "braket", "qlm"), strict=True):
        assert f"pip install 'jobledger[{extra}]'" in line and "--out FILE" in line
