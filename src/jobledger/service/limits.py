"""Per-job limits of the reference service: wall time and memory, per backend.

A job may run for at most ``seconds`` of wall time (the executor kills its worker
and ends it ``ERROR``) and use at most ``memory_mb`` MiB of address space (the
worker sets ``RLIMIT_AS`` while it runs the job; an allocation beyond it fails and
the job ends ``ERROR``). ``0`` means no limit. The limit of a backend is, first
found: what ``jobledger serve --job-timeout NAME=SECONDS`` / ``--job-memory
NAME=MIB`` says for it, what the backend object declares (optional attributes
``max_seconds`` and ``max_memory_mb``), the service-wide default (the same options
without a name), none.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["JobLimits", "Limit", "parse_limit_options"]


@dataclass(frozen=True)
class Limit:
    """The limits of one backend's jobs; ``0`` means none."""

    seconds: float = 0.0
    memory_mb: int = 0

    def timeout_message(self) -> str:
        """The ``ERROR`` message of a job killed at its wall-time limit."""
        return f"the job exceeded its wall-time limit of {self.seconds:g} s"

    def memory_message(self) -> str:
        """The ``ERROR`` message of a job stopped at its memory limit."""
        return f"the job exceeded its memory limit of {self.memory_mb} MiB"


@dataclass(frozen=True)
class JobLimits:
    """Service-wide defaults and per-backend overrides, as given to ``jobledger serve``."""

    seconds: float = 0.0
    memory_mb: int = 0
    backend_seconds: Mapping[str, float] = field(default_factory=dict)
    backend_memory_mb: Mapping[str, int] = field(default_factory=dict)

    def for_backend(self, name: str, backend: Any = None) -> Limit:
        """The :class:`Limit` of backend *name* (*backend* is the loaded object, if any)."""
        seconds = self.backend_seconds.get(name)
        if seconds is None:
            seconds = _declared(backend, "max_seconds", float)
        if seconds is None:
            seconds = self.seconds
        memory = self.backend_memory_mb.get(name)
        if memory is None:
            declared = _declared(backend, "max_memory_mb", float)
            memory = None if declared is None else int(declared)
        if memory is None:
            memory = self.memory_mb
        return Limit(float(seconds), int(memory))

    def resolve(self, backends: Mapping[str, Any]) -> dict[str, Limit]:
        """The limit of every backend in *backends*, by name."""
        return {name: self.for_backend(name, backend) for name, backend in backends.items()}


def _declared(backend: Any, attribute: str, kind: type[float]) -> float | None:
    value = getattr(backend, attribute, None)
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return kind(value)


def parse_limit_options(values: Iterable[str], what: str) -> tuple[float, dict[str, float]]:
    """Split ``["3600", "sleep=5"]`` into a default (3600) and overrides (sleep: 5).

    :raises ValueError: naming the bad value.
    """
    default = 0.0
    per_backend: dict[str, float] = {}
    for raw in values:
        for item in raw.split():
            name, _, number = item.rpartition("=")
            try:
                value = float(number)
            except ValueError:
                value = -1.0
            if not math.isfinite(value) or value < 0:
                raise ValueError(
                    f"invalid {what} {item!r}: use a number >= 0 (0: no limit), "
                    "or BACKEND=NUMBER for one backend"
                )
            if name:
                per_backend[name] = value
            else:
                default = value
    return default, per_backend
