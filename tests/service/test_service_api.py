"""Protocol v1 against the real service: submit, info, listing, payloads, errors, SSE."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from typing import Any

import requests

from jobledger.ids import ID_PATTERN

FINAL = ("DONE", "ERROR", "CANCELLED", "DELETED")


def _user(service: Any) -> str:
    return service.create_token(f"user-{uuid.uuid4().hex[:8]}")


def test_health_and_openapi_need_no_token(http: Any) -> None:
    health = http.get("/v1/health", auth=False)
    assert health.status_code == 200
    assert health.json()["status"] == "ok" and health.json()["protocol"] == 1
    assert health.json()["service_id"].startswith("S")
    doc = http.get("/openapi.json", auth=False).json()
    assert doc["openapi"].startswith("3.1")
    expected = {
        "/v1/health",
        "/openapi.json",
        "/v1/backends",
        "/v1/jobs",
        "/v1/jobs/status",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/batch",
        "/v1/jobs/{job_id}/result",
        "/v1/jobs/{job_id}/events",
        "/v1/jobs/{job_id}/logs",
        "/v1/jobs/{job_id}/metrics",
        "/v1/jobs/{job_id}/interim",
        "/v1/jobs/{job_id}/cancel",
        "/v1/jobs/{job_id}/files",
    }
    assert set(doc["paths"]) == expected


def test_backends_are_listed_with_versions(http: Any) -> None:
    listed = {b["name"]: b for b in http.get("/v1/backends").json()["backends"]}
    assert {"echo", "sleep", "fail", "blob"} <= set(listed)
    assert listed["echo"]["version"] == "1.0" and listed["echo"]["description"]


def test_echo_lifecycle_info_and_payloads(http: Any) -> None:
    job = http.submit("echo", {"x": [1, 2, 3]}, tags=["t1", "t2"], session_id="s-1")
    assert ID_PATTERN.match(job["id"]) and job["id"].isidentifier()
    assert job["status"] in ("QUEUED", "RUNNING", "DONE")
    done = http.wait(job["id"])
    assert done["status"] == "DONE" and done["message"] is None
    assert done["backend"] == {"name": "echo", "version": "1.0"}
    assert done["tags"] == ["t1", "t2"] and done["session_id"] == "s-1"
    assert done["created_at"] <= done["started_at"] <= done["ended_at"]
    assert done["created_at"].endswith("+00:00") and done["usage"]["seconds"] >= 0
    assert done["queue_position"] is None
    batch = http.get(f"/v1/jobs/{job['id']}/batch")
    result = http.get(f"/v1/jobs/{job['id']}/result")
    for answer, info in ((batch, done["batch"]), (result, done["result"])):
        assert answer.status_code == 200
        assert answer.headers["Content-Type"] == "application/json"
        assert answer.headers["X-Content-SHA256"] == info["sha256"]
        assert hashlib.sha256(answer.content).hexdigest() == info["sha256"]
        assert int(answer.headers["Content-Length"]) == info["size"] == len(answer.content)
    assert json.loads(result.content) == {"x": [1, 2, 3]}


def test_raw_bytes_and_npy_batches_round_trip(http: Any) -> None:
    import numpy as np

    from jobledger import codecs

    for value in (b"\x00\x01raw", np.arange(6, dtype=np.float64).reshape(2, 3)):
        data, media = codecs.encode(value)
        body = {
            "backend": "echo",
            "batch": {
                "media_type": media,
                "data": base64.b64encode(data).decode(),
                "sha256": hashlib.sha256(data).hexdigest(),
            },
        }
        job = http.post("/v1/jobs", json=body).json()
        assert http.wait(job["id"])["status"] == "DONE"
        result = http.get(f"/v1/jobs/{job['id']}/result")
        assert result.headers["Content-Type"] == media and result.content == data


def test_failures_end_error_and_the_pool_lives_on(http: Any) -> None:
    raised = http.submit("fail", None, params={"message": "boom"})
    exited = http.submit("fail", None, params={"mode": "exit"})
    assert http.wait(raised["id"])["message"] == "RuntimeError: boom"
    died = http.wait(exited["id"])
    assert died["status"] == "ERROR" and "worker process" in died["message"]
    assert "died" in died["message"] and "exit code 3" in died["message"]
    assert "failing on purpose: boom" in http.get(f"/v1/jobs/{raised['id']}/logs").text
    after = [http.submit("echo", i) for i in range(4)]
    assert all(http.wait(j["id"])["status"] == "DONE" for j in after)


def test_result_of_unfinished_job_is_409_then_deleted_is_410(http: Any) -> None:
    job = http.submit("sleep", None, params={"seconds": 5, "interval": 0.1})
    http.wait(job["id"], until=lambda info: info["status"] == "RUNNING")
    early = http.get(f"/v1/jobs/{job['id']}/result")
    assert early.status_code == 409 and early.json()["error"]["code"] == "not_ready"
    assert "RUNNING" in early.json()["error"]["message"]
    assert http.delete(f"/v1/jobs/{job['id']}/files").status_code == 409
    cancel = http.post(f"/v1/jobs/{job['id']}/cancel").json()
    assert cancel == {"cancelled": True, "status": "CANCELLED"}
    assert http.post(f"/v1/jobs/{job['id']}/cancel").json()["cancelled"] is False
    deleted = http.delete(f"/v1/jobs/{job['id']}/files")
    assert deleted.json() == {"deleted": True, "status": "DELETED"}
    assert http.get(f"/v1/jobs/{job['id']}").json()["status"] == "DELETED"
    gone = http.get(f"/v1/jobs/{job['id']}/batch")
    assert gone.status_code == 410 and gone.json()["error"]["code"] == "deleted"


def test_delete_keeps_blobs_shared_with_other_jobs(http: Any) -> None:
    first, second = http.submit("echo", "shared"), http.submit("echo", "shared")
    http.wait(first["id"]), http.wait(second["id"])
    assert http.delete(f"/v1/jobs/{first['id']}/files").json()["deleted"] is True
    assert http.get(f"/v1/jobs/{second['id']}/result").status_code == 200


def test_error_statuses_have_json_bodies(http: Any, service: Any) -> None:
    def code(answer: requests.Response) -> tuple[int, str]:
        return answer.status_code, answer.json()["error"]["code"]

    assert code(http.get("/v1/jobs", auth=False)) == (401, "unauthorized")
    assert code(http.get("/v1/jobs", token="wrong")) == (401, "unauthorized")
    assert code(http.get("/v1/jobs/J0000000000000000000")) == (404, "not_found")
    assert code(http.get("/v1/nothing-here")) == (404, "not_found")
    assert http.request("PUT", "/v1/jobs").status_code == 405
    bad = http.post("/v1/jobs", data=b"{not json", headers={"Content-Type": "application/json"})
    assert code(bad) == (422, "invalid") and "malformed JSON" in bad.json()["error"]["message"]
    unknown = http.post("/v1/jobs", json={"backend": "nope", "batch": {"data": ""}})
    assert code(unknown) == (422, "invalid")
    assert "echo" in unknown.json()["error"]["message"]
    assert "sleep" in unknown.json()["error"]["message"]
    batch = {"media_type": "application/json", "data": base64.b64encode(b"1").decode()}
    for backend, params, words in (
        ("echo", {"delay": -1}, "delay"),
        ("sleep", {"seconds": "ten"}, "seconds"),
        ("blob", {"size": 1.5}, "size"),
        ("blob", {}, "size"),
        ("echo", {"unknown": 1}, "unknown"),
    ):
        answer = http.post("/v1/jobs", json={"backend": backend, "batch": batch, "params": params})
        assert code(answer) == (422, "invalid") and words in answer.json()["error"]["message"]
    wrong_digest = http.post(
        "/v1/jobs", json={"backend": "echo", "batch": {**batch, "sha256": "0" * 64}}
    )
    assert code(wrong_digest) == (422, "invalid")


def test_body_limit_is_413(service_factory: Any) -> None:
    small = service_factory(workers=1, max_body=1024)
    body = {"backend": "echo", "batch": {"data": base64.b64encode(b"x" * 4096).decode()}}
    with requests.post(
        small.url + "/v1/jobs", json=body, headers=small.headers(), timeout=10
    ) as answer:
        assert answer.status_code == 413
        assert answer.json()["error"]["code"] == "too_large"


def test_idempotent_resubmission_returns_the_first_job(http: Any) -> None:
    key = {"Idempotency-Key": f"key-{uuid.uuid4()}"}
    body = {"backend": "echo", "batch": {"data": base64.b64encode(b"7").decode()}}
    first = http.post("/v1/jobs", json=body, headers=key)
    second = http.post("/v1/jobs", json=body, headers=key)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    listed = http.get("/v1/jobs", params={"limit": 1000}).json()["jobs"]
    assert [j["id"] for j in listed].count(first.json()["id"]) == 1


def test_listing_filters_and_cursor_pagination(http: Any, service: Any) -> None:
    token = _user(service)
    ids = [
        http.submit(
            "echo",
            i,
            token=token,
            tags=["even" if i % 2 == 0 else "odd", "all"],
            session_id="s" if i < 3 else None,
        )["id"]
        for i in range(7)
    ]
    assert ids == sorted(ids), "ids sort by creation time"
    for job_id in ids:
        http.wait(job_id, token=token)
    http.submit("fail", None, token=token)
    pages: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, "backend": "echo", "order": "asc"}
        if cursor:
            params["cursor"] = cursor
        page = http.get("/v1/jobs", params=params, token=token).json()
        pages.extend(j["id"] for j in page["jobs"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == ids
    desc = http.get("/v1/jobs", params={"backend": "echo"}, token=token).json()["jobs"]
    assert [j["id"] for j in desc] == ids[::-1]
    even = http.get("/v1/jobs", params={"tag": ["even", "all"]}, token=token).json()["jobs"]
    assert {j["id"] for j in even} == set(ids[0::2])
    session = http.get("/v1/jobs", params={"session_id": "s"}, token=token).json()["jobs"]
    assert {j["id"] for j in session} == set(ids[:3])
    middle = http.get(f"/v1/jobs/{ids[3]}", token=token).json()["created_at"]
    after = http.get(
        "/v1/jobs", params={"created_after": middle, "backend": "echo"}, token=token
    ).json()["jobs"]
    assert {j["id"] for j in after} == set(ids[4:])
    before = http.get("/v1/jobs", params={"created_before": middle}, token=token).json()
    assert {j["id"] for j in before["jobs"]} == set(ids[:3])
    done = http.get("/v1/jobs", params={"status": ["DONE"]}, token=token).json()["jobs"]
    assert {j["id"] for j in done} == set(ids)
    bad = http.get("/v1/jobs", params={"created_after": "yesterday"}, token=token)
    assert bad.status_code == 422


def test_batch_status_call(http: Any, service: Any) -> None:
    token = _user(service)
    mine = [http.submit("echo", i, token=token)["id"] for i in range(3)]
    theirs = http.submit("echo", 0)["id"]
    for job_id in mine:
        http.wait(job_id, token=token)
    answer = http.post("/v1/jobs/status", json={"ids": [*mine, theirs, "Jnope"]}, token=token)
    body = answer.json()
    assert [j["id"] for j in body["jobs"]] == mine
    assert body["not_found"] == [theirs, "Jnope"]
    assert all(j["status"] == "DONE" and j["result"]["sha256"] for j in body["jobs"])
    too_many = http.post("/v1/jobs/status", json={"ids": [f"J{i}" for i in range(1001)]})
    assert too_many.status_code == 422 and "1000" in too_many.json()["error"]["message"]
    thousand = http.post("/v1/jobs/status", json={"ids": [f"J{i}" for i in range(1000)]})
    assert thousand.status_code == 200 and len(thousand.json()["not_found"]) == 1000


def test_tokens_isolate_users_and_work_at_once(http: Any, service: Any) -> None:
    alice_job = http.submit("echo", "secret")["id"]
    bob = service.create_token("bob")  # created while the service runs
    assert http.get("/v1/jobs", token=bob).status_code == 200
    for path in ("", "/batch", "/result", "/logs", "/events", "/metrics", "/interim"):
        hidden = http.get(f"/v1/jobs/{alice_job}{path}", token=bob)
        assert hidden.status_code == 404, path
    assert http.post(f"/v1/jobs/{alice_job}/cancel", token=bob).status_code == 404
    assert http.delete(f"/v1/jobs/{alice_job}/files", token=bob).status_code == 404
    bob_job = http.submit("echo", 1, token=bob)["id"]
    listed = {j["id"] for j in http.get("/v1/jobs", token=bob).json()["jobs"]}
    assert listed == {bob_job}
    raw = (service.data / "service.db").read_bytes()
    assert bob.encode() not in raw and service.token.encode() not in raw


def test_logs_interim_metrics_and_sse_resume(http: Any, service: Any) -> None:
    job = http.submit("sleep", None, params={"seconds": 0.6, "interval": 0.2})
    url = f"{service.url}/v1/jobs/{job['id']}/events"
    with requests.get(url, headers=service.headers(), stream=True, timeout=20) as answer:
        assert answer.headers["Content-Type"].startswith("text/event-stream")
        events = _parse_sse(answer.iter_lines(decode_unicode=True))
    kinds = [e["event"] for e in events]
    assert kinds[0] == "status" and events[0]["data"]["status"] == "QUEUED"
    assert events[-1]["event"] == "status" and events[-1]["data"]["status"] == "DONE"
    assert "interim" in kinds and "log" in kinds
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    resumed_headers = {**service.headers(), "Last-Event-ID": "2"}
    with requests.get(url, headers=resumed_headers, stream=True, timeout=20) as answer:
        resumed = _parse_sse(answer.iter_lines(decode_unicode=True))
    assert resumed == events[2:]
    interim = http.get(f"/v1/jobs/{job['id']}/interim").json()["interim"]
    assert interim == [e["data"]["value"] for e in events if e["event"] == "interim"]
    assert interim and all("elapsed" in v for v in interim)
    logs = http.get(f"/v1/jobs/{job['id']}/logs")
    assert logs.headers["Content-Type"].startswith("text/plain") and "slept" in logs.text
    metrics = http.get(f"/v1/jobs/{job['id']}/metrics").json()
    assert metrics["usage"]["seconds"] >= 0.5 and metrics["timestamps"]["finished"]


def _parse_sse(lines: Any) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    started = time.monotonic()
    for line in lines:
        assert time.monotonic() - started < 20
        if line == "":
            if current:
                events.append(current)
            current = {}
        elif line.startswith("id: "):
            current["id"] = int(line[4:])
        elif line.startswith("event: "):
            current["event"] = line[7:]
        elif line.startswith("data: "):
            current["data"] = json.loads(line[6:])
    return events
