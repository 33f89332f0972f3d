"""The content-addressed blob store: batches and results, checked on every read.

Blobs are kept in a :class:`diskcache.Cache` under their lowercase hex sha256, with
eviction turned off so that nothing ever disappears silently. Small blobs (under
32 KiB) live in the cache's SQLite index ``cache.db``, large ones in files of its
folder. Every read hashes the bytes again and raises
:class:`~jobledger.errors.CacheCorruptionError` when they no longer match their key.
Reads never write: they query ``cache.db`` through a read-only SQLite connection
(diskcache itself, which writes its settings when opened, is opened only to write),
so a full disk or a read-only folder still serves what is stored. A damaged index,
like a damaged blob, is a ``CacheCorruptionError`` naming the file and
``jobledger cache repair``, which rebuilds the index from the blob files
(:mod:`jobledger.store_repair`). Downloads are streamed into ``partial/`` (named by
host and process), hashed on the way and moved into place only once their digest and
size have been checked; partial files whose writer is gone are removed when the
store is next opened. A full disk is a :class:`~jobledger.errors.StorageFullError`.
A batch about to be submitted is stored *durably* (``put_bytes(..., durable=True)``):
its file and index row are flushed to disk before the call returns, and the row carries
the diskcache tag :data:`DURABLE_TAG`, so that storing the same batch again costs no
flush. Other blobs (downloads, which can be fetched again) are not flushed.
Only ``bytes`` go in or come out: the store's :class:`diskcache.Disk`
(:mod:`jobledger.store_disk`, imported on the first write only) refuses pickled keys
and values.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from jobledger.errors import CacheCorruptionError, StorageFullError
from jobledger.frozen import Frozen
from jobledger.paths import ensure_private_dir

TYPE_CHECKING = False  # typing's flag without importing typing (see docs/architecture.md)
if TYPE_CHECKING:
    from typing import Any, BinaryIO

    import diskcache

__all__ = [
    "DURABLE_TAG",
    "INDEX_NAME",
    "PARTIAL_DIR",
    "PartialFile",
    "Store",
    "StoreEntry",
    "StoreStats",
]

INDEX_NAME = "cache.db"
PARTIAL_DIR = "partial"
PARTIAL_SUFFIX = ".partial"
# A partial file of a live writer on another host, or of a stalled one, is removed
# only after this long without a write.
PARTIAL_MAX_AGE = 15 * 60.0
REPAIR_HINT = "run `jobledger cache repair` to rebuild it from the blob files"

_CHUNK = 1 << 20
_PAGE = 1000
_NEARLY_FULL = 1 << 20
_DIGEST = re.compile(r"[0-9a-f]{64}")
_MODE_RAW = 1
_MODE_BINARY = 2
#: the diskcache ``tag`` of a blob whose row and file were flushed to disk when stored
DURABLE_TAG = "durable"


class StoreStats(Frozen):
    """How many blobs the store holds and their total size in bytes."""

    count: int
    size: int

    def __init__(self, count: int, size: int) -> None:
        self.__dict__.update(count=count, size=size)


class StoreEntry(Frozen):
    """One stored blob: its digest, size in bytes and when it was last stored
    (seconds since the epoch; storing it again refreshes it)."""

    sha256: str
    size: int
    stored_at: float

    def __init__(self, sha256: str, size: int, stored_at: float) -> None:
        self.__dict__.update(sha256=sha256, size=size, stored_at=stored_at)


class PartialFile(Frozen):
    """A download in progress (or left by a killed one) in the store's ``partial/``."""

    path: Path
    size: int
    modified_at: float

    def __init__(self, path: Path, size: int, modified_at: float) -> None:
        self.__dict__.update(path=path, size=size, modified_at=modified_at)


class Store:
    """A content-addressed blob store in *path* (a diskcache folder).

    Opening is lazy: the folder and its database are created on first use. The store
    is safe to share between threads and processes.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._cache: diskcache.Cache | None = None
        self._lock = threading.Lock()
        self._readers = threading.local()
        self._swept = False
        self._durable: set[str] = set()  # digests lately stored or found durable here
        self._folders: set[str] = set()

    @property
    def index_path(self) -> Path:
        """The SQLite index of the store (``cache.db``)."""
        return self.path / INDEX_NAME

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------

    def put_bytes(self, data: bytes, *, what: str = "blob", durable: bool = False) -> str:
        """Store *data* and return its sha256 (hex). Storing twice is harmless.

        :param what: what the bytes are, for messages (e.g. ``"batch"``).
        :param durable: on disk before this returns, so that a power loss cannot take
            the bytes (a batch about to be sent: the registry may have to send it
            again). A blob already stored durably costs no flush; one stored otherwise
            (a download) is flushed now.
        :raises StorageFullError: when the disk is full; nothing is stored then.
        :raises CacheCorruptionError: when the store's index is damaged.
        """
        if type(data) is not bytes:
            data = bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        with self._writing(what):
            cache = self._writer()
            if not durable:
                with cache.transact(retry=True):
                    if not _refresh(cache, digest):
                        cache.add(digest, data, retry=True)
                return digest
            # A batch not seen durable yet is looked up on the read connection first, so
            # that a new one takes the write lock once (for the flushed commit), not twice.
            if digest in self._durable or self._query(
                "SELECT 1 FROM Cache WHERE key = ? AND raw = 1 AND tag = ?", (digest, DURABLE_TAG)
            ):
                with cache.transact(retry=True):
                    if _refresh(cache, digest, durable_only=True):
                        self._seen_durable(digest)
                        return digest
            self._put_durably(cache, digest, data)
            self._seen_durable(digest)
        return digest

    def _seen_durable(self, digest: str) -> None:
        # Only a hint of which transaction to try first: the tag is checked there.
        if len(self._durable) >= 1024:
            self._durable.clear()
        self._durable.add(digest)

    def _put_durably(self, cache: diskcache.Cache, digest: str, data: bytes) -> None:
        """Store blob *digest* (or mark the stored one) with everything flushed to disk:
        its file, when it is large, then the index in a ``synchronous = FULL`` commit.

        Rows written so carry :data:`DURABLE_TAG`; a row without it (a download, or one
        stored before the tag existed) has its file flushed and is tagged here.
        """
        from jobledger.store_disk import StagedFile

        staged: StagedFile | None = None
        full_path: str | None = None
        if len(data) >= cache.disk.min_file_size:
            filename, full_path = cache.disk.filename()
            _write_flushed(full_path, data)
            staged = StagedFile(filename, len(data))
        try:
            cache._sql("PRAGMA synchronous = FULL")
            try:
                with cache.transact(retry=True):
                    rows = cache._sql(
                        "SELECT filename FROM Cache WHERE key = ? AND raw = 1", (digest,)
                    ).fetchall()
                    if rows and rows[0][0]:
                        try:
                            _flush_file(self.path / str(rows[0][0]))
                        except FileNotFoundError:
                            # Its file is gone: the bytes in hand take its place.
                            cache._sql("DELETE FROM Cache WHERE key = ? AND raw = 1", (digest,))
                            rows = []
                    if rows:
                        cache._sql(
                            "UPDATE Cache SET store_time = ?, tag = ? WHERE key = ? AND raw = 1",
                            (time.time(), DURABLE_TAG, digest),
                        )
                    else:
                        cache.add(digest, staged or data, tag=DURABLE_TAG, retry=True)
                if not rows:
                    full_path = None  # committed: the file is the blob's now
            finally:
                cache._sql("PRAGMA synchronous = NORMAL")
        finally:
            if full_path is not None:
                _remove_quietly(full_path)

    def put_stream(
        self,
        chunks: Iterable[bytes],
        *,
        expected_sha256: str | None = None,
        expected_size: int | None = None,
    ) -> tuple[str, int]:
        """Stream *chunks* into the store and return ``(sha256, size)``.

        The bytes go straight to their final file while being hashed, so memory
        stays bounded whatever the size. The blob becomes visible only after its
        digest and size have been checked against the expected ones.

        :raises CacheCorruptionError: when the bytes do not match *expected_sha256*
            or *expected_size*; nothing is stored then.
        """
        from jobledger.store_disk import StagedFile

        expected = None if expected_sha256 is None else _check_digest(expected_sha256)
        with self._writing("download"):
            cache = self._writer()
            partial = self._partial_path()
            hasher = hashlib.sha256()
            size = 0
            final_path: str | None = None
            try:
                with open(partial, "xb") as writer:
                    for chunk in chunks:
                        hasher.update(chunk)
                        writer.write(chunk)
                        size += len(chunk)
                digest = hasher.hexdigest()
                if (expected is not None and digest != expected) or (
                    expected_size is not None and size != expected_size
                ):
                    raise CacheCorruptionError(
                        "the downloaded bytes do not match the service's digest: expected "
                        f"sha256 {expected or '(any)'} and {_size_text(expected_size)}, got "
                        f"sha256 {digest} and {size} bytes; nothing was stored, download it "
                        "again (reconnect) and report it if it persists"
                    )
                filename, final_path = cache.disk.filename()
                self._move(partial, final_path)
                with cache.transact(retry=True):
                    if _refresh(cache, digest):
                        os.remove(final_path)
                    else:
                        cache.add(digest, StagedFile(filename, size), retry=True)
            except BaseException:
                _remove_quietly(str(partial))
                if final_path is not None:
                    _remove_quietly(final_path)
                raise
        return digest, size

    def _move(self, partial: Path, final_path: str) -> None:
        """Rename a finished download into its place in the cache folder."""
        folder = os.path.dirname(final_path)
        # diskcache spreads files over 65,536 folders: make each once per process,
        # and again if a removal emptied and deleted it since.
        if folder not in self._folders:
            os.makedirs(folder, exist_ok=True)
            self._folders.add(folder)
        try:
            os.replace(partial, final_path)
        except FileNotFoundError:
            if not partial.exists():
                raise
            os.makedirs(folder, exist_ok=True)
            os.replace(partial, final_path)

    # -- reading -------------------------------------------------------------------

    def get_bytes(self, sha256: str, *, what: str = "blob") -> bytes:
        """Return the bytes of blob *sha256*, after checking their digest.

        :param what: what the blob is, for messages (e.g. ``"result of job J0..."``).
        :raises KeyError: when the store does not hold the blob.
        :raises CacheCorruptionError: when the bytes no longer match their digest, or
            the store's index is damaged.
        """
        value = self._entry(sha256, what)
        if not isinstance(value, bytes):
            with value as reader:
                location = reader.name
                data = reader.read()
        else:
            data, location = value, None
        if hashlib.sha256(data).hexdigest() != sha256:
            raise self._corrupt(sha256, what, location, "its bytes changed")
        return data

    def copy_to(self, sha256: str, dest: BinaryIO, *, what: str = "blob") -> int:
        """Copy blob *sha256* into *dest* once its digest is checked; return its size.

        Memory stays bounded for any size: a file is hashed first and then streamed
        from the same open file, so when the bytes do not match nothing reaches
        *dest*. (Should the file change between the two reads, the copy is hashed too
        and the error comes after the write: the caller discards *dest* then.)

        :raises KeyError: when the store does not hold the blob.
        :raises CacheCorruptionError: when the bytes do not match their digest.
        """
        value = self._entry(sha256, what)
        if isinstance(value, bytes):
            if hashlib.sha256(value).hexdigest() != sha256:
                raise self._corrupt(sha256, what, None, "its bytes changed")
            dest.write(value)
            return len(value)
        with value as reader:
            if _file_digest(reader) != sha256:
                raise self._corrupt(sha256, what, reader.name, "its bytes changed")
            reader.seek(0)
            hasher = hashlib.sha256()
            size = 0
            while chunk := reader.read(_CHUNK):
                hasher.update(chunk)
                dest.write(chunk)
                size += len(chunk)
            if hasher.hexdigest() != sha256:
                raise self._corrupt(sha256, what, reader.name, "its bytes changed while read")
        return size

    def _entry(self, sha256: str, what: str) -> bytes | BinaryIO:
        """The inline bytes of blob *sha256*, or its file opened for reading."""
        rows = self._query(
            "SELECT mode, filename, value FROM Cache WHERE key = ? AND raw = 1", (sha256,)
        )
        if not rows:
            raise KeyError(sha256)
        mode, filename, value = rows[0]
        if mode == _MODE_RAW and isinstance(value, bytes):
            return value
        if mode != _MODE_BINARY or not filename:
            problem = f"it is an entry of mode {mode}, not bytes"
            raise self._corrupt(sha256, what, None, problem)
        full_path = self.path / filename
        try:
            return open(full_path, "rb")
        except FileNotFoundError:
            raise self._corrupt(sha256, what, full_path, "its file is missing") from None

    def has(self, sha256: str) -> bool:
        """Whether the store holds blob *sha256* (its bytes are not checked)."""
        return bool(self._query("SELECT 1 FROM Cache WHERE key = ? AND raw = 1", (sha256,)))

    def path_of(self, sha256: str) -> Path | None:
        """The file holding blob *sha256*, or ``None`` when it is absent or inline."""
        rows = self._query("SELECT mode, filename FROM Cache WHERE key = ? AND raw = 1", (sha256,))
        if not rows or rows[0][0] != _MODE_BINARY or not rows[0][1]:
            return None
        return self.path / str(rows[0][1])

    def digests(self) -> Iterator[str]:
        """Iterate over the digests of all stored blobs, in sorted order, a page at a
        time (keyset on the digest), so memory stays bounded whatever the store holds."""
        for page in self._pages("key"):
            for (key,) in page:
                yield str(key)

    def entries(self) -> Iterator[StoreEntry]:
        """Iterate over every stored blob with its size and storage time, sorted by
        digest, a page at a time."""
        for page in self._pages("key, size, store_time"):
            for key, size, stored_at in page:
                yield StoreEntry(str(key), int(size or 0), float(stored_at or 0.0))

    def stored_among(self, digests: Iterable[str]) -> set[str]:
        """Those of *digests* the store holds (their bytes are not checked): one query
        per 500 digests instead of one per digest."""
        wanted = list(dict.fromkeys(digests))
        found: set[str] = set()
        for start in range(0, len(wanted), 500):
            chunk = tuple(wanted[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self._query(f"SELECT key FROM Cache WHERE raw = 1 AND key IN ({marks})", chunk)
            found.update(str(key) for (key,) in rows)
        return found

    def _pages(self, columns: str) -> Iterator[list[Any]]:
        """Pages of ``Cache`` rows (*columns*, the digest first) in digest order."""
        after = ""
        while True:
            page = self._query(
                f"SELECT {columns} FROM Cache WHERE raw = 1 AND key > ? ORDER BY key LIMIT ?",
                (after, _PAGE),
            )
            if not page:
                return
            yield page
            after = str(page[-1][0])

    def stats(self) -> StoreStats:
        """The number of blobs and their total size in bytes."""
        rows = self._query("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM Cache WHERE raw = 1")
        return (
            StoreStats(count=int(rows[0][0]), size=int(rows[0][1])) if rows else StoreStats(0, 0)
        )

    def partial_files(self) -> list[PartialFile]:
        """Downloads in progress, or left by killed ones, in ``partial/``."""
        found = []
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.path / PARTIAL_DIR):
                with contextlib.suppress(OSError):
                    info = entry.stat()
                    found.append(PartialFile(Path(entry.path), info.st_size, info.st_mtime))
        return sorted(found, key=lambda p: p.path)

    def verify(self) -> list[str]:
        """Re-hash every blob; return the digests whose bytes do not match."""
        failed = []
        for digest in self.digests():
            try:
                value = self._entry(digest, "blob")
            except CacheCorruptionError:
                failed.append(digest)
                continue
            except KeyError:
                continue  # deleted meanwhile
            if isinstance(value, bytes):
                actual = hashlib.sha256(value).hexdigest()
            else:
                with value as reader:
                    actual = _file_digest(reader)
            if actual != digest:
                failed.append(digest)
        return failed

    # -- housekeeping --------------------------------------------------------------

    def delete(self, sha256: str) -> bool:
        """Remove blob *sha256*; return whether it was there."""
        with self._writing("change"):
            return bool(self._writer().delete(sha256, retry=True))

    def delete_unused(
        self,
        digests: Iterable[str],
        *,
        stored_before: float,
        used: Callable[[list[str]], set[str]],
    ) -> list[str]:
        """Remove those of *digests* last stored before *stored_before* (epoch seconds)
        that ``used(page)`` does not name; return the removed ones, in sorted order.

        They go a page at a time, and both are checked while the store is locked for
        writing, so a writer that stores (or stores again) a blob meanwhile either comes
        first, and the blob stays, or comes after, and stores it anew. One call of
        *used* per page (say, one pass over a registry) instead of one per blob.
        """
        wanted = sorted(set(digests))
        removed: list[str] = []
        for start in range(0, len(wanted), _PAGE):
            chunk = wanted[start : start + _PAGE]
            marks = ",".join("?" * len(chunk))
            with self._writing("change"):
                cache = self._writer()
                with cache.transact(retry=True):
                    rows = cache._sql(
                        f"SELECT key, store_time FROM Cache WHERE raw = 1 AND key IN ({marks})",
                        chunk,
                    ).fetchall()
                    old = sorted(str(k) for k, at in rows if float(at or 0.0) < stored_before)
                    busy = used(old) if old else set()
                    for digest in old:
                        if digest not in busy and cache.delete(digest, retry=True):
                            removed.append(digest)
        return removed

    def adopt_file(self, path: Path) -> tuple[str, bool]:
        """Index the file *path* (inside the store's folder, outside ``partial/``)
        under the sha256 of its bytes; return ``(digest, adopted)``.

        Blobs are content-addressed, so any intact blob file can be taken back after
        hashing it. When the digest is already indexed, the file is a duplicate and is
        removed (``adopted`` is false).
        """
        from jobledger.store_disk import StagedFile

        with open(path, "rb") as reader:
            digest = _file_digest(reader)
            size = reader.tell()
        filename = os.path.relpath(path, self.path)
        with self._writing("blob"):
            cache = self._writer()
            with cache.transact(retry=True):
                if _refresh(cache, digest):
                    os.remove(path)
                    return digest, False
                cache.add(digest, StagedFile(filename, size), retry=True)
        return digest, True

    def sweep_partial(self) -> int:
        """Remove partial files whose writer is gone (a process of this host that no
        longer runs) or that were not written for ``PARTIAL_MAX_AGE`` seconds; return
        how many were removed. A live concurrent download is left alone."""
        partials = self.partial_files()
        if not partials:
            return 0
        import socket  # only here: opening the store for reading stays light

        removed = 0
        now = time.time()
        host = socket.gethostname()
        for partial in partials:
            writer_host, _, rest = partial.path.name.rpartition("-pid")
            pid = rest.split("-", 1)[0]
            gone = writer_host == host and pid.isdigit() and not _alive(int(pid))
            if gone or now - partial.modified_at > PARTIAL_MAX_AGE:
                with contextlib.suppress(OSError):
                    partial.path.unlink()
                    removed += 1
        return removed

    def close(self) -> None:
        """Close this thread's database connections (the store reopens on next use)."""
        with self._lock:
            if self._cache is not None:
                self._cache.close()
                # Forget it too: after a repair the index is a new file, whose tables
                # only a new diskcache.Cache creates.
                self._cache = None
        reader = getattr(self._readers, "conn", None)
        if reader is not None:
            reader.close()
            self._readers.conn = None

    # -- the two ways in -----------------------------------------------------------

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """Run a read-only query on the index; no index yet means no rows."""
        if not self._swept:
            self._swept = True
            with contextlib.suppress(OSError):
                self.sweep_partial()
        try:
            conn = self._reader()
            if conn is None:
                return []
            return conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            if _is_busy(exc):
                raise
            raise self._damaged_index(exc) from None

    def _reader(self) -> sqlite3.Connection | None:
        conn: sqlite3.Connection | None = getattr(self._readers, "conn", None)
        if conn is not None:
            return conn
        index = self.index_path
        if not index.exists():
            return None
        uri = f"{index.as_uri()}?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=60, check_same_thread=False)
            conn.execute("SELECT 1 FROM Cache LIMIT 1").fetchall()
        except sqlite3.OperationalError as exc:
            if _is_busy(exc) or "no such table" in str(exc):
                raise
            # A WAL index needs its shared-memory file, which a full disk or a read-only
            # folder cannot create: read the file as it is, once, without locking.
            return sqlite3.connect(f"{uri}&immutable=1", uri=True, check_same_thread=False)
        self._readers.conn = conn
        return conn

    def _writer(self) -> diskcache.Cache:
        if self._cache is not None:
            return self._cache
        # diskcache (which writes its settings when a Cache opens) is imported and
        # opened only to write: reads query the index directly.
        import diskcache

        from jobledger.store_disk import BlobDisk

        with self._lock:
            if self._cache is None:
                ensure_private_dir(self.path)
                with contextlib.suppress(OSError):
                    self.sweep_partial()
                try:
                    self._cache = diskcache.Cache(
                        str(self.path),
                        disk=BlobDisk,
                        timeout=60,
                        eviction_policy="none",
                        size_limit=2**62,
                        cull_limit=0,
                        statistics=0,
                        tag_index=0,
                    )
                except sqlite3.DatabaseError as exc:
                    if self._is_full(exc) or _is_busy(exc):
                        raise
                    raise self._damaged_index(exc) from None
            return self._cache

    @contextlib.contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        """Turn a full disk into one clear error, and a damaged index into
        :class:`CacheCorruptionError`."""
        try:
            yield
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise self._full(what) from None
            raise
        except sqlite3.Error as exc:
            if self._is_full(exc):
                raise self._full(what) from None
            if _is_busy(exc):
                raise
            raise self._damaged_index(exc) from None

    def _is_full(self, exc: sqlite3.Error) -> bool:
        """Whether SQLite failed for lack of space: SQLITE_FULL, or an I/O error
        (growing the shared-memory file of a WAL index) on a disk with no room."""
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if code == sqlite3.SQLITE_FULL or "full" in str(exc):
            return True
        if code != sqlite3.SQLITE_IOERR:
            return False
        try:
            info = os.statvfs(self.path)
        except OSError:
            return False
        return info.f_bavail * info.f_frsize < _NEARLY_FULL

    def _partial_path(self) -> Path:
        import socket
        import uuid

        folder = ensure_private_dir(self.path / PARTIAL_DIR)
        name = f"{socket.gethostname()}-pid{os.getpid()}-{uuid.uuid4().hex}{PARTIAL_SUFFIX}"
        return folder / name

    def _full(self, what: str) -> StorageFullError:
        return StorageFullError(
            f"no space left on device while storing the {what} in {self.path}; free "
            "space and retry — nothing was recorded"
        )

    def _damaged_index(self, exc: sqlite3.Error) -> CacheCorruptionError:
        return CacheCorruptionError(
            f"the store's index {self.index_path} is damaged ({exc}); {REPAIR_HINT} "
            "(small blobs kept inside it are downloaded again when online)"
        )

    def _corrupt(
        self, sha256: str, what: str, location: str | Path | None, problem: str
    ) -> CacheCorruptionError:
        where = f"file {location}" if location else f"the store database in {self.path}"
        return CacheCorruptionError(
            f"the cached {what} (sha256 {sha256}) is corrupt: {problem} ({where}); "
            "reconnect to fetch it again, or run `jobledger cache verify` to check and "
            "drop corrupt entries"
        )


def _refresh(cache: diskcache.Cache, digest: str, *, durable_only: bool = False) -> bool:
    """Mark blob *digest* as stored now, inside the caller's transaction; return
    whether it was there (with *durable_only*, there and stored durably). A blob
    stored again is young again, so that pruning never removes a blob that a
    submission is about to refer to."""
    # diskcache has no call to change store_time: its table is updated directly.
    sql = "UPDATE Cache SET store_time = ? WHERE key = ? AND raw = 1"
    if durable_only:
        updated = cache._sql(sql + " AND tag = ?", (time.time(), digest, DURABLE_TAG))
    else:
        updated = cache._sql(sql, (time.time(), digest))
    return bool(updated.rowcount)


def _write_flushed(path: str, data: bytes) -> None:
    """Write a new file at *path* and flush it, and the folders made for it, to disk."""
    folder = Path(path).parent
    made = [p for p in (folder, folder.parent) if not p.is_dir()]
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "xb") as writer:
            writer.write(data)
            writer.flush()
            os.fsync(writer.fileno())
        # A new file (or folder) survives a power loss only once its folder's entry does.
        for changed in {folder, *(p.parent for p in made)}:
            _flush_folder(changed)
    except BaseException:
        _remove_quietly(path)
        raise


def _flush_file(path: Path) -> None:
    """Flush an existing blob file (written without a flush, by a download) to disk."""
    with open(path, "rb") as reader:
        os.fsync(reader.fileno())
    _flush_folder(path.parent)


def _flush_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in str(exc)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _check_digest(value: str) -> str:
    digest = value.strip().lower()
    if not _DIGEST.fullmatch(digest):
        raise ValueError(f"{value!r} is not a sha256 hex digest (64 hex characters)")
    return digest


def _file_digest(reader: BinaryIO) -> str:
    hasher = hashlib.sha256()
    while chunk := reader.read(_CHUNK):
        hasher.update(chunk)
    return hasher.hexdigest()


def _size_text(size: int | None) -> str:
    return "any size" if size is None else f"{size} bytes"


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
