"""Rebuilding the store's index (``cache.db``) from the blob files it lost track of.

The store keeps large blobs in files and small ones (under 32 KiB) inside its SQLite
index. When the index is damaged every blob becomes unreadable, though the files are
intact. :func:`repair` moves the damaged index aside (it is kept, as
``cache.db.damaged-<time>``, for whoever wants to dig into it), starts a new one,
and takes back every blob file after hashing it: blobs are content-addressed, so a
file's digest is its key. Small blobs still readable from the old index and matching
their digest are carried over; the others are lost with it, and the client downloads
them again when it next needs them and the service is reachable. Run it while nothing
else writes to the store.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from jobledger.store import INDEX_NAME, PARTIAL_DIR, Store

__all__ = ["RepairReport", "repair"]

_INDEX_FILES = (INDEX_NAME, f"{INDEX_NAME}-wal", f"{INDEX_NAME}-shm")


@dataclass(frozen=True)
class RepairReport:
    """What :func:`repair` did.

    ``files`` blob files were indexed again (``duplicates`` more were copies of an
    indexed blob and removed); ``inline`` small blobs were carried over from the old
    index, whose ``inline_lost`` others did not match their digest (``None`` when the
    old index could not be read at all). ``damaged_index`` is where the old index was
    kept (``None`` when it was readable, and removed); ``partial_removed`` counts
    leftovers of killed downloads.
    """

    files: int
    duplicates: int
    inline: int
    inline_lost: int | None
    damaged_index: Path | None
    partial_removed: int


def repair(store: Store) -> RepairReport:
    """Rebuild *store*'s index from its blob files and what the old index still holds.

    :raises OSError: when the store's folder cannot be read or written.
    """
    store.close()
    folder = store.path
    inline, lost, readable = _salvage_inline(store.index_path)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    kept: Path | None = None
    for name in _INDEX_FILES:
        source = folder / name
        if source.exists():
            target = folder / f"{name}.damaged-{stamp}"
            os.replace(source, target)
            if name == INDEX_NAME:
                kept = target
    files = duplicates = 0
    for path in _blob_files(folder):
        _, adopted = store.adopt_file(path)
        files += adopted
        duplicates += not adopted
    for data in inline:
        store.put_bytes(data)
    if readable and kept is not None:
        for name in _INDEX_FILES:
            with contextlib.suppress(FileNotFoundError):
                (folder / f"{name}.damaged-{stamp}").unlink()
        kept = None
    removed = store.sweep_partial()
    return RepairReport(
        files=files,
        duplicates=duplicates,
        inline=len(inline),
        inline_lost=lost if readable else None,
        damaged_index=kept,
        partial_removed=removed,
    )


def _salvage_inline(index: Path) -> tuple[list[bytes], int, bool]:
    """Small blobs of the old index that still match their digest, how many did not,
    and whether the index could be read at all."""
    if not index.exists():
        return [], 0, True
    good: list[bytes] = []
    bad = 0
    try:
        conn = sqlite3.connect(f"{index.as_uri()}?mode=ro", uri=True)
        try:
            rows = conn.execute(
                "SELECT key, value FROM Cache WHERE raw = 1 AND mode = 1"
            ).fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return [], 0, False
    for key, value in rows:
        if isinstance(value, bytes) and hashlib.sha256(value).hexdigest() == key:
            good.append(value)
        else:
            bad += 1
    return good, bad, True


def _blob_files(folder: Path) -> list[Path]:
    """diskcache's blob files: ``*.val`` in the store's subfolders."""
    found: list[Path] = []
    for root, dirs, names in os.walk(folder):
        if Path(root) == folder:
            dirs[:] = [d for d in dirs if d != PARTIAL_DIR]
            continue
        found.extend(Path(root) / name for name in names if name.endswith(".val"))
    return sorted(found)
