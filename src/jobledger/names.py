"""Names of jobs: aliases, reserved names and suggestions for unknown ones.

Shared by the client (checking an alias before recording it), the namespace module
(:mod:`jobledger.jobs`) and the CLI, so each says the same thing about a name.
:func:`check_alias` decides what may be an alias; :func:`describe_unknown` and
:func:`ambiguous_message` word the errors for a name the registry does not know or
knows twice. Imports only the registry's record types, for typing.
"""

from __future__ import annotations

import keyword
import re

TYPE_CHECKING = False  # typing's flag without importing typing (see docs/architecture.md)
if TYPE_CHECKING:
    from jobledger.registry import JobRecord, Registry

__all__ = [
    "LISTED_ALIASES",
    "LISTED_IDS",
    "RESERVED_NAMES",
    "ambiguous_message",
    "check_alias",
    "describe_unknown",
]

#: names :mod:`jobledger.jobs` defines itself (its functions, and what its own code
#: imports), so no alias may take them: ``from jobledger.jobs import get`` is the function
RESERVED_NAMES = frozenset(
    {
        "get",
        "names",
        "refresh",
        "annotations",
        "Any",
        "TYPE_CHECKING",
        "JobNotFoundError",
        "get_paths",
    }
)
#: how many job ids ``dir(jobledger.jobs)`` and ``__all__`` list: the most recent ones
LISTED_IDS = 1000
#: how many aliases they list at most: all of them while there are fewer; beyond, the
#: first ones in sorted order (every alias still imports, and ``names(prefix)`` finds it)
LISTED_ALIASES = 10_000

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_alias(alias: object) -> str:
    """Validate an alias: a Python identifier that is not a job id nor a name the
    :mod:`jobledger.jobs` module defines.

    :raises ValueError: saying what is wrong and what is allowed.
    """
    from jobledger.ids import ID_PATTERN

    if not isinstance(alias, str) or not _IDENTIFIER.match(alias):
        raise ValueError(
            f"invalid alias {alias!r}: an alias must be a Python identifier (letters, digits "
            "and underscores, not starting with a digit) so it can be imported"
        )
    if alias.startswith("_"):
        raise ValueError(f"invalid alias {alias!r}: aliases may not start with an underscore")
    if keyword.iskeyword(alias) or keyword.issoftkeyword(alias):
        raise ValueError(
            f"invalid alias {alias!r}: it is a Python keyword, so `from jobledger.jobs import "
            f"{alias}` could not be written; choose another name (e.g. {alias}_run)"
        )
    if ID_PATTERN.match(alias):
        raise ValueError(f"invalid alias {alias!r}: it has the form of a job id")
    if alias in RESERVED_NAMES:
        raise ValueError(
            f"invalid alias {alias!r}: jobledger.jobs already defines that name; choose another"
        )
    return alias


def describe_unknown(name: str, registry: Registry) -> str:
    """The message for a name the registry does not know, with close matches."""
    import difflib

    where = registry.path if registry.exists() else f"{registry.path} (not created yet)"
    message = f"no job or alias named {name!r} in the registry {where}"
    matches = difflib.get_close_matches(name, registry.near_names(name), n=3, cutoff=0.6)
    if matches:
        message += "; did you mean " + ", ".join(matches) + "?"
    return message + " (list recorded jobs with `jobledger ls`)"


def ambiguous_message(name: str, records: list[JobRecord], registry: Registry) -> str:
    """The message for a job id recorded for several services."""
    urls = []
    for record in records:
        service = registry.service(record.service or "")
        urls.append(f"{record.service} ({service.url if service else 'unknown URL'})")
    return (
        f"job id {name!r} is recorded for {len(records)} services: {', '.join(urls)}; choose "
        f"one with jobledger.jobs.get({name!r}, service='<service id>')"
    )
