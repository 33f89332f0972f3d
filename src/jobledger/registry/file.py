"""The registry's SQLite file: per-thread connections, schema checks and retried writes.

:class:`RegistryFile` opens the file lazily (read-only when asked), checks its schema
version and migrates it on first use, and runs every write in a ``BEGIN IMMEDIATE``
transaction retried with bounded, jittered backoff while another process holds the
lock. The threads of one process take turns on an in-process lock (one per file)
before they begin, so they queue without SQLite's sleeping busy handler; the backoff is
for other processes. The file is in WAL mode with a busy timeout.
:class:`~jobledger.registry.Registry` builds its recording and queries on top of it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from jobledger.errors import RegistryError
from jobledger.registry.backup import check_not_lost, start_daily_backup, take_backup, write_stamp
from jobledger.registry.schema import SCHEMA_VERSION, migrate, schema_version

TYPE_CHECKING = False  # typing's flag without importing typing (see docs/architecture.md)
if TYPE_CHECKING:
    from typing import Any, TypeVar

    T = TypeVar("T")

__all__ = ["RegistryFile", "damaged"]

_WRITE_ATTEMPTS = 10
_WRITERS: dict[str, threading.RLock] = {}
_WRITERS_LOCK = threading.Lock()


def _writer_lock(path: Path) -> threading.RLock:
    """The lock the threads of this process take before writing the file at *path*
    (shared by every registry object opened on it)."""
    key = os.path.realpath(path)
    with _WRITERS_LOCK:
        lock = _WRITERS.get(key)
        if lock is None:
            lock = _WRITERS[key] = threading.RLock()
        return lock


class RegistryFile:
    """The SQLite file at *path*, opened on first use, one connection per thread."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._ready = False
        self._writer_found: threading.RLock | None = None
        self._wal = f"{path}-wal"
        self.version = SCHEMA_VERSION
        """The schema version of the file as opened (older only when read-only)."""

    # -- connections ------------------------------------------------------------

    @property
    def _writer(self) -> threading.RLock:
        if self._writer_found is None:
            self._writer_found = _writer_lock(self.path)
        return self._writer_found

    def exists(self) -> bool:
        """Whether the registry file exists."""
        return self.path.exists()

    def _conn(self) -> sqlite3.Connection | None:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        check_not_lost(self.path)
        if (self.readonly or not self._ready) and not self.path.exists():
            if self.readonly:
                return None
            from jobledger.paths import ensure_private_dir

            ensure_private_dir(self.path.parent)
        try:
            if self.readonly:
                conn = self._open_readonly()
            else:
                conn = sqlite3.connect(
                    self.path, timeout=30, isolation_level=None, check_same_thread=False
                )
            conn.execute("PRAGMA busy_timeout = 30000")
            if not self.readonly:
                conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.OperationalError as exc:
            raise RegistryError(f"cannot open the registry {self.path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise damaged(self.path, exc) from exc
        conn.row_factory = sqlite3.Row
        self._local.conn = conn
        with self._lock:
            self._all.append(conn)
        if not self._ready:
            try:
                self._check_schema(conn)
            except sqlite3.DatabaseError as exc:
                raise damaged(self.path, exc) from exc
        return conn

    def _open_readonly(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            f"file:{self.path}?mode=ro",
            uri=True,
            timeout=30,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError:
            if os.access(self.path.parent, os.W_OK):
                conn.close()
                raise
        conn.close()
        # A read-only folder (a mounted archive, a colleague's copy): SQLite cannot
        # create the WAL index there, so read the file as it is on disk, unchanging.
        return sqlite3.connect(
            f"file:{self.path}?mode=ro&immutable=1",
            uri=True,
            timeout=30,
            isolation_level=None,
            check_same_thread=False,
        )

    def close(self) -> None:
        """Close every connection this registry opened (in any thread)."""
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
        self._local = threading.local()

    def _check_schema(self, conn: sqlite3.Connection) -> None:
        version = schema_version(conn)
        if version > SCHEMA_VERSION:
            raise RegistryError(
                f"the registry {self.path} was made by a newer jobledger (schema "
                f"{version}; this version reads up to {SCHEMA_VERSION}); upgrade with "
                "`pip install -U jobledger`. The file was not changed."
            )
        if version < SCHEMA_VERSION and not self.readonly:
            with self._writer:
                if version > 0:
                    take_backup(self.path, "migration")
                found = self._retry(lambda: migrate(conn, self.path))
                if 0 < found < 5:
                    _compact(conn)
            version = SCHEMA_VERSION
        if not self.readonly:
            write_stamp(self.path)
        self.version = version or SCHEMA_VERSION
        self._ready = True

    def _retry(self, work: Callable[[], T]) -> T:
        for attempt in range(_WRITE_ATTEMPTS):
            try:
                return work()
            except sqlite3.OperationalError as exc:
                text = str(exc)
                if ("locked" not in text and "busy" not in text) or (
                    attempt == _WRITE_ATTEMPTS - 1
                ):
                    raise RegistryError(f"cannot write the registry {self.path}: {exc}") from exc
                import random  # only on contention: keeps the read path's imports small

                time.sleep(min(1.0, 0.02 * 2**attempt) * random.uniform(0.5, 1.5))
        raise AssertionError("unreachable")

    def write(self, work: Callable[[sqlite3.Connection], T], *, durable: bool = False) -> T:
        """Run *work* in one ``BEGIN IMMEDIATE`` transaction, retried when busy.

        :param durable: flush to disk before returning, so the change survives a power
            loss. Used for what only the user can say (a new submission, an alias,
            tags); everything else (statuses, acknowledgements, downloads) can be
            learnt again from the service, so it uses WAL's cheaper ``NORMAL`` sync,
            which still survives a crash of the process.
        """
        if self.readonly:
            raise RegistryError(f"the registry {self.path} was opened read-only")
        conn = self._conn()
        assert conn is not None

        def attempt() -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        try:
            with self._writer:
                if not durable:
                    return self._retry(attempt)
                conn.execute("PRAGMA synchronous = FULL")
                try:
                    return self._retry(attempt)
                finally:
                    conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.DatabaseError as exc:
            raise damaged(self.path, exc) from exc
        finally:
            self._after_write(conn)

    def _after_write(self, conn: sqlite3.Connection) -> None:
        # Someone deleted the write-ahead log under this live writer: its last commits
        # exist only in the unlinked file this connection still holds, so fold them
        # into the database file now, before any other process opens a new log.
        if not os.path.exists(self._wal):
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        start_daily_backup(self.path)

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Run a query; a missing read-only registry has no rows."""
        return self._fetch(sql, params, sqlite3.Row)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a query, its rows as plain tuples (cheaper than :meth:`read`'s rows)."""
        return self._fetch(sql, params, None)

    def _stream(self, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        """The rows of a long read, fetched a thousand at a time on a read-only
        connection of its own (a snapshot: the caller may write on its connection
        meanwhile); a missing file has no rows."""
        if not self.path.exists():
            return
        self._conn()  # checks the schema (and migrates) first, as every read does
        conn = self._open_readonly()
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            try:
                cursor = conn.execute(sql, params)
                while rows := cursor.fetchmany(1000):
                    yield from rows
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    return
                raise RegistryError(f"cannot read the registry {self.path}: {exc}") from exc
            except sqlite3.DatabaseError as exc:
                raise damaged(self.path, exc) from exc
        finally:
            conn.close()

    def _fetch(self, sql: str, params: Sequence[Any], factory: Any) -> list[Any]:
        conn = self._conn()
        if conn is None:
            return []
        try:
            cursor = conn.cursor()
            cursor.row_factory = factory
            return cursor.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise RegistryError(f"cannot read the registry {self.path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise damaged(self.path, exc) from exc


def _compact(conn: sqlite3.Connection) -> None:
    """Give back the pages the schema 5 rebuild freed (more than half the file).

    Outside the migration's transaction, so a failure (a full disk: VACUUM needs room
    for a copy) leaves a sound, only larger, file; the free pages are then reused.
    """
    with contextlib.suppress(sqlite3.Error):
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def damaged(path: Path, exc: BaseException) -> RegistryError:
    """The error for a registry file SQLite cannot read as a database."""
    return RegistryError(
        f"the registry {path} is damaged ({exc}); check it and restore the newest "
        "backup with `jobledger doctor`, which changes nothing until asked"
    )
