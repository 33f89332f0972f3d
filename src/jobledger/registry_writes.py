"""Statements run inside a registry write transaction, shared by the recording methods.

Each helper takes the open :class:`sqlite3.Connection` of a
:meth:`~jobledger.registry_file.RegistryFile.write` transaction: appending to the event
log, keeping the ``job_tags`` index rows in step with a job's tags, checking that an
alias is free, inserting a job first seen on the service, and applying the service's
answer (status, dates, usage, digests) to a row.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any

from jobledger.registry_records import _dumps, now_iso, to_iso
from jobledger.status import JobStatus


def _event(conn: sqlite3.Connection, pk: int, kind: str, detail: str, at: str) -> None:
    conn.execute(
        "INSERT INTO events (job_pk, at, kind, detail) VALUES (?, ?, ?, ?)", (pk, at, kind, detail)
    )


def _set_tags(
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


def _check_alias_free(conn: sqlite3.Connection, alias: str, pk: int | None) -> None:
    row = conn.execute(
        "SELECT pk, job_id FROM jobs WHERE alias = ? OR job_id = ?", (alias, alias)
    ).fetchone()
    if row is not None and row[0] != pk:
        raise ValueError(
            f"the alias {alias!r} is already used by job {row[1] or '#' + str(row[0])}; "
            "choose another name or remove it there first"
        )


def _insert_synced(conn: sqlite3.Connection, service: str, info: dict[str, Any]) -> int:
    created = to_iso(info.get("created_at")) or now_iso()
    tags = list(info.get("tags") or [])
    backend = info.get("backend") or {}
    cursor = conn.execute(
        "INSERT INTO jobs (job_id, service, idempotency_key, backend, status, created_at, tags,"
        " session_id, params, submit_state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'synced')",
        (
            info["id"],
            service,
            f"synced:{service}:{info['id']}",
            backend.get("name", "?") if isinstance(backend, dict) else str(backend),
            info.get("status", JobStatus.QUEUED.value),
            created,
            _dumps(tags),
            info.get("session_id"),
            _dumps(info.get("params") or {}),
        ),
    )
    pk = int(cursor.lastrowid or 0)
    _set_tags(conn, pk, (), tags, created)
    _event(conn, pk, "synced", "", now_iso())
    return pk


def _apply_info(conn: sqlite3.Connection, pk: int, info: dict[str, Any]) -> None:
    row = conn.execute("SELECT status FROM jobs WHERE pk = ?", (pk,)).fetchone()
    old_status = row[0] if row else None
    status = info.get("status", old_status)
    sets = {
        "status": status,
        "queue_position": info.get("queue_position"),
        "message": info.get("message"),
        "last_seen_at": now_iso(),
    }
    for key in ("started_at", "ended_at"):
        if info.get(key):
            sets[key] = to_iso(info[key])
    backend = info.get("backend")
    if isinstance(backend, dict) and backend.get("version"):
        sets["backend_version"] = backend["version"]
    if "usage" in info:
        sets["usage"] = _dumps(info.get("usage") or {})
    known = conn.execute(
        "SELECT result_sha256, batch_sha256 FROM jobs WHERE pk = ?", (pk,)
    ).fetchone()
    for part, recorded in zip(("result", "batch"), known or (None, None), strict=True):
        blob = info.get(part)
        # The service's digest is recorded once; the bytes are checked against it on download.
        if isinstance(blob, dict) and blob.get("sha256") and not recorded:
            sets[f"{part}_sha256"] = blob["sha256"]
            sets[f"{part}_size"] = blob.get("size")
            sets[f"{part}_media_type"] = blob.get("media_type")
    assignments = ", ".join(f"{k} = ?" for k in sets)
    conn.execute(f"UPDATE jobs SET {assignments} WHERE pk = ?", (*sets.values(), pk))
    if status != old_status:
        _event(conn, pk, "status", str(status), now_iso())
        tagged = conn.execute("SELECT tags, created_at FROM jobs WHERE pk = ?", (pk,)).fetchone()
        for tag in json.loads(tagged[0] or "[]"):
            conn.execute(
                "UPDATE job_tags SET status = ? WHERE tag = ? AND created_at = ? AND job_pk = ?",
                (status, tag, tagged[1], pk),
            )
