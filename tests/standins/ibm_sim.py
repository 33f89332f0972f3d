"""Devices and execution for the IBM stand-in: real device snapshots, simulated on Aer.

Each stand-in device serves the configuration and properties JSON that
``qiskit_ibm_runtime.fake_provider`` ships for a real IBM device (the same
snapshots IBM's ``/backends/{name}/configuration`` and ``/properties`` returned
when they were taken). Jobs are executed the way the service would see them: the
submitted ``params`` are decoded with the SDK's own ``RuntimeDecoder`` (PUBs in
QPY), run with ``qiskit_aer``'s V2 primitives (with the device's noise model by
default), and the answer is a ``PrimitiveResult`` encoded with ``RuntimeEncoder``,
so the client decodes real bytes with its own decoder.
"""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from qiskit.primitives.containers import PrimitiveResult, PubResult, SamplerPubResult
from qiskit.primitives.containers.bindings_array import BindingsArray
from qiskit_ibm_runtime.execution_span import DoubleSliceSpan, ExecutionSpans
from qiskit_ibm_runtime.json import RuntimeDecoder, RuntimeEncoder

# Five- and seven-qubit Falcon snapshots keep noisy simulation in milliseconds.
DEFAULT_DEVICES: dict[str, str] = {
    "ibm_nairobi": "FakeNairobiV2",
    "ibmq_manila": "FakeManilaV2",
}
DEFAULT_SHOTS = 4096
# What IBM's Estimator aims for when neither the PUB nor the options say.
DEFAULT_PRECISION = 0.015625


class ExecutionError(Exception):
    """The submitted program could not run; the message becomes the job's failure reason."""


@dataclass
class StandInDevice:
    """One device: the JSON IBM would serve for it, and the fake backend that simulates it."""

    name: str
    configuration: dict[str, Any]
    properties: dict[str, Any]
    fake: Any
    operational: bool = True
    status_msg: str = "active"
    _noise_model: Any = field(default=None, repr=False)

    @property
    def num_qubits(self) -> int:
        """How many qubits the device has."""
        return int(self.configuration["n_qubits"])

    def noise_model(self) -> Any:
        """The device's noise model, built once per process and snapshot."""
        if self._noise_model is None:
            self._noise_model = _noise_model(type(self.fake).__name__, self.fake)
        return self._noise_model


_NOISE_MODELS: dict[str, Any] = {}


def _noise_model(fake_class: str, fake: Any) -> Any:
    # Snapshots never change, so every stand-in in the process can share one model.
    if fake_class not in _NOISE_MODELS:
        from qiskit_aer.noise import NoiseModel

        _NOISE_MODELS[fake_class] = NoiseModel.from_backend(fake)
    return _NOISE_MODELS[fake_class]


def load_device(name: str, fake_class: str) -> StandInDevice:
    """Build device *name* from the snapshot of ``fake_provider.<fake_class>``."""
    module = importlib.import_module("qiskit_ibm_runtime.fake_provider")
    fake = getattr(module, fake_class)()
    with open(os.path.join(fake.dirname, fake.conf_filename), encoding="utf-8") as handle:
        configuration = json.load(handle)
    with open(os.path.join(fake.dirname, fake.props_filename), encoding="utf-8") as handle:
        properties = json.load(handle)
    configuration["backend_name"] = name
    properties["backend_name"] = name
    return StandInDevice(name, configuration, properties, fake)


def execute(program_id: str, params_text: str, device: StandInDevice, *, noise: bool) -> str:
    """Run one submitted job and return its result as IBM's ``/results`` body.

    :param program_id: ``"sampler"`` or ``"estimator"``.
    :param params_text: the ``params`` object of the submission, as JSON text.
    :raises ExecutionError: if the program is unknown or the PUBs cannot run.
    """
    started = datetime.now(UTC)
    try:
        params = json.loads(params_text, cls=RuntimeDecoder)
        options = params.get("options") or {}
        if program_id == "sampler":
            result = _run_sampler(params["pubs"], options, device, noise, started)
        elif program_id == "estimator":
            result = _run_estimator(params["pubs"], options, device, noise)
        else:
            raise ExecutionError(f"Program not supported by the stand-in: {program_id}")
    except ExecutionError:
        raise
    except Exception as exc:  # the job fails, as on IBM, with the simulator's message
        raise ExecutionError(f"{type(exc).__name__}: {exc}") from exc
    return json.dumps(result, cls=RuntimeEncoder)


def _seed(options: dict[str, Any]) -> int | None:
    simulator = options.get("simulator") or {}
    seed = simulator.get("seed_simulator")
    return int(seed) if isinstance(seed, int) else None


def _backend_options(device: StandInDevice, noise: bool) -> dict[str, Any]:
    return {"noise_model": device.noise_model()} if noise else {}


def _bindings(circuit: Any, values: Any) -> BindingsArray | None:
    # The SDK sends parameter values as one array ordered like circuit.parameters.
    if circuit.num_parameters == 0:
        return None
    return BindingsArray({tuple(circuit.parameters): np.asarray(values, dtype=float)})


def _run_sampler(
    pubs: list[Any], options: dict[str, Any], device: StandInDevice, noise: bool, started: datetime
) -> PrimitiveResult[SamplerPubResult]:
    from qiskit_aer.primitives import SamplerV2

    default_shots = options.get("default_shots") or DEFAULT_SHOTS
    sampler = SamplerV2(
        default_shots=int(default_shots),
        seed=_seed(options),
        options={"backend_options": _backend_options(device, noise)},
    )
    coerced = []
    for pub in pubs:
        circuit, values, shots = pub[0], pub[1] if len(pub) > 1 else None, None
        if len(pub) > 2:
            shots = pub[2]
        coerced.append((circuit, _bindings(circuit, values), shots))
    aer_result = sampler.run(coerced).result()
    stopped = datetime.now(UTC)
    pub_results = []
    slices: dict[int, tuple[tuple[int, ...], slice, slice]] = {}
    for index, (pub_result, (circuit, _, _)) in enumerate(zip(aer_result, coerced, strict=True)):
        pub_results.append(
            SamplerPubResult(pub_result.data, metadata={"circuit_metadata": circuit.metadata})
        )
        # IBM's span shape is the PUB's shape plus one axis for the shots.
        shape = tuple(pub_result.data.shape)
        shots = pub_result.data[next(iter(pub_result.data.keys()))].num_shots
        flat = int(np.prod(shape, dtype=int))
        slices[index] = ((*shape, shots), slice(0, flat), slice(0, shots))
    spans = ExecutionSpans([DoubleSliceSpan(started, stopped, slices)])
    metadata = {"execution": {"execution_spans": spans}, "version": 2}
    return PrimitiveResult(pub_results, metadata=metadata)


def _run_estimator(
    pubs: list[Any], options: dict[str, Any], device: StandInDevice, noise: bool
) -> PrimitiveResult[PubResult]:
    from qiskit_aer.primitives import EstimatorV2

    default_precision = options.get("default_precision") or DEFAULT_PRECISION
    run_options = {"seed_simulator": seed} if (seed := _seed(options)) is not None else {}
    estimator = EstimatorV2(
        options={
            "default_precision": float(default_precision),
            "backend_options": _backend_options(device, noise),
            "run_options": run_options,
        }
    )
    coerced = []
    for pub in pubs:
        circuit, observables = pub[0], pub[1]
        values = pub[2] if len(pub) > 2 else None
        precision = pub[3] if len(pub) > 3 else None
        coerced.append((circuit, observables, _bindings(circuit, values), precision))
    aer_result = estimator.run(coerced).result()
    pub_results = []
    for pub_result, (circuit, _, _, precision) in zip(aer_result, coerced, strict=True):
        data = pub_result.data
        target = precision if precision is not None else float(default_precision)
        fields = {"evs": data.evs, "stds": data.stds, "ensemble_standard_error": data.stds}
        pub_results.append(
            PubResult(
                type(data)(shape=data.shape, **fields),
                metadata={
                    "shots": int(np.ceil(1 / target**2)) if target > 0 else 0,
                    "target_precision": target,
                    "circuit_metadata": circuit.metadata,
                    "resilience": {},
                    "num_randomizations": 32,
                },
            )
        )
    return PrimitiveResult(pub_results, metadata={"version": 2})
