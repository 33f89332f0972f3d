"""Schema 5: compact tables with declared foreign keys, text views, and the 4 -> 5 rebuild.

:func:`create` makes the tables, indexes and views of a new registry; :func:`migration_5`
rebuilds a schema 4 file into them inside :func:`~jobledger.registry.schema.migrate`'s
transaction. The old tables are renamed ``v4_*``, their rows copied in pages of
:data:`PAGE` (a registry of millions of jobs is never held in memory) through
:mod:`.codec`, then dropped; the indexes are built once the rows are in. Every row,
event, tag, alias and provenance record is kept, values without the canonical form as
the text they were. The event hashes are kept as they were: they cover the text form
of each event, which the compact form gives back exactly.

Foreign keys are declared (jobs -> services, provenance, strings, statuses; events and
job_tags -> jobs) so that tools like Datasette link the tables, but not enforced
(``PRAGMA foreign_keys`` stays off): the registry keeps them whole itself, and an
enforced key could make a write fail, losing the record it carried.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator

from jobledger.registry.codec import (
    JOB_COLUMNS,
    date_value,
    digest_text,
    digest_value,
    event_at_value,
    event_detail_value,
    hex_sql,
    stored_job,
)
from jobledger.registry.keys import Resolver
from jobledger.registry.records import STATUS_CODES, now_micros
from jobledger.registry.writes import GENESIS

TYPE_CHECKING = False  # typing's flag without importing typing (see docs/architecture.md)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["PAGE", "VIEWS", "create", "migration_5"]

PAGE = 5000

TABLES = (
    """CREATE TABLE statuses (
    code INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
)""",
    """CREATE TABLE strings (
    key INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
)""",
    """CREATE TABLE services (
    key INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    url TEXT,
    kind TEXT,
    profile TEXT,
    first_seen INTEGER,
    last_seen INTEGER
)""",
    """CREATE TABLE provenance (
    key INTEGER PRIMARY KEY,
    digest BLOB NOT NULL UNIQUE,
    record TEXT,
    first_seen INTEGER
)""",
    """CREATE TABLE jobs (
    pk INTEGER PRIMARY KEY,
    job_id TEXT,
    service INTEGER REFERENCES services (key),
    alias TEXT,
    backend INTEGER NOT NULL REFERENCES strings (key),
    backend_version TEXT,
    status INTEGER NOT NULL REFERENCES statuses (code),
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    ended_at INTEGER,
    queue_position INTEGER,
    message TEXT,
    tags TEXT,
    session_id TEXT,
    params TEXT,
    batch_sha256 BLOB,
    batch_size INTEGER,
    batch_media_type INTEGER REFERENCES strings (key),
    result_sha256 BLOB,
    result_size INTEGER,
    result_media_type INTEGER REFERENCES strings (key),
    provenance INTEGER REFERENCES provenance (key),
    idempotency_key BLOB NOT NULL,
    submit_state TEXT NOT NULL,
    last_seen_at INTEGER,
    usage TEXT,
    extras TEXT
)""",
    """CREATE TABLE job_tags (
    tag TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    job_pk INTEGER NOT NULL REFERENCES jobs (pk),
    status INTEGER REFERENCES statuses (code),
    backend INTEGER REFERENCES strings (key),
    PRIMARY KEY (tag, created_at, job_pk)
) WITHOUT ROWID""",
    # `at` has no declared type: microseconds, or the text of a time that they would
    # not give back exactly (the event's hash covers the text).
    """CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    job_pk INTEGER REFERENCES jobs (pk),
    at,
    kind INTEGER REFERENCES strings (key),
    detail TEXT,
    sha256 BLOB,
    prev_sha256 BLOB
)""",
)

INDEXES = (
    "CREATE UNIQUE INDEX jobs_id ON jobs (job_id, service)",
    "CREATE UNIQUE INDEX jobs_key ON jobs (idempotency_key)",
    "CREATE UNIQUE INDEX jobs_alias ON jobs (alias) WHERE alias IS NOT NULL",
    "CREATE INDEX jobs_created ON jobs (created_at)",
    "CREATE INDEX jobs_status ON jobs (status, created_at)",
    "CREATE INDEX jobs_backend ON jobs (backend, created_at)",
    "CREATE INDEX jobs_session ON jobs (session_id, created_at) WHERE session_id IS NOT NULL",
    "CREATE INDEX jobs_submit_state ON jobs (submit_state) WHERE submit_state = 'pending'",
    "CREATE INDEX events_job ON events (job_pk)",
)


def _iso(column: str) -> str:
    """SQL giving a stored date back as Python's ``isoformat()`` of it (text as is)."""
    micros = f"(({column} % 1000000 + 1000000) % 1000000)"
    seconds = f"(({column} - {micros}) / 1000000)"
    return (
        f"CASE typeof({column}) WHEN 'integer' THEN "
        f"strftime('%Y-%m-%dT%H:%M:%S', {seconds}, 'unixepoch') || "
        f"CASE {micros} WHEN 0 THEN '' ELSE printf('.%06d', {micros}) END || '+00:00' "
        f"ELSE {column} END"
    )


def _jobs_view() -> str:
    special = {
        "service": "coalesce(s.id, j.service)",
        "backend": "coalesce(b.name, j.backend)",
        "status": "coalesce(st.name, j.status)",
        "batch_media_type": "coalesce(bm.name, j.batch_media_type)",
        "result_media_type": "coalesce(rm.name, j.result_media_type)",
        "provenance": hex_sql("coalesce(p.digest, j.provenance)"),
        "batch_sha256": hex_sql("j.batch_sha256"),
        "result_sha256": hex_sql("j.result_sha256"),
        "idempotency_key": hex_sql("j.idempotency_key"),
    }
    columns = []
    for column in JOB_COLUMNS:
        if column in special:
            expression = special[column]
        elif column.endswith("_at"):
            expression = _iso(f"j.{column}")
        else:
            expression = f"j.{column}"
        columns.append(f"{expression} AS {column}")
    return (
        "CREATE VIEW jobs_view AS SELECT " + ", ".join(columns) + " FROM jobs j "
        "LEFT JOIN services s ON s.key = j.service "
        "LEFT JOIN strings b ON b.key = j.backend "
        "LEFT JOIN statuses st ON st.code = j.status "
        "LEFT JOIN strings bm ON bm.key = j.batch_media_type "
        "LEFT JOIN strings rm ON rm.key = j.result_media_type "
        "LEFT JOIN provenance p ON p.key = j.provenance"
    )


VIEWS = (
    _jobs_view(),
    "CREATE VIEW events_view AS SELECT e.id, e.job_pk, j.job_id, "
    f"{_iso('e.at')} AS at, coalesce(k.name, e.kind) AS kind, {hex_sql('e.detail')} AS detail, "
    f"{hex_sql('e.sha256')} AS sha256, {hex_sql('e.prev_sha256')} AS prev_sha256 "
    "FROM events e LEFT JOIN jobs j ON j.pk = e.job_pk LEFT JOIN strings k ON k.key = e.kind",
    "CREATE VIEW job_tags_view AS SELECT t.tag, "
    f"{_iso('t.created_at')} AS created_at, t.job_pk, j.job_id, "
    "coalesce(st.name, t.status) AS status, coalesce(b.name, t.backend) AS backend "
    "FROM job_tags t LEFT JOIN jobs j ON j.pk = t.job_pk "
    "LEFT JOIN statuses st ON st.code = t.status LEFT JOIN strings b ON b.key = t.backend",
    "CREATE VIEW services_view AS SELECT key, id, url, kind, profile, "
    f"{_iso('first_seen')} AS first_seen, {_iso('last_seen')} AS last_seen FROM services",
    f"CREATE VIEW provenance_view AS SELECT key, {hex_sql('digest')} AS digest, record, "
    f"{_iso('first_seen')} AS first_seen FROM provenance",
)
"""The views giving every table back in its text form, for people browsing the file."""


def create(conn: sqlite3.Connection, *, with_meta: bool = True) -> None:
    """Create the schema 5 tables, indexes and views in an empty file."""
    if with_meta:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    for sql in TABLES:
        conn.execute(sql)
    conn.executemany(
        "INSERT INTO statuses (code, name) VALUES (?, ?)",
        [(code, status.value) for status, code in STATUS_CODES.items()],
    )
    for sql in (*INDEXES, *VIEWS):
        conn.execute(sql)


# -- the 4 -> 5 rebuild -------------------------------------------------------------


class _MigrationResolver(Resolver):
    """Keys resolved from dictionaries filled as the rebuild goes (no cache to keep)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__(conn)
        self.strings: dict[str, int] = {}
        self.services: dict[str, int] = {}
        self.provenance_keys: dict[bytes | str, int] = {}

    def string(self, name: str) -> int:
        key = self.strings.get(name)
        if key is None:
            key = self.strings[name] = super().string(name)
        return key

    def service(self, service_id: str) -> int:
        key = self.services.get(service_id)
        if key is None:
            key = self.services[service_id] = super().service(service_id)
        return key

    def provenance(self, digest: bytes | str, record: Callable[[], str | None], at: int) -> int:
        key = self.provenance_keys.get(digest)
        if key is None:
            key = self.provenance_keys[digest] = super().provenance(digest, record, at)
        return key


def _pages(
    conn: sqlite3.Connection, sql: str, key: str, width: int
) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of ``SELECT ... {where} ORDER BY <key> LIMIT ?`` page after page: *sql*
    holds ``{where}``, filled with ``WHERE <key> > (last key seen)`` after the first
    page; the key is the rows' first *width* columns."""
    rows = conn.execute(sql.format(where=""), (PAGE,)).fetchall()
    following = sql.format(where=f"WHERE ({key}) > ({', '.join('?' * width)})")
    while rows:
        yield rows
        rows = conn.execute(following, (*rows[-1][:width], PAGE)).fetchall()


def migration_5(conn: sqlite3.Connection) -> None:
    """Rebuild a schema 4 registry into schema 5, keeping every row."""
    for table in ("services", "provenance", "jobs", "job_tags", "events"):
        conn.execute(f"ALTER TABLE {table} RENAME TO v4_{table}")
    for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
        "AND tbl_name LIKE 'v4_%'"
    ).fetchall():
        conn.execute(f'DROP INDEX "{name}"')
    for sql in TABLES:
        conn.execute(sql)
    conn.executemany(
        "INSERT INTO statuses (code, name) VALUES (?, ?)",
        [(code, status.value) for status, code in STATUS_CODES.items()],
    )
    resolve = _MigrationResolver(conn)
    _copy_services(conn, resolve)
    _copy_provenance(conn, resolve)
    _copy_jobs(conn, resolve)
    _copy_job_tags(conn, resolve)
    _copy_events(conn, resolve)
    for table in ("events", "job_tags", "jobs", "provenance", "services"):
        conn.execute(f"DROP TABLE v4_{table}")
    for sql in (*INDEXES, *VIEWS):
        conn.execute(sql)


def _copy_services(conn: sqlite3.Connection, resolve: _MigrationResolver) -> None:
    rows = conn.execute(
        "SELECT id, url, kind, profile, first_seen, last_seen FROM v4_services ORDER BY rowid"
    ).fetchall()  # a handful of rows
    for service_id, url, kind, profile, first_seen, last_seen in rows:
        cursor = conn.execute(
            "INSERT INTO services (id, url, kind, profile, first_seen, last_seen) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (service_id, url, kind, profile, date_value(first_seen), date_value(last_seen)),
        )
        resolve.services[service_id] = int(cursor.lastrowid or 0)


def _copy_provenance(conn: sqlite3.Connection, resolve: _MigrationResolver) -> None:
    sql = "SELECT rowid, digest, record, first_seen FROM v4_provenance {where} ORDER BY rowid "
    sql += "LIMIT ?"
    for page in _pages(conn, sql, "rowid", 1):
        for _, digest, record, first_seen in page:
            stored = digest_value(digest) or digest
            cursor = conn.execute(
                "INSERT INTO provenance (digest, record, first_seen) VALUES (?, ?, ?)",
                (stored, record, date_value(first_seen)),
            )
            resolve.provenance_keys[stored] = int(cursor.lastrowid or 0)


def _copy_jobs(conn: sqlite3.Connection, resolve: _MigrationResolver) -> None:
    present = {r[1] for r in conn.execute("PRAGMA table_info(v4_jobs)")}
    columns = [c if c in present else f"NULL AS {c}" for c in JOB_COLUMNS]
    sql = f"SELECT {', '.join(columns)} FROM v4_jobs {{where}} ORDER BY pk LIMIT ?"
    insert = (
        f"INSERT INTO jobs ({', '.join(JOB_COLUMNS)}) VALUES ({', '.join('?' * len(JOB_COLUMNS))})"
    )
    now = now_micros()
    for page in _pages(conn, sql, "pk", 1):
        rows = []
        for row in page:
            # A reference to a record this file does not hold stays one: it is recorded
            # as missing (no text), and `audit verify` reports it as before.
            values = stored_job(
                dict(zip(JOB_COLUMNS, row, strict=True)), resolve, at=now, provenance=_none
            )
            rows.append([values[c] for c in JOB_COLUMNS])
        conn.executemany(insert, rows)


def _none(_digest: str) -> None:
    return None


def _copy_job_tags(conn: sqlite3.Connection, resolve: _MigrationResolver) -> None:
    codes = {status.value: code for status, code in STATUS_CODES.items()}
    sql = (
        "SELECT t.tag, t.created_at, t.job_pk, t.status, j.backend FROM v4_job_tags t "
        "LEFT JOIN jobs j ON j.pk = t.job_pk {where} ORDER BY t.tag, t.created_at, t.job_pk "
        "LIMIT ?"
    )
    for page in _pages(conn, sql, "t.tag, t.created_at, t.job_pk", 3):
        conn.executemany(
            "INSERT INTO job_tags (tag, created_at, job_pk, status, backend) "
            "VALUES (?, ?, ?, ?, ?)",
            [
                (tag, date_value(created), pk, codes.get(status, status), backend)
                for tag, created, pk, status, backend in page
            ],
        )


def _copy_events(conn: sqlite3.Connection, resolve: _MigrationResolver) -> None:
    sql = (
        "SELECT id, job_pk, at, kind, detail, sha256, prev_sha256 FROM v4_events "
        "{where} ORDER BY id LIMIT ?"
    )
    before: str | None = GENESIS  # the hash a row's prev_sha256 is implied to be
    for page in _pages(conn, sql, "id", 1):
        rows = []
        for event_id, job_pk, at, kind, detail, sha256, prev in page:
            # prev_sha256 is stored only where it is not the previous row's sha256
            # (a gap, a row written outside jobledger): NULL means "the row before's";
            # a missing one is kept as "", which no hash equals, as it was.
            stored_prev: bytes | str | None = None
            if before is None or prev != before:
                stored_prev = digest_value(prev) if isinstance(prev, str) else prev
                stored_prev = "" if stored_prev is None else stored_prev
            rows.append(
                (
                    event_id,
                    job_pk,
                    event_at_value(at),
                    resolve.string(kind) if isinstance(kind, str) else kind,
                    event_detail_value(detail) if isinstance(detail, str) else detail,
                    digest_value(sha256) if isinstance(sha256, str) else sha256,
                    stored_prev,
                )
            )
            before = digest_text(sha256) if isinstance(sha256, str | bytes) else None
        conn.executemany(
            "INSERT INTO events (id, job_pk, at, kind, detail, sha256, prev_sha256) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
