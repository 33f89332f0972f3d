"""The Amazon Braket codec: circuits as OpenQASM program IR, results as task-result JSON.

A ``braket.circuits.Circuit`` (or an OpenQASM ``Program``) travels as Braket's own
``braket.ir.openqasm.Program`` JSON; a ``GateModelQuantumTaskResult`` travels as the
``GateModelTaskResult`` schema JSON that Braket devices write. Both are read back with
Braket's pydantic schemas, which build plain data and nothing else. A program is turned
back into a ``Circuit`` with ``Circuit.from_ir`` when that is faithful and safe: not when
it binds ``inputs`` (the circuit would lose its free parameters) and never when its
source has an ``include`` statement, because Braket's OpenQASM interpreter opens the
named file on the reading machine. Such programs are returned as the ``Program``.
"""

from __future__ import annotations

import re
from typing import Any

from jobledger.errors import CodecError

__all__ = [
    "MEDIA_TYPES",
    "PROGRAM",
    "TASK_RESULT",
    "decode",
    "encode",
    "has_include",
    "schema_json",
]

PROGRAM = "application/vnd.braket.ir.openqasm+json"
TASK_RESULT = "application/vnd.braket.task-result+json"
MEDIA_TYPES = (PROGRAM, TASK_RESULT)

# ``include`` is an OpenQASM 3 keyword, so it cannot be an identifier; a match inside a
# comment only costs the Circuit conversion, never safety.
_INCLUDE = re.compile(r"\binclude\b")


def has_include(source: str) -> bool:
    """Whether an OpenQASM source may contain an ``include`` (which reads local files)."""
    return _INCLUDE.search(source) is not None


def encode(value: Any) -> tuple[bytes, str]:
    """Encode a ``Circuit``, an OpenQASM ``Program`` or a gate-model task result.

    :raises TypeError: naming the type when it is none of those.
    """
    from braket.circuits import Circuit
    from braket.circuits.serialization import IRType
    from braket.ir.openqasm import Program
    from braket.task_result import GateModelTaskResult
    from braket.tasks import GateModelQuantumTaskResult

    if isinstance(value, Circuit):
        return value.to_ir(IRType.OPENQASM).json().encode("utf-8"), PROGRAM
    if isinstance(value, Program):
        return value.json().encode("utf-8"), PROGRAM
    if isinstance(value, GateModelTaskResult):
        return schema_json(value), TASK_RESULT
    if isinstance(value, GateModelQuantumTaskResult):
        return schema_json(_schema_of(value)), TASK_RESULT
    raise TypeError(
        f"cannot encode a value of type {type(value).__qualname__} with the Braket codec: "
        "jobledger sends one braket.circuits.Circuit or braket.ir.openqasm.Program per job, "
        "and reads GateModelQuantumTaskResult"
    )


def decode(data: bytes, media_type: str) -> Any:
    """Decode a program (to a ``Circuit`` when safe) or a task result.

    :raises CodecError: for malformed bytes or an unknown media type.
    """
    try:
        text = data.decode("utf-8")
        if media_type == PROGRAM:
            from braket.ir.openqasm import Program

            return _circuit_if_safe(Program.parse_raw(text))
        if media_type == TASK_RESULT:
            from braket.tasks import GateModelQuantumTaskResult

            return GateModelQuantumTaskResult.from_string(text)
    # Braket's schemas raise pydantic's ValidationError, a ValueError.
    except (UnicodeDecodeError, ValueError, TypeError, KeyError) as exc:
        raise CodecError(f"malformed Braket payload ({media_type}): {exc}") from None
    raise CodecError(f"the Braket codec does not read {media_type!r}")


def _circuit_if_safe(program: Any) -> Any:
    if program.inputs or has_include(program.source):
        return program
    from braket.circuits import Circuit

    try:
        return Circuit.from_ir(program)
    except Exception:  # the interpreter raises many types; the Program is still faithful
        return program


def _schema_of(result: Any) -> Any:
    """The ``GateModelTaskResult`` schema object a ``GateModelQuantumTaskResult`` came from."""
    from braket.task_result import GateModelTaskResult, ResultTypeValue

    fields: dict[str, Any] = {
        "taskMetadata": result.task_metadata,
        "additionalMetadata": result.additional_metadata,
        "measuredQubits": result.measured_qubits,
        "outputs": result.outputs,
    }
    if result.measurements is not None:
        fields["measurements"] = _plain(result.measurements)
    elif result.measurement_probabilities:
        fields["measurementProbabilities"] = dict(result.measurement_probabilities)
    if result.result_types:
        fields["resultTypes"] = [
            ResultTypeValue(type=item.type, value=_plain(item.value))
            for item in result.result_types
        ]
    return GateModelTaskResult(**fields)


def schema_json(schema: Any) -> bytes:
    """A Braket schema object as JSON bytes that its schema reads back.

    Simulators leave NumPy values in results, and an exact (0-shot) result with an
    empty ``measurements`` list, which the schema itself refuses when parsing.
    """
    if getattr(schema, "measurements", None) == []:
        schema = schema.copy(update={"measurements": None})
    text: str = schema.json(encoder=_json_default)
    return text.encode("utf-8")


def _json_default(value: Any) -> Any:
    if isinstance(value, complex) or hasattr(value, "tolist"):
        return _plain(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _plain(value: Any) -> Any:
    """Undo the SDK's casts (NumPy arrays, complex numbers) back to schema JSON values."""
    if isinstance(value, complex):
        return [value.real, value.imag]
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value
