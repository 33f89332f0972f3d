"""P1: a cached IBM Quantum result read through jobledger, next to the SDK's own read.

Both sides talk to the same loopback stand-in of IBM's Runtime REST API
(``tests/standins/ibm_runtime.py``, the one the provider tests use), through the real
``qiskit-ibm-runtime`` SDK. jobledger submits a Bell-pair sampler job through an
``ibm-quantum`` profile and reads its result once (a download into the store); then a
fresh handle's ``result()`` (``jobledger.jobs.get(id)``: registry, store, sha256,
decode) alternates with ``QiskitRuntimeService.job(id).result()`` on a service built
once, which downloads and decodes the result each time. The stand-in counts the
requests of each side.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from benchmarks.common import ROOT, Bench, Figure, fmt_seconds, home, median, side_by_side
from benchmarks.quantum import compare_reads, repeat

__all__ = ["environment", "p1_ibm_cached_read"]

PROFILE = "bench-ibm"
DEVICE = "ibm_nairobi"
SHOTS = 1024
# Variables through which the SDK could be sent to IBM instead of the stand-in.
_SDK_ENV = (
    "QISKIT_IBM_TOKEN",
    "QISKIT_IBM_URL",
    "QISKIT_IBM_INSTANCE",
    "QISKIT_IBM_CHANNEL",
    "IBM_CREDENTIALS_FILE",
)


@contextlib.contextmanager
def environment(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set (or, for ``None``, remove) environment variables; restore them afterwards."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


@contextlib.contextmanager
def _quiet_sdk_log() -> Iterator[None]:
    """Hide the SDK's "Loading account with the given token" warnings while measuring."""
    logger = logging.getLogger("qiskit_ibm_runtime")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _standin() -> Any:
    """The stand-in's class, imported from the repository's tests folder."""
    tests = str(ROOT / "tests")
    if tests not in sys.path:
        sys.path.append(tests)
    from standins.ibm_runtime import IBMStandIn

    return IBMStandIn


def _bell_pubs() -> list[Any]:
    """One Bell-pair PUB transpiled for the stand-in's ibm_nairobi."""
    from qiskit import QuantumCircuit
    from qiskit.transpiler import generate_preset_pass_manager
    from qiskit_ibm_runtime.fake_provider import FakeNairobiV2

    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.measure_all()
    manager = generate_preset_pass_manager(optimization_level=1, backend=FakeNairobiV2())
    return [(manager.run(circuit),)]


def _requests(standin: Any, work: Callable[[], object]) -> str:
    """The requests the stand-in served while *work* ran, e.g. ``"0"`` or ``"2 (GET /x, ...)"``."""
    before = standin.requests
    work()
    served = standin.requests - before
    if not served:
        return "0"
    routes = ", ".join(f"{n} x {route}" if n > 1 else route for route, n in sorted(served.items()))
    return f"{sum(served.values())}: {routes}"


def p1_ibm_cached_read(bench: Bench) -> Figure:
    """P1: ``result()`` of a stored IBM result against the SDK's ``job(id).result()``."""
    import jobledger
    from jobledger.config import save_profile
    from jobledger.providers.ibm import ENV_API_URL

    standin = _standin()(queued_seconds=0.05, running_seconds=0.05)
    endpoints = standin.start()
    overrides: dict[str, str | None] = {name: None for name in _SDK_ENV}
    overrides.update(endpoints.env())
    overrides[ENV_API_URL] = endpoints.api_url
    try:
        with (
            home(bench.scratch("ibm-home")),
            environment(overrides),
            warnings.catch_warnings(),
            _quiet_sdk_log(),
        ):
            # qiskit-ibm-runtime 0.50+ deprecates SamplerV2 on construction.
            warnings.filterwarnings("ignore", "The SamplerV2 class is deprecated")
            save_profile(
                PROFILE,
                url=endpoints.url,
                token=endpoints.api_key,
                provider="ibm-quantum",
                instance=endpoints.instance,
            )
            with jobledger.connect(profile=PROFILE) as conn:
                job = conn.submit(
                    _bell_pubs(), DEVICE, params={"primitive": "sampler", "shots": SHOTS}
                )
                job.wait_for_final_state(timeout=120)
                start = time.perf_counter()
                counts = job.result()[0].data.meas.get_counts()
                first = time.perf_counter() - start
                return _compare(bench, standin, endpoints, str(job.job_id), counts, first)
    finally:
        standin.stop()


def _compare(
    bench: Bench, standin: Any, endpoints: Any, job_id: str, counts: Any, first: float
) -> Figure:
    from qiskit_ibm_runtime import QiskitRuntimeService

    import jobledger.jobs

    def new_service() -> Any:
        return QiskitRuntimeService(**endpoints.service_kwargs())

    service = new_service()

    def ours() -> Any:
        return jobledger.jobs.get(job_id).result()

    def sdk() -> Any:
        return service.job(job_id).result()

    for side, read in (("jobledger", ours), ("the SDK", sdk)):
        if read()[0].data.meas.get_counts() != counts:
            raise AssertionError(f"{side} read other counts for job {job_id} than the first read")
    rounds = bench.settings.pick(30, 3)
    figure = compare_reads(
        "P1",
        f"IBM (stand-in): cached result(), {SHOTS:,} shots",
        ours,
        sdk,
        rounds,
        "SDK job(id).result()",
    )
    handle = jobledger.jobs.get(job_id)
    sdk_job = service.job(job_id)
    same, sdk_same = side_by_side(handle.result, sdk_job.result, rounds)
    starts = repeat(new_service, bench.settings.pick(3, 1))
    figure.notes.append(
        f"P1: requests per read: jobledger {_requests(standin, ours)}; "
        f"SDK {_requests(standin, sdk)}"
    )
    figure.notes.append(
        f"P1: the same handle's result() again: jobledger {fmt_seconds(median(same))} "
        f"(requests {_requests(standin, handle.result)}), SDK {fmt_seconds(median(sdk_same))} "
        f"(requests {_requests(standin, sdk_job.result)})"
    )
    figure.notes.append(
        f"P1: jobledger's first read (download into the store) {fmt_seconds(first)}; "
        f"a new QiskitRuntimeService (what a new script pays before its first read) "
        f"{fmt_seconds(median(starts))}"
    )
    return figure
