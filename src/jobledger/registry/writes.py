"""Statements run inside a registry write transaction, shared by the recording methods.

Each helper takes the open :class:`sqlite3.Connection` of a
:meth:`~jobledger.registry.file.RegistryFile.write` transaction: appending to the event
log, keeping the ``job_tags`` index rows in step with a job's tags, checking that an
alias is free, inserting a job first seen on the service, and applying the service's
answer (status, dates, usage, digests) to a row. The event log is a hash chain (schema
4): :func:`add_event` is the only statement that inserts into ``events``; each row
carries the sha256 of its content and of the previous row (:func:`event_digest`), and
``meta.events_head`` holds the last row's id and hash, so that an edited, inserted,
reordered or deleted event can be detected (``jobledger audit verify``).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable
from typing import TYPE_CHECKING

from jobledger.registry.records import dumps, now_iso, to_iso

if TYPE_CHECKING:
    from jobledger.providers.base import RemoteJob


GENESIS = "0" * 64
"""The ``prev_sha256`` of the first event of a registry."""


def event_digest(
    event_id: int, job_pk: int | None, at: str, kind: str, detail: str, prev_sha256: str
) -> str:
    """The sha256 (hex) of one event row's content, chained to the previous row's hash.

    The id is part of the content, so that moving an event to another place in the log
    changes its hash.
    """
    content = [event_id, job_pk, at, kind, detail, prev_sha256]
    text = json.dumps(content, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def events_head(conn: sqlite3.Connection) -> tuple[int, str] | None:
    """The id and hash of the last event written by jobledger (``meta.events_head``)."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'events_head'").fetchone()
    if row is None or not row[0]:
        return None
    event_id, _, digest = str(row[0]).partition(" ")
    return int(event_id), digest


def set_events_head(conn: sqlite3.Connection, event_id: int, digest: str) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('events_head', ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (f"{event_id} {digest}",),
    )


def add_event(conn: sqlite3.Connection, pk: int | None, kind: str, detail: str, at: str) -> None:
    """Append an event, chained to the previous one (inside the caller's transaction).

    The previous hash is read from ``meta.events_head`` rather than from the last row,
    so that a row deleted behind jobledger's back stays visible as a broken link.
    *pk* is ``None`` for events about the registry itself (e.g. ``dropped``).
    """
    last = conn.execute("SELECT id FROM events ORDER BY id DESC LIMIT 1").fetchone()
    head = events_head(conn)
    # Ids are never reused: a dropped tail keeps its ids in the head.
    event_id = max(last[0] if last else 0, head[0] if head else 0) + 1
    prev = head[1] if head else GENESIS
    digest = event_digest(event_id, pk, at, kind, detail, prev)
    conn.execute(
        "INSERT INTO events (id, job_pk, at, kind, detail, sha256, prev_sha256) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (event_id, pk, at, kind, detail, digest, prev),
    )
    set_events_head(conn, event_id, digest)


def set_tags(
    conn: sqlite3.Connection, pk: int, old: Iterable[str], new: Iterable[str], created: str
) -> None:
    old_set, new_set = set(old), set(new)
    for tag in old_set - new_set:
        conn.execute(
            "DELETE FROM job_tags WHERE tag = ? AND created_at = ? AND job_pk = ?",
            (tag, created, pk),
        )
    for tag in new_set - old_set:
        conn.execute(
            "INSERT OR IGNORE INTO job_tags (tag, created_at, job_pk, status) "
            "SELECT ?, ?, pk, status FROM jobs WHERE pk = ?",
            (tag, created, pk),
        )


def check_alias_free(conn: sqlite3.Connection, alias: str, pk: int | None) -> None:
    row = conn.execute(
        "SELECT pk, job_id FROM jobs WHERE alias = ? OR job_id = ?", (alias, alias)
    ).fetchone()
    if row is not None and row[0] != pk:
        raise ValueError(
            f"the alias {alias!r} is already used by job {row[1] or '#' + str(row[0])}; "
            "choose another name or remove it there first"
        )


def insert_synced(conn: sqlite3.Connection, service: str, info: RemoteJob) -> int:
    """Insert a job first seen on the service (not submitted from here)."""
    created = to_iso(info.created_at) or now_iso()
    tags = list(info.tags)
    cursor = conn.execute(
        "INSERT INTO jobs (job_id, service, idempotency_key, backend, status, created_at, tags,"
        " session_id, params, submit_state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'synced')",
        (
            info.id,
            service,
            f"synced:{service}:{info.id}",
            info.backend or "?",
            info.status.value,
            created,
            dumps(tags),
            info.session_id,
            dumps(dict(info.params)),
        ),
    )
    pk = int(cursor.lastrowid or 0)
    set_tags(conn, pk, (), tags, created)
    add_event(conn, pk, "synced", "", now_iso())
    return pk


def apply_info(conn: sqlite3.Connection, pk: int, info: RemoteJob) -> None:
    """Apply the service's answer (status, dates, usage, digests) to row *pk*."""
    row = conn.execute("SELECT status FROM jobs WHERE pk = ?", (pk,)).fetchone()
    old_status = row[0] if row else None
    status = info.status.value
    sets: dict[str, object] = {
        "status": status,
        "queue_position": info.queue_position,
        "message": info.message,
        "last_seen_at": now_iso(),
    }
    if info.started_at:
        sets["started_at"] = to_iso(info.started_at)
    if info.ended_at:
        sets["ended_at"] = to_iso(info.ended_at)
    if info.backend_version:
        sets["backend_version"] = info.backend_version
    if info.usage is not None:
        sets["usage"] = dumps(info.usage)
    known = conn.execute(
        "SELECT result_sha256, batch_sha256 FROM jobs WHERE pk = ?", (pk,)
    ).fetchone()
    for part, recorded in zip(("result", "batch"), known or (None, None), strict=True):
        blob = info.result if part == "result" else info.batch
        # The service's digest is recorded once; the bytes are checked against it on download.
        if blob is not None and not recorded:
            sets[f"{part}_sha256"] = blob.sha256
            sets[f"{part}_size"] = blob.size
            sets[f"{part}_media_type"] = blob.media_type
    assignments = ", ".join(f"{k} = ?" for k in sets)
    conn.execute(f"UPDATE jobs SET {assignments} WHERE pk = ?", (*sets.values(), pk))
    if status != old_status:
        add_event(conn, pk, "status", status, now_iso())
        tagged = conn.execute("SELECT tags, created_at FROM jobs WHERE pk = ?", (pk,)).fetchone()
        for tag in json.loads(tagged[0] or "[]"):
            conn.execute(
                "UPDATE job_tags SET status = ? WHERE tag = ? AND created_at = ? AND job_pk = ?",
                (status, tag, tagged[1], pk),
            )
