"""The Braket backend of the reference service: ``braket-local``.

Runs one ``braket.circuits.Circuit`` (or OpenQASM ``Program``) on a Braket local
simulator, ``braket_sv`` (state vector, the default) or ``braket_dm`` (density matrix,
for circuits with noise), found by name in Braket's own ``braket.simulators`` entry
point group. The simulator writes Braket's ``GateModelTaskResult`` schema, which is
returned as-is (the client reads it as a ``GateModelQuantumTaskResult``). Programs with
an OpenQASM ``include`` are refused: the interpreter would open that file on the
service's machine. Braket is imported only inside ``run``.
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from jobledger.service.plugin import Context, Payload

__all__ = ["local"]

DEVICES = ("braket_sv", "braket_dm")


def _sdk_version() -> str:
    try:
        return metadata.version("amazon-braket-sdk")
    except metadata.PackageNotFoundError:
        return "not installed"


@dataclass(frozen=True)
class Local:
    """Simulate a circuit with a Braket local simulator."""

    name: str = "braket-local"
    version: str = field(default_factory=_sdk_version)
    description: str = (
        "Amazon Braket local simulator on one Circuit or OpenQASM Program; params shots "
        '(default 1000; 0 for exact result types), device ("braket_sv" default, "braket_dm")'
    )

    def available(self) -> str | None:
        """Why this backend cannot run here, or ``None`` when it can."""
        for module in ("braket.circuits", "braket.default_simulator"):
            try:
                found = importlib.util.find_spec(module)
            except (ImportError, ValueError):
                found = None
            if found is None:
                return (
                    f"this service lacks the Braket SDK ({module} is not importable); "
                    "install it with `pip install 'jobledger[braket]'`"
                )
        return None

    def validate(self, params: dict[str, Any]) -> None:
        unknown = sorted(set(params) - {"shots", "device"})
        if unknown:
            raise ValueError(
                f"unknown params {', '.join(unknown)}; this backend takes: device, shots"
            )
        shots = params.get("shots", 1000)
        if isinstance(shots, bool) or not isinstance(shots, int) or shots < 0:
            raise ValueError(f"param 'shots' must be an integer >= 0, not {shots!r}")
        device = params.get("device", "braket_sv")
        if device not in DEVICES:
            raise ValueError(f"param 'device' must be one of {', '.join(DEVICES)}, not {device!r}")

    def run(self, batch: Payload, params: dict[str, Any], ctx: Context) -> Payload | None:
        from braket.circuits import Circuit
        from braket.circuits.serialization import IRType
        from braket.ir.openqasm import Program

        from jobledger.codecs import braket as codec

        shots = int(params.get("shots", 1000))
        device = str(params.get("device", "braket_sv"))
        value = batch.value()
        if isinstance(value, Circuit):
            program = value.to_ir(IRType.OPENQASM)
            ctx.set_metric("depth", value.depth)
        elif isinstance(value, Program):
            program = value
        else:
            raise TypeError(
                f"braket-local runs one Circuit or OpenQASM Program, not {type(value).__name__}"
            )
        if codec.has_include(program.source):
            raise ValueError(
                "OpenQASM include statements are refused: they read files on the service"
            )
        simulator = _simulator(device)
        ctx.log(f"running on {device} with {shots} shots")
        ctx.set_metric("shots", shots)
        if ctx.cancelled():
            return None
        started = time.monotonic()
        result = simulator.run(program, shots=shots)
        ctx.set_metric("run_seconds", round(time.monotonic() - started, 3))
        ctx.set_metric("qubits", len(result.measuredQubits or []) or _qubits(value))
        ctx.log("simulation done")
        return Payload(codec.schema_json(result), codec.TASK_RESULT)


def _simulator(device: str) -> Any:
    for entry in metadata.entry_points(group="braket.simulators"):
        if entry.name == device:
            return entry.load()()
    raise ValueError(f"the Braket simulator {device!r} is not installed on this service")


def _qubits(value: Any) -> int:
    return int(getattr(value, "qubit_count", 0) or 0)


local = Local()
