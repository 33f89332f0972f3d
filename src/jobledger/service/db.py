"""The service's SQLite database (``<data>/service.db``): connection, schema, identity.

Plain :mod:`sqlite3` in WAL mode with a busy timeout, one connection per thread, and
one process-wide lock around writes so the server's threads never contend for the
write lock among themselves (other processes, such as ``jobledger token create``,
wait through the busy timeout). The schema is created on first open; the ``meta``
table holds the ``service_id`` made once per data folder. This module imports only
the standard library, so the embedded-service launcher can use it without Starlette.

Every change of a job a client can see (its creation, status, dates, message, payloads,
tags, usage; deletion is a status) stamps the row's ``changed`` column with the next
value of a per-service counter (``meta.change_seq``). Triggers do it inside the very
transaction that made the change, so change numbers follow commit order exactly (SQLite
runs one write transaction at a time), whoever wrote the row: the listing of changes
after a number (``GET /v1/jobs?updated_after=``) misses nothing, even while jobs change.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["SCHEMA_VERSION", "Database"]

SCHEMA_VERSION = 2

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
    metrics TEXT NOT NULL DEFAULT '{}',
    changed INTEGER NOT NULL DEFAULT 0
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
CREATE TABLE IF NOT EXISTS inline_blobs (sha256 TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
);
"""

# Schema 2: the change counter. A data folder of schema 1 gets the column, its rows
# numbered in insertion order (the counter starts after them), the index and triggers.
_CHANGE_TRIGGER = """
CREATE TRIGGER IF NOT EXISTS jobs_changed_{name} AFTER {event} ON jobs BEGIN
    UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'change_seq';
    UPDATE jobs SET changed = (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'change_seq')
        WHERE seq = NEW.seq;
END
"""
#: the columns a job info shows: updating any of them is a change (metrics are not)
CHANGE_COLUMNS = (
    "backend",
    "backend_version",
    "status",
    "started_at",
    "ended_at",
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
    "usage_seconds",
)


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a data folder of an earlier schema up to :data:`SCHEMA_VERSION` (inside
    the caller's write transaction); every row is kept."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
    if "changed" not in columns:
        conn.execute("ALTER TABLE jobs ADD COLUMN changed INTEGER NOT NULL DEFAULT 0")
        conn.execute("UPDATE jobs SET changed = seq")
    conn.execute(
        "INSERT OR IGNORE INTO meta (key, value) "
        "SELECT 'change_seq', CAST(COALESCE(MAX(changed), 0) AS TEXT) FROM jobs"
    )
    conn.execute("CREATE INDEX IF NOT EXISTS jobs_owner_changed ON jobs (owner, changed)")
    conn.execute(_CHANGE_TRIGGER.format(name="insert", event="INSERT"))
    update = f"UPDATE OF {', '.join(CHANGE_COLUMNS)}"
    conn.execute(_CHANGE_TRIGGER.format(name="update", event=update))
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('schema_version', ?) ON CONFLICT(key) DO "
        "UPDATE SET value = excluded.value WHERE CAST(value AS INTEGER) < ?",
        (str(SCHEMA_VERSION), SCHEMA_VERSION),
    )


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
            _migrate(conn)
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
    def write(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``), committed on success.

        :param durable: flush the write-ahead log to disk at the commit, so that the
            change survives a power failure, not only a crash of the process (WAL's
            ``NORMAL`` sync, used otherwise, may lose the last commits to a power
            failure). Used for what the service acknowledges: a new submission.
        """
        with self._write_lock:
            conn = self.conn()
            if durable:
                conn.execute("PRAGMA synchronous=FULL")
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            finally:
                if durable:
                    conn.execute("PRAGMA synchronous=NORMAL")

    def service_id(self) -> str:
        """The stable id of this data folder, made when it was first opened."""
        row = self.conn().execute("SELECT value FROM meta WHERE key = 'service_id'").fetchone()
        return str(row["value"])

    def change_seq(self) -> int:
        """The number of the last change made to any job of this service."""
        row = self.conn().execute("SELECT value FROM meta WHERE key = 'change_seq'").fetchone()
        return int(row["value"]) if row else 0

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
