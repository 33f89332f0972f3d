"""The registry's schema: its version, the migrations that build it, and their runner.

The version is kept in the ``meta`` table; :func:`migrate` applies every missing
migration in one ``BEGIN IMMEDIATE`` transaction, so concurrent openers migrate once.
A new file is created at the current schema directly (:func:`.schema5.create`); an
older one goes through each missing step. Migrations 1 to 4 build the text schema of
earlier versions (migration 1 with sqlite-utils, imported only then); migration 5
rebuilds it into the compact one (:mod:`.schema5`). The schema is documented in
``docs/registry.md``; changing it means a new migration and a new
:data:`SCHEMA_VERSION`. Re-exported by :mod:`jobledger.registry`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from jobledger.errors import RegistryError
from jobledger.registry import schema5
from jobledger.registry.writes import GENESIS, event_digest, set_events_head

__all__ = ["SCHEMA_VERSION"]

SCHEMA_VERSION = 5


def schema_version(conn: sqlite3.Connection) -> int:
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return 0
        raise
    return int(row[0]) if row else 0


def migrate(conn: sqlite3.Connection, path: Path) -> int:
    """Bring the file to :data:`SCHEMA_VERSION` in one transaction; returns the version
    it was at (the current one when another process migrated it first)."""
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = version = schema_version(conn)
        if version > SCHEMA_VERSION:
            raise RegistryError(f"the registry {path} was made by a newer jobledger")
        if version == 0:
            schema5.create(conn)
            version = SCHEMA_VERSION
            _set_version(conn, version)
        for target in range(version + 1, SCHEMA_VERSION + 1):
            _MIGRATIONS[target](conn)
            _set_version(conn, target)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return found


def _set_version(conn: sqlite3.Connection, version: int) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (str(version),),
    )


def migration_1(conn: sqlite3.Connection) -> None:
    import sqlite_utils

    db = sqlite_utils.Database(conn)
    db.table("meta").create({"key": str, "value": str}, pk="key")
    db.table("services").create(
        {"id": str, "url": str, "kind": str, "profile": str, "first_seen": str, "last_seen": str},
        pk="id",
    )
    db.table("provenance").create({"digest": str, "record": str, "first_seen": str}, pk="digest")
    db.table("jobs").create(
        {
            "pk": int,
            "job_id": str,
            "service": str,
            "idempotency_key": str,
            "alias": str,
            "backend": str,
            "backend_version": str,
            "status": str,
            "created_at": str,
            "started_at": str,
            "ended_at": str,
            "queue_position": int,
            "message": str,
            "tags": str,
            "session_id": str,
            "params": str,
            "batch_sha256": str,
            "batch_size": int,
            "batch_media_type": str,
            "result_sha256": str,
            "result_size": int,
            "result_media_type": str,
            "provenance": str,
            "usage": str,
            "submit_state": str,
            "last_seen_at": str,
        },
        pk="pk",
        not_null={"idempotency_key", "backend", "status", "created_at", "submit_state"},
    )
    db.table("events").create(
        {"id": int, "job_pk": int, "at": str, "kind": str, "detail": str}, pk="id"
    )
    conn.execute(
        "CREATE TABLE job_tags (tag TEXT NOT NULL, created_at TEXT NOT NULL, "
        "job_pk INTEGER NOT NULL, PRIMARY KEY (tag, created_at, job_pk)) WITHOUT ROWID"
    )
    for sql in (
        "CREATE UNIQUE INDEX jobs_id ON jobs (job_id, service)",
        "CREATE UNIQUE INDEX jobs_key ON jobs (idempotency_key)",
        "CREATE UNIQUE INDEX jobs_alias ON jobs (alias) WHERE alias IS NOT NULL",
        "CREATE INDEX jobs_created ON jobs (created_at)",
        "CREATE INDEX jobs_status ON jobs (status, created_at)",
        "CREATE INDEX jobs_backend ON jobs (backend, created_at)",
        "CREATE INDEX events_job ON events (job_pk)",
    ):
        conn.execute(sql)


def migration_2(conn: sqlite3.Connection) -> None:
    # Version 2 caches logs, interim results and metrics of finished jobs.
    conn.execute("ALTER TABLE jobs ADD COLUMN extras TEXT")
    conn.execute(
        "CREATE INDEX jobs_submit_state ON jobs (submit_state) WHERE submit_state = 'pending'"
    )


def migration_3(conn: sqlite3.Connection) -> None:
    # Version 3 keeps each job's status beside its tags, so that listing by tag and
    # status filters inside the (tag, created_at) index walk, without a jobs lookup.
    conn.execute("ALTER TABLE job_tags ADD COLUMN status TEXT")
    conn.execute(
        "UPDATE job_tags SET status = (SELECT status FROM jobs WHERE jobs.pk = job_tags.job_pk)"
    )


def migration_4(conn: sqlite3.Connection) -> None:
    # Version 4 makes the event log tamper-evident: each row carries the hash of its
    # content and of the previous row; the rows already there are chained in id order.
    conn.execute("ALTER TABLE events ADD COLUMN sha256 TEXT")
    conn.execute("ALTER TABLE events ADD COLUMN prev_sha256 TEXT")
    prev, last = GENESIS, 0
    while True:
        # In pages, so that a log of millions of events is not held in memory.
        rows = conn.execute(
            "SELECT id, job_pk, at, kind, detail FROM events WHERE id > ? ORDER BY id LIMIT 10000",
            (last,),
        ).fetchall()
        if not rows:
            break
        for event_id, job_pk, at, kind, detail in rows:
            digest = event_digest(event_id, job_pk, at, kind, detail, prev)
            conn.execute(
                "UPDATE events SET sha256 = ?, prev_sha256 = ? WHERE id = ?",
                (digest, prev, event_id),
            )
            prev, last = digest, event_id
    if last:
        set_events_head(conn, last, prev)


_MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    1: migration_1,
    2: migration_2,
    3: migration_3,
    4: migration_4,
    5: schema5.migration_5,
}
