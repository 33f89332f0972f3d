"""A 256 MiB result is produced and streamed without the server holding it in memory."""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import psutil
import pytest
import requests

from conftest import Http

SIZE = 256 * 1024 * 1024


@pytest.mark.slow
def test_large_blob_result_streams_with_bounded_server_memory(service_factory: Any) -> None:
    running = service_factory(workers=1)
    http = Http(running)
    try:
        server = psutil.Process(running.pid)
        baseline = server.memory_info().rss
        job = http.submit("blob", None, params={"size": SIZE, "seed": 7})
        info = http.wait(job["id"], timeout=120)
        assert info["status"] == "DONE" and info["result"]["size"] == SIZE
        peak = [baseline]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.02):
                peak[0] = max(peak[0], server.memory_info().rss)

        sampler = threading.Thread(target=sample)
        sampler.start()
        digest = hashlib.sha256()
        total = 0
        try:
            with requests.get(
                f"{running.url}/v1/jobs/{job['id']}/result",
                headers=running.headers(),
                stream=True,
                timeout=60,
            ) as answer:
                assert answer.status_code == 200
                assert int(answer.headers["Content-Length"]) == SIZE
                assert answer.headers["Content-Type"] == "application/octet-stream"
                for chunk in answer.iter_content(1 << 20):
                    digest.update(chunk)
                    total += len(chunk)
        finally:
            stop.set()
            sampler.join()
        assert total == SIZE
        assert digest.hexdigest() == info["result"]["sha256"] == answer.headers["X-Content-SHA256"]
        growth = peak[0] - baseline
        print(f"server RSS growth while serving 256 MiB: {growth / 2**20:.1f} MiB")
        assert growth < 64 * 2**20
        for worker in server.children():
            assert worker.memory_info().rss < 128 * 2**20
    finally:
        http.close()
