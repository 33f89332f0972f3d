"""The service's content-addressed blob folder: ``<data>/blobs/ab/<sha256>``.

Batches and results are stored once per digest. Every blob is written to a temporary
file in the same file system, hashed on the way, flushed with ``fsync``, renamed into
place with :func:`os.replace` and its folder flushed too, so a reader never sees half a
blob, a crash leaves at most a stray temporary file, and a blob that was committed is
still there after a power failure (the job row that refers to it is written after).
Small batches are the exception: their bytes go into the database with their job, in
the one durable commit of the submission, and their file is written without ``fsync``
(:meth:`BlobWriter.commit` with ``durable=False``); see :mod:`jobledger.service.store`.
A :class:`BlobWriter` streams bytes in, so a 1 GiB result never sits whole in memory;
worker processes use it directly.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

__all__ = ["BlobInfo", "BlobStore", "BlobWriter"]


@dataclass(frozen=True)
class BlobInfo:
    """A stored blob: its digest, size and media type."""

    sha256: str
    size: int
    media_type: str


class BlobWriter:
    """A writable file that becomes a blob when :meth:`commit` is called.

    Used as a context manager it commits on success and discards on error.
    """

    def __init__(self, root: Path, media_type: str) -> None:
        self._root = root
        self.media_type = media_type
        tmp_dir = root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="blob-")
        self._tmp = Path(name)
        self._file = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self._size = 0
        self.info: BlobInfo | None = None

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append *data*; return the number of bytes written."""
        self._file.write(data)
        self._hash.update(data)
        self._size += len(data)
        return len(data)

    @property
    def size(self) -> int:
        """The number of bytes written so far."""
        return self._size

    def hexdigest(self) -> str:
        """The sha256 of the bytes written so far."""
        return self._hash.hexdigest()

    def read_back(self) -> IO[bytes]:
        """Open the bytes written so far for reading (before :meth:`commit`)."""
        self._file.flush()
        return open(self._tmp, "rb")

    def writable(self) -> bool:
        """Always true: this is a write-only stream."""
        return True

    def commit(self, *, durable: bool = True) -> BlobInfo:
        """Flush, fsync and rename the file into place; return its :class:`BlobInfo`.

        :param durable: with ``False`` nothing is forced to disk (no ``fsync``): for a
            blob whose bytes are kept durably elsewhere (a small batch, in the
            database), from where they can be written again after a power failure.
        """
        if self.info is not None:
            return self.info
        self._file.flush()
        if durable:
            os.fsync(self._file.fileno())
        self._file.close()
        digest = self._hash.hexdigest()
        final = BlobStore(self._root).path(digest)
        new_folder = not final.parent.is_dir()
        final.parent.mkdir(parents=True, exist_ok=True)
        if new_folder and durable:
            _sync_folder(self._root)
        os.replace(self._tmp, final)
        if durable:
            _sync_folder(final.parent)
        self.info = BlobInfo(digest, self._size, self.media_type)
        return self.info

    def discard(self) -> None:
        """Close and remove the temporary file (nothing is stored)."""
        if self.info is not None:
            return
        self._file.close()
        self._tmp.unlink(missing_ok=True)

    def close(self) -> None:
        """Commit, as closing a finished result file means "this is the result"."""
        self.commit()

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def _sync_folder(folder: Path) -> None:
    """Flush *folder*'s entries (a rename into it) to disk."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    """The blob folder of one service data directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, digest: str) -> Path:
        """Where the blob with *digest* lives (it may not exist)."""
        return self.root / digest[:2] / digest

    def writer(self, media_type: str) -> BlobWriter:
        """Open a :class:`BlobWriter` for a new blob."""
        return BlobWriter(self.root, media_type)

    def put(self, data: bytes, media_type: str) -> BlobInfo:
        """Store *data*; return its :class:`BlobInfo` (a no-op rewrite if present)."""
        digest = hashlib.sha256(data).hexdigest()
        if self.path(digest).exists():
            return BlobInfo(digest, len(data), media_type)
        with self.writer(media_type) as out:
            out.write(data)
        assert out.info is not None
        return out.info

    def restore(self, data: bytes, media_type: str) -> BlobInfo:
        """Write *data* again, durably, whatever is at its path now (a copy a power
        failure cut short is replaced)."""
        with self.writer(media_type) as out:
            out.write(data)
        assert out.info is not None
        return out.info

    def read(self, digest: str) -> bytes:
        """Return the bytes of the blob *digest*."""
        return self.path(digest).read_bytes()

    def delete(self, digest: str) -> None:
        """Remove the blob *digest* if it exists."""
        self.path(digest).unlink(missing_ok=True)
