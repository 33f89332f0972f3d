"""Protocol v1 on the wire: request parsing and response shapes, free of HTTP plumbing.

Everything here turns JSON or query parameters into validated values, or records
into JSON objects, and raises :class:`ApiError` (a status, a code and a message)
for anything a client sent wrong. The HTTP layer (:mod:`jobledger.service.app`)
only moves bytes; the shapes documented in ``docs/protocol.md`` live in this file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jobledger import codecs
from jobledger.service.plugin import Backend, validate_params
from jobledger.service.store import JobFilter, JobRecord

__all__ = [
    "MAX_IDS",
    "ApiError",
    "SubmitRequest",
    "change_tag",
    "decode_change_token",
    "encode_change_token",
    "job_info",
    "parse_date",
    "parse_ids",
    "parse_submit",
    "status_entry",
]

MAX_IDS = 1000
_WIRE_STATUSES = ("QUEUED", "RUNNING", "DONE", "ERROR", "CANCELLED", "DELETED")


class ApiError(Exception):
    """An error answered as ``{"error": {"code", "message"}}`` with an HTTP status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def invalid(message: str) -> ApiError:
    """A ``422 invalid`` error."""
    return ApiError(422, "invalid", message)


@dataclass(frozen=True)
class SubmitRequest:
    """The validated fields of a ``POST /v1/jobs`` body (the batch bytes travel apart)."""

    backend: Backend
    media_type: str
    sha256: str | None
    params: dict[str, Any]
    tags: list[str]
    session_id: str | None


def parse_submit(body: Any, backends: dict[str, Backend]) -> SubmitRequest:
    """Validate a submit body against the known *backends*.

    ``batch.data`` must be a string; its base64 content is decoded and checked by
    :func:`jobledger.service.bodies.read_submit`, which streams it.

    :raises ApiError: 422 naming the first problem found.
    """
    if not isinstance(body, dict):
        raise invalid("the body must be a JSON object with 'backend' and 'batch'")
    name = body.get("backend")
    if not isinstance(name, str):
        raise invalid("missing field 'backend' (a backend name)")
    backend = backends.get(name)
    if backend is None:
        known = ", ".join(sorted(backends)) or "none"
        raise invalid(f"unknown backend {name!r}; known backends: {known}")
    batch = body.get("batch")
    if not isinstance(batch, dict) or not isinstance(batch.get("data"), str):
        raise invalid("missing field 'batch' ({'media_type', 'data': base64, 'sha256'?})")
    media_type = batch.get("media_type", codecs.JSON)
    if media_type not in codecs.MEDIA_TYPES:
        raise invalid(
            f"unsupported batch media type {media_type!r}; use one of: "
            + ", ".join(codecs.MEDIA_TYPES)
        )
    expected = batch.get("sha256")
    if expected is not None and not isinstance(expected, str):
        raise invalid("batch 'sha256' must be a hex string")
    params = body.get("params") or {}
    if not isinstance(params, dict):
        raise invalid("'params' must be a JSON object")
    try:
        validate_params(backend, params)
    except (ValueError, TypeError) as exc:
        raise invalid(f"bad params for backend {name!r}: {exc}") from None
    tags = body.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise invalid("'tags' must be a list of strings")
    session_id = body.get("session_id")
    if session_id is not None and not isinstance(session_id, str):
        raise invalid("'session_id' must be a string or null")
    return SubmitRequest(backend, media_type, expected, params, tags, session_id)


def parse_ids(body: Any) -> list[str]:
    """Validate a ``POST /v1/jobs/status`` body; return its ids.

    :raises ApiError: 422 when malformed or with more than :data:`MAX_IDS` ids.
    """
    ids = body.get("ids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise invalid('the body must be {"ids": ["J...", ...]}')
    if len(ids) > MAX_IDS:
        raise invalid(f"too many ids: {len(ids)}; at most {MAX_IDS} per call")
    return ids


def parse_date(name: str, value: str | None) -> str | None:
    """Normalise an ISO 8601 query date to the stored UTC form (naive means UTC)."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(f"{name} must be an ISO 8601 date, not {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


LIST_PARAMETERS = (
    "status",
    "backend",
    "tag",
    "created_after",
    "created_before",
    "session_id",
    "limit",
    "order",
    "cursor",
    "updated_after",
)


def parse_filter(query: Any) -> JobFilter:
    """Build a :class:`JobFilter` from the query parameters of ``GET /v1/jobs``.

    :raises ApiError: 422 for an unknown parameter too: a misspelt filter must not
        silently list every job.
    """
    unknown = sorted(set(query.keys()) - set(LIST_PARAMETERS))
    if unknown:
        raise invalid(
            f"unknown query parameter {unknown[0]!r}; use any of: {', '.join(LIST_PARAMETERS)}"
        )
    statuses = tuple(s.upper() for s in query.getlist("status"))
    for status in statuses:
        if status not in _WIRE_STATUSES:
            raise invalid(f"unknown status {status!r}; use any of: {', '.join(_WIRE_STATUSES)}")
    return JobFilter(
        statuses=statuses,
        backend=query.get("backend"),
        tags=tuple(query.getlist("tag")),
        created_after=parse_date("created_after", query.get("created_after")),
        created_before=parse_date("created_before", query.get("created_before")),
        session_id=query.get("session_id"),
    )


def encode_cursor(seq: int) -> str:
    """An opaque cursor for the page after the job with *seq* (its decimal digits)."""
    return str(seq)


def decode_cursor(cursor: str | None) -> int | None:
    """The ``seq`` inside a cursor made by :func:`encode_cursor`.

    Cursors of earlier versions (base64 of ``s<seq>``) are still understood, so a
    client paging across a server upgrade goes on where it was.

    :raises ApiError: 422 for anything else.
    """
    if not cursor:
        return None
    text = cursor.strip()
    if text.isascii() and text.isdigit() and len(text) <= 18:
        return int(text)
    try:
        legacy = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        if legacy.startswith("s") and legacy[1:].isascii() and legacy[1:].isdigit():
            return int(legacy[1:])
    except (binascii.Error, ValueError, UnicodeDecodeError):
        pass
    raise invalid(f"invalid cursor {cursor!r}; pass back next_cursor unchanged")


_CHANGE_TOKEN = re.compile(r"([0-9]{1,18})\.([0-9a-f]{8})")


def change_tag(service_id: str, owner: str) -> str:
    """What ties a change token to one user of one service (8 hex digits).

    A token names a place in the service's sequence of changes, which every user's
    changes share; listing from it is complete only for the user it was made for, so
    another user's token (or another service's) is refused rather than trusted.
    """
    return hashlib.sha256(f"{service_id}\n{owner}".encode()).hexdigest()[:8]


def encode_change_token(change: int, tag: str) -> str:
    """The ``updated_after`` token for "every change up to number *change*"."""
    return f"{change}.{tag}"


def decode_change_token(token: str, tag: str, latest: int) -> int:
    """The change number in an ``updated_after`` token made by :func:`encode_change_token`
    (``""`` means before the first change: list every job).

    :param latest: the service's last change number; a token beyond it comes from a
        newer state of the data folder (say, one restored from a backup since).
    :raises ApiError: 422 for a malformed token; 409 ``stale_cursor`` for a token made
        for another user or service, or beyond *latest*: the client lists from ``""``.
    """
    text = token.strip()
    if not text:
        return 0
    found = _CHANGE_TOKEN.fullmatch(text)
    if found is None:
        raise invalid(
            f"invalid updated_after {token!r}; pass back updated_through unchanged, or "
            "leave it empty to list every job"
        )
    change = int(found.group(1))
    if found.group(2) != tag or change > latest:
        raise ApiError(
            409,
            "stale_cursor",
            "this updated_after token was not made for this user of this service, or the "
            "service's data was restored since; list again from the start (updated_after "
            "empty)",
        )
    return change


def _blob(info: Any) -> dict[str, Any] | None:
    if info is None:
        return None
    return {"media_type": info.media_type, "sha256": info.sha256, "size": info.size}


def job_info(job: JobRecord) -> dict[str, Any]:
    """The job info object of the protocol."""
    return {
        "id": job.id,
        "backend": {"name": job.backend, "version": job.backend_version},
        "status": job.status.value,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "ended_at": job.ended_at,
        "queue_position": job.queue_position,
        "message": job.message,
        "tags": job.tags,
        "session_id": job.session_id,
        "params": job.params,
        "usage": {"seconds": job.usage_seconds},
        "batch": _blob(job.batch),
        "result": _blob(job.result),
    }


def status_entry(job: JobRecord) -> dict[str, Any]:
    """One entry of the ``POST /v1/jobs/status`` answer."""
    info = job_info(job)
    keys = (
        "id",
        "status",
        "queue_position",
        "message",
        "started_at",
        "ended_at",
        "usage",
        "result",
    )
    return {key: info[key] for key in keys}
