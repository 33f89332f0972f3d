"""The registry's row codec: schema 5's compact values to and from their text forms.

Schema 5 stores sha256 digests as 32-byte BLOBs, idempotency keys made of 32 hex
digits as 16 bytes, dates as integer microseconds since 1970 (UTC), statuses as small
integers, and services, backend names, media types and provenance records by integer
keys (:mod:`.keys`). A value without the canonical form (a digest in upper case, a date
an older version stored unparseable...) is kept as the text it was, so that nothing
is ever lost in a migration or an import; every decoder here accepts both, which also
lets a read-only open read a file still at schema 4.

The *text form* of a row is the one schema 4 stored and bundles carry: hex digests,
ISO 8601 dates, status names, service ids (:func:`text_job`, :func:`stored_job`).
:func:`decode_job` builds a :class:`~jobledger.registry.JobRecord` from a row selected
with :data:`JOB_SELECT`, cheaply: it is on the path of every query.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from jobledger.registry.records import (
    STATUS_CODES,
    STATUSES,
    BlobRef,
    JobRecord,
    from_micros,
    iso_from_micros,
    parse_date,
    to_micros,
)
from jobledger.status import JobStatus

TYPE_CHECKING = False  # typing's flag without importing typing (see docs/architecture.md)
if TYPE_CHECKING:
    from typing import Any

    from jobledger.registry.keys import Keys, Resolver

__all__ = [
    "JOB_COLUMNS",
    "JOB_SELECT",
    "date_text",
    "date_value",
    "decode_job",
    "digest_text",
    "digest_value",
    "event_at_value",
    "event_detail_value",
    "hex_sql",
    "key_text",
    "key_value",
    "stored_job",
    "text_job",
]

JOB_COLUMNS = (
    "pk",
    "job_id",
    "service",
    "alias",
    "backend",
    "backend_version",
    "status",
    "created_at",
    "started_at",
    "ended_at",
    "queue_position",
    "message",
    "tags",
    "session_id",
    "params",
    "batch_sha256",
    "batch_size",
    "batch_media_type",
    "result_sha256",
    "result_size",
    "result_media_type",
    "provenance",
    "idempotency_key",
    "submit_state",
    "last_seen_at",
    "usage",
    "extras",
)
"""The columns of ``jobs``, in the order :func:`decode_job` reads them."""

JOB_SELECT = ", ".join(f"jobs.{c}" for c in JOB_COLUMNS)
"""The select list of a query whose rows go to :func:`decode_job`."""

_DATES = frozenset({"created_at", "started_at", "ended_at", "last_seen_at"})
_DIGESTS = frozenset({"batch_sha256", "result_sha256"})
_STRINGS = frozenset({"backend", "batch_media_type", "result_media_type"})
_HEX = frozenset("0123456789abcdef")
_STATUS_NAMES = {status.value: code for status, code in STATUS_CODES.items()}


# -- values ---------------------------------------------------------------------------


def _is_hex(text: str, length: int) -> bool:
    return len(text) == length and _HEX.issuperset(text)


def digest_value(text: str | None) -> bytes | str | None:
    """A sha256 as stored: 32 bytes for 64 lower-case hex digits, else the text."""
    if text is not None and _is_hex(text, 64):
        return bytes.fromhex(text)
    return text


def digest_text(value: bytes | str | None) -> str | None:
    """A stored sha256 as hex text."""
    return value.hex() if isinstance(value, bytes) else value


def key_value(text: str) -> bytes | str:
    """An idempotency key as stored: 16 bytes for 32 lower-case hex digits (the keys
    jobledger makes), else the text (``synced:<service>:<id>``)."""
    return bytes.fromhex(text) if _is_hex(text, 32) else text


def key_text(value: bytes | str) -> str:
    """A stored idempotency key as text."""
    return value.hex() if isinstance(value, bytes) else value


def date_value(text: str | None) -> int | str | None:
    """A date as stored: microseconds since 1970 when *text* parses, else the text."""
    if not text:
        return None
    try:
        return to_micros(text)
    except ValueError:
        return text


def date_text(value: int | str | None) -> str | None:
    """A stored date as UTC ISO 8601 text."""
    return iso_from_micros(value) if isinstance(value, int) else value


def event_at_value(text: str | None) -> int | str | None:
    """An event's time as stored: microseconds when they give *text* back exactly
    (the event's hash covers the text), else the text itself."""
    value = date_value(text)
    if isinstance(value, int) and iso_from_micros(value) != text:
        return text
    return value


def event_detail_value(text: str) -> bytes | str:
    """An event's detail as stored: 32 bytes when it is a sha256 in hex, else the text."""
    return bytes.fromhex(text) if _is_hex(text, 64) else text


def hex_sql(column: str) -> str:
    """SQL giving a stored digest or key back as text: a BLOB's lower-case hex, text
    as it is. Digests compared with the store's names, or sorted as they sort, go
    through it: SQLite orders every text before every BLOB."""
    return f"CASE typeof({column}) WHEN 'blob' THEN lower(hex({column})) ELSE {column} END"


_STATUS_LIST = list(STATUSES)


def _date(value: int | str | None) -> Any:
    if isinstance(value, int):
        return from_micros(value)
    return parse_date(value)


# -- rows -----------------------------------------------------------------------------


def decode_job(row: tuple[Any, ...], keys: Keys) -> JobRecord:
    """The record of a ``jobs`` row selected with :data:`JOB_SELECT` (schema 5 or 4)."""
    (
        pk,
        job_id,
        service,
        alias,
        backend,
        backend_version,
        status,
        created,
        started,
        ended,
        queue_position,
        message,
        tags,
        session_id,
        params,
        batch_sha256,
        batch_size,
        batch_media,
        result_sha256,
        result_size,
        result_media,
        provenance,
        idempotency_key,
        submit_state,
        last_seen,
        usage,
        extras,
    ) = row
    strings = keys.strings
    if isinstance(service, int):
        service = keys.services.get(service) or keys.service(service)
    if isinstance(backend, int):
        backend = strings.get(backend) or keys.string(backend)
    if isinstance(provenance, int):
        provenance = keys.provenance_digests.get(provenance) or keys.provenance(provenance)
    batch = result = None
    if batch_sha256:
        if isinstance(batch_media, int):
            batch_media = strings.get(batch_media) or keys.string(batch_media)
        batch = _blob(batch_sha256, batch_size, batch_media)
    if result_sha256:
        if isinstance(result_media, int):
            result_media = strings.get(result_media) or keys.string(result_media)
        result = _blob(result_sha256, result_size, result_media)
    record: JobRecord = _new(JobRecord)
    # Filling the frozen instance's __dict__ directly skips the keyword binding of its
    # 23-argument __init__: this runs for every row of every query.
    record.__dict__.update(
        pk=pk,
        job_id=job_id,
        service=service,
        alias=alias,
        backend=backend,
        backend_version=backend_version,
        status=_STATUS_LIST[status] if isinstance(status, int) else JobStatus(status),
        created_at=_date(created),
        started_at=_date(started),
        ended_at=_date(ended),
        queue_position=queue_position,
        message=message,
        tags=_tags(tags),
        session_id=session_id,
        params=_object(params),
        batch=batch,
        result=result,
        provenance=provenance.hex() if isinstance(provenance, bytes) else provenance,
        idempotency_key=(
            idempotency_key.hex() if isinstance(idempotency_key, bytes) else idempotency_key
        ),
        submit_state=submit_state,
        last_seen_at=_date(last_seen),
        usage=_object(usage),
        extras=_object(extras),
    )
    return record


def _blob(digest: bytes | str, size: int | None, media: str | None) -> BlobRef:
    blob: BlobRef = _new(BlobRef)
    blob.__dict__.update(
        sha256=digest.hex() if isinstance(digest, bytes) else digest,
        size=size or 0,
        media_type=media or "",
    )
    return blob


_new = object.__new__
_TAGS: dict[str, tuple[str, ...]] = {}


def _tags(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    # Tag lists repeat from job to job and tuples are immutable: parse each once.
    found = _TAGS.get(text)
    if found is None:
        if len(_TAGS) > 4096:
            _TAGS.clear()
        found = _TAGS[text] = tuple(json.loads(text))
    return found


_FLAT: dict[str, dict[str, Any]] = {}
_SCALARS = (str, int, float, bool, type(None))


def _object(text: str | None) -> dict[str, Any]:
    if not text or text == "{}":
        return {}
    # Params and usage repeat from job to job: a flat object (scalars only) is parsed
    # once and copied, which is a full copy; anything nested is parsed each time.
    flat = _FLAT.get(text)
    if flat is not None:
        return dict(flat)
    value = dict(json.loads(text))
    if all(isinstance(v, _SCALARS) for v in value.values()):
        if len(_FLAT) > 4096:
            _FLAT.clear()
        _FLAT[text] = dict(value)
    return value


def text_job(row: tuple[Any, ...], keys: Keys) -> dict[str, Any]:
    """A ``jobs`` row (selected with :data:`JOB_SELECT`) in its text form: what schema 4
    stored and bundles carry, column by column."""
    values = dict(zip(JOB_COLUMNS, row, strict=True))
    for column in _DATES:
        values[column] = date_text(values[column])
    for column in _DIGESTS:
        values[column] = digest_text(values[column])
    for column in _STRINGS:
        if isinstance(values[column], int):
            values[column] = keys.string(values[column])
    if isinstance(values["service"], int):
        values["service"] = keys.service(values["service"])
    if isinstance(values["provenance"], int):
        values["provenance"] = keys.provenance(values["provenance"])
    values["provenance"] = digest_text(values["provenance"])
    if isinstance(values["status"], int):
        values["status"] = STATUSES[values["status"]].value
    values["idempotency_key"] = key_text(values["idempotency_key"])
    return values


def stored_job(
    text: dict[str, Any], resolve: Resolver, *, at: int, provenance: Callable[[str], str | None]
) -> dict[str, Any]:
    """A ``jobs`` row in its text form (:func:`text_job`) as schema 5 stores it.

    :param resolve: keys of services, strings and provenance records, inside the write.
    :param at: the time a provenance record first seen here is recorded with.
    :param provenance: the JSON text of a provenance record by digest (``None`` when
        the row refers to a record nobody has: it is then recorded as missing).
    """
    values = {k: v for k, v in text.items() if k in _ALL_COLUMNS}
    for column in _DATES:
        if column in values:
            values[column] = date_value(values[column])
    for column in _DIGESTS:
        if column in values:
            values[column] = digest_value(values[column])
    for column in _STRINGS:
        if isinstance(values.get(column), str):
            values[column] = resolve.string(values[column])
    if isinstance(values.get("service"), str):
        values["service"] = resolve.service(values["service"])
    digest = values.get("provenance")
    if isinstance(digest, str):
        values["provenance"] = resolve.provenance(
            digest_value(digest) or digest, lambda: provenance(digest), at
        )
    status = values.get("status")
    if isinstance(status, str) and status in _STATUS_NAMES:
        values["status"] = _STATUS_NAMES[status]
    if isinstance(values.get("idempotency_key"), str):
        values["idempotency_key"] = key_value(values["idempotency_key"])
    return values


_ALL_COLUMNS = frozenset(JOB_COLUMNS)
