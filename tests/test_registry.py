"""The registry on a real SQLite file: schema versions, filters, aliases, concurrency."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jobledger.errors import RegistryError
from jobledger.providers import RemoteJob
from jobledger.registry import SCHEMA_VERSION, BlobRef, Registry
from jobledger.registry.schema import migration_1
from jobledger.status import JobStatus

BATCH = BlobRef("a" * 64, 2, "application/json")


def record(registry: Registry, n: int, **kwargs: object) -> int:
    values: dict[str, object] = {
        "service": "S",
        "backend": "echo",
        "batch": BATCH,
        "params": {},
        "tags": [],
        "alias": None,
        "session_id": None,
        "provenance": {"python": "3"},
        "provenance_digest": "p" * 64,
        "idempotency_key": f"key-{n}",
    }
    values.update(kwargs)
    pk = registry.record_submission(**values)  # type: ignore[arg-type]
    registry.acknowledge(pk, RemoteJob(f"J{n:018d}", JobStatus.QUEUED))
    return pk


def test_new_registry_is_wal_at_current_schema(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "r.db")
    record(registry, 1)
    conn = sqlite3.connect(tmp_path / "r.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    version = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
    assert int(version) == SCHEMA_VERSION
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"jobs", "events", "provenance", "services", "job_tags", "meta"} <= tables
    conn.close()
    registry.close()


def test_older_registry_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migration_1(conn)
    conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    conn.execute(
        "INSERT INTO jobs (job_id, service, idempotency_key, backend, status, created_at, tags,"
        " params, submit_state) VALUES ('J1', 'S', 'k', 'echo', 'DONE', ?, '[]', '{}', 'sent')",
        (datetime.now(UTC).isoformat(),),
    )
    conn.close()
    registry = Registry(path)
    (job,) = registry.find("J1")
    assert job.status is JobStatus.DONE and job.extras == {}
    registry.set_extra(job.pk, "logs", "b" * 64)
    assert registry.get(job.pk).extras == {"logs": "b" * 64}
    registry.close()


def test_newer_registry_is_refused_and_not_changed(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    registry = Registry(path)
    record(registry, 1)
    registry.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION + 1,))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(RegistryError, match="newer jobledger") as info:
        Registry(path).find("J1")
    assert str(path) in str(info.value)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_readonly_registry_that_does_not_exist_is_empty_and_not_created(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "missing" / "r.db", readonly=True)
    assert registry.names() == [] and registry.find("J1") == [] and registry.count() == 0
    assert not (tmp_path / "missing").exists()


def test_filters(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "r.db")
    a = record(registry, 1, tags=["x", "y"], backend="echo")
    b = record(registry, 2, tags=["x"], backend="sleep", session_id="s1")
    record(registry, 3, tags=["y"], backend="echo")
    registry.apply_infos("S", [RemoteJob("J000000000000000002", JobStatus.DONE)])
    ids = lambda rows: [r.pk for r in rows]  # noqa: E731
    assert ids(registry.query(tags=["x"])) == [b, a]
    assert ids(registry.query(tags=["x", "y"])) == [a]
    assert ids(registry.query(tags=["x"], statuses=[JobStatus.DONE])) == [b]
    assert ids(registry.query(backend="echo", descending=False))[0] == a
    assert ids(registry.query(session_id="s1")) == [b]
    assert len(registry.query(limit=1, skip=1)) == 1
    future = datetime.now(UTC) + timedelta(hours=1)
    assert registry.query(created_after=future) == []
    assert len(registry.query(created_before=future, limit=None)) == 3
    events = [kind for _, kind, _ in registry.events(b)]
    assert events == ["submitted", "status", "status"]
    registry.close()


def test_alias_is_unique(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "r.db")
    record(registry, 1, alias="calib")
    with pytest.raises(ValueError, match="already used by job J"):
        record(registry, 2, alias="calib")
    assert registry.count() == 1
    registry.close()


def test_threads_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "r.db")
    errors: list[BaseException] = []

    def worker(base: int) -> None:
        try:
            for i in range(40):
                record(registry, base + i, tags=["t"])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k * 1000,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert registry.count() == 240
    assert len(registry.query(tags=["t"], limit=None)) == 240
    registry.close()


def test_dates_are_stored_exactly_to_the_microsecond() -> None:
    import random

    from jobledger.registry import from_micros, to_micros

    rnd = random.Random(5)
    edges = [0, 1, 999_999, 1_000_000, 4_000_000_000 * 10**6 - 1, -1, -(10**15)]
    samples = edges + [rnd.randrange(0, 4_100_000_000 * 10**6) for _ in range(20000)]
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for micros in samples:
        exact = epoch + timedelta(microseconds=micros)
        assert from_micros(micros) == exact and to_micros(exact) == micros
    assert to_micros(datetime(1, 1, 1)) == -62135596800 * 10**6  # naive: taken as UTC
    assert from_micros(-62135596800 * 10**6) == datetime(1, 1, 1, tzinfo=UTC)


def _plan(registry: Registry, call: object) -> str:
    """The query plans of the statements *call* runs on this thread's connection."""
    statements: list[str] = []
    conn = registry._conn()
    assert conn is not None
    conn.set_trace_callback(statements.append)
    try:
        call()  # type: ignore[operator]
    finally:
        conn.set_trace_callback(None)
    plans = []
    for sql in statements:
        if sql.lstrip().upper().startswith("SELECT"):
            plans += [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql)]
    return "\n".join(plans)


def test_filters_walk_their_index(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "r.db")
    for n in range(30):
        record(registry, n, tags=["x"], backend=("echo", "sleep")[n % 2], session_id=f"s{n % 3}")
    session = _plan(registry, lambda: registry.query(session_id="s1"))
    assert "jobs_session" in session and "SCAN jobs" not in session
    # tag and backend: checked inside the tag's index walk, each row read only once found
    tagged = _plan(registry, lambda: registry.query(tags=["x"], backend="sleep"))
    assert "SCAN jobs" not in tagged and "PRIMARY KEY" in tagged
    # a page deep into the listing is found in the index alone
    skipped = _plan(registry, lambda: registry.query(skip=20, limit=5))
    assert "COVERING INDEX jobs_created" in skipped
    tag_page = _plan(registry, lambda: registry.query(tags=["x"], backend="echo", skip=9))
    assert "SCAN jobs" not in tag_page and "PRIMARY KEY (tag=?)" in tag_page
    registry.close()


def test_pages_and_filters_match_the_whole_listing(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "r.db")
    for n in range(24):
        pk = record(registry, n, tags=["x", f"t{n % 4}"], backend=("echo", "sleep", "qpu")[n % 3])
        if n % 5 == 0:
            registry.apply_infos("S", [RemoteJob(f"J{n:018d}", JobStatus.DONE)])
        if n % 7 == 0:
            registry.set_tags(pk, ["x", "late"])
    everything = registry.query(limit=None)
    for filters in (
        {},
        {"tags": ["x"]},
        {"tags": ["x"], "backend": "sleep"},
        {"tags": ["x"], "backend": "qpu", "statuses": [JobStatus.DONE]},
        {"tags": ["late", "x"], "backend": "echo"},
        {"backend": "qpu", "descending": False},
        {"statuses": [JobStatus.QUEUED]},
    ):
        whole = registry.query(limit=None, **filters)  # type: ignore[arg-type]
        expected = [
            r
            for r in (everything if filters.get("descending", True) else everything[::-1])
            if all(t in r.tags for t in filters.get("tags", []))  # type: ignore[attr-defined]
            and r.backend == filters.get("backend", r.backend)
            and r.status in filters.get("statuses", [r.status])  # type: ignore[operator]
        ]
        assert whole == expected, filters
        for skip in (0, 1, 5, len(whole) - 1, len(whole) + 3):
            page = registry.query(limit=3, skip=skip, **filters)  # type: ignore[arg-type]
            assert page == whole[skip : skip + 3], (filters, skip)
    assert registry.query(backend="never-recorded") == []
    assert registry.query(service="never-recorded") == []
    registry.close()


def test_a_jobs_tag_rows_are_removed_through_their_primary_key(tmp_path: Path) -> None:
    from jobledger.registry import writes

    registry = Registry(tmp_path / "r.db")
    keep = record(registry, 1, tags=["a", "b"])
    gone = record(registry, 2, tags=["a", "b", "c"])
    statements: list[str] = []

    def work(conn: sqlite3.Connection) -> None:
        conn.set_trace_callback(statements.append)
        writes.delete_tags(conn, gone)
        conn.set_trace_callback(None)
        plans = [
            row[3]
            for sql in statements
            if sql.startswith("DELETE")
            for row in conn.execute("EXPLAIN QUERY PLAN " + sql)
        ]
        assert len(plans) == 3 and all("PRIMARY KEY" in p for p in plans)

    registry.write(work)
    assert [r.pk for r in registry.query(tags=["a"])] == [keep]
    assert registry.query(tags=["c"]) == []
    registry.close()


def test_threads_of_one_process_take_turns_without_sqlite_busy_waits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobledger.registry import file

    # No busy handler and no retry: any two writers meeting inside SQLite would fail.
    monkeypatch.setattr(file, "_WRITE_ATTEMPTS", 1)
    path = tmp_path / "r.db"
    first, second = Registry(path), Registry(path)  # two connections' registries
    first.count()
    errors: list[BaseException] = []

    def worker(registry: Registry, base: int) -> None:
        try:
            conn = registry._conn()
            assert conn is not None
            conn.execute("PRAGMA busy_timeout = 0")
            for i in range(25):
                record(registry, base + i, tags=["t"])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=worker, args=(registry, k * 1000))
        for k, registry in enumerate([first, second] * 3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert first.count() == 150 and len(second.query(tags=["t"], limit=None)) == 150
    first.close()
    second.close()
