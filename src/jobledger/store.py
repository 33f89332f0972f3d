"""The content-addressed blob store: batches and results, checked on every read.

Blobs are kept in a :class:`diskcache.Cache` under their lowercase hex sha256, with
eviction turned off so that nothing ever disappears silently. Small blobs live in
the cache's SQLite file, large ones in files of its folder. Every read hashes the
bytes again and raises :class:`~jobledger.errors.CacheCorruptionError` when they no
longer match their key. Large downloads are streamed straight into the file that
becomes the cache entry (hashed on the way, never written twice), and become visible
only once their digest and size have been checked. Only ``bytes`` go in or come out:
the store's :class:`diskcache.Disk` refuses pickled keys and values.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import diskcache

from jobledger.errors import CacheCorruptionError
from jobledger.paths import ensure_private_dir

__all__ = ["Store", "StoreEntry", "StoreStats"]

_CHUNK = 1 << 20
_DIGEST = re.compile(r"[0-9a-f]{64}")
_MISSING = object()
_MODE_RAW = 1
_MODE_BINARY = 2


@dataclass(frozen=True)
class StoreStats:
    """How many blobs the store holds and their total size in bytes."""

    count: int
    size: int


@dataclass(frozen=True)
class StoreEntry:
    """One stored blob: its digest, size in bytes and when it was last stored
    (seconds since the epoch; storing it again refreshes it)."""

    sha256: str
    size: int
    stored_at: float


@dataclass(frozen=True)
class _StagedFile:
    """A file already written in the cache folder, to be adopted without a copy."""

    filename: str
    size: int


class _UnsafeEntryError(Exception):
    """An entry that is not plain bytes (e.g. pickled) was found in the cache."""


class _MissingFileError(Exception):
    """An entry's file is gone from the cache folder."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


class _BlobDisk(diskcache.Disk):  # type: ignore[misc]
    """diskcache's serialization boundary, restricted to str keys and bytes values."""

    def put(self, key: Any) -> tuple[Any, bool]:
        if type(key) is not str:
            raise TypeError(f"store keys are hex digests (str), not {type(key).__name__}")
        return key, True

    def get(self, key: Any, raw: bool) -> Any:
        if not raw:
            raise _UnsafeEntryError("a pickled key")
        return key

    def store(self, value: Any, read: bool, key: Any = diskcache.core.UNKNOWN) -> Any:
        if isinstance(value, _StagedFile):
            return value.size, _MODE_BINARY, value.filename, None
        if type(value) is not bytes:
            raise TypeError(f"the store holds bytes only, not {type(value).__name__}")
        _, mode, filename, db_value = super().store(value, read, key=key)
        # Count inline blobs too, so that StoreStats.size is the true total.
        return len(value), mode, filename, db_value

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
        if mode == _MODE_RAW:
            return bytes(value)
        if mode != _MODE_BINARY or filename is None:
            raise _UnsafeEntryError(f"an entry of mode {mode}")
        full_path = os.path.join(self._directory, filename)
        try:
            if read:
                return open(full_path, "rb")
            with open(full_path, "rb") as reader:
                return reader.read()
        except FileNotFoundError:
            raise _MissingFileError(full_path) from None


class Store:
    """A content-addressed blob store in *path* (a diskcache folder).

    Opening is lazy: the folder and its database are created on first use. The store
    is safe to share between threads and processes.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._cache: diskcache.Cache | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------

    def put_bytes(self, data: bytes) -> str:
        """Store *data* and return its sha256 (hex). Storing twice is harmless."""
        data = bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        cache = self._cache if self._cache is not None else self._open()
        with cache.transact(retry=True):
            if not _refresh(cache, digest):
                cache.add(digest, data, retry=True)
        return digest

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
        expected = None if expected_sha256 is None else _check_digest(expected_sha256)
        cache = self._cache if self._cache is not None else self._open()
        filename, full_path = cache.disk.filename()
        hasher = hashlib.sha256()
        size = 0
        try:
            os.makedirs(os.path.dirname(full_path), exist_ok=True)
            with open(full_path, "xb") as writer:
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
            with cache.transact(retry=True):
                if _refresh(cache, digest):
                    os.remove(full_path)
                else:
                    cache.add(digest, _StagedFile(filename, size), retry=True)
        except BaseException:
            _remove_quietly(full_path)
            raise
        return digest, size

    # -- reading -------------------------------------------------------------------

    def get_bytes(self, sha256: str, *, what: str = "blob") -> bytes:
        """Return the bytes of blob *sha256*, after checking their digest.

        :param what: what the blob is, for messages (e.g. ``"result of job J0..."``).
        :raises KeyError: when the store does not hold the blob.
        :raises CacheCorruptionError: when the bytes no longer match their digest.
        """
        cache = self._cache if self._cache is not None else self._open()
        try:
            data = cache.get(sha256, _MISSING)
        except _MissingFileError as exc:
            raise self._corrupt(sha256, what, exc.path, "its file is missing") from None
        except _UnsafeEntryError as exc:
            raise self._corrupt(sha256, what, None, f"it is {exc}, not bytes") from None
        if data is _MISSING:
            raise KeyError(sha256)
        if hashlib.sha256(data).hexdigest() != sha256:
            raise self._corrupt(sha256, what, self.path_of(sha256), "its bytes changed")
        return data  # type: ignore[no-any-return]

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
        cache = self._cache if self._cache is not None else self._open()
        try:
            value = cache.get(sha256, _MISSING, read=True)
        except _MissingFileError as exc:
            raise self._corrupt(sha256, what, exc.path, "its file is missing") from None
        except _UnsafeEntryError as exc:
            raise self._corrupt(sha256, what, None, f"it is {exc}, not bytes") from None
        if value is _MISSING:
            raise KeyError(sha256)
        return value  # type: ignore[no-any-return]

    def has(self, sha256: str) -> bool:
        """Whether the store holds blob *sha256* (its bytes are not checked)."""
        cache = self._cache if self._cache is not None else self._open()
        return sha256 in cache

    def path_of(self, sha256: str) -> Path | None:
        """The file holding blob *sha256*, or ``None`` when it is absent or inline."""
        cache = self._cache if self._cache is not None else self._open()
        try:
            value = cache.get(sha256, None, read=True)
        except _MissingFileError as exc:
            return Path(exc.path)
        except _UnsafeEntryError:
            return None
        if value is None or isinstance(value, bytes):
            return None
        with value as reader:
            return Path(reader.name)

    def digests(self) -> Iterator[str]:
        """Iterate over the digests of all stored blobs, in sorted order."""
        cache = self._cache if self._cache is not None else self._open()
        yield from cache.iterkeys()

    def entries(self) -> Iterator[StoreEntry]:
        """Iterate over every stored blob with its size and storage time."""
        cache = self._cache if self._cache is not None else self._open()
        rows = cache._sql("SELECT key, size, store_time FROM Cache WHERE raw = 1").fetchall()
        for key, size, stored_at in rows:
            yield StoreEntry(str(key), int(size or 0), float(stored_at or 0.0))

    def stats(self) -> StoreStats:
        """The number of blobs and their total size in bytes."""
        cache = self._cache if self._cache is not None else self._open()
        return StoreStats(count=int(cache.reset("count")), size=int(cache.reset("size")))

    def verify(self) -> list[str]:
        """Re-hash every blob; return the digests whose bytes do not match."""
        failed = []
        for digest in list(self.digests()):
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
        cache = self._cache if self._cache is not None else self._open()
        return bool(cache.delete(sha256, retry=True))

    def delete_if(
        self, sha256: str, *, stored_before: float, unused: Callable[[str], bool]
    ) -> bool:
        """Remove blob *sha256* if it was last stored before *stored_before* (epoch
        seconds) and ``unused(sha256)`` still holds; return whether it was removed.

        Both are checked while the store is locked for writing, so a writer that
        stores (or stores again) the blob meanwhile either comes first, and the blob
        stays, or comes after, and stores it anew.
        """
        cache = self._cache if self._cache is not None else self._open()
        with cache.transact(retry=True):
            row = cache._sql(
                "SELECT store_time FROM Cache WHERE key = ? AND raw = 1", (sha256,)
            ).fetchone()
            if row is None or float(row[0] or 0.0) >= stored_before or not unused(sha256):
                return False
            return bool(cache.delete(sha256, retry=True))

    def close(self) -> None:
        """Close this thread's database connection (the store reopens on next use)."""
        with self._lock:
            if self._cache is not None:
                self._cache.close()

    def _open(self) -> diskcache.Cache:
        with self._lock:
            if self._cache is None:
                ensure_private_dir(self.path)
                self._cache = diskcache.Cache(
                    str(self.path),
                    disk=_BlobDisk,
                    timeout=60,
                    eviction_policy="none",
                    size_limit=2**62,
                    cull_limit=0,
                    statistics=0,
                    tag_index=0,
                )
            return self._cache

    def _corrupt(
        self, sha256: str, what: str, location: str | Path | None, problem: str
    ) -> CacheCorruptionError:
        where = f"file {location}" if location else f"the store database in {self.path}"
        return CacheCorruptionError(
            f"the cached {what} (sha256 {sha256}) is corrupt: {problem} ({where}); "
            "reconnect to fetch it again, or run `jobledger cache verify` to check and "
            "drop corrupt entries"
        )


def _refresh(cache: diskcache.Cache, digest: str) -> bool:
    """Mark blob *digest* as stored now, inside the caller's transaction; return
    whether it was there. A blob stored again is young again, so that pruning
    never removes a blob that a submission is about to refer to."""
    # diskcache has no call to change store_time: its table is updated directly.
    updated = cache._sql(
        "UPDATE Cache SET store_time = ? WHERE key = ? AND raw = 1", (time.time(), digest)
    )
    return bool(updated.rowcount)


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
