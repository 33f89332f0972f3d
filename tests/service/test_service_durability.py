"""An acknowledged submission survives losing what was not forced to disk.

A small batch is committed with its job in the database (one ``fsync``), and its file is
written without one. What a power failure can do to such a file (leave it empty, short or
absent) is done here by hand to a real data folder: the service writes the file again
from the database before any job runs, and answers downloads from it meanwhile.
"""

from __future__ import annotations

import hashlib
import json
import signal
from typing import Any

from conftest import Http


def test_a_cut_batch_file_of_a_queued_job_is_restored_before_it_runs(
    service_factory: Any,
) -> None:
    running = service_factory(workers=1)
    http = Http(running)
    try:
        blocker = http.submit("sleep", params={"seconds": 60, "interval": 0.1})
        http.wait(blocker["id"], until=lambda info: info["status"] == "RUNNING")
        queued = [http.submit("echo", {"n": n, "pad": "x" * 5000 * n}) for n in range(3)]
        running.stop(signal.SIGKILL)
        cuts = [b"", b"{", None]  # emptied, cut short, gone
        for job, cut in zip(queued, cuts, strict=True):
            digest = job["batch"]["sha256"]
            path = running.data / "blobs" / digest[:2] / digest
            assert path.exists()
            if cut is None:
                path.unlink()
            else:
                path.write_bytes(cut)
        running.start()
        for n, job in enumerate(queued):
            # the download is whole at once, from the database if need be
            batch = http.get(f"/v1/jobs/{job['id']}/batch")
            assert batch.status_code == 200
            assert hashlib.sha256(batch.content).hexdigest() == job["batch"]["sha256"]
            done = http.wait(job["id"], timeout=60)
            assert done["status"] == "DONE", done
            result = http.get(f"/v1/jobs/{job['id']}/result")
            assert json.loads(result.content) == {"n": n, "pad": "x" * 5000 * n}
    finally:
        http.close()


def test_a_batch_download_falls_back_to_the_database(http: Http, service: Any) -> None:
    job = http.wait(http.submit("echo", {"small": True})["id"])
    digest = job["batch"]["sha256"]
    assert job["result"]["sha256"] == digest  # an echo: the same bytes
    (service.data / "blobs" / digest[:2] / digest).write_bytes(b"")
    for part in ("batch", "result"):
        answer = http.get(f"/v1/jobs/{job['id']}/{part}")
        assert answer.status_code == 200
        assert answer.headers["X-Content-SHA256"] == digest
        assert json.loads(answer.content) == {"small": True}
    # Other results have no copy in the database: gone is gone, and said so.
    slept = http.wait(http.submit("sleep", params={"seconds": 0})["id"])
    result = slept["result"]["sha256"]
    (service.data / "blobs" / result[:2] / result).unlink()
    assert http.get(f"/v1/jobs/{slept['id']}/result").status_code == 410
