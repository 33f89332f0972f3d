"""The store's :class:`diskcache.Disk`: str keys and bytes values only, never a pickle.

Every byte diskcache writes for :class:`jobledger.store.Store` passes through
:class:`BlobDisk`; a download already written in the store's folder is handed to it
as a :class:`StagedFile`, adopted without a copy. This module lives apart from
:mod:`jobledger.store` because only writing opens a :class:`diskcache.Cache`: reads
query the store's index directly, so the offline read path (``from jobledger.jobs
import X; X.result()``) never imports diskcache. The store imports it on its first
write.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import diskcache

from jobledger.store import _MODE_BINARY, _MODE_RAW

__all__ = ["BlobDisk", "MissingFileError", "StagedFile", "UnsafeEntryError"]


@dataclass(frozen=True)
class StagedFile:
    """A file already written in the cache folder, to be adopted without a copy."""

    filename: str
    size: int


class UnsafeEntryError(Exception):
    """An entry that is not plain bytes (e.g. pickled) was found in the cache."""


class MissingFileError(Exception):
    """An entry's file is gone from the cache folder."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


class BlobDisk(diskcache.Disk):  # type: ignore[misc]
    """diskcache's serialization boundary, restricted to str keys and bytes values."""

    def put(self, key: Any) -> tuple[Any, bool]:
        if type(key) is not str:
            raise TypeError(f"store keys are hex digests (str), not {type(key).__name__}")
        return key, True

    def get(self, key: Any, raw: bool) -> Any:
        if not raw:
            raise UnsafeEntryError("a pickled key")
        return key

    def store(self, value: Any, read: bool, key: Any = diskcache.core.UNKNOWN) -> Any:
        if isinstance(value, StagedFile):
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
            raise UnsafeEntryError(f"an entry of mode {mode}")
        full_path = os.path.join(self._directory, filename)
        try:
            if read:
                return open(full_path, "rb")
            with open(full_path, "rb") as reader:
                return reader.read()
        except FileNotFoundError:
            raise MissingFileError(full_path) from None
