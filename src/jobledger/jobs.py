"""``jobledger.jobs``: every recorded job, importable by id or alias.

    from jobledger.jobs import J01JD7K3V8Q0B6TWXYZ, calibration_run

Names are resolved from the local registry only, through an indexed lookup: no
network, no ``requests`` import, offline too. The listing is live: ``dir()`` and
``__all__`` read the registry on every call, so a job recorded a moment ago by another
process is there without re-importing. Importing this module creates and starts
nothing; private and dunder names are refused at once, so tools probing with
``hasattr`` never touch the registry.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from jobledger.errors import JobNotFoundError
from jobledger.names import ambiguous_message, describe_unknown
from jobledger.paths import get_paths

if TYPE_CHECKING:
    from jobledger.client.job import Job
    from jobledger.registry import Registry
    from jobledger.store import Store

__all__: list[str]  # computed on access, see __getattr__

_DEFINED = frozenset({"get", "names"})
_opened: dict[str, tuple[Registry, Store]] = {}


def _local() -> tuple[Registry, Store]:
    paths = get_paths()
    key = str(paths.registry)
    found = _opened.get(key)
    if found is None:
        from jobledger.registry import Registry
        from jobledger.store import Store

        found = (Registry(paths.registry, readonly=True), Store(paths.store))
        _opened[key] = found
    return found


def names() -> list[str]:
    """Every importable name: recorded job ids and aliases, sorted."""
    registry, _ = _local()
    return registry.names()


def get(name: str, service: str | None = None) -> Job:
    """The handle of the job recorded with this id or alias.

    Works for any name, identifier or not. No I/O besides one indexed registry read.

    :param service: the service id, when the same job id is recorded for two services.
    :raises JobNotFoundError: for an unknown name (with close matches) or an ambiguous one.
    """
    from jobledger.client.job import Job

    if not isinstance(name, str) or not name:
        raise TypeError(f"a job id or alias must be a non-empty string, not {name!r}")
    registry, store = _local()
    records = registry.find(name, service)
    if len(records) == 1:
        return Job(records[0], registry=registry, store=store)
    if records:
        raise JobNotFoundError(ambiguous_message(name, records, registry))
    raise JobNotFoundError(describe_unknown(name, registry))


def __getattr__(name: str) -> Any:
    if name == "__all__":
        return names()
    if name.startswith("_"):
        raise AttributeError(f"module 'jobledger.jobs' has no attribute {name!r}")
    try:
        return get(name)
    except JobNotFoundError as exc:
        if _importing_from():
            raise ImportError(str(exc), name="jobledger.jobs") from None
        raise AttributeError(str(exc)) from None


def __dir__() -> list[str]:
    return sorted(_DEFINED | set(names()))


def _importing_from() -> bool:
    """Whether the caller is a ``from jobledger.jobs import name`` statement.

    Python turns an ``AttributeError`` there into a generic ``ImportError``; raising
    ``ImportError`` ourselves keeps the message with its suggestions.
    """
    import opcode

    frame = sys._getframe(2)
    code = frame.f_code.co_code
    return 0 <= frame.f_lasti < len(code) and code[frame.f_lasti] == opcode.opmap["IMPORT_FROM"]
