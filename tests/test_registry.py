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
