"""Statements run inside a registry write transaction, shared by the recording methods.

Each helper takes the open :class:`sqlite3.Connection` of a
:meth:`~jobledger.registry.file.RegistryFile.write` transaction, and a
:class:`~jobledger.registry.keys.Resolver` for the keys of the names it writes:
appending to the event log, keeping the ``job_tags`` index rows in step with a job's
tags, checking that an alias is free, inserting a job first seen on the service, and
applying the service's answer (status, dates, usage, digests) to a row.

The event log is a hash chain (schema 4): :func:`add_event` is the only statement that
inserts into ``events``; each row carries the sha256 of its content and of the previous
row (:func:`event_digest`), and ``meta.events_head`` holds the last row's id and hash,
so that an edited, inserted, reordered or deleted event can be detected
(``jobledger audit verify``). The hash covers the event's *text form* (ISO date, kind
name, hex digests), whatever schema 5 stores, so that chains made before schema 5
verify unchanged. Schema 5 stores ``prev_sha256`` only where it is not the sha256 of
the row before (NULL otherwise).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable

from jobledger.registry.codec import (
    digest_value,
    event_at_value,
    event_detail_value,
    key_value,
)
from jobledger.registry.records import (
    STATUS_CODES,
    dumps,
    iso_from_micros,
    now_micros,
    to_micros,
)

TYPE_CHECKING = False  # typing's flag without importing typing (see docs/architecture.md)
if TYPE_CHECKING:
    from jobledger.providers.base import RemoteJob
    from jobledger.registry.keys import Resolver


GENESIS = "0" * 64
"""The ``prev_sha256`` of the first event of a registry."""


def event_digest(
    event_id: int, job_pk: int | None, at: str, kind: str, detail: str, prev_sha256: str
) -> str:
    """The sha256 (hex) of one event row's content, chained to the previous row's hash.

    The id is part of the content, so that moving an event to another place in the log
    changes its hash. Every argument is the text form (what schema 4 stored).
    """
    content = [event_id, job_pk, at, kind, detail, prev_sha256]
    text = json.dumps(content, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def set_events_head(conn: sqlite3.Connection, event_id: int, digest: str) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('events_head', ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (f"{event_id} {digest}",),
    )


def add_event(
    conn: sqlite3.Connection,
    resolve: Resolver,
    pk: int | None,
    kind: str,
    detail: str,
    at: int | str,
) -> None:
    """Append an event, chained to the previous one (inside the caller's transaction).

    The previous hash is read from ``meta.events_head`` rather than from the last row,
    so that a row deleted behind jobledger's back stays visible as a broken link.
    *pk* is ``None`` for events about the registry itself; *at* is a stored date
    (microseconds) or, for events imported with their original time, its text.
    """
    last_id, last_sha, head = conn.execute(
        "SELECT (SELECT id FROM events ORDER BY id DESC LIMIT 1), "
        "(SELECT sha256 FROM events ORDER BY id DESC LIMIT 1), "
        "(SELECT value FROM meta WHERE key = 'events_head')"
    ).fetchone()
    head_id, head_sha = 0, GENESIS
    if head:
        text_id, _, head_sha = str(head).partition(" ")
        head_id = int(text_id)
    # Ids are never reused: a dropped tail keeps its ids in the head.
    event_id = max(last_id or 0, head_id) + 1
    at_text = iso_from_micros(at) if isinstance(at, int) else at
    digest = event_digest(event_id, pk, at_text, kind, detail, head_sha)
    previous = last_sha.hex() if isinstance(last_sha, bytes) else last_sha
    implied = previous == head_sha if last_id is not None else head_sha == GENESIS
    conn.execute(
        "INSERT INTO events (id, job_pk, at, kind, detail, sha256, prev_sha256) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            event_id,
            pk,
            at if isinstance(at, int) else event_at_value(at),
            resolve.string(kind),
            event_detail_value(detail),
            bytes.fromhex(digest),
            None if implied else digest_value(head_sha),
        ),
    )
    set_events_head(conn, event_id, digest)


def set_tags(
    conn: sqlite3.Connection, pk: int, old: Iterable[str], new: Iterable[str], created: int
) -> None:
    """Make the job's ``job_tags`` rows those of *new* (it had those of *old*)."""
    old_set, new_set = set(old), set(new)
    for tag in old_set - new_set:
        conn.execute(
            "DELETE FROM job_tags WHERE tag = ? AND created_at = ? AND job_pk = ?",
            (tag, created, pk),
        )
    for tag in new_set - old_set:
        conn.execute(
            "INSERT OR IGNORE INTO job_tags (tag, created_at, job_pk, status, backend) "
            "SELECT ?, ?, pk, status, backend FROM jobs WHERE pk = ?",
            (tag, created, pk),
        )


def delete_tags(conn: sqlite3.Connection, pk: int) -> None:
    """Remove the job's ``job_tags`` rows, through their primary key (the job's tags
    and creation time), so that nothing walks the whole table."""
    row = conn.execute("SELECT tags, created_at FROM jobs WHERE pk = ?", (pk,)).fetchone()
    if row is not None:
        set_tags(conn, pk, json.loads(row[0] or "[]"), (), row[1])


def check_alias_free(conn: sqlite3.Connection, alias: str, pk: int | None) -> None:
    row = conn.execute(
        "SELECT pk, job_id FROM jobs WHERE alias = ? OR job_id = ?", (alias, alias)
    ).fetchone()
    if row is not None and row[0] != pk:
        raise ValueError(
            f"the alias {alias!r} is already used by job {row[1] or '#' + str(row[0])}; "
            "choose another name or remove it there first"
        )


def insert_synced(
    conn: sqlite3.Connection, resolve: Resolver, service: str, info: RemoteJob
) -> int:
    """Insert a job first seen on the service (not submitted from here)."""
    now = now_micros()
    created = to_micros(info.created_at) if info.created_at else now
    assert created is not None
    tags = list(info.tags)
    cursor = conn.execute(
        "INSERT INTO jobs (job_id, service, idempotency_key, backend, status, created_at, tags,"
        " session_id, params, submit_state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'synced')",
        (
            info.id,
            resolve.service(service),
            key_value(f"synced:{service}:{info.id}"),
            resolve.string(info.backend or "?"),
            STATUS_CODES[info.status],
            created,
            dumps(tags),
            info.session_id,
            dumps(dict(info.params)),
        ),
    )
    pk = int(cursor.lastrowid or 0)
    set_tags(conn, pk, (), tags, created)
    add_event(conn, resolve, pk, "synced", "", now)
    return pk


def apply_info(
    conn: sqlite3.Connection,
    resolve: Resolver,
    pk: int,
    info: RemoteJob,
    also: dict[str, object] | None = None,
) -> None:
    """Apply the service's answer (status, dates, usage, digests) to row *pk*, with the
    columns of *also* in the same statement."""
    row = conn.execute(
        "SELECT status, tags, created_at, result_sha256, batch_sha256 FROM jobs WHERE pk = ?",
        (pk,),
    ).fetchone()
    old_status, tags, created, known_result, known_batch = row or (None, None, None, None, None)
    status = STATUS_CODES[info.status]
    now = now_micros()
    sets: dict[str, object] = {
        **(also or {}),
        "status": status,
        "queue_position": info.queue_position,
        "message": info.message,
        "last_seen_at": now,
    }
    if info.started_at:
        sets["started_at"] = to_micros(info.started_at)
    if info.ended_at:
        sets["ended_at"] = to_micros(info.ended_at)
    if info.backend_version:
        sets["backend_version"] = info.backend_version
    if info.usage is not None:
        sets["usage"] = dumps(info.usage)
    for part, recorded in (("result", known_result), ("batch", known_batch)):
        blob = info.result if part == "result" else info.batch
        # The service's digest is recorded once; the bytes are checked against it on download.
        if blob is not None and not recorded:
            sets[f"{part}_sha256"] = digest_value(blob.sha256)
            sets[f"{part}_size"] = blob.size
            sets[f"{part}_media_type"] = resolve.string(blob.media_type)
    assignments = ", ".join(f"{k} = ?" for k in sets)
    conn.execute(f"UPDATE jobs SET {assignments} WHERE pk = ?", (*sets.values(), pk))
    if status != old_status:
        add_event(conn, resolve, pk, "status", info.status.value, now)
        for tag in json.loads(tags or "[]"):
            conn.execute(
                "UPDATE job_tags SET status = ? WHERE tag = ? AND created_at = ? AND job_pk = ?",
                (status, tag, created, pk),
            )
