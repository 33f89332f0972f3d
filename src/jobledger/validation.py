"""Checks on the arguments of user calls, with messages saying what is allowed.

Used by :class:`~jobledger.connection.Connection` and :class:`~jobledger.job.Job`
before anything is recorded: aliases (:func:`check_alias`, :data:`RESERVED_NAMES`),
params, tags, status filters and dates; and the message for an id recorded for several
services. Each check raises ``TypeError`` or ``ValueError`` naming the bad value.
Re-exported by :mod:`jobledger.connection`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from jobledger import codecs
from jobledger.status import JobStatus, parse_status

if TYPE_CHECKING:
    from jobledger.registry import JobRecord, Registry

__all__ = ["RESERVED_NAMES", "check_alias"]

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
    if ID_PATTERN.match(alias):
        raise ValueError(f"invalid alias {alias!r}: it has the form of a job id")
    if alias in RESERVED_NAMES:
        raise ValueError(
            f"invalid alias {alias!r}: jobledger.jobs already defines that name; choose another"
        )
    return alias


RESERVED_NAMES = frozenset({"get", "refresh", "names"})


def _check_params(params: object) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise TypeError(f"params must be a dict with string keys, not {type(params).__name__}")
    codecs.encode(params)  # raises TypeError naming what cannot travel as JSON
    return dict(params)


def _check_tags(tags: object) -> list[str]:
    if tags is None:
        return []
    if isinstance(tags, str) or not isinstance(tags, Iterable):
        raise TypeError(f"tags must be a list of strings, not {tags!r}")
    out = list(tags)
    bad = [t for t in out if not isinstance(t, str) or not t]
    if bad:
        raise TypeError(f"tags must be non-empty strings; got {bad[0]!r}")
    return out


def _statuses(status: object) -> list[JobStatus]:
    if status is None:
        return []
    if isinstance(status, str | JobStatus):
        return [parse_status(status)]
    if isinstance(status, Iterable):
        return [parse_status(s) for s in status]
    raise TypeError(f"status must be a status name or a list of them, not {status!r}")


def _date(value: datetime | str | None, name: str) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be a datetime or an ISO 8601 string such as "
            f"'2026-01-31T12:00:00+00:00', not {value!r}"
        ) from None


def _ambiguous(name: str, records: list[JobRecord], registry: Registry) -> str:
    urls = []
    for record in records:
        service = registry.service(record.service or "")
        urls.append(f"{record.service} ({service.url if service else 'unknown URL'})")
    return (
        f"job id {name!r} is recorded for {len(records)} services: {', '.join(urls)}; choose "
        f"one with jobledger.jobs.get({name!r}, service='<service id>')"
    )
