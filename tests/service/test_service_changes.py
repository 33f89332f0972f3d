"""Listing the jobs changed after a token (``GET /v1/jobs?updated_after=``) on the real service.

Every change a client can see (a new job, its status, dates, result, its files deleted)
moves the job to the end of its owner's change list; a token names a place in that list
for one user of one service. A data folder made before change numbers existed is
migrated with every row kept.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from conftest import Http
from jobledger.ids import new_job_id
from jobledger.service.db import SCHEMA_VERSION, Database
from jobledger.service.store import JobFilter, JobStore, now_iso
from jobledger.status import JobStatus


def changes(
    http: Http, token: str, after: str, *, limit: int = 100, cursor: str | None = None
) -> dict[str, Any]:
    params: dict[str, Any] = {"updated_after": after, "limit": limit}
    if cursor is not None:
        params["cursor"] = cursor
    answer = http.get("/v1/jobs", token=token, params=params)
    assert answer.status_code == 200, answer.text
    page: dict[str, Any] = answer.json()
    return page


def ids(page: dict[str, Any]) -> list[str]:
    return [job["id"] for job in page["jobs"]]


def test_only_jobs_changed_after_the_token_are_listed(service: Any, http: Http) -> None:
    token = service.create_token("changes-only")
    jobs = [http.submit("echo", {"i": i}, token=token)["id"] for i in range(4)]
    for job_id in jobs:
        http.wait(job_id, token=token)
    everything = changes(http, token, "")
    assert sorted(ids(everything)) == sorted(jobs)
    assert everything["next_cursor"] is None
    mark = everything["updated_through"]
    assert changes(http, token, mark) == {"jobs": [], "next_cursor": None, "updated_through": mark}

    answer = http.delete(f"/v1/jobs/{jobs[1]}/files", token=token)
    assert answer.json()["deleted"] is True
    fresh = http.submit("echo", {"i": 9}, token=token)["id"]
    http.wait(fresh, token=token)
    after = changes(http, token, mark)
    assert ids(after) == [jobs[1], fresh]  # oldest change first
    assert [job["status"] for job in after["jobs"]] == ["DELETED", "DONE"]
    assert changes(http, token, after["updated_through"])["jobs"] == []
    # order does not apply: the token of a page covers every change before it
    descending = http.get(
        "/v1/jobs", token=token, params={"updated_after": mark, "order": "desc"}
    ).json()
    assert ids(descending) == ids(after)


def test_pages_of_changes_miss_no_job_changed_while_paging(service: Any, http: Http) -> None:
    token = service.create_token("changes-paging")
    jobs = [http.submit("echo", {"i": i}, token=token)["id"] for i in range(5)]
    for job_id in jobs:
        http.wait(job_id, token=token)
    first = changes(http, token, "", limit=2)
    assert len(first["jobs"]) == 2 and first["next_cursor"]
    # A job already listed changes while the client pages: it comes again, later.
    changed = first["jobs"][0]["id"]
    assert http.delete(f"/v1/jobs/{changed}/files", token=token).json()["deleted"] is True
    seen = ids(first)
    page = first
    while page["next_cursor"]:
        page = changes(http, token, "", limit=2, cursor=page["next_cursor"])
        seen += ids(page)
    assert set(seen) == set(jobs)
    assert seen[-1] == changed and seen.count(changed) == 2
    # The last page's token covers everything: nothing is left after it.
    assert changes(http, token, page["updated_through"])["jobs"] == []


def test_a_token_of_another_user_or_from_the_future_is_refused_as_stale(
    service: Any, http: Http
) -> None:
    alice = service.create_token("changes-alice")
    bob = service.create_token("changes-bob")
    http.wait(http.submit("echo", [1], token=alice)["id"], token=alice)
    mark = changes(http, alice, "")["updated_through"]
    number, tag = mark.split(".")
    for token, after in ((bob, mark), (alice, f"{int(number) + 10**6}.{tag}")):
        answer = http.get("/v1/jobs", token=token, params={"updated_after": after})
        assert answer.status_code == 409, answer.text
        assert answer.json()["error"]["code"] == "stale_cursor"
    malformed = http.get("/v1/jobs", token=alice, params={"updated_after": "yesterday"})
    assert malformed.status_code == 422
    assert "updated_after" in malformed.json()["error"]["message"]


def test_change_numbers_survive_a_restart(service: Any, http: Http) -> None:
    token = service.create_token("changes-restart")
    first = http.submit("echo", [1], token=token)["id"]
    http.wait(first, token=token)
    mark = changes(http, token, "")["updated_through"]
    service.restart()
    second = http.submit("echo", [2], token=token)["id"]
    http.wait(second, token=token)
    assert ids(changes(http, token, mark)) == [second]


_SCHEMA_1_JOBS = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, owner TEXT NOT NULL,
    backend TEXT NOT NULL, backend_version TEXT NOT NULL, status TEXT NOT NULL,
    created_at TEXT NOT NULL, started_at TEXT, ended_at TEXT, message TEXT,
    tags TEXT NOT NULL DEFAULT '[]', session_id TEXT, params TEXT NOT NULL DEFAULT '{}',
    batch_sha256 TEXT, batch_size INTEGER, batch_media_type TEXT, result_sha256 TEXT,
    result_size INTEGER, result_media_type TEXT, usage_seconds REAL,
    metrics TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX jobs_owner_seq ON jobs (owner, seq);
CREATE INDEX jobs_status_seq ON jobs (status, seq);
INSERT INTO meta VALUES ('schema_version', '1'), ('service_id', 'Sold0123456789abcdef0123');
"""


def test_a_data_folder_of_schema_1_is_migrated_with_every_job_kept(tmp_path: Path) -> None:
    old = sqlite3.connect(tmp_path / "service.db")
    old.executescript(_SCHEMA_1_JOBS)
    made = [new_job_id() for _ in range(3)]
    for job_id in made:
        old.execute(
            "INSERT INTO jobs (id, owner, backend, backend_version, status, created_at) "
            "VALUES (?, 'alice', 'echo', '1', 'QUEUED', ?)",
            (job_id, now_iso()),
        )
    old.commit()
    old.close()

    db = Database(tmp_path)
    store = JobStore(db)
    assert db.conn().execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[
        0
    ] == str(SCHEMA_VERSION)
    assert db.service_id() == "Sold0123456789abcdef0123"
    listed = store.list_jobs(
        "alice", JobFilter(), limit=10, after_seq=None, descending=False, changed_after=0
    )
    assert [j.id for j in listed] == made  # numbered in the order they were made
    assert db.change_seq() == listed[-1].changed
    assert store.finish(made[0], JobStatus.CANCELLED, "x", only_from=(JobStatus.QUEUED,))
    after = store.list_jobs(
        "alice",
        JobFilter(),
        limit=10,
        after_seq=None,
        descending=False,
        changed_after=listed[-1].changed,
    )
    assert [j.id for j in after] == [made[0]]
    db.close()
    # Opening it again changes nothing more.
    again = Database(tmp_path)
    assert again.change_seq() == after[0].changed
    again.close()


def test_a_metric_is_not_a_change_but_a_status_is(tmp_path: Path) -> None:
    db = Database(tmp_path)
    store = JobStore(db)
    job_id = new_job_id()
    with db.write() as conn:
        conn.execute(
            "INSERT INTO jobs (id, owner, backend, backend_version, status, created_at) "
            "VALUES (?, 'alice', 'echo', '1', 'QUEUED', ?)",
            (job_id, now_iso()),
        )
    made = db.change_seq()
    store.add_event(job_id, "metric", {"name": "progress", "value": 0.5})
    store.add_event(job_id, "log", {"line": "hello", "at": now_iso()})
    assert db.change_seq() == made
    assert store.claim_next() is not None
    assert db.change_seq() == made + 1
    record = store.get(job_id)
    assert record is not None and record.changed == made + 1
    db.close()
