"""``jobledger.jobs``: every recorded job, importable by id or alias.

    from jobledger.jobs import J01JD7K3V8Q0B6TWXYZ, calibration_run

Names are resolved from the local registry only, through an indexed lookup: no
network, no ``requests`` import, offline too. Any recorded id or alias imports, in
O(log n) for a million jobs.

The listing is live and bounded: ``dir()`` and ``__all__`` read the registry on every
call, so a job recorded a moment ago by another process is there without
re-importing, and they list every alias (up to 10,000; beyond, the first 10,000 in
sorted order) and the 1,000 most recently recorded job ids
(:data:`jobledger.names.LISTED_ALIASES` and :data:`~jobledger.names.LISTED_IDS`). So
listing, and the Tab completion built on it, costs the same for a thousand jobs or a
million. Older ids are not listed but still import, and :func:`names` with a prefix
finds them through the index. Importing this module creates and starts nothing;
private and dunder names are refused at once, so tools probing with ``hasattr``
never touch the registry.
"""

from __future__ import annotations

# Every public name here is one an alias cannot take (names.RESERVED_NAMES): module
# attributes come before __getattr__, so such an alias could never be imported.
from jobledger import names as _names
from jobledger.errors import JobNotFoundError
from jobledger.paths import get_paths

TYPE_CHECKING = False  # typing's flag without importing typing (see docs/architecture.md)
if TYPE_CHECKING:
    from typing import Any

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


def names(prefix: str | None = None, *, limit: int | None = _names.LISTED_IDS) -> list[str]:
    """Importable names (job ids and aliases), sorted.

    Without *prefix*: what ``dir()`` and ``__all__`` list, every alias (up to
    10,000) and the *limit* (1,000) most recently recorded job ids;
    ``limit=None`` lists every id, which reads the whole index.

    With *prefix*: every id and alias that starts with it, at most *limit* of them
    (the first in sorted order; ``None`` for all), found through the registry's
    indexes, e.g. ``names("J01JD7")`` for the ids of jobs recorded around the same time.
    """
    registry, _ = _local()
    if prefix is not None:
        return registry.names_with_prefix(prefix, limit)
    if limit is None:
        return registry.names()
    found = set(registry.aliases(_names.LISTED_ALIASES))
    found.update(registry.recent_ids(limit))
    return sorted(found)


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
        raise JobNotFoundError(_names.ambiguous_message(name, records, registry))
    raise JobNotFoundError(_names.describe_unknown(name, registry))


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
    import sys

    frame = sys._getframe(2)
    code = frame.f_code.co_code
    return 0 <= frame.f_lasti < len(code) and code[frame.f_lasti] == opcode.opmap["IMPORT_FROM"]
