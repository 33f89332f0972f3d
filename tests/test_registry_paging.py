"""Walking a real registry a page at a time: keyset pages, sorted digests, prune candidates.

These are what ``sync``, ``cache info``, ``cache verify`` and ``cache prune`` use so that
none of them holds the registry in memory; the sync token lives in ``meta``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from jobledger.providers import RemoteBlob, RemoteJob
from jobledger.registry import BlobRef, Registry
from jobledger.status import JobStatus

LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)


def digest(name: str) -> str:
    return (name.encode().hex() * 64)[:64]


def job(
    registry: Registry,
    n: int,
    *,
    service: str = "S",
    status: JobStatus = JobStatus.DONE,
    batch: str | None = None,
    result: str | None = None,
    ended: datetime = LONG_AGO,
) -> int:
    pk = registry.record_submission(
        service=service,
        backend="echo",
        batch=BlobRef(batch or digest(f"batch{n}"), 2, "application/json"),
        params={},
        tags=[],
        alias=None,
        session_id=None,
        provenance={},
        provenance_digest="p" * 64,
        idempotency_key=f"key-{n}",
    )
    blob = RemoteBlob(result, 2, "application/json") if result else None
    final = status.is_final
    info = RemoteJob(f"J{n:018d}", status, ended_at=ended if final else None, result=blob)
    registry.acknowledge(pk, info)
    return pk


def test_jobs_page_walks_every_matching_job_once(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "r.db")
    statuses = [JobStatus.DONE, JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.ERROR]
    made = [job(registry, n, status=statuses[n % 4], service="AB"[n % 2]) for n in range(11)]
    seen: list[int] = []
    after = 0
    while page := registry.jobs_page(
        after_pk=after, limit=2, statuses=[JobStatus.QUEUED, JobStatus.RUNNING]
    ):
        seen += [r.pk for r in page]
        after = page[-1].pk
    assert seen == [pk for n, pk in enumerate(made) if n % 4 in (1, 2)]
    only_a = registry.jobs_page(limit=100, service="A")
    assert [r.pk for r in only_a] == made[::2]
    done = registry.done_results_page("A", limit=100)
    assert [pk for pk, _ in done] == [pk for n, pk in enumerate(made) if n % 4 == 0]
    registry.close()


def test_referenced_digests_come_sorted_and_once(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "r.db")
    shared = digest("shared")
    job(registry, 1, batch=shared, result=digest("r1"))
    pk = job(registry, 2, batch=shared, result=shared)
    registry.set_extra(pk, "logs", digest("logs2"))
    expected = sorted({shared, digest("r1"), digest("logs2"), digest("batch3")})
    job(registry, 3, status=JobStatus.QUEUED)
    assert list(registry.referenced_digests_sorted()) == expected
    # A digest that is both a batch or result and a cached extra still comes once.
    registry.set_extra(pk, "metrics", shared)
    assert list(registry.referenced_digests_sorted()) == expected
    owners = registry.digest_owners([shared, digest("logs2"), "f" * 64])
    assert sorted(owners[shared]) == [
        ("J000000000000000001", "batch", JobStatus.DONE),
        ("J000000000000000002", "batch", JobStatus.DONE),
        ("J000000000000000002", "metrics", JobStatus.DONE),
        ("J000000000000000002", "result", JobStatus.DONE),
    ]
    assert owners[digest("logs2")] == [("J000000000000000002", "logs", JobStatus.DONE)]
    assert "f" * 64 not in owners
    registry.close()


def test_prunable_results_are_old_done_results_shared_with_nothing_else(
    tmp_path: Path,
) -> None:
    registry = Registry(tmp_path / "r.db")
    job(registry, 1, result=digest("alone"))
    job(registry, 2, result=digest("twice"))
    job(registry, 3, result=digest("twice"))
    job(registry, 4, result=digest("also-a-batch"))
    job(registry, 5, batch=digest("also-a-batch"), status=JobStatus.QUEUED)
    job(registry, 6, result=digest("recent"), ended=datetime.now(UTC))
    job(registry, 7, result=digest("other-service"), service="T")
    job(registry, 8, result=digest("mixed"))
    job(registry, 9, result=digest("mixed"), service="T")
    pk = job(registry, 10, result=digest("kept-extra"))
    registry.set_extra(pk, "logs", digest("kept-extra"))
    found = list(registry.prunable_results("S", datetime.now(UTC) - timedelta(days=1)))
    assert {d: set(ids) for d, ids in found} == {
        digest("alone"): {"J000000000000000001"},
        digest("twice"): {"J000000000000000002", "J000000000000000003"},
    }
    assert [d for d, _ in found] == sorted(d for d, _ in found)
    registry.close()


def test_the_sync_token_is_kept_per_service(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "r.db")
    assert registry.sync_cursor("S") is None
    registry.set_sync_cursor("S", "12.abcdef01")
    registry.set_sync_cursor("T", "3.01234567")
    registry.set_sync_cursor("S", "15.abcdef01")
    registry.close()
    again = Registry(tmp_path / "r.db", readonly=True)
    assert (again.sync_cursor("S"), again.sync_cursor("T")) == ("15.abcdef01", "3.01234567")
    again.close()


def test_referenced_among_sees_batches_results_and_extras(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "r.db")
    pk = job(registry, 1, batch=digest("b"), result=digest("r"))
    registry.set_extra(pk, "logs", digest("l"))
    asked = [digest("b"), digest("r"), digest("l"), digest("nobody")]
    assert registry.referenced_among(asked) == {digest("b"), digest("r"), digest("l")}
    assert registry.referenced_among([]) == set()
    registry.close()
