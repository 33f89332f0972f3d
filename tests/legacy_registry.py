"""Registries at older schemas, for migration tests.

:func:`downgrade` writes a copy of a current registry at schema 1 to 4: the tables
are created by the old migrations themselves (``jobledger.registry.schema``), and the
rows copied with plain SQL from the current file's documented views, which give them
back in the text form those schemas stored (ISO dates, hex digests, names). A test
records jobs through the real write path, downgrades, lets a writable open migrate the
copy, and compares everything.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from jobledger.registry import schema

GENESIS = "0" * 64
JOB_TEXT_COLUMNS = (
    "pk, job_id, service, idempotency_key, alias, backend, backend_version, status, "
    "created_at, started_at, ended_at, queue_position, message, tags, session_id, params, "
    "batch_sha256, batch_size, batch_media_type, result_sha256, result_size, "
    "result_media_type, provenance, usage, submit_state, last_seen_at"
)


def old_registry(path: Path, version: int) -> sqlite3.Connection:
    """An empty registry file at schema *version* (1 to 4), made by the old migrations."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    for step in range(1, version + 1):
        schema._MIGRATIONS[step](db)
    db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(version),))
    return db


def downgrade(source: Path, target: Path, version: int) -> None:
    """Write the registry at *source* (current schema) as a schema *version* file."""
    db = old_registry(target, version)
    db.execute("ATTACH DATABASE ? AS src", (f"file:{source}?mode=ro",))
    try:
        db.execute("BEGIN")
        db.execute(
            "INSERT INTO services (id, url, kind, profile, first_seen, last_seen) "
            "SELECT id, url, kind, profile, first_seen, last_seen FROM src.services_view "
            "WHERE kind IS NOT NULL"
        )
        db.execute(
            "INSERT INTO provenance (digest, record, first_seen) "
            "SELECT digest, record, first_seen FROM src.provenance_view WHERE record IS NOT NULL"
        )
        columns = JOB_TEXT_COLUMNS + (", extras" if version >= 2 else "")
        db.execute(f"INSERT INTO jobs ({columns}) SELECT {columns} FROM src.jobs_view")
        tag_columns = "tag, created_at, job_pk" + (", status" if version >= 3 else "")
        db.execute(
            f"INSERT INTO job_tags ({tag_columns}) SELECT {tag_columns} FROM src.job_tags_view"
        )
        if version >= 4:
            db.execute(
                "INSERT INTO events (id, job_pk, at, kind, detail, sha256, prev_sha256) "
                "SELECT id, job_pk, at, kind, detail, sha256, coalesce(prev_sha256, "
                f"lag(sha256, 1, '{GENESIS}') OVER (ORDER BY id)) FROM src.events_view"
            )
            db.execute(
                "INSERT INTO meta (key, value) SELECT key, value FROM src.meta "
                "WHERE key = 'events_head'"
            )
        else:
            db.execute(
                "INSERT INTO events (id, job_pk, at, kind, detail) "
                "SELECT id, job_pk, at, kind, detail FROM src.events_view"
            )
        db.execute("COMMIT")
    finally:
        db.execute("DETACH DATABASE src")
        db.close()
