"""Pending submissions are never lost: wrong tokens, refusals, missing and damaged batches.

Each test records submissions whose answer never arrived (the service was stopped
after the connection was bound, or the client process died right after sending), then
drives the real service and a real registry through what used to delete them.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import requests

import jobledger
from conftest import jobledger_cli
from jobledger.errors import JobFailureError, OfflineError, ServiceError
from jobledger.paths import get_paths


def service_jobs(service: Any, token: str) -> list[dict[str, Any]]:
    answer = requests.get(
        service.url + "/v1/jobs", headers=service.headers(token), params={"limit": 1000}
    )
    answer.raise_for_status()
    jobs: list[dict[str, Any]] = answer.json()["jobs"]
    return jobs


def record_pending(service: Any, token: str, count: int) -> None:
    """Record *count* submissions the service never received (it is stopped after
    the connection is bound); each with an alias, so losing one would show."""
    with jobledger.connect(url=service.url, token=token) as conn:
        conn.submit({"first": True}, "echo", alias="bound")
        service.stop()
        for n in range(count):
            with pytest.raises(OfflineError, match="pending"):
                conn.submit({"n": n}, "echo", alias=f"run_{n}", tags=["safety"])
    service.start()


def pending_rows(conn: Any) -> list[Any]:
    return conn.registry.query(limit=None, pending_submission=True)


def test_wrong_token_never_deletes_pending_rows(
    service_factory: Any, jobledger_home: Path
) -> None:
    service = service_factory()
    record_pending(service, service.token, 10)
    env_home = jobledger_home
    done = subprocess.run(
        [sys.executable, "-m", "jobledger", "sync"],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "JOBLEDGER_HOME": str(env_home),
            "JOBLEDGER_URL": service.url,
            "JOBLEDGER_TOKEN": "wrong",
        },
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "wrong" not in done.stderr
    with jobledger.connect(url=service.url, token=service.token, offline=True) as conn:
        rows = pending_rows(conn)
        assert sorted(r.alias for r in rows) == [f"run_{n}" for n in range(10)]
        assert all(r.provenance for r in rows)
    with jobledger.connect(url=service.url, token=service.token) as conn:
        report = conn.sync()
        assert report.resolved == 10 and report.refused == 0
        assert pending_rows(conn) == []
        assert conn.job("run_3").result(timeout=30) == {"n": 3}
    assert len(service_jobs(service, service.token)) == 11


def test_a_refused_submission_is_kept_with_its_reason_and_frees_its_alias(
    service: Any, jobledger_home: Path
) -> None:
    token = service.create_token("refused")
    with jobledger.connect(url=service.url, token=token) as conn:
        with pytest.raises(ServiceError) as info:
            conn.submit({"n": 1}, "no-such-backend", alias="calibration", tags=["t"])
        assert info.value.status_code == 422
        (row,) = conn.registry.query(limit=None)
        assert row.submit_state == "refused" and row.status.value == "ERROR"
        assert "no-such-backend" in (row.message or "")
        events = [kind for _, kind, _ in conn.registry.events(row.pk)]
        assert events[-1] == "refused"
        assert "calibration" in conn.registry.events(row.pk)[-1][2]
        refused = conn.jobs(status="ERROR")[0]
        with pytest.raises(JobFailureError, match="refused by the service"):
            refused.result()
        # The alias is free again for the corrected submission.
        job = conn.submit({"n": 1}, "echo", alias="calibration")
        assert job.result(timeout=30) == {"n": 1}


def _corrupt_small_blob(store_dir: Path, digest: str) -> None:
    with sqlite3.connect(store_dir / "cache.db") as db:
        changed = db.execute(
            "UPDATE Cache SET value = ? WHERE key = ?", (b"damaged bytes", digest)
        ).rowcount
    db.close()
    assert changed == 1


def test_missing_or_damaged_pending_batches_do_not_block_and_are_resolved_by_key(
    service_factory: Any, jobledger_home: Path
) -> None:
    service = service_factory()
    token = service.token
    # Two submissions the service did receive, whose answers were lost: the client
    # process dies right after each request leaves.
    died = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import os, jobledger
                from jobledger.registry import Registry
                Registry.acknowledge = lambda *a, **k: os._exit(3)
                conn = jobledger.connect(url={service.url!r}, token={token!r})
                conn.submit({{"lost": "answer"}}, "echo", alias="received")
                """
            ),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "JOBLEDGER_HOME": str(jobledger_home)},
        check=False,
    )
    assert died.returncode == 3, died.stderr
    paths = get_paths()
    with jobledger.connect(url=service.url, token=token, offline=True) as conn:
        (received,) = pending_rows(conn)
        conn.store.close()
    assert received.alias == "received" and received.batch is not None
    _corrupt_small_blob(paths.store, received.batch.sha256)
    # Binding the next connection resolves it by its key (its batch cannot be sent);
    # then two submissions the service never receives are recorded.
    record_pending(service, token, 2)
    with jobledger.connect(url=service.url, token=token, offline=True) as conn:
        by_alias = {r.alias: r for r in pending_rows(conn)}
        assert set(by_alias) == {"run_0", "run_1"}
        conn.store.close()
    gone = by_alias["run_0"].batch
    assert gone is not None
    with sqlite3.connect(paths.store / "cache.db") as db:
        db.execute("DELETE FROM Cache WHERE key = ?", (gone.sha256,))
    db.close()
    with jobledger.connect(url=service.url, token=token) as conn:
        report = conn.sync()
        assert (report.resolved, report.refused) == (1, 1)
        assert pending_rows(conn) == []
        # Found by its key, no second copy, and its batch is fetched again.
        job = conn.job("received")
        assert job.get_batch() == {"lost": "answer"}
        assert job.result(timeout=30) == {"lost": "answer"}
        assert conn.job("run_1").result(timeout=30) == {"n": 1}
        lost = [r for r in conn.registry.query(limit=None) if r.submit_state == "refused"]
        assert len(lost) == 1 and "missing from the local store" in (lost[0].message or "")
        ids = sorted(r.job_id for r in conn.registry.query(limit=None) if r.job_id)
    on_service = sorted(j["id"] for j in service_jobs(service, token))
    assert ids == on_service and len(on_service) == 3  # bound, received, run_1


def test_a_damaged_batch_of_a_sent_job_is_fetched_again(
    service: Any, jobledger_home: Path
) -> None:
    token = service.create_token("damaged")
    with jobledger.connect(url=service.url, token=token) as conn:
        job = conn.submit({"payload": list(range(5))}, "echo")
        job.result(timeout=30)
        digest = job.provenance["batch_sha256"]
        conn.store.close()
        _corrupt_small_blob(get_paths().store, digest)
        assert job.get_batch() == {"payload": [0, 1, 2, 3, 4]}
    done = jobledger_cli("ls", "--json", home=jobledger_home)
    assert done.returncode == 0, done.stderr


def test_another_users_token_never_duplicates_a_pending_submission(
    service_factory: Any, jobledger_home: Path
) -> None:
    service = service_factory()
    # Sent with alice's token, answer lost: the client died right after sending.
    died = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import os, jobledger
                from jobledger.registry import Registry
                Registry.acknowledge = lambda *a, **k: os._exit(3)
                conn = jobledger.connect(url={service.url!r}, token={service.token!r})
                conn.submit({{"who": "alice"}}, "echo", alias="alices_run")
                """
            ),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "JOBLEDGER_HOME": str(jobledger_home)},
        check=False,
    )
    assert died.returncode == 3, died.stderr
    bob = service.create_token("bob")
    with jobledger.connect(url=service.url, token=bob) as conn:
        report = conn.sync()
        assert report.resolved == 0 and report.refused == 0
        assert any("another user" in e for e in report.errors), report.errors
        (row,) = pending_rows(conn)
        assert row.alias == "alices_run"
    assert service_jobs(service, bob) == []
    with jobledger.connect(url=service.url, token=service.token) as conn:
        assert conn.sync().resolved == 1
        assert conn.job("alices_run").result(timeout=30) == {"who": "alice"}
    assert len(service_jobs(service, service.token)) == 1
