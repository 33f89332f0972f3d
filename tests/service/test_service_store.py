"""The service's job store on a real SQLite file: queue positions computed in one scan."""

from __future__ import annotations

from pathlib import Path

from jobledger.ids import new_job_id
from jobledger.service.db import Database
from jobledger.service.store import JobFilter, JobStore, now_iso
from jobledger.status import JobStatus


def test_queue_positions_of_many_jobs_match_their_place_in_the_queue(tmp_path: Path) -> None:
    db = Database(tmp_path)
    store = JobStore(db)
    ids = []
    with db.write() as conn:
        for i in range(300):
            job_id = new_job_id()
            ids.append(job_id)
            conn.execute(
                "INSERT INTO jobs (id, owner, backend, backend_version, status, created_at) "
                "VALUES (?, ?, 'echo', '1', 'QUEUED', ?)",
                (job_id, "alice" if i % 3 else "bob", now_iso()),
            )
    # Jobs leave the queue here and there: positions close up behind them.
    for job_id in ids[::7]:
        assert store.finish(job_id, JobStatus.CANCELLED, "x", only_from=(JobStatus.QUEUED,))
    still_queued = [j for j in ids if j not in set(ids[::7])]
    expected = {job_id: place + 1 for place, job_id in enumerate(still_queued)}
    alice = store.list_jobs("alice", JobFilter(), limit=1000, after_seq=None, descending=True)
    assert alice and all(j.queue_position == expected.get(j.id) for j in alice)
    many = store.many("bob", ids)
    assert many and all(j.queue_position == expected.get(j.id) for j in many.values())
    single = store.get(still_queued[-1])
    assert single is not None and single.queue_position == len(still_queued)
    db.close()
