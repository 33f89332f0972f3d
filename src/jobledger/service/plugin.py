"""The backend plug-in API: what a backend receives, what it returns, how it is found.

A backend is any object with ``name``, ``version``, ``description`` and
``run(batch, params, ctx)``, registered in the entry point group
``jobledger.backends``. It may also have ``validate(params)``, called by the service
at submission, which raises :class:`ValueError` for bad params (the client gets a
``422`` with that message), and ``available()``, which returns why it cannot run in
this environment (say, its SDK is not installed) or ``None``: such a backend is not
listed and a submit to it gets a ``422`` with that reason. ``batch`` is a
:class:`Payload`; ``ctx`` a
:class:`Context` through which the running job logs, publishes interim results, sets
metrics, streams a large result and asks whether it was cancelled. This module is
imported by both the server and its worker processes, so it stays light.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import IO, Any, Protocol, runtime_checkable

from jobledger import codecs

__all__ = [
    "ENTRY_POINT_GROUP",
    "Backend",
    "Context",
    "Payload",
    "load_backends",
    "unavailable_reason",
    "validate_params",
]

ENTRY_POINT_GROUP = "jobledger.backends"


@dataclass(frozen=True)
class Payload:
    """Bytes with their media type: a batch given to a backend, or its result."""

    data: bytes
    media_type: str

    def value(self) -> Any:
        """Decode the bytes (JSON, raw bytes or ``.npy``; never pickle)."""
        return codecs.decode(self.data, self.media_type)


class Context(Protocol):
    """What a running backend can ask of the service."""

    job_id: str

    def log(self, line: str) -> None:
        """Append *line* to the job's log."""

    def publish(self, value: Any) -> None:
        """Publish an interim result (a JSON value)."""

    def set_metric(self, name: str, value: Any) -> None:
        """Set the metric *name* to a JSON value."""

    def cancelled(self) -> bool:
        """Whether the job was asked to stop; a polite backend returns soon after."""

    def open_result(self, media_type: str) -> IO[bytes]:
        """Open the job's result for writing; the backend then returns ``None``."""


@runtime_checkable
class Backend(Protocol):
    """A backend plug-in."""

    name: str
    version: str
    description: str

    def run(self, batch: Payload, params: dict[str, Any], ctx: Context) -> Any:
        """Run one job; return a :class:`Payload`, ``bytes``, a JSON value or ``None``."""


def load_backends() -> dict[str, Backend]:
    """Load every backend registered in the ``jobledger.backends`` entry point group.

    A plug-in that fails to load is skipped (a broken third-party package must not
    take the service down); its error is reported on stderr.
    """
    import sys

    found: dict[str, Backend] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = entry.load()
        except Exception as exc:  # any import error of a third-party plug-in
            print(f"jobledger: cannot load backend {entry.name!r}: {exc}", file=sys.stderr)
            continue
        if not isinstance(obj, Backend):
            print(f"jobledger: backend {entry.name!r} lacks name/version/run", file=sys.stderr)
            continue
        found[obj.name] = obj
    return found


def unavailable_reason(backend: Backend) -> str | None:
    """Why *backend* cannot run here (its optional ``available()``), or ``None``."""
    available = getattr(backend, "available", None)
    reason: str | None = available() if available is not None else None
    return reason


def validate_params(backend: Backend, params: dict[str, Any]) -> None:
    """Call the backend's optional ``validate(params)``, after checking it can run here.

    :raises ValueError: with the backend's explanation when the params are bad, or
        with the reason it is unavailable (e.g. which extra to install).
    """
    reason = unavailable_reason(backend)
    if reason is not None:
        raise ValueError(reason)
    validate = getattr(backend, "validate", None)
    if validate is not None:
        validate(params)
