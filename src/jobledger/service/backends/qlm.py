"""The myQLM backend of the reference service: ``myqlm``.

Runs a ``qat.core.Job`` (returning a ``qat.core.Result``) or a ``qat.core.Batch``
(returning a ``qat.core.BatchResult``, one job at a time: a cancel is honoured between
jobs and each finished job is published as an interim result) on one of myQLM's own
simulators, named by param ``qpu`` from a fixed list. Batches and results travel
through the myQLM codec, so nothing pickled is read or written. myQLM is imported only
inside ``run``.
"""

from __future__ import annotations

import importlib.util
import time
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from jobledger.service.plugin import Context, Payload

__all__ = ["QPUS", "myqlm"]

#: the myQLM simulators this backend offers (classes of ``qat.qpus``)
QPUS = ("PyLinalg", "CLinalg")


def _sdk_version() -> str:
    try:
        return metadata.version("myqlm")
    except metadata.PackageNotFoundError:
        return "not installed"


@dataclass(frozen=True)
class MyQLM:
    """Run a myQLM Job or Batch on a myQLM simulator."""

    name: str = "myqlm"
    version: str = field(default_factory=_sdk_version)
    description: str = (
        "myQLM simulator on a qat.core Job (gives a Result) or Batch (gives a BatchResult); "
        f'param qpu ({", ".join(QPUS)}; default "PyLinalg")'
    )

    def available(self) -> str | None:
        """Why this backend cannot run here, or ``None`` when it can."""
        try:
            found = importlib.util.find_spec("qat.core")
        except (ImportError, ValueError):
            found = None
        if found is None:
            return (
                "this service lacks myQLM (qat.core is not importable); "
                "install it with `pip install 'jobledger[qlm]'`"
            )
        return None

    def validate(self, params: dict[str, Any]) -> None:
        unknown = sorted(set(params) - {"qpu"})
        if unknown:
            raise ValueError(f"unknown params {', '.join(unknown)}; this backend takes: qpu")
        qpu = params.get("qpu", "PyLinalg")
        if qpu not in QPUS:
            raise ValueError(f"param 'qpu' must be one of {', '.join(QPUS)}, not {qpu!r}")

    def run(self, batch: Payload, params: dict[str, Any], ctx: Context) -> Payload | None:
        from jobledger import codecs

        with warnings.catch_warnings():
            # myQLM's module loader emits an ImportWarning on Python 3.11+.
            warnings.simplefilter("ignore", ImportWarning)
            import qat.qpus
            from qat.core import Batch, BatchResult, Job

        value = batch.value()
        if isinstance(value, Job):
            jobs, single = [value], True
        elif isinstance(value, Batch):
            jobs, single = list(value.jobs), False
        else:
            raise TypeError(f"myqlm runs a qat.core Job or Batch, not {type(value).__name__}")
        name = str(params.get("qpu", "PyLinalg"))
        qpu = getattr(qat.qpus, name)()
        ctx.log(f"running {len(jobs)} job(s) on {name}")
        ctx.set_metric("jobs", len(jobs))
        circuits = [job.circuit for job in jobs if job.circuit is not None]
        ctx.set_metric("qubits", max((c.nbqbits for c in circuits), default=0))
        ctx.set_metric("gates", max((len(c.ops) for c in circuits), default=0))
        ctx.set_metric("shots", max(int(job.nbshots or 0) for job in jobs))
        started = time.monotonic()
        results = []
        for index, job in enumerate(jobs):
            if ctx.cancelled():
                return None
            result = qpu.submit(job)
            results.append(result)
            ctx.publish({"job": index, "of": len(jobs), "samples": len(result.raw_data or [])})
            ctx.log(f"job {index + 1}/{len(jobs)} done")
        ctx.set_metric("run_seconds", round(time.monotonic() - started, 3))
        if single:
            return Payload(*codecs.encode(results[0]))
        return Payload(*codecs.encode(BatchResult(results=results, meta_data=value.meta_data)))


myqlm = MyQLM()
