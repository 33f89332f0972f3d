"""Qiskit backends of the reference service: ``qiskit-sampler`` and ``qiskit-estimator``.

Both run a list of PUBs on Qiskit Aer, one PUB at a time (so a cancel is honoured
between PUBs and each PUB's outcome is published as an interim result), and return a
``qiskit.primitives.PrimitiveResult`` through the Qiskit codec. Param ``backend`` names
a fake IBM backend from ``qiskit_ibm_runtime.fake_provider`` (``"fake_manila"``): the
simulator then carries that device's noise model and coupling map, and PUB circuits
are transpiled for it. Without it, an ideal ``AerSimulator`` runs. Qiskit is imported
only inside ``run`` (names of fake backends are read from the package's data folders),
so a service without Qiskit starts and simply does not offer these backends.
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from jobledger.service.plugin import Context, Payload

__all__ = ["estimator", "sampler"]

_SDK_MODULES = ("qiskit", "qiskit_aer", "qiskit_ibm_runtime")


def _sdk_version() -> str:
    try:
        return metadata.version("qiskit")
    except metadata.PackageNotFoundError:
        return "not installed"


def _unavailable() -> str | None:
    for module in _SDK_MODULES:
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            found = None
        if found is None:
            return (
                f"this service lacks the Qiskit SDK ({module} is not importable); "
                "install it with `pip install 'jobledger[qiskit]'`"
            )
    return None


def fake_backend_names() -> list[str]:
    """Names of the fake IBM backends, read from the package data (no import)."""
    spec = importlib.util.find_spec("qiskit_ibm_runtime")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(next(iter(spec.submodule_search_locations))) / "fake_provider" / "backends"
    if not folder.is_dir():
        return []
    return sorted(
        f"fake_{entry.name}"
        for entry in folder.iterdir()
        if entry.is_dir() and not entry.name.startswith("_")
    )


def _check_common(params: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(params) - allowed)
    if unknown:
        takes = ", ".join(sorted(allowed))
        raise ValueError(f"unknown params {', '.join(unknown)}; this backend takes: {takes}")
    seed = params.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"param 'seed' must be an integer >= 0, not {seed!r}")
    name = params.get("backend")
    if name is not None:
        known = fake_backend_names()
        if name not in known:
            listed = ", ".join(known) or "none (qiskit-ibm-runtime is not installed)"
            raise ValueError(f"param 'backend' must be a fake backend name, one of: {listed}")


def _device(name: str | None) -> tuple[Any, Any]:
    """The Aer simulator to run on, and the fake backend it imitates (or ``None``)."""
    from qiskit_aer import AerSimulator

    if name is None:
        return AerSimulator(), None
    from qiskit_ibm_runtime import fake_provider

    for attribute in dir(fake_provider):
        cls = getattr(fake_provider, attribute)
        if isinstance(cls, type) and getattr(cls, "backend_name", None) == name:
            fake = cls()
            return AerSimulator.from_backend(fake), fake
    raise ValueError(f"no fake backend named {name!r} in qiskit_ibm_runtime.fake_provider")


def _transpiler(fake: Any, seed: int | None) -> Any:
    from qiskit.transpiler import generate_preset_pass_manager

    return generate_preset_pass_manager(optimization_level=1, backend=fake, seed_transpiler=seed)


def _pubs(batch: Payload) -> list[Any]:
    value = batch.value()
    if not isinstance(value, list):
        value = [value]
    if not value:
        raise ValueError("the batch holds no PUBs")
    return value


@dataclass(frozen=True)
class Sampler:
    """Sample PUBs with Qiskit Aer's ``SamplerV2``."""

    name: str = "qiskit-sampler"
    version: str = field(default_factory=_sdk_version)
    description: str = (
        "Qiskit Aer SamplerV2 on a list of sampler PUBs; params shots (default 1024), "
        "seed, backend (a fake IBM backend name such as fake_manila: noisy simulation)"
    )

    def available(self) -> str | None:
        """Why this backend cannot run here, or ``None`` when it can."""
        return _unavailable()

    def validate(self, params: dict[str, Any]) -> None:
        _check_common(params, {"shots", "seed", "backend"})
        shots = params.get("shots", 1024)
        if isinstance(shots, bool) or not isinstance(shots, int) or shots < 1:
            raise ValueError(f"param 'shots' must be an integer >= 1, not {shots!r}")

    def run(self, batch: Payload, params: dict[str, Any], ctx: Context) -> Payload | None:
        from qiskit.primitives import PrimitiveResult
        from qiskit.primitives.containers.sampler_pub import SamplerPub
        from qiskit_aer.primitives import SamplerV2

        from jobledger import codecs

        shots = int(params.get("shots", 1024))
        seed = params.get("seed")
        simulator, fake = _device(params.get("backend"))
        pubs = [SamplerPub.coerce(pub, shots) for pub in _pubs(batch)]
        if fake is not None:
            manager = _transpiler(fake, seed)
            pubs = [SamplerPub(manager.run(p.circuit), p.parameter_values, p.shots) for p in pubs]
        ctx.log(f"sampling {len(pubs)} PUB(s), {shots} shots each, on {_describe(fake)}")
        _set_circuit_metrics(ctx, [p.circuit for p in pubs], shots)
        sampler = SamplerV2.from_backend(simulator, default_shots=shots, seed=seed)
        started = time.monotonic()
        results = []
        for index, pub in enumerate(pubs):
            if ctx.cancelled():
                return None
            result = sampler.run([pub]).result()[0]
            results.append(result)
            counts = {name: getattr(result.data, name).get_counts() for name in result.data}
            ctx.publish({"pub": index, "of": len(pubs), "counts": counts})
            ctx.log(f"PUB {index + 1}/{len(pubs)} done")
        ctx.set_metric("run_seconds", round(time.monotonic() - started, 3))
        value = PrimitiveResult(results, metadata={"version": 2, "shots": shots})
        return Payload(*codecs.encode(value))


@dataclass(frozen=True)
class Estimator:
    """Estimate expectation values of PUBs with Qiskit Aer's ``EstimatorV2``."""

    name: str = "qiskit-estimator"
    version: str = field(default_factory=_sdk_version)
    description: str = (
        "Qiskit Aer EstimatorV2 on a list of estimator PUBs (circuit, observables"
        "[, parameter values]); params precision (default 0: exact), seed, backend "
        "(a fake IBM backend name such as fake_manila: noisy simulation)"
    )

    def available(self) -> str | None:
        """Why this backend cannot run here, or ``None`` when it can."""
        return _unavailable()

    def validate(self, params: dict[str, Any]) -> None:
        _check_common(params, {"precision", "seed", "backend"})
        precision = params.get("precision", 0.0)
        if isinstance(precision, bool) or not isinstance(precision, int | float) or precision < 0:
            raise ValueError(f"param 'precision' must be a number >= 0, not {precision!r}")

    def run(self, batch: Payload, params: dict[str, Any], ctx: Context) -> Payload | None:
        from qiskit.primitives import PrimitiveResult
        from qiskit.primitives.containers.estimator_pub import EstimatorPub
        from qiskit_aer.primitives import EstimatorV2

        from jobledger import codecs

        precision = float(params.get("precision", 0.0))
        seed = params.get("seed")
        simulator, fake = _device(params.get("backend"))
        pubs = [EstimatorPub.coerce(pub, precision) for pub in _pubs(batch)]
        if fake is not None:
            manager = _transpiler(fake, seed)
            isa = []
            for pub in pubs:
                circuit = manager.run(pub.circuit)
                observables = pub.observables.apply_layout(circuit.layout)
                isa.append(EstimatorPub(circuit, observables, pub.parameter_values, precision))
            pubs = isa
        ctx.log(f"estimating {len(pubs)} PUB(s), precision {precision:g}, on {_describe(fake)}")
        _set_circuit_metrics(ctx, [p.circuit for p in pubs], None)
        options: dict[str, Any] = {"default_precision": precision}
        if seed is not None:
            options["run_options"] = {"seed_simulator": seed}
        estimator = EstimatorV2.from_backend(simulator, options=options)
        started = time.monotonic()
        results = []
        for index, pub in enumerate(pubs):
            if ctx.cancelled():
                return None
            result = estimator.run([pub]).result()[0]
            results.append(result)
            ctx.publish({"pub": index, "of": len(pubs), "evs": result.data.evs.tolist()})
            ctx.log(f"PUB {index + 1}/{len(pubs)} done")
        ctx.set_metric("run_seconds", round(time.monotonic() - started, 3))
        value = PrimitiveResult(results, metadata={"version": 2, "precision": precision})
        return Payload(*codecs.encode(value))


def _describe(fake: Any) -> str:
    return "an ideal Aer simulator" if fake is None else f"Aer with the noise of {fake.name}"


def _set_circuit_metrics(ctx: Context, circuits: list[Any], shots: int | None) -> None:
    ctx.set_metric("pubs", len(circuits))
    ctx.set_metric("qubits", max(c.num_qubits for c in circuits))
    ctx.set_metric("depth", max(c.depth() for c in circuits))
    if shots is not None:
        ctx.set_metric("shots", shots)


sampler = Sampler()
estimator = Estimator()
