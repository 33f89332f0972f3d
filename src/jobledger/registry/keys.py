"""The integer keys of the registry's lookup tables, cached: services, strings, provenance.

Schema 5 stores what repeats from row to row once and refers to it by an integer key:
``services.key`` (the service a job belongs to), ``strings.key`` (backend names, media
types, event kinds) and ``provenance.key`` (the environment recorded at submission).
:class:`Keys` turns names into keys and back for one :class:`~jobledger.registry.Registry`.

Rows of these tables are never deleted and their keys never change, so a key that a
committed read found stays true for the life of the object and is cached. Inside a
write transaction a name not cached yet is looked up, or inserted, with SQL, and only
noted as a hint; once the transaction is over, :meth:`Keys.settle` reads the hinted
names back from the committed file. A key from a transaction that rolled back is then
simply not found, so an uncommitted key is never cached.
"""

from __future__ import annotations

import sqlite3
import threading

TYPE_CHECKING = False  # typing's flag without importing typing (see docs/architecture.md)
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    Reader = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]

__all__ = ["Keys", "Resolver"]


class Resolver:
    """Keys for the names of rows being written, inside one write transaction.

    The base class resolves every name with SQL; :class:`Keys` adds its cache.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def string(self, name: str) -> int:
        """The ``strings.key`` of *name* (a backend, media type or event kind)."""
        row = self.conn.execute("SELECT key FROM strings WHERE name = ?", (name,)).fetchone()
        if row is not None:
            return int(row[0])
        cursor = self.conn.execute("INSERT INTO strings (name) VALUES (?)", (name,))
        return int(cursor.lastrowid or 0)

    def service(self, service_id: str) -> int:
        """The ``services.key`` of *service_id*; a service no ``upsert_service`` recorded
        gets a row with only its id (its URL and kind unknown)."""
        row = self.conn.execute("SELECT key FROM services WHERE id = ?", (service_id,)).fetchone()
        if row is not None:
            return int(row[0])
        cursor = self.conn.execute("INSERT INTO services (id) VALUES (?)", (service_id,))
        return int(cursor.lastrowid or 0)

    def provenance(self, digest: bytes | str, record: Callable[[], str | None], at: int) -> int:
        """The ``provenance.key`` of the record with this digest, inserting it (its JSON
        text from *record*, called only then) when it is new."""
        row = self.conn.execute(
            "SELECT key FROM provenance WHERE digest = ?", (digest,)
        ).fetchone()
        if row is not None:
            return int(row[0])
        cursor = self.conn.execute(
            "INSERT INTO provenance (digest, record, first_seen) VALUES (?, ?, ?)",
            (digest, record(), at),
        )
        return int(cursor.lastrowid or 0)


class _CachedResolver(Resolver):
    def __init__(self, conn: sqlite3.Connection, keys: Keys) -> None:
        super().__init__(conn)
        self.keys = keys

    def string(self, name: str) -> int:
        key = self.keys.string_keys.get(name)
        if key is None:
            key = super().string(name)
            self.keys.hints.add(("strings", name))
        return key

    def service(self, service_id: str) -> int:
        key = self.keys.service_keys.get(service_id)
        if key is None:
            key = super().service(service_id)
            self.keys.hints.add(("services", service_id))
        return key

    def provenance(self, digest: bytes | str, record: Callable[[], str | None], at: int) -> int:
        key = self.keys.provenance_keys.get(digest)
        if key is None:
            key = super().provenance(digest, record, at)
            self.keys.hints.add(("provenance", digest))
        return key


class Keys:
    """Names and keys of the lookup tables, as far as committed reads have seen them."""

    def __init__(self, read: Reader) -> None:
        self._read = read
        self._lock = threading.Lock()
        self.string_keys: dict[str, int] = {}
        self.strings: dict[int, str] = {}
        self.service_keys: dict[str, int] = {}
        self.services: dict[int, str] = {}
        self.provenance_keys: dict[bytes | str, int] = {}
        self.provenance_digests: dict[int, bytes | str] = {}
        self.hints: set[tuple[str, Any]] = set()

    def resolver(self, conn: sqlite3.Connection) -> Resolver:
        """A resolver for a write transaction on *conn* (cache first, then SQL)."""
        return _CachedResolver(conn, self)

    # -- committed reads ----------------------------------------------------------

    def _load_strings(self) -> None:
        rows = self._read("SELECT key, name FROM strings", ())
        with self._lock:
            self.strings = {int(k): str(n) for k, n in rows}
            self.string_keys = {n: k for k, n in self.strings.items()}

    def _load_services(self) -> None:
        rows = self._read("SELECT key, id FROM services", ())
        with self._lock:
            self.services = {int(k): str(i) for k, i in rows}
            self.service_keys = {i: k for k, i in self.services.items()}

    def _learn_provenance(self, where: str, value: Any) -> None:
        rows = self._read(f"SELECT key, digest FROM provenance WHERE {where} = ?", (value,))
        with self._lock:
            for key, digest in rows:
                self.provenance_digests[int(key)] = digest
                self.provenance_keys[digest] = int(key)

    def string(self, key: int) -> str:
        """The name of a ``strings`` key."""
        name = self.strings.get(key)
        if name is None:
            self._load_strings()
            name = self.strings.get(key)
        return name if name is not None else f"<unknown string #{key}>"

    def string_key(self, name: str) -> int | None:
        """The key of a name, ``None`` when no row was ever written with it."""
        key = self.string_keys.get(name)
        if key is None:
            self._load_strings()
            key = self.string_keys.get(name)
        return key

    def service(self, key: int) -> str:
        """The id of a ``services`` key."""
        service_id = self.services.get(key)
        if service_id is None:
            self._load_services()
            service_id = self.services.get(key)
        return service_id if service_id is not None else f"<unknown service #{key}>"

    def service_key(self, service_id: str) -> int | None:
        """The key of a service id, ``None`` when no job or service was recorded with it."""
        key = self.service_keys.get(service_id)
        if key is None:
            self._load_services()
            key = self.service_keys.get(service_id)
        return key

    def provenance(self, key: int) -> bytes | str | None:
        """The digest (as stored) of a ``provenance`` key."""
        digest = self.provenance_digests.get(key)
        if digest is None:
            self._learn_provenance("key", key)
            digest = self.provenance_digests.get(key)
        return digest

    def settle(self) -> None:
        """After a write: cache what its transaction resolved, as committed (a name
        whose insert was rolled back is not found, so nothing wrong is cached)."""
        if not self.hints:
            return
        with self._lock:
            hints, self.hints = self.hints, set()
        tables = {table for table, _ in hints}
        if "strings" in tables:
            self._load_strings()
        if "services" in tables:
            self._load_services()
        for table, value in hints:
            if table == "provenance":
                self._learn_provenance("digest", value)
