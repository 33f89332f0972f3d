"""``Connection.sync`` keeps up with the service by its changes, through the real service.

A sync asks only for the jobs changed since the last one (``SyncReport.listed`` counts
what the service sent), a page at a time; the token it keeps per service moves only
once a page is recorded, so a sync killed midway resumes without skipping a change.
A service from before change listings (a stand-in forwarding to the real service that
refuses ``updated_after`` as those did) is listed in full instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import jobledger
import jobledger.client.sync as sync_module
from jobledger import JobStatus
from standins.old_protocol import OldProtocolService

pytestmark = pytest.mark.usefixtures("jobledger_home")


def finished_jobs(service: Any, token: str, count: int) -> list[str]:
    """*count* echo jobs submitted from another machine (its own home), all DONE."""
    code = f"""
        import jobledger
        with jobledger.connect(url={service.url!r}, token={token!r}) as conn:
            jobs = [conn.submit({{"i": i}}, "echo") for i in range({count})]
            for job in jobs:
                job.wait_for_final_state(60)
            print(" ".join(job.job_id for job in jobs))
        """
    done = run_python(code, home=service.data.parent / f"elsewhere-{token[:6]}")
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def run_python(code: str, *, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBLEDGER_")}
    env["JOBLEDGER_HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def statuses(conn: Any) -> dict[str, JobStatus]:
    return {r.job_id: r.status for r in conn.registry.query(limit=None) if r.job_id}


def test_a_sync_after_changes_lists_only_the_changed_jobs(
    service: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sync_module, "PAGE_SIZE", 2)  # the listing crosses pages
    token = service.create_token("sync-changes")
    made = finished_jobs(service, token, 5)
    with jobledger.connect(url=service.url, token=token) as conn:
        first = conn.sync()
        assert (first.new, first.listed) == (5, 5)
        assert set(statuses(conn)) == set(made)
        assert conn.sync().listed == 0  # nothing changed since
        deleted = conn.job(made[2])
        assert deleted.delete_files()
        more = finished_jobs(service, token, 3)
        report = conn.sync()
        # the deleted one and three new ones, not the eight the service has
        assert (report.listed, report.new, report.updated) == (4, 3, 1)
        now = statuses(conn)
        assert now[made[2]] is JobStatus.DELETED
        assert set(now) == set(made) | set(more)
        assert conn.registry.count() == 8


def test_a_new_registry_or_another_user_lists_from_the_start(service: Any) -> None:
    first_user = service.create_token("sync-first")
    second_user = service.create_token("sync-second")
    mine = finished_jobs(service, first_user, 2)
    theirs = finished_jobs(service, second_user, 1)
    with jobledger.connect(url=service.url, token=first_user) as conn:
        assert conn.sync().listed == 2
    # The same registry, the same service, another user: the first user's token would
    # hide this user's jobs, so the service refuses it and the listing starts over.
    with jobledger.connect(url=service.url, token=second_user) as conn:
        report = conn.sync()
        assert (report.new, report.listed) == (1, 1)
        assert set(statuses(conn)) == set(mine) | set(theirs)


def test_a_service_without_change_listings_is_listed_in_full(service: Any) -> None:
    token = service.create_token("sync-old-service")
    made = finished_jobs(service, token, 3)
    old = OldProtocolService(service.url)
    try:
        with jobledger.connect(url=old.url, token=token) as conn:
            first = conn.sync(fetch_results=True)
            assert (first.new, first.listed, first.fetched) == (3, 3, 3)
            assert first.errors == ()
            second = conn.sync()
            assert (second.new, second.listed) == (0, 3)  # every job, every time
            # asked once: the connection remembers that this service refused it
            assert old.refused == 1
            assert old.listings == 3
            assert conn.registry.sync_cursor(conn.service_id) is None
            assert conn.job(made[0]).result() == {"i": 0}
    finally:
        old.close()


@pytest.mark.parametrize("dies_in", ["apply_infos", "set_sync_cursor"])
def test_a_sync_killed_between_pages_resumes_without_skipping_a_change(
    service: Any, jobledger_home: Path, dies_in: str
) -> None:
    token = service.create_token(f"sync-crash-{dies_in}")
    made = finished_jobs(service, token, 7)
    # Pages of two; the second call dies: before page 2 is recorded (apply_infos),
    # or after it is recorded but before its token is kept (set_sync_cursor).
    died = run_python(
        f"""
        import os, jobledger
        import jobledger.client.sync as sync
        from jobledger.registry import Registry
        sync.PAGE_SIZE = 2
        calls = []
        original = Registry.{dies_in}
        def dying(self, *args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                os._exit(3)
            return original(self, *args, **kwargs)
        Registry.{dies_in} = dying
        jobledger.connect(url={service.url!r}, token={token!r}).sync()
        """,
        home=jobledger_home,
    )
    assert died.returncode == 3, died.stderr
    with jobledger.connect(url=service.url, token=token) as conn:
        recorded_before = conn.registry.count()
        assert recorded_before == (2 if dies_in == "apply_infos" else 4)
        report = conn.sync()
        # resumed after the first page (the one whose token was kept), not from scratch
        assert report.listed == 5
        assert report.new == 7 - recorded_before
        assert statuses(conn) == dict.fromkeys(made, JobStatus.DONE)
        assert conn.registry.count() == 7  # nothing recorded twice


@pytest.fixture
def few_pages(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(sync_module, "PAGE_SIZE", 2)
    yield


@pytest.mark.usefixtures("few_pages")
def test_fetch_results_downloads_only_what_the_store_lacks(service: Any) -> None:
    token = service.create_token("sync-fetch")
    made = finished_jobs(service, token, 5)
    with jobledger.connect(url=service.url, token=token) as conn:
        conn.sync()
        for job_id in made[:2]:
            assert conn.job(job_id).result() == {"i": made.index(job_id)}
        report = conn.sync(fetch_results=True)
        assert report.fetched == 3 and report.errors == ()
        assert conn.sync(fetch_results=True).fetched == 0
    with jobledger.connect(offline=True) as offline:
        assert [offline.job(j).result() for j in made] == [{"i": i} for i in range(5)]
