"""The client end to end against the real service on loopback: both dialects, the
store, waiting, errors, idempotent submission, concurrency and sync."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

import jobledger
from jobledger import (
    AuthenticationError,
    CacheCorruptionError,
    JobCancelledError,
    JobFailureError,
    JobNotFoundError,
    JobStatus,
    JobTimeoutError,
    OfflineError,
    ResultNotReadyError,
)
from jobledger.client.connection import Connection

pytestmark = pytest.mark.usefixtures("jobledger_home")


@pytest.fixture
def conn(service: Any) -> Iterator[Connection]:
    token = service.create_token(f"user{time.monotonic_ns()}")
    with jobledger.connect(url=service.url, token=token) as connection:
        yield connection


def service_jobs(service: Any, token: str) -> list[dict[str, Any]]:
    response = requests.get(
        service.url + "/v1/jobs",
        params={"limit": 1000},
        headers=service.headers(token),
        timeout=10,
    )
    response.raise_for_status()
    jobs: list[dict[str, Any]] = response.json()["jobs"]
    return jobs


def test_both_dialects_on_one_handle(conn: Connection) -> None:
    job = conn.submit({"x": [1, 2, 3]}, "echo", tags=["t1"], alias="first", session_id="s1")
    assert isinstance(job.job_id, str) and job.job_id() == job.job_id
    assert job.job_id.isidentifier()
    assert job.result(timeout=30) == {"x": [1, 2, 3]}
    assert job.join() == {"x": [1, 2, 3]} and job.get_result() == {"x": [1, 2, 3]}
    assert job.status() is JobStatus.DONE and job.status() == "DONE"
    assert job.get_status() == "done" and job.get_status(human_readable=False) == 3
    assert job.done() and job.in_final_state() and not job.running()
    assert not job.errored() and not job.cancelled() and job.error_message() is None
    assert job.queue() is None
    assert job.get_batch() == {"x": [1, 2, 3]}
    assert job.inputs == {"batch": {"x": [1, 2, 3]}, "params": {}}
    for date in (job.submission_date, job.creation_date, job.starting_date, job.ending_date):
        assert isinstance(date, datetime) and date.tzinfo is not None
        assert date.utcoffset() == UTC.utcoffset(None)
    assert job.backend() == "echo" and job.program_id == "echo"
    assert job.tags == ["t1"] and job.session_id == "s1" and job.alias == "first"
    info = job.get_info()
    assert info.job_id == job.job_id and info.status is JobStatus.DONE and info.backend == "echo"
    assert info.tags == ("t1",) and info.session_id == "s1"
    assert isinstance(job.logs(), str)
    assert isinstance(job.metrics(), dict) and "usage" in job.metrics()
    assert isinstance(job.usage(), dict) and isinstance(job.interim_results(), list)
    job.update_tags(["t2", "t3"])
    assert job.tags == ["t2", "t3"]
    assert [j.job_id for j in conn.jobs(tags=["t2"])] == [job.job_id]


def test_result_is_a_fresh_object_each_time(conn: Connection) -> None:
    job = conn.submit({"values": [1, 2]}, "echo")
    first = job.result(timeout=30)
    first["values"].append(99)
    assert job.result() == {"values": [1, 2]}


def test_bytes_and_numpy_payloads_round_trip(conn: Connection) -> None:
    np = pytest.importorskip("numpy")
    assert conn.submit(b"\x00\x01raw", "echo").result(timeout=30) == b"\x00\x01raw"
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = conn.submit(array, "echo").result(timeout=30)
    assert out.dtype == np.float32 and (out == array).all()


def test_unsupported_batch_is_refused_before_anything_is_recorded(conn: Connection) -> None:
    with pytest.raises(TypeError, match="object"):
        conn.submit(object(), "echo")
    with pytest.raises(TypeError, match="set"):
        conn.submit({1, 2}, "echo")
    assert conn.registry.count() == 0


def test_bad_alias_and_duplicate_alias(conn: Connection) -> None:
    with pytest.raises(ValueError, match="identifier"):
        conn.submit(1, "echo", alias="not valid")
    with pytest.raises(ValueError, match="defines that name"):
        conn.submit(1, "echo", alias="get")
    job = conn.submit(1, "echo", alias="mine")
    with pytest.raises(ValueError, match="already used"):
        conn.submit(2, "echo", alias="mine")
    job.alias = "renamed"
    assert conn.job("renamed").job_id == job.job_id


def test_unknown_backend_is_reported_and_kept_as_refused(conn: Connection) -> None:
    with pytest.raises(jobledger.ServiceError) as info:
        conn.submit(1, "nope")
    assert info.value.status_code == 422 and "echo" in str(info.value)
    (row,) = conn.registry.query(limit=None)
    assert row.submit_state == "refused" and "echo" in (row.message or "")


def test_waiting_not_ready_timeout_and_cancel(conn: Connection) -> None:
    job = conn.submit(None, "sleep", params={"seconds": 20, "interval": 0.2})
    with pytest.raises(ResultNotReadyError):
        job.get_result()
    with pytest.raises(JobTimeoutError) as info:
        job.result(timeout=0.5)
    assert isinstance(info.value, TimeoutError)
    assert job.cancel() is True
    job.wait_for_final_state(timeout=10)
    assert job.cancelled() and job.get_status() == "cancelled"
    with pytest.raises(JobCancelledError):
        job.result()
    assert job.cancel() is False


def test_queue_info_of_a_queued_job(conn: Connection, service: Any) -> None:
    blockers = [conn.submit(None, "sleep", params={"seconds": 60}) for _ in range(service.workers)]
    try:
        deadline = time.monotonic() + 30
        while any(b.status() is not JobStatus.RUNNING for b in blockers):
            assert time.monotonic() < deadline, "the blockers never started"
            time.sleep(0.05)
        queued = conn.submit(1, "echo")
        info = queued.queue_info()
        assert info is not None and info.job_id == queued.job_id and info.position >= 1
    finally:
        for blocker in blockers:
            blocker.cancel()
    queued.wait_for_final_state(timeout=30)
    assert queued.queue_info() is None


def test_failed_job_carries_the_service_message(conn: Connection) -> None:
    job = conn.submit([1], "fail", params={"message": "boom at step 3"})
    with pytest.raises(JobFailureError, match="boom at step 3"):
        job.result(timeout=30)
    assert job.errored() and "boom at step 3" in (job.error_message() or "")
    assert job.get_status(human_readable=False) == 9


def test_stream_results_and_interim_results(conn: Connection) -> None:
    job = conn.submit(None, "sleep", params={"seconds": 1.2, "interval": 0.2})
    seen: list[tuple[str, Any, str]] = []
    job.stream_results(
        lambda jid, value: seen.append((jid, value, threading.current_thread().name))
    )
    assert job.result(timeout=30) == {"slept": 1.2}
    deadline = time.monotonic() + 5
    while len(seen) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    job.cancel_result_streaming()
    assert len(seen) >= 3 and all(jid == job.job_id for jid, _, _ in seen)
    assert all(name != threading.main_thread().name for _, _, name in seen)
    assert seen[0][1] == {"elapsed": pytest.approx(0.2, abs=0.1)}
    assert (len(job.interim_results()) >= 3 and "slept" in job.logs().lower()) or job.logs()


def test_delete_files_keeps_the_local_copy(conn: Connection, service: Any) -> None:
    job = conn.submit({"keep": True}, "echo")
    job.wait_for_final_state(timeout=30)
    assert job.delete_files() is True
    assert job.status() is JobStatus.DELETED and job.get_status(human_readable=False) == 7
    assert job.result() == {"keep": True}


def test_many_waiters_share_one_poller(conn: Connection) -> None:
    jobs = [conn.submit(None, "sleep", params={"seconds": 1, "interval": 1}) for _ in range(12)]
    threads = [threading.Thread(target=j.wait_for_final_state, args=(60,)) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(j.done() for j in jobs)
    # One batch call per round: a handful of rounds, never one request per job per round.
    assert 0 < conn.poller.requests < 40


def finished_on_the_service(service: Any, http: Any, count: int) -> tuple[Connection, list[Any]]:
    """A connection with *count* echo jobs that finished on the service while its
    registry still records them as not final (nobody has waited for them yet)."""
    token = service.create_token(f"user{time.monotonic_ns()}")
    conn = jobledger.connect(url=service.url, token=token)
    jobs = [conn.submit({"n": n}, "echo") for n in range(count)]
    for job in jobs:
        assert http.wait(str(job.job_id), token=token)["status"] == "DONE"
        assert not job._reload().status.is_final
    return conn, jobs


def test_a_newly_waited_job_wakes_the_sleeping_poller(service: Any, http: Any) -> None:
    from jobledger.client.poller import Poller

    conn, jobs = finished_on_the_service(service, http, 3)
    with conn:
        # Pauses between rounds far longer than each wait may last: every wait must be
        # answered by a round the new waiter starts, not by the next scheduled one.
        poller = Poller(conn, first_interval=120.0, max_interval=120.0)
        try:
            for job in jobs:
                poller.wait(str(job.job_id), timeout=60)
                assert job._reload().status is JobStatus.DONE
            assert poller.rounds == 3 and poller.requests == 3
        finally:
            poller.stop()


def test_a_short_job_seen_running_is_asked_about_again_soon(service: Any) -> None:
    from jobledger.client.poller import Poller

    token = service.create_token(f"user{time.monotonic_ns()}")
    with jobledger.connect(url=service.url, token=token) as conn:
        job = conn.submit({}, "sleep", params={"seconds": 0.5, "interval": 0.25})
        # A pause of a minute between ordinary rounds: the job, running when first
        # seen, is found done by the short rounds that follow a new job.
        poller = Poller(conn, first_interval=60.0, max_interval=60.0)
        try:
            poller.wait(str(job.job_id), timeout=20)
            assert job._reload().status is JobStatus.DONE
            assert 2 <= poller.rounds <= 12
        finally:
            poller.stop()


def test_waiters_arriving_together_share_rounds(service: Any, http: Any) -> None:
    from jobledger.client.poller import Poller

    conn, jobs = finished_on_the_service(service, http, 40)
    with conn:
        poller = Poller(conn, first_interval=120.0, max_interval=120.0)
        start = threading.Barrier(len(jobs))
        errors: list[BaseException] = []

        def wait(job_id: str) -> None:
            start.wait()
            try:
                poller.wait(job_id, timeout=60)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=wait, args=(str(j.job_id),)) for j in jobs]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            poller.stop()
        assert not errors
        # Each new waiter asks for a round, but waiters registering together (or while
        # a round is in flight) are served by the same one: never a request per job.
        assert 1 <= poller.requests <= 10 and poller.requests == poller.rounds


def test_sequential_results_of_finished_jobs(service: Any, http: Any) -> None:
    conn, jobs = finished_on_the_service(service, http, 5)
    with conn:
        assert [job.result(timeout=60) for job in jobs] == [{"n": n} for n in range(5)]
        # The result request itself says the job is DONE (X-Job-Status): no status
        # round at all, and the final status and dates are recorded.
        assert conn.poller.rounds == 0
        for job in jobs:
            record = job._reload()
            assert record.status is JobStatus.DONE and record.ended_at is not None
            assert record.started_at is not None and job.ending_date is not None
        assert [job.result() for job in jobs] == [{"n": n} for n in range(5)]
        again = conn.job(str(jobs[0].job_id))
        assert again.result() == {"n": 0} and conn.poller.rounds == 0


def test_result_of_an_unfinished_or_failed_job_still_waits_for_its_end(service: Any) -> None:
    token = service.create_token(f"user{time.monotonic_ns()}")
    with jobledger.connect(url=service.url, token=token) as conn:
        slow = conn.submit({"n": 1}, "sleep", params={"seconds": 0.5, "interval": 0.25})
        assert slow.result(timeout=30) == {"slept": 0.5}
        assert conn.poller.rounds >= 1  # the result was not ready: it waited as usual
        failing = conn.submit({}, "fail", params={"message": "broken on purpose"})
        with pytest.raises(JobFailureError, match="broken on purpose"):
            failing.result(timeout=30)
        assert failing.status() is JobStatus.ERROR


def test_unknown_job_and_wrong_token(conn: Connection, service: Any) -> None:
    with pytest.raises(JobNotFoundError):
        conn.job("J0000000000000000000")
    with pytest.raises(KeyError):
        conn.job("J0000000000000000000")
    bad = jobledger.connect(url=service.url, token="wrong")
    with pytest.raises(AuthenticationError) as info:
        bad.submit(1, "echo")
    assert "wrong" not in str(info.value)
    bad.close()


def test_unreachable_service_raises_offline_at_once(jobledger_home: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    conn = jobledger.connect(url=f"http://127.0.0.1:{port}", token="t")
    start = time.monotonic()
    with pytest.raises(OfflineError) as info:
        conn.submit(1, "echo")
    assert time.monotonic() - start < 3 and f"127.0.0.1:{port}" in str(info.value)
    assert isinstance(info.value, ConnectionError)
    assert conn.registry.count() == 0
    conn.close()


def test_listing_filters(conn: Connection) -> None:
    done = conn.submit(1, "echo", tags=["a", "b"])
    failed = conn.submit(2, "fail", tags=["a"])
    done.wait_for_final_state(30)
    failed.wait_for_final_state(30)
    assert conn.jobs(status="done", tags=["a"]) == [done]
    assert conn.get_jobs(status=JobStatus.ERROR) == [failed]
    assert conn.jobs(tags=["a"], descending=False) == [done, failed]
    assert conn.jobs(tags=["a", "b"]) == [done]
    assert conn.jobs(backend_name="fail") == [failed]
    assert conn.jobs(pending=True) == []
    assert set(conn.jobs(pending=False)) == {done, failed}
    assert conn.jobs(limit=1, skip=1) == [done]
    assert conn.jobs(created_after="2999-01-01T00:00:00+00:00") == []
    remote = conn.jobs(remote=True, status="failed")
    assert [j.job_id for j in remote] == [failed.job_id]
    with pytest.raises(ValueError, match="unknown job status"):
        conn.jobs(status="finished")
    with pytest.raises(ValueError, match="created_after"):
        conn.jobs(created_after="yesterday")


# -- the non-negotiables -------------------------------------------------------------


class DroppingProxy:
    """A loopback HTTP proxy that forwards the first *drop* submits to the service and
    then closes the client's connection without sending the answer back."""

    def __init__(self, upstream: str, drop: int = 1) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.drop = drop
        self.dropped = 0
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        import http.client

        with client:
            reader = client.makefile("rb")
            while True:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = reader.readline()
                    if not line:
                        return
                    head += line
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = dict(h.split(": ", 1) for h in lines[1:] if ": " in h)
                body = reader.read(int(headers.get("Content-Length", "0")))
                upstream = http.client.HTTPConnection(self.upstream, timeout=30)
                upstream.request(method, path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                status, reason, answer_headers = (
                    response.status,
                    response.reason,
                    response.getheaders(),
                )
                upstream.close()
                if method == "POST" and path == "/v1/jobs" and self.dropped < self.drop:
                    self.dropped += 1
                    client.shutdown(socket.SHUT_RDWR)
                    return
                out = f"HTTP/1.1 {status} {reason}\r\n".encode()
                for key, value in answer_headers:
                    if key.lower() not in ("transfer-encoding", "content-length", "connection"):
                        out += f"{key}: {value}\r\n".encode()
                out += f"Content-Length: {len(data)}\r\n\r\n".encode() + data
                client.sendall(out)

    def close(self) -> None:
        self.server.close()


def test_submit_whose_response_is_lost_creates_exactly_one_job(service: Any) -> None:
    token = service.create_token("lossy")
    proxy = DroppingProxy(service.url)
    try:
        with jobledger.connect(url=proxy.url, token=token) as conn:
            job = conn.submit({"once": 1}, "echo")
            assert proxy.dropped == 1
            assert job.result(timeout=30) == {"once": 1}
            assert conn.registry.count() == 1
    finally:
        proxy.close()
    assert [j["id"] for j in service_jobs(service, token)] == [job.job_id]


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        check=False,
    )


def test_process_dying_after_send_is_resolved_without_duplicate(
    service: Any, jobledger_home: Path
) -> None:
    token = service.create_token("crashy")
    died = run_python(
        f"""
        import os, jobledger
        from jobledger.registry import Registry
        Registry.acknowledge = lambda *a, **k: os._exit(3)   # die before recording the answer
        jobledger.connect(url={service.url!r}, token={token!r}).submit({{"n": 1}}, "echo")
        """
    )
    assert died.returncode == 3, died.stderr
    assert len(service_jobs(service, token)) == 1
    with jobledger.connect(url=service.url, token=token) as conn:
        (pending,) = conn.registry.query(limit=None)
        assert pending.submit_state == "pending" and pending.job_id is None
        report = conn.sync()
        assert report.resolved == 1
        (job,) = conn.jobs()
        assert job.result(timeout=30) == {"n": 1}
    assert [j["id"] for j in service_jobs(service, token)] == [job.job_id]


def test_four_processes_submitting_at_once_record_everything(
    service: Any, jobledger_home: Path
) -> None:
    token = service.create_token("busy")
    code = f"""
        import jobledger
        conn = jobledger.connect(url={service.url!r}, token={token!r})
        for i in range(25):
            conn.submit({{"i": i}}, "echo", tags=["load"])
        conn.close()
        """
    procs = [
        subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err.decode()
    with jobledger.connect(url=service.url, token=token) as conn:
        assert conn.registry.count() == 100
        assert len(conn.jobs(tags=["load"], limit=None)) == 100
    assert len(service_jobs(service, token)) == 100


def test_flipped_byte_is_detected_offline_and_healed_online(
    service: Any, jobledger_home: Path
) -> None:
    token = service.create_token("flip")
    payload = bytes(range(256)) * 512  # large enough to be stored as a file
    with jobledger.connect(url=service.url, token=token) as conn:
        job = conn.submit(payload, "echo")
        assert job.result(timeout=30) == payload
        digest = job._record.result.sha256  # type: ignore[union-attr]
        path = conn.store.path_of(digest)
        assert path is not None
    data = bytearray(path.read_bytes())
    data[1000] ^= 0xFF
    path.write_bytes(bytes(data))
    with jobledger.connect(offline=True) as offline:
        with pytest.raises(CacheCorruptionError) as info:
            offline.job(job.job_id).result()
        assert job.job_id in str(info.value)
    with jobledger.connect(url=service.url, token=token) as online:
        assert online.job(job.job_id).result() == payload
        assert online.store.get_bytes(digest) == payload


def test_fresh_process_reads_a_cached_result_with_the_service_stopped(
    service_factory: Any, jobledger_home: Path
) -> None:
    running = service_factory()
    with jobledger.connect(url=running.url, token=running.token) as conn:
        job = conn.submit({"answer": 42}, "echo", alias="answer")
        job.result(timeout=30)
    running.stop()
    out = run_python(
        f"""
        import socket, sys
        def refuse(*args, **kwargs):
            raise OSError("network used")
        socket.socket.connect = refuse
        import jobledger
        conn = jobledger.connect(url={running.url!r}, token="unused")
        job = conn.job({job.job_id!r})
        print(job.result(), job.get_status(), job.status())
        assert "requests" not in sys.modules, "requests was imported"
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "{'answer': 42} done DONE"


def test_offline_connection_says_what_is_missing(service: Any, jobledger_home: Path) -> None:
    token = service.create_token("offline")
    with jobledger.connect(url=service.url, token=token) as conn:
        job = conn.submit(None, "sleep", params={"seconds": 30, "interval": 1})
    with jobledger.connect(offline=True) as offline:
        handle = offline.job(job.job_id)
        assert handle.status() in (JobStatus.QUEUED, JobStatus.RUNNING)
        with pytest.raises(OfflineError, match="offline"):
            handle.result()
        with pytest.raises(OfflineError):
            offline.submit(1, "echo")
    with jobledger.connect(url=service.url, token=token) as conn:
        conn.job(job.job_id).cancel()


def test_sync_brings_another_machines_jobs_and_results(
    service: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = service.create_token("twomachines")
    with jobledger.connect(url=service.url, token=token) as first:
        job = first.submit({"from": "laptop"}, "echo", tags=["shared"])
        job.wait_for_final_state(30)
    monkeypatch.setenv("JOBLEDGER_HOME", str(tmp_path / "second-machine"))
    with jobledger.connect(url=service.url, token=token) as second:
        assert second.jobs() == []
        report = second.sync(fetch_results=True)
        assert report.new == 1 and report.fetched == 1
        assert [j.job_id for j in second.jobs(tags=["shared"])] == [job.job_id]
    with jobledger.connect(offline=True) as offline:
        assert offline.job(job.job_id).result() == {"from": "laptop"}


def test_connection_is_shared_between_threads(conn: Connection) -> None:
    results: list[Any] = []

    def work(i: int) -> None:
        results.append(conn.submit({"i": i}, "echo").result(timeout=60))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r["i"] for r in results) == list(range(8))


def test_embedded_service_is_started_on_demand_and_found_again(jobledger_home: Path) -> None:
    from jobledger.service import local

    with jobledger.connect() as conn:
        assert local.find_running(conn.paths) is None
        offline_read = conn.jobs()  # reading what is stored never starts the service
        assert offline_read == [] and local.find_running(conn.paths) is None
        try:
            assert {"echo", "sleep", "fail"} <= {b.name for b in conn.backends()}
            job = conn.submit({"local": True}, "echo")
            assert job.result(timeout=30) == {"local": True}
            first = local.find_running(conn.paths)
            assert first is not None and conn.url == first.url
            local.stop(conn.paths)
            again = conn.submit({"local": 2}, "echo")  # started again, maybe on another port
            assert again.result(timeout=30) == {"local": 2}
            second = local.find_running(conn.paths)
            assert second is not None and second.service_id == first.service_id
            assert conn.registry.count() == 2
        finally:
            local.stop(conn.paths)
