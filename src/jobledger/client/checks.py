"""Checks on the arguments of user calls, with messages saying what is allowed.

Used by :class:`~jobledger.client.connection.Connection` and
:class:`~jobledger.client.job.Job` before anything is recorded: params, tags, status
filters and dates. Each check raises ``TypeError`` or ``ValueError`` naming the bad
value. Aliases are checked by :func:`jobledger.names.check_alias`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from jobledger import codecs
from jobledger.status import JobStatus, parse_status

__all__ = ["check_date", "check_params", "check_statuses", "check_tags"]


def check_params(params: object) -> dict[str, Any]:
    """A copy of *params*: a dict with string keys whose values travel as JSON."""
    if params is None:
        return {}
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise TypeError(f"params must be a dict with string keys, not {type(params).__name__}")
    codecs.encode(params)  # raises TypeError naming what cannot travel as JSON
    return dict(params)


def check_tags(tags: object) -> list[str]:
    """*tags* as a list of non-empty strings."""
    if tags is None:
        return []
    if isinstance(tags, str) or not isinstance(tags, Iterable):
        raise TypeError(f"tags must be a list of strings, not {tags!r}")
    out = list(tags)
    bad = [t for t in out if not isinstance(t, str) or not t]
    if bad:
        raise TypeError(f"tags must be non-empty strings; got {bad[0]!r}")
    return out


def check_statuses(status: object) -> list[JobStatus]:
    """One status or several, in either dialect, as :class:`JobStatus` values."""
    if status is None:
        return []
    if isinstance(status, str | JobStatus):
        return [parse_status(status)]
    if isinstance(status, Iterable):
        return [parse_status(s) for s in status]
    raise TypeError(f"status must be a status name or a list of them, not {status!r}")


def check_date(value: datetime | str | None, name: str) -> datetime | None:
    """A datetime from a datetime or an ISO 8601 string (argument *name*)."""
    if value is None or isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be a datetime or an ISO 8601 string such as "
            f"'2026-01-31T12:00:00+00:00', not {value!r}"
        ) from None
