"""Schema 5 migrations on real files: nothing recorded is lost, hashes still verify.

Jobs are recorded through the registry's real write path (the calls the client makes),
the file is written back at schema 4 or 1 through the documented views
(``legacy_registry.downgrade``), and a writable open migrates it, in pages of two rows
so that paging is exercised. Every record, event, tag, alias, service and provenance
record must come back equal, and the event chain must verify.
"""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from jobledger import audit
from jobledger.frozen import replace
from jobledger.paths import Paths
from jobledger.provenance import provenance_digest
from jobledger.providers import RemoteJob
from jobledger.providers.base import RemoteBlob
from jobledger.registry import BlobRef, Registry, ServiceRecord, schema5
from jobledger.registry.audit_reads import AuditReads
from jobledger.registry.writes import event_digest
from jobledger.status import JobStatus
from legacy_registry import downgrade, old_registry

MOON = datetime(1969, 7, 20, 20, 17, 40, tzinfo=UTC)  # before 1970: negative microseconds


def _blob(n: int) -> BlobRef:
    return BlobRef(hashlib.sha256(b"%d" % n).hexdigest(), 10 + n, "application/json")


def _submit(registry: Registry, n: int, **kwargs: Any) -> int:
    values: dict[str, Any] = {
        "service": "svc-local",
        "backend": "echo",
        "batch": _blob(n),
        "params": {"shots": 100 + n},
        "tags": [],
        "alias": None,
        "session_id": None,
        "provenance": {"python": {"version": "3.11"}, "n": n % 2},
        "provenance_digest": provenance_digest({"python": {"version": "3.11"}, "n": n % 2}),
        "idempotency_key": hashlib.md5(b"%d" % n).hexdigest(),
    }
    values.update(kwargs)
    return registry.record_submission(**values)


def fill(registry: Registry) -> None:
    """Jobs in every state the client leaves them in, with tags, aliases, sessions."""
    registry.upsert_service(ServiceRecord("svc-local", "http://127.0.0.1:8765", "local", None))
    registry.upsert_service(ServiceRecord("svc-ibm", "https://q.example", "ibm-quantum", "ibm"))
    now = datetime.now(UTC)
    for n in range(7):
        pk = _submit(
            registry,
            n,
            tags=[f"exp-{n % 3}", "all"],
            alias=f"run_{n}" if n % 2 else None,
            session_id="s-1" if n < 3 else None,
            backend="echo" if n % 3 else "sleep",
        )
        job_id = f"J{n:018d}"
        registry.acknowledge(pk, RemoteJob(job_id, JobStatus.QUEUED, queue_position=n))
        registry.apply_infos(
            "svc-local", [RemoteJob(job_id, JobStatus.RUNNING, started_at=now + timedelta(1))]
        )
        if n == 5:
            registry.apply_infos(
                "svc-local", [RemoteJob(job_id, JobStatus.ERROR, message="bad calibration")]
            )
            registry.add_event(pk, "cancel", "refused")
            continue
        result = _blob(100 + n)
        registry.apply_infos(
            "svc-local",
            [
                RemoteJob(
                    job_id,
                    JobStatus.DONE,
                    ended_at=now + timedelta(seconds=n),
                    usage={"seconds": 1.5},
                    backend_version="1.0",
                    result=RemoteBlob(result.sha256, result.size, result.media_type),
                )
            ],
        )
        registry.set_result(pk, result)
    registry.set_extra(1, "logs", hashlib.sha256(b"logs").hexdigest())
    registry.set_tags(2, ["exp-2", "renamed"])
    registry.set_alias(3, "renamed_alias")
    refused = _submit(registry, 20, tags=["all"], alias="taken_then_freed")
    registry.refuse_submission(refused, "no such backend")
    _submit(registry, 21, tags=["all"])  # pending: never acknowledged
    registry.apply_infos(
        "svc-ibm",
        [
            RemoteJob(
                "ibm-job-1",
                JobStatus.DONE,
                backend="ibm_torino",
                created_at=MOON,
                result=RemoteBlob(_blob(30).sha256, 40, "application/json"),
            ),
            RemoteJob(
                "ibm-job-2",
                JobStatus.QUEUED,
                backend="ibm_torino",
                created_at=MOON.replace(microsecond=123456, second=0),
                tags=("all", "ibm"),
                session_id="s-ibm",
                params={"shots": 4096, "nested": {"a": [1, 2]}},
            ),
        ],
    )


def snapshot(registry: Registry) -> dict[str, Any]:
    """Everything a user can read back, through the registry's API and the audit reads."""
    records = registry.query(limit=None, descending=False)
    reads = AuditReads(registry)
    events: list[tuple[Any, ...]] = []
    while page := reads.event_page(events[-1][0] if events else 0, limit=5):
        events += [(e.id, e.job_pk, e.at, e.kind, e.detail, e.sha256, e.prev_sha256) for e in page]
    tags = {tag for r in records for tag in r.tags}
    return {
        "records": records,
        "events": {r.pk: registry.events(r.pk) for r in records},
        "chain": events,
        "head": reads.events_head(),
        "tags": {t: [r.pk for r in registry.query(tags=[t], limit=None)] for t in sorted(tags)},
        "provenance": {r.provenance: registry.provenance(str(r.provenance)) for r in records},
        "services": sorted(registry.services(), key=lambda s: s.id),
        "rows": {r.pk: reads.job_row(r.pk) for r in records},
        "names": registry.names(),
        **paged_reads(registry),
    }


def paged_reads(registry: Registry) -> dict[str, Any]:
    """What ``sync``, ``jobledger cache`` and the names of ``jobledger.jobs`` read
    through the indexes, a page at a time."""
    pages: list[list[int]] = []
    while page := registry.jobs_page(
        after_pk=pages[-1][-1] if pages else 0,
        limit=2,
        service="svc-local",
        statuses=[JobStatus.DONE, JobStatus.ERROR],
    ):
        pages.append([r.pk for r in page])
    digests = list(registry.referenced_digests_sorted())
    later = datetime.now(UTC) + timedelta(days=1)
    return {
        "index_names": (
            registry.recent_ids(4),
            registry.aliases(2),
            registry.names_with_prefix("J00000000000000000", 3),
            registry.names_with_prefix("r"),
            registry.names_with_prefix("ibm-"),
        ),
        "pages": pages,
        "pending": (
            [r.pk for r in registry.jobs_page(pending_submission=True)],
            registry.pending_count("svc-local"),
            registry.pending_count("svc-nobody"),
        ),
        "done_results": (
            registry.done_results_page("svc-local", after_pk=2, limit=3),
            registry.done_results_page("svc-ibm"),
        ),
        "digests": digests,
        "owners": registry.digest_owners([*digests[::3], hashlib.sha256(b"logs").hexdigest()]),
        "among": registry.referenced_among([*digests[1::2], "0" * 64]),
        "prunable": list(registry.prunable_results("svc-local", later)),
    }


@pytest.fixture
def current(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    path = tmp_path / "current" / "registry.db"
    registry = Registry(path)
    fill(registry)
    found = snapshot(registry)
    registry.close()
    # The paged reads have something to compare: each part of them finds rows.
    assert found["digests"] == sorted(found["digests"]) and len(found["digests"]) > 12
    assert all(found["index_names"]) and len(found["pages"]) > 2
    assert all(found["pending"][:2]) and all(found["done_results"])
    assert found["owners"][hashlib.sha256(b"logs").hexdigest()][0][1] == "logs"
    assert found["among"] and found["prunable"]
    return path, found


def _verify(path: Path) -> audit.VerifyReport:
    home = path.parent
    return audit.verify(Paths(data=home, cache=home, config=home, runtime=home))


def test_schema_4_file_migrates_keeping_every_record_event_and_hash(
    current: tuple[Path, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, expected = current
    old = tmp_path / "old" / "registry.db"
    old.parent.mkdir()
    downgrade(source, old, 4)
    assert _verify(old).ok  # the schema 4 file verifies as schema 4 did
    monkeypatch.setattr(schema5, "PAGE", 2)
    registry = Registry(old)
    assert registry.count() == len(expected["records"])  # a writable open migrates
    assert snapshot(registry) == expected
    registry.close()
    report = _verify(old)
    assert report.ok, [f.line() for f in report.failures]
    assert report.events == len(expected["chain"])
    with sqlite3.connect(old) as db:
        version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
        # the rows are the ones jobledger writes: no prev_sha256 where it is implied
        stored = db.execute("SELECT count(*) FROM events WHERE prev_sha256 IS NOT NULL")
        assert stored.fetchone() == (0,)
    assert version == ("5",)
    assert not {t for t in tables if t.startswith("v4_")}
    assert any(p.name.endswith("-migration.db") for p in (old.parent / "backups").iterdir())


def test_schema_1_file_migrates_straight_to_5(
    current: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    source, expected = current
    old = tmp_path / "old" / "registry.db"
    old.parent.mkdir()
    downgrade(source, old, 1)
    registry = Registry(old)
    found = snapshot(registry)
    registry.close()
    # Schema 1 had no cached extras and no event hashes: the rest is all there, and
    # the events are chained on the way (over the same text, so with the same hashes).
    assert found["records"] == [replace(r, extras={}) for r in expected["records"]]
    for key in (
        *("events", "chain", "head", "tags", "provenance", "services", "names"),
        *("index_names", "pages", "pending", "done_results", "prunable"),
    ):
        assert found[key] == expected[key], key
    assert _verify(old).ok


def test_values_without_the_canonical_form_are_kept_as_they_were(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    db = old_registry(path, 4)
    digest_caps = "AB" * 32
    db.execute(
        "INSERT INTO jobs (pk, job_id, service, idempotency_key, backend, status, created_at,"
        " started_at, tags, params, batch_sha256, batch_size, batch_media_type, provenance,"
        " submit_state) VALUES (1, 'J1', 'ghost', 'not-hex', 'echo', 'RUNNING', "
        "'2024-01-01T00:00:00', '2024-01-01T01:00:00Z', '[\"t\"]', '{}', ?, 3, 'x/y', ?, 'sent')",
        (digest_caps, "c" * 64),
    )
    db.execute(
        "INSERT INTO job_tags (tag, created_at, job_pk, status) "
        "VALUES ('t', '2024-01-01T00:00:00', 1, 'RUNNING')"
    )
    # Events as a hand or an older version may have left them: a time with a
    # zero fraction, one that does not parse, a digest in capitals, one row without a
    # hash, one chained onto a row that is gone.
    texts = [
        (1, 1, "2024-01-01T00:00:00.000000+00:00", "submitted", "echo"),
        (2, 1, "yesterday", "status", "RUNNING"),
        (3, 1, "2024-01-01T00:00:02+00:00", "result-downloaded", digest_caps),
        (5, 1, "2024-01-01T00:00:05+00:00", "tags", '["t"]'),
    ]
    prev = "0" * 64
    for event_id, pk, at, kind, detail in texts:
        if event_id == 5:
            prev = "d" * 64
        sha = event_digest(event_id, pk, at, kind, detail, prev)
        db.execute(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)",
            (event_id, pk, at, kind, detail, sha, prev),
        )
        prev = sha
    db.execute("INSERT INTO events (id, job_pk, at, kind, detail) VALUES (6, 1, 'now', 'x', '')")
    db.execute("INSERT INTO meta VALUES ('events_head', ?)", (f"5 {prev}",))
    before_rows = db.execute("SELECT * FROM events ORDER BY id").fetchall()
    db.close()
    before = [f.line() for f in _verify(path).failures]
    registry = Registry(path)
    (job,) = registry.find("J1")
    assert job.service == "ghost" and job.idempotency_key == "not-hex"
    assert job.batch == BlobRef(digest_caps, 3, "x/y")  # kept as it was
    assert job.created_at == datetime(2024, 1, 1, tzinfo=UTC)  # naive: taken as UTC
    assert job.started_at == datetime(2024, 1, 1, 1, tzinfo=UTC)
    assert job.provenance == "c" * 64 and registry.provenance("c" * 64) is None
    assert [r.pk for r in registry.query(tags=["t"], statuses=[JobStatus.RUNNING])] == [1]
    assert registry.services() == []  # named by a job only: no URL, no kind
    registry.close()
    with sqlite3.connect(path) as db:
        after_rows = db.execute("SELECT * FROM events_view ORDER BY id").fetchall()
    # every event's text comes back character for character (a missing prev_sha256
    # as ""), so the same findings: the dangling provenance record, the gap before
    # #5, the row without a hash
    assert [(r[0], r[1], r[3], r[4], r[5], r[6], r[7]) for r in after_rows] == [
        (*row[:6], None if row[0] in (1, 2, 3) else row[6] or "") for row in before_rows
    ]
    assert [f.line() for f in _verify(path).failures] == before
    assert len(before) == 3


def test_views_give_the_text_form_jobledger_reads(
    current: tuple[Path, dict[str, Any]],
) -> None:
    path, expected = current
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        jobs = {r["pk"]: dict(r) for r in db.execute("SELECT * FROM jobs_view")}
        events = [tuple(r) for r in db.execute("SELECT * FROM events_view ORDER BY id")]
    assert jobs == expected["rows"]
    assert [(e[0], e[1], *e[3:7]) for e in events] == [c[:6] for c in expected["chain"]]
    moon = next(r for r in expected["rows"].values() if r["job_id"] == "ibm-job-1")
    assert moon["created_at"] == "1969-07-20T20:17:40+00:00"


def test_foreign_keys_are_declared_whole_and_not_enforced(
    current: tuple[Path, dict[str, Any]],
) -> None:
    path, _ = current
    registry = Registry(path)
    registry.count()
    with sqlite3.connect(path) as db:
        links = {
            table: {(r[2], r[3]) for r in db.execute(f"PRAGMA foreign_key_list({table})")}
            for table in ("jobs", "events", "job_tags")
        }
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    assert links["jobs"] >= {("services", "service"), ("provenance", "provenance")}
    assert ("statuses", "status") in links["jobs"] and ("strings", "backend") in links["jobs"]
    assert ("jobs", "job_pk") in links["events"] and ("jobs", "job_pk") in links["job_tags"]
    # an event of a job the file does not hold is still recorded, not refused
    registry.add_event(999, "cancel", "refused")
    assert registry.events(999)[0][1:] == ("cancel", "refused")
    registry.close()


def test_readonly_open_reads_a_schema_4_file_as_it_is(
    current: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    source, expected = current
    old = tmp_path / "old" / "registry.db"
    old.parent.mkdir()
    downgrade(source, old, 4)
    before = old.read_bytes()
    registry = Registry(old, readonly=True)
    assert snapshot(registry) == expected
    assert registry.version == 4
    records = {r.job_id: r for r in expected["records"]}
    queries: list[tuple[dict[str, Any], list[str | None]]] = [
        (
            {"backend": "sleep"},
            ["J000000000000000006", "J000000000000000003", "J000000000000000000"],
        ),
        (
            {"tags": ["all"], "backend": "sleep", "descending": False},
            [f"J{n:018d}" for n in (0, 3, 6)],
        ),
        ({"statuses": [JobStatus.ERROR], "tags": ["exp-2"]}, ["J000000000000000005"]),
        ({"session_id": "s-1", "limit": 1, "skip": 1}, ["J000000000000000001"]),
        (
            {"service": "svc-ibm", "created_before": datetime(1970, 1, 1, tzinfo=UTC)},
            ["ibm-job-1", "ibm-job-2"],
        ),
    ]
    for filters, ids in queries:
        found = [r.job_id for r in registry.query(**filters)]
        assert found == ids, filters
        assert all(records[i] == r for i, r in zip(found, registry.query(**filters), strict=True))
    registry.close()
    assert old.read_bytes() == before


def test_bundles_exported_from_a_schema_4_file_import_into_schema_5(
    current: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    pytest.importorskip("rocrate")
    source, expected = current
    old = tmp_path / "old" / "registry.db"
    old.parent.mkdir()
    downgrade(source, old, 4)
    home = old.parent
    bundle = tmp_path / "bundle"
    audit.export(bundle, paths=Paths(data=home, cache=home, config=home, runtime=home))
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    report = audit.import_bundle(
        bundle, paths=Paths(data=fresh, cache=fresh, config=fresh, runtime=fresh)
    )
    assert len(report.imported) == len([r for r in expected["records"] if r.job_id])
    registry = Registry(fresh / "registry.db")
    for record in expected["records"]:
        if record.job_id is None:
            continue
        (imported,) = registry.find(record.job_id)
        assert replace(imported, pk=record.pk) == record
        kinds = [kind for _, kind, _ in registry.events(imported.pk)]
        assert kinds == [k for _, k, _ in expected["events"][record.pk]] + ["imported"]
    registry.close()
    assert _verify(fresh / "registry.db").ok
