"""``jobledger audit verify``: the hash chain of events, blobs, provenance references.

Jobs are made on the real service (the module's shared ``service``), then the registry
file and the store's files are damaged the way a disk fault or a hand edit would, and
verify must fail naming the job. Registry edits use plain ``sqlite3`` on the real file.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import jobledger
from jobledger import audit
from jobledger.client.connection import Connection
from jobledger.client.job import Job
from jobledger.paths import get_paths
from jobledger.registry import Registry

pytestmark = pytest.mark.usefixtures("jobledger_home")


@pytest.fixture
def conn(service: Any) -> Iterator[Connection]:
    token = service.create_token("auditor")
    with jobledger.connect(url=service.url, token=token) as connection:
        yield connection


@pytest.fixture
def ledger(conn: Connection) -> list[Job]:
    """Three finished jobs (one with a ~3 MiB result stored as a file) and a failed one."""
    jobs = [
        conn.submit({"x": 1}, "echo", alias="small", tags=["audit"]),
        conn.submit({"blob": "y" * (3 << 20)}, "echo", alias="large"),
        conn.submit([1, 2, 3], "echo", params={"delay": 0.01}),
    ]
    for job in jobs:
        job.result(timeout=60)
    failing = conn.submit(None, "fail", params={"message": "bad calibration"})
    with pytest.raises(jobledger.JobFailureError):
        failing.result(timeout=60)
    return [*jobs, failing]


def _db() -> sqlite3.Connection:
    return sqlite3.connect(get_paths().registry, isolation_level=None)


def _lines(report: audit.VerifyReport) -> str:
    return "\n".join(f.line() for f in report.failures)


def test_clean_ledger_passes(ledger: list[Job]) -> None:
    report = audit.verify()
    assert report.ok, _lines(report)
    assert report.jobs == 4
    assert report.blobs == 4  # echo returns its batch: results share the batches' bytes
    assert report.bytes > 3 << 20
    assert report.events >= 4 * 3
    assert not report.notes


def test_schema_5_chains_every_event(ledger: list[Job]) -> None:
    from jobledger.registry.writes import event_digest

    with _db() as db:
        rows = db.execute("SELECT id, sha256, prev_sha256 FROM events ORDER BY id").fetchall()
        texts = db.execute(
            "SELECT id, job_pk, at, kind, detail, sha256 FROM events_view ORDER BY id"
        ).fetchall()
        head = db.execute("SELECT value FROM meta WHERE key = 'events_head'").fetchone()[0]
        version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    assert version == ("5",)
    # 32-byte hashes; no stored prev_sha256 where it is the row before's hash (all here)
    assert all(len(sha) == 32 and prev is None for _, sha, prev in rows)
    prev = "0" * 64
    for event_id, job_pk, at, kind, detail, sha256 in texts:
        assert event_digest(event_id, job_pk, at, kind, detail, prev) == sha256
        prev = sha256
    for before, after in itertools.pairwise(rows):
        assert after[0] == before[0] + 1
    assert head == f"{rows[-1][0]} {rows[-1][1].hex()}"


def _store_file(job: Job, part: str = "result") -> Path:
    from jobledger.store import Store

    record = job._reload()
    ref = record.result if part == "result" else record.batch
    assert ref is not None
    with Store(get_paths().store) as store:
        path = store.path_of(ref.sha256)
    assert path is not None, "the blob is stored inline, not as a file"
    return path


def test_a_flipped_byte_in_a_stored_blob_fails_naming_the_job(ledger: list[Job]) -> None:
    path = _store_file(ledger[1])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    report = audit.verify()
    assert not report.ok
    # echo's result is its batch: one blob, two parts of the same job.
    assert {f.job for f in report.failures} == {f"{ledger[1].job_id} (large)"}
    assert any("its result" in f.message for f in report.failures)


def test_a_truncated_blob_fails_naming_the_job(ledger: list[Job]) -> None:
    path = _store_file(ledger[1])
    with open(path, "r+b") as handle:
        handle.truncate(1000)
    report = audit.verify()
    assert report.failures
    assert {f.job for f in report.failures} == {f"{ledger[1].job_id} (large)"}


def test_an_edited_event_fails_naming_the_job(ledger: list[Job]) -> None:
    pk = ledger[0]._record.pk
    with _db() as db:
        db.execute(
            "UPDATE events SET detail = 'CANCELLED' WHERE id = (SELECT min(id) FROM events_view "
            "WHERE job_pk = ? AND kind = 'status')",
            (pk,),
        )
    report = audit.verify()
    assert [f.job for f in report.failures] == [f"{ledger[0].job_id} (small)"]
    assert "edited" in report.failures[0].message


def test_a_deleted_event_fails(ledger: list[Job]) -> None:
    pk = ledger[2]._record.pk
    with _db() as db:
        db.execute(
            "DELETE FROM events WHERE id = (SELECT min(id) FROM events WHERE job_pk = ?)", (pk,)
        )
    report = audit.verify()
    assert len(report.failures) == 1
    assert "deleted" in report.failures[0].message


def test_deleting_the_last_event_is_detected(ledger: list[Job]) -> None:
    with _db() as db:
        db.execute("DELETE FROM events WHERE id = (SELECT max(id) FROM events)")
    report = audit.verify()
    assert len(report.failures) == 1 and "end of the log" in report.failures[0].message


def test_an_inserted_event_fails_naming_the_job(ledger: list[Job]) -> None:
    pk = ledger[3]._record.pk
    with _db() as db:
        db.execute(
            "INSERT INTO events (job_pk, at, kind, detail) VALUES (?, ?, 'status', 'DONE')",
            (pk, "2026-01-01T00:00:00+00:00"),
        )
    report = audit.verify()
    assert [f.job for f in report.failures] == [str(ledger[3].job_id)]
    assert "outside jobledger" in report.failures[0].message


def test_an_inserted_event_with_a_forged_hash_is_detected(ledger: list[Job]) -> None:
    from jobledger.registry.writes import event_digest

    pk = ledger[0]._record.pk
    with _db() as db:
        last_id, last_sha = db.execute(
            "SELECT id, sha256 FROM events_view ORDER BY id DESC LIMIT 1"
        ).fetchone()
        at = "2026-01-01T00:00:00+00:00"
        digest = event_digest(last_id + 1, pk, at, "status", "forged", last_sha)
        # written as jobledger writes (schema 5): kind by key, hash as bytes, prev implied
        db.execute(
            "INSERT INTO events (id, job_pk, at, kind, detail, sha256) VALUES (?, ?, ?, "
            "(SELECT key FROM strings WHERE name = 'status'), 'forged', ?)",
            (last_id + 1, pk, 1767225600000000, bytes.fromhex(digest)),
        )
    report = audit.verify()
    assert [f.job for f in report.failures] == [f"{ledger[0].job_id} (small)"]


def test_reordered_events_are_detected(ledger: list[Job]) -> None:
    pk = ledger[0]._record.pk
    with _db() as db:
        (a, b) = db.execute(
            "SELECT id FROM events WHERE job_pk = ? ORDER BY id LIMIT 2", (pk,)
        ).fetchall()
        db.execute("UPDATE events SET id = -1 WHERE id = ?", (a[0],))
        db.execute("UPDATE events SET id = ? WHERE id = ?", (a[0], b[0]))
        db.execute("UPDATE events SET id = ? WHERE id = -1", (b[0],))
    report = audit.verify()
    assert report.failures and {f.job for f in report.failures} == {f"{ledger[0].job_id} (small)"}


def test_a_changed_provenance_record_fails(ledger: list[Job]) -> None:
    digest = ledger[0]._record.provenance
    with _db() as db:
        db.execute(
            "UPDATE provenance SET record = json_set(record, '$.host', 'elsewhere') "
            "WHERE digest = ?",
            (bytes.fromhex(str(digest)),),
        )
    report = audit.verify()
    assert {f.check for f in report.failures} == {"provenance"}
    assert {f.job for f in report.failures} >= {f"{ledger[0].job_id} (small)"}


def test_a_result_not_downloaded_is_a_note(ledger: list[Job]) -> None:
    from jobledger.store import Store

    ref = ledger[2]._reload().result
    assert ref is not None
    with Store(get_paths().store) as store:
        assert store.delete(ref.sha256)
    report = audit.verify()
    assert report.ok, _lines(report)
    assert [n.job for n in report.notes] == [str(ledger[2].job_id)]


def test_a_refused_submission_keeps_the_chain_whole(conn: Connection, ledger: list[Job]) -> None:
    with pytest.raises(jobledger.JobledgerError):
        conn.submit({"x": 1}, "no-such-backend")
    report = audit.verify()
    assert report.ok, _lines(report)
    with _db() as db:
        kinds = [r[0] for r in db.execute("SELECT kind FROM events_view ORDER BY id")]
    assert kinds[-1] == "refused"  # kept, with the reason: nothing is deleted


def test_verify_changes_nothing_and_opens_no_socket(
    ledger: list[Job], monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    registry = get_paths().registry
    before = registry.read_bytes()

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("verify opened a socket")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert audit.verify().ok
    assert registry.read_bytes() == before


def test_migration_chains_the_rows_of_a_schema_3_registry(
    ledger: list[Job], tmp_path: Path
) -> None:
    from jobledger.frozen import replace
    from legacy_registry import downgrade

    paths = get_paths()
    with _db() as db:
        expected = db.execute("SELECT id, sha256 FROM events_view ORDER BY id").fetchall()
    # The same jobs in a registry written by a version before event hashes (schema 3).
    old = replace(paths, data=tmp_path / "data")
    old.data.mkdir()
    old.store.symlink_to(paths.store)
    downgrade(paths.registry, old.registry, 3)
    notes = audit.verify(old).notes
    assert [n.check for n in notes] == ["events"] and "schema 3" in notes[0].message
    registry = Registry(old.registry)
    assert registry.count() == 4  # a writable open migrates
    registry.close()
    with sqlite3.connect(old.registry) as db:
        # chained in id order over the same text: the same hashes as jobledger wrote
        assert db.execute("SELECT id, sha256 FROM events_view ORDER BY id").fetchall() == expected
    assert audit.verify(old).ok


def test_cli_exit_codes_and_json(ledger: list[Job], jobledger_home: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "jobledger", "audit", "verify", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    done = run()
    assert done.returncode == 0, done.stderr
    assert "all hold" in done.stdout
    body = json.loads(run("--json").stdout)
    assert body["ok"] is True and body["checked"]["jobs"] == 4
    pk = ledger[0]._record.pk
    with _db() as db:
        db.execute("UPDATE events SET at = 'x' WHERE job_pk = ?", (pk,))
    done = run()
    assert done.returncode == 1
    failures = [line for line in done.stdout.splitlines() if line.startswith("job ")]
    assert failures and all(str(ledger[0].job_id) in line for line in failures)
    body = json.loads(run("--json").stdout)
    assert body["ok"] is False and body["failures"][0]["job"].startswith(str(ledger[0].job_id))
