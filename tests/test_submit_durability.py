"""Record before send, on disk: a submission's registry row and its batch are flushed
to disk before the request leaves (seen with strace around a real submit), and the
store's durable puts: the row is tagged as flushed, a download of the same bytes is
flushed and tagged when submitted, a large batch leaves exactly one file, and a blob
whose file was lost is written again."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobledger.errors import CacheCorruptionError
from jobledger.store import DURABLE_TAG, INDEX_NAME, Store

SMALL = b'{"circuit": "H 0"}'
LARGE = os.urandom(100_000)  # above diskcache's 32 KiB threshold: stored as a file


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "store") as opened:
        yield opened


def tag_of(store: Store, digest: str) -> object:
    with contextlib.closing(sqlite3.connect(store.path / INDEX_NAME)) as db:
        row = db.execute("SELECT tag FROM Cache WHERE key = ?", (digest,)).fetchone()
    assert row is not None, f"{digest} is not in the store"
    return row[0]


def blob_files(store: Store) -> list[Path]:
    return [
        p
        for p in store.path.rglob("*")
        if p.is_file() and not p.name.startswith(INDEX_NAME) and "partial" not in p.parts
    ]


@pytest.mark.parametrize("data", [SMALL, LARGE], ids=["inline", "file"])
def test_a_durable_put_is_tagged_and_reads_back(store: Store, data: bytes) -> None:
    digest = store.put_bytes(data, what="batch", durable=True)
    assert digest == hashlib.sha256(data).hexdigest()
    assert tag_of(store, digest) == DURABLE_TAG
    assert store.get_bytes(digest) == data
    assert store.put_bytes(data, durable=True) == digest  # again: nothing new
    assert store.stats().count == 1
    assert len(blob_files(store)) == (1 if data is LARGE else 0)


def test_a_plain_put_is_not_tagged_and_a_durable_one_then_tags_it(store: Store) -> None:
    digest = store.put_bytes(SMALL)
    assert tag_of(store, digest) is None
    store.put_bytes(SMALL, durable=True)
    assert tag_of(store, digest) == DURABLE_TAG
    store.put_bytes(SMALL)  # a plain put keeps the tag
    assert tag_of(store, digest) == DURABLE_TAG


def test_a_download_submitted_as_a_batch_is_flushed_and_tagged(store: Store) -> None:
    digest, _ = store.put_stream(iter([LARGE[:50_000], LARGE[50_000:]]))
    assert tag_of(store, digest) is None
    assert store.put_bytes(LARGE, what="batch", durable=True) == digest
    assert tag_of(store, digest) == DURABLE_TAG
    assert store.get_bytes(digest) == LARGE
    assert len(blob_files(store)) == 1  # the downloaded file, no second copy


def test_a_durable_put_writes_again_a_blob_whose_file_was_lost(store: Store) -> None:
    digest, _ = store.put_stream(iter([LARGE]))
    path = store.path_of(digest)
    assert path is not None
    path.unlink()
    with pytest.raises(CacheCorruptionError, match="missing"):
        store.get_bytes(digest)
    store.put_bytes(LARGE, what="batch", durable=True)
    assert store.get_bytes(digest) == LARGE
    assert tag_of(store, digest) == DURABLE_TAG
    assert len(blob_files(store)) == 1


# -- a real submit, seen from the system calls --------------------------------------

_SUBMITS = textwrap.dedent(
    """
    import os, uuid
    import jobledger

    conn = jobledger.connect()
    conn.submit({"warm": uuid.uuid4().hex}, "echo")  # (a new log file is always flushed)
    batch = {"unique": uuid.uuid4().hex}
    for label in ("new", "again"):
        os.write(2, f"MARK {label}\\n".encode())
        conn.submit(batch, "echo")
    os.write(2, b"MARK end\\n")
    conn.close()
    """
)


def _strace_works() -> bool:
    if shutil.which("strace") is None:
        return False
    done = subprocess.run(["strace", "-o", os.devnull, "true"], capture_output=True, check=False)
    return done.returncode == 0


@pytest.mark.skipif(not _strace_works(), reason="needs strace (and ptrace allowed)")
def test_the_row_and_the_batch_are_flushed_before_the_request_leaves(
    service: Any, jobledger_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBLEDGER_URL", service.url)
    monkeypatch.setenv("JOBLEDGER_TOKEN", service.token)
    trace = tmp_path / "strace.txt"
    command = ["strace", "-f", "-y", "-s", "64", "-e", "trace=fsync,fdatasync,sendto,write"]
    done = subprocess.run(
        [*command, "-o", str(trace), sys.executable, "-c", _SUBMITS],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = trace.read_text().splitlines()

    def window(label: str) -> list[str]:
        start = next(i for i, line in enumerate(lines) if f"MARK {label}" in line)
        post = next(i for i in range(start, len(lines)) if '"POST /v1/jobs' in lines[i])
        return lines[start:post]

    def flushed(before_post: list[str], file_name: str) -> bool:
        return any(
            ("fdatasync(" in line or "fsync(" in line) and f"{file_name}>" in line
            for line in before_post
        )

    first, second = window("new"), window("again")
    assert flushed(first, "registry.db-wal"), "the registry row was not flushed before sending"
    assert flushed(first, "cache.db-wal"), "the batch was not flushed before sending"
    assert flushed(second, "registry.db-wal")
    assert not flushed(second, "cache.db-wal"), "a batch stored durably was flushed again"
