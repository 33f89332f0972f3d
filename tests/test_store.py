"""Tests of the content-addressed blob store: round trips, checks on read, streaming."""

from __future__ import annotations

import hashlib
import io
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobledger.errors import CacheCorruptionError, StorageFullError
from jobledger.store import Store, StoreStats

SMALL = b"small blob"
LARGE = os.urandom(100_000)  # above diskcache's 32 KiB threshold: stored as a file


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "store") as opened:
        yield opened


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_opening_is_lazy(tmp_path: Path) -> None:
    Store(tmp_path / "lazy")
    assert not (tmp_path / "lazy").exists()


@pytest.mark.parametrize("data", [b"", SMALL, LARGE])
def test_round_trip(store: Store, data: bytes) -> None:
    digest = store.put_bytes(data)
    assert digest == sha(data)
    assert store.has(digest)
    assert store.get_bytes(digest) == data
    assert store.put_bytes(data) == digest  # idempotent
    assert store.stats() == StoreStats(count=1, size=len(data))


def test_absent_blob_is_a_key_error(store: Store) -> None:
    with pytest.raises(KeyError):
        store.get_bytes(sha(b"never stored"))
    with pytest.raises(KeyError):
        store.copy_to(sha(b"never stored"), io.BytesIO())
    assert not store.has(sha(b"never stored"))
    assert store.path_of(sha(b"never stored")) is None


def test_large_blob_lives_in_a_file_small_inline(store: Store) -> None:
    large, small = store.put_bytes(LARGE), store.put_bytes(SMALL)
    path = store.path_of(large)
    assert path is not None and path.read_bytes() == LARGE
    assert store.path_of(small) is None


def test_flipped_byte_in_file_is_detected_on_every_read(store: Store) -> None:
    digest = store.put_bytes(LARGE)
    assert store.get_bytes(digest) == LARGE
    path = store.path_of(digest)
    assert path is not None
    raw = bytearray(path.read_bytes())
    raw[1234] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(CacheCorruptionError) as info:
        store.get_bytes(digest, what="result of job J0123")
    message = str(info.value)
    assert "result of job J0123" in message
    assert str(path) in message
    assert "jobledger cache verify" in message
    with pytest.raises(CacheCorruptionError, match="result of job J0123"):
        store.copy_to(digest, io.BytesIO(), what="result of job J0123")
    assert store.verify() == [digest]


def test_flipped_byte_in_database_row_is_detected(store: Store, tmp_path: Path) -> None:
    digest = store.put_bytes(SMALL)
    store.close()
    with sqlite3.connect(tmp_path / "store" / "cache.db") as db:
        db.execute("UPDATE Cache SET value = ? WHERE key = ?", (b"smaLl blob", digest))
    db.close()
    with pytest.raises(CacheCorruptionError) as info:
        store.get_bytes(digest, what="batch of job J9")
    assert "batch of job J9" in str(info.value)
    assert str(tmp_path / "store") in str(info.value)
    assert store.verify() == [digest]


def test_missing_file_is_corruption_not_absence(store: Store) -> None:
    digest = store.put_bytes(LARGE)
    path = store.path_of(digest)
    assert path is not None
    path.unlink()
    with pytest.raises(CacheCorruptionError, match="missing"):
        store.get_bytes(digest)
    assert store.verify() == [digest]


def test_pickled_entries_are_refused(store: Store, tmp_path: Path) -> None:
    digest = store.put_bytes(SMALL)
    store.close()
    mode_pickle = 4
    with sqlite3.connect(tmp_path / "store" / "cache.db") as db:
        db.execute("UPDATE Cache SET mode = ? WHERE key = ?", (mode_pickle, digest))
    db.close()
    with pytest.raises(CacheCorruptionError, match="not bytes"):
        store.get_bytes(digest)


def test_only_bytes_go_in(store: Store) -> None:
    with pytest.raises(TypeError):
        store.put_bytes("text")  # type: ignore[arg-type]


def chunks(total: int, size: int = 1 << 20) -> Iterator[bytes]:
    block = bytes(range(256)) * (size // 256)
    for offset in range(0, total, size):
        yield block[: min(size, total - offset)]


def test_put_stream_64_mib_in_bounded_memory(store: Store) -> None:
    total = 64 << 20
    expected = hashlib.sha256()
    for chunk in chunks(total):
        expected.update(chunk)
    tracemalloc.start()
    try:
        digest, size = store.put_stream(
            chunks(total), expected_sha256=expected.hexdigest(), expected_size=total
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (digest, size) == (expected.hexdigest(), total)
    assert peak < 16 << 20
    sink = hashlib.sha256()

    class HashSink(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, data: bytes) -> int:  # type: ignore[override]
            sink.update(data)
            return len(data)

    with HashSink() as out:
        assert store.copy_to(digest, out) == total  # type: ignore[arg-type]
    assert sink.hexdigest() == digest


def test_put_stream_mismatch_leaves_nothing(store: Store, tmp_path: Path) -> None:
    wrong = sha(b"something else")
    with pytest.raises(CacheCorruptionError, match="do not match the service's digest"):
        store.put_stream(chunks(3 << 20), expected_sha256=wrong)
    with pytest.raises(CacheCorruptionError):
        store.put_stream(chunks(3 << 20), expected_size=5)
    assert store.stats() == StoreStats(0, 0)
    assert list(store.digests()) == []
    files = [p for p in (tmp_path / "store").rglob("*") if p.is_file()]
    assert all(p.name.startswith("cache.db") for p in files), files


def test_put_stream_of_existing_blob_is_idempotent(store: Store) -> None:
    first = store.put_stream([LARGE[:50_000], LARGE[50_000:]])
    assert first == (sha(LARGE), len(LARGE))
    assert store.put_stream([LARGE]) == first
    assert store.put_bytes(LARGE) == first[0]
    assert store.stats() == StoreStats(1, len(LARGE))


def test_failing_source_leaves_nothing(store: Store, tmp_path: Path) -> None:
    def broken() -> Iterator[bytes]:
        yield b"x" * 100_000
        raise ConnectionError("network dropped")

    with pytest.raises(ConnectionError):
        store.put_stream(broken())
    assert [p for p in (tmp_path / "store").rglob("*.val")] == []


def test_nothing_is_evicted(store: Store) -> None:
    digests = {store.put_bytes(i.to_bytes(4, "big") * 300) for i in range(1500)}
    digests.add(store.put_bytes(os.urandom(200_000)))
    assert set(store.digests()) == digests
    assert store.stats().count == len(digests)
    assert store.verify() == []


def test_delete(store: Store) -> None:
    digest = store.put_bytes(LARGE)
    path = store.path_of(digest)
    assert store.delete(digest)
    assert not store.delete(digest)
    assert not store.has(digest)
    assert path is not None and not path.exists()


def test_malformed_expected_digest(store: Store) -> None:
    with pytest.raises(ValueError, match="not a sha256"):
        store.put_stream([b"x"], expected_sha256="abc")


def test_two_processes_write_concurrently(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from jobledger.store import Store

        tag = sys.argv[2].encode()
        store = Store(Path(sys.argv[1]))
        for i in range(60):
            store.put_bytes(b"shared %d" % i)
            store.put_bytes(tag + b" own %d" % i)
            store.put_stream([b"big %d " % i, b"x" * 40_000])
        store.close()
        """
    )
    path = tmp_path / "shared"
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(path), tag]) for tag in ("a", "b")
    ]
    assert [proc.wait(timeout=60) for proc in procs] == [0, 0]
    with Store(path) as store:
        assert store.stats().count == 60 * 4
        assert store.verify() == []
        assert store.get_bytes(sha(b"b own 7")) == b"b own 7"


# -- a damaged index ----------------------------------------------------------------------------


def damage_index(store: Store) -> Path:
    """Overwrite the store's SQLite index with bytes that are not a database."""
    store.close()
    index = store.path / "cache.db"
    for extra in ("cache.db-wal", "cache.db-shm"):
        (store.path / extra).unlink(missing_ok=True)
    index.write_bytes(b"this is not an SQLite database, just damage " * 200)
    return index


def test_a_damaged_index_is_corruption_naming_the_file_and_the_repair(store: Store) -> None:
    digest = store.put_bytes(LARGE)
    index = damage_index(store)
    calls = [
        lambda: store.get_bytes(digest),
        lambda: store.copy_to(digest, io.BytesIO()),
        lambda: store.has(digest),
        lambda: store.stats(),
        lambda: list(store.digests()),
        lambda: store.verify(),
        lambda: store.put_bytes(SMALL),
        lambda: store.put_stream([LARGE]),
    ]
    for call in calls:
        with pytest.raises(CacheCorruptionError) as info:
            call()
        assert str(index) in str(info.value)
        assert "jobledger cache repair" in str(info.value)


def test_repair_recovers_every_blob_whose_file_is_intact(store: Store) -> None:
    from jobledger.store_repair import repair

    large = [store.put_bytes(os.urandom(50_000 + n)) for n in range(5)]
    streamed, _ = store.put_stream([b"y" * 70_000])
    small = [store.put_bytes(b"small %d" % n) for n in range(3)]
    damage_index(store)

    report = repair(store)
    assert (report.files, report.inline, report.inline_lost) == (6, 0, None)
    assert report.damaged_index is not None and report.damaged_index.exists()
    for digest in [*large, streamed]:
        assert store.get_bytes(digest)  # readable again, checked against its digest
    assert not any(store.has(d) for d in small)  # lived inside the damaged index
    assert store.stats().count == 6
    assert store.verify() == []

    # A healthy index loses nothing: small blobs are carried over, files re-indexed.
    again = repair(store)
    assert (again.files, again.inline, again.inline_lost, again.damaged_index) == (6, 0, 0, None)
    store.put_bytes(SMALL)
    third = repair(store)
    assert (third.files, third.inline) == (6, 1)
    assert store.get_bytes(sha(SMALL)) == SMALL


# -- interrupted downloads ----------------------------------------------------------------------


def test_a_killed_download_leaves_a_findable_partial_file_removed_on_next_open(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store"
    script = textwrap.dedent(
        """
        import os, signal, sys
        from pathlib import Path
        from jobledger.store import Store

        def chunks():
            for _ in range(3):
                yield b"x" * (1 << 20)
            os.kill(os.getpid(), signal.SIGKILL)  # killed mid-download
            yield b""

        Store(Path(sys.argv[1])).put_stream(chunks())
        """
    )
    done = subprocess.run([sys.executable, "-c", script, str(path)], timeout=60, check=False)
    assert done.returncode == -9
    with Store(path) as store:
        left = store.partial_files()
        assert [p.size for p in left] == [3 << 20]
        assert left[0].path.parent == path / "partial"
        assert not any(p.suffix == ".val" for p in path.rglob("*"))  # nothing elsewhere
        assert store.stats() == StoreStats(0, 0)  # opening the store swept it
        assert store.partial_files() == []


def test_a_live_download_keeps_its_partial_file(tmp_path: Path) -> None:
    import socket

    from jobledger.store import PARTIAL_MAX_AGE

    path = tmp_path / "store"
    partial = path / "partial"
    partial.mkdir(parents=True)
    host = socket.gethostname()
    live = partial / f"{host}-pid{os.getpid()}-a.partial"
    stalled = partial / "elsewhere-pid1-b.partial"
    fresh_elsewhere = partial / "elsewhere-pid1-c.partial"
    for file in (live, stalled, fresh_elsewhere):
        file.write_bytes(b"x" * 10)
    old = time.time() - PARTIAL_MAX_AGE - 60
    os.utime(stalled, (old, old))
    with Store(path) as store:
        assert store.sweep_partial() == 1
        assert sorted(p.path for p in store.partial_files()) == sorted([live, fresh_elsewhere])


# -- a full disk -------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs, to fill up for real (needs root; skipped otherwise)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path) -> None:
    """Write a file until the disk is full."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    with pytest.raises(OSError):
        (folder / "probe").write_bytes(b"x" * 8192)


def test_reads_work_and_writes_fail_clearly_on_a_full_disk(small_disk: Path) -> None:
    path = small_disk / "store"
    with Store(path) as store:
        small, large = store.put_bytes(SMALL), store.put_bytes(LARGE)
    fill(small_disk)
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from jobledger.store import Store
        store = Store(Path({str(path)!r}))
        assert store.get_bytes({small!r}) == {SMALL!r}
        assert len(store.get_bytes({large!r})) == {len(LARGE)}
        assert store.stats().count == 2 and store.verify() == []
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    with Store(path) as store:
        for write in (
            lambda: store.put_bytes(os.urandom(200_000), what="batch"),
            lambda: store.put_bytes(os.urandom(20_000), what="batch"),
            lambda: store.put_stream([os.urandom(1 << 20)] * 3),
        ):
            with pytest.raises(StorageFullError) as info:
                write()
            assert str(info.value).startswith("no space left on device while storing the ")
            assert str(path) in str(info.value) and "nothing was recorded" in str(info.value)
        assert set(store.digests()) == {small, large}
        assert store.partial_files() == []


def test_listing_goes_a_page_at_a_time_in_digest_order(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import jobledger.store as store_module

    monkeypatch.setattr(store_module, "_PAGE", 2)  # five blobs: three pages
    blobs = [f"blob {i}".encode() * (1 + 20000 * (i % 2)) for i in range(5)]
    digests = sorted(store.put_bytes(b) for b in blobs)
    assert list(store.digests()) == digests
    entries = list(store.entries())
    assert [e.sha256 for e in entries] == digests
    assert sorted(e.size for e in entries) == sorted(len(b) for b in blobs)
    assert store.stored_among([digests[0], "0" * 64, digests[3]]) == {digests[0], digests[3]}
    assert store.verify() == []
    # A blob removed while the listing is under way is simply not seen again.
    walk = store.digests()
    assert next(walk) == digests[0]
    store.delete(digests[2])
    assert list(walk) == [digests[1], digests[3], digests[4]]


def test_delete_unused_removes_only_old_blobs_nothing_uses(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import jobledger.store as store_module

    monkeypatch.setattr(store_module, "_PAGE", 2)  # one check of "used" per page
    old = [store.put_bytes(b"old %d" % i) for i in range(5)]
    cutoff = time.time() + 0.001
    time.sleep(0.01)
    young = store.put_bytes(b"young")
    pages: list[list[str]] = []

    def used(page: list[str]) -> set[str]:
        pages.append(page)
        return {old[1]}

    removed = store.delete_unused([*old, young], stored_before=cutoff, used=used)
    assert removed == sorted(d for d in old if d != old[1])
    assert set(store.digests()) == {old[1], young}
    assert all(len(page) <= 2 and young not in page for page in pages)
