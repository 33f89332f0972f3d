"""The service's SQLite database (``<data>/service.db``): connection, schema, identity.

Plain :mod:`sqlite3` in WAL mode with a busy timeout, one connection per thread, and
one process-wide lock around writes so the server's threads never contend for the
write lock among themselves (other processes, such as ``jobledger token create``,
wait through the busy timeout). The schema is created on first open; the ``meta``
table holds the ``service_id`` made once per data folder. This module imports only
the standard library, so the embedded-service launcher can use it without Starlette.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["SCHEMA_VERSION", "Database"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    backend TEXT NOT NULL,
    backend_version TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    started_at TEXT,
    ended_at TEXT,
    message TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    session_id TEXT,
    params TEXT NOT NULL DEFAULT '{}',
    batch_sha256 TEXT,
    batch_size INTEGER,
    batch_media_type TEXT,
    result_sha256 TEXT,
    result_size INTEGER,
    result_media_type TEXT,
    usage_seconds REAL,
    metrics TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS jobs_owner_seq ON jobs (owner, seq);
CREATE INDEX IF NOT EXISTS jobs_status_seq ON jobs (status, seq);
CREATE TABLE IF NOT EXISTS idempotency (
    owner TEXT NOT NULL,
    key TEXT NOT NULL,
    job_id TEXT NOT NULL,
    PRIMARY KEY (owner, key)
);
CREATE INDEX IF NOT EXISTS idempotency_key ON idempotency (key);
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
);
"""


class Database:
    """Thread-local connections to one ``service.db``, with a write lock."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / "service.db"
        self._local = threading.local()
        self._write_lock = threading.RLock()
        data_dir.mkdir(parents=True, exist_ok=True)
        with self._write_lock:
            # executescript commits on its own, so it runs outside write().
            self.conn().executescript(_SCHEMA)
        with self.write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('service_id', ?)",
                ("S" + secrets.token_hex(12),),
            )

    def conn(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``), committed on success."""
        with self._write_lock:
            conn = self.conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def service_id(self) -> str:
        """The stable id of this data folder, made when it was first opened."""
        row = self.conn().execute("SELECT value FROM meta WHERE key = 'service_id'").fetchone()
        return str(row["value"])

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
