"""Hostile or odd input against the real service: each test failed before its fix."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import sqlite3
import uuid
from typing import Any

import pytest
import requests

from jobledger.service.server import _bind


def _user(service: Any) -> str:
    return service.create_token(f"user-{uuid.uuid4().hex[:8]}")


def _raw_post(http: Any, path: str, body: bytes, token: str | None = None) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    return http.post(path, data=body, headers=headers, token=token)


def _batch(data: bytes = b"1") -> dict[str, str]:
    return {"media_type": "application/json", "data": base64.b64encode(data).decode()}


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999", "1" * 5000])
def test_non_finite_or_unparseable_numbers_are_refused_and_listing_still_works(
    http: Any, service: Any, number: str
) -> None:
    token = _user(service)
    batch = json.dumps(_batch())
    body = f'{{"backend": "echo", "batch": {batch}, "params": {{"delay": {number}}}}}'
    answer = _raw_post(http, "/v1/jobs", body.encode(), token=token)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "invalid"
    assert "malformed JSON" in answer.json()["error"]["message"]
    listing = http.get("/v1/jobs", token=token)
    assert listing.status_code == 200 and listing.json()["jobs"] == []


def test_listing_survives_rows_stored_before_the_door_was_closed(http: Any, service: Any) -> None:
    token = _user(service)
    good = http.submit("echo", 1, token=token, tags=["t"])
    nan_job = http.submit("echo", 2, token=token, tags=["t"])
    broken = http.submit("echo", 3, token=token, tags=["t"])
    for job in (good, nan_job, broken):
        http.wait(job["id"], token=token)
    # What an older service wrote (json.dumps allows NaN), and a damaged row.
    with sqlite3.connect(service.data / "service.db", timeout=30) as db:
        db.execute(
            "UPDATE jobs SET params = ?, metrics = ? WHERE id = ?",
            ('{"delay": NaN}', '{"m": Infinity}', nan_job["id"]),
        )
        db.execute("UPDATE jobs SET tags = 'not json' WHERE id = ?", (broken["id"],))
    listing = http.get("/v1/jobs", token=token)
    assert listing.status_code == 200, listing.text
    jobs = {j["id"]: j for j in listing.json()["jobs"]}
    assert set(jobs) == {good["id"], nan_job["id"], broken["id"]}
    assert jobs[nan_job["id"]]["params"] == {"delay": None}
    assert jobs[broken["id"]]["tags"] == []
    tagged = http.get("/v1/jobs", params={"tag": "t"}, token=token)
    assert tagged.status_code == 200
    assert {j["id"] for j in tagged.json()["jobs"]} == {good["id"], nan_job["id"]}
    info = http.get(f"/v1/jobs/{nan_job['id']}", token=token)
    assert info.status_code == 200 and info.json()["params"] == {"delay": None}
    metrics = http.get(f"/v1/jobs/{nan_job['id']}/metrics", token=token)
    assert metrics.status_code == 200 and metrics.json()["metrics"] == {"m": None}
    statuses = http.post("/v1/jobs/status", json={"ids": [nan_job["id"]]}, token=token)
    assert statuses.status_code == 200 and len(statuses.json()["jobs"]) == 1


def test_deeply_nested_json_is_422_on_every_json_route(http: Any) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    deep_params = b'{"backend": "echo", "batch": {"data": ""}, "params": ' + deep + b"}"
    deep_batch = json.dumps({"backend": "echo", "batch": _batch(deep)}).encode()
    for path, body in (
        ("/v1/jobs", deep),
        ("/v1/jobs", deep_params),
        ("/v1/jobs", deep_batch),
        ("/v1/jobs/status", deep),
        ("/v1/jobs/status", b'{"ids": ' + deep + b"}"),
    ):
        answer = _raw_post(http, path, body)
        assert answer.status_code == 422, (path, body[:60], answer.text)
        assert "nested" in answer.json()["error"]["message"]
    assert http.get("/v1/health", auth=False).status_code == 200


def test_listening_socket_makes_connections_with_tcp_nodelay() -> None:
    sock = _bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    seen: list[int] = []

    async def main() -> None:
        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                accepted = transport.get_extra_info("socket")
                seen.append(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        loop = asyncio.get_running_loop()
        server = await loop.create_server(Probe, sock=sock)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await reader.read()
        writer.close()
        server.close()
        await server.wait_closed()

    asyncio.run(main())
    assert seen and seen[0] != 0


def test_routes_answer_405_with_the_right_allow_header(http: Any) -> None:
    status_get = http.get("/v1/jobs/status")
    assert status_get.status_code == 405, status_get.text
    assert status_get.headers["Allow"] == "POST"
    options = http.request("OPTIONS", "/v1/jobs")
    assert options.status_code == 405
    assert {m.strip() for m in options.headers["Allow"].split(",")} >= {"GET", "POST"}
    unknown = http.get("/v1/jobs/not-a-job-id")
    assert unknown.status_code == 404 and "not-a-job-id" in unknown.json()["error"]["message"]


def test_cursors_are_decimal_and_old_cursors_still_work(http: Any, service: Any) -> None:
    token = _user(service)
    ids = [http.submit("echo", i, token=token)["id"] for i in range(3)]
    page = http.get("/v1/jobs", params={"limit": 1, "order": "asc"}, token=token).json()
    assert page["next_cursor"].isdigit()
    seq = int(page["next_cursor"])
    legacy = base64.urlsafe_b64encode(f"s{seq}".encode()).decode().rstrip("=")
    for cursor in (page["next_cursor"], legacy):
        rest = http.get("/v1/jobs", params={"order": "asc", "cursor": cursor}, token=token)
        assert [j["id"] for j in rest.json()["jobs"]] == ids[1:]
    for bad in ("zz", "-1", "\u00b2", "9" * 40):
        answer = http.get("/v1/jobs", params={"cursor": bad}, token=token)
        assert answer.status_code == 422, bad
    assert http.get("/v1/jobs", params={"limit": "\u00b2"}).status_code == 422
    misspelt = http.get("/v1/jobs", params={"stauts": "DONE"}, token=token)
    assert misspelt.status_code == 422 and "stauts" in misspelt.json()["error"]["message"]
    assert http.post("/v1/jobs/status", json={}).status_code == 422


def test_openapi_lists_the_loaded_backends_and_required_fields(http: Any) -> None:
    doc = http.get("/openapi.json", auth=False).json()
    submit = doc["components"]["schemas"]["SubmitRequest"]
    assert {"echo", "sleep", "fail", "blob"} <= set(submit["properties"]["backend"]["enum"])
    status_body = doc["paths"]["/v1/jobs/status"]["post"]["requestBody"]
    assert status_body["content"]["application/json"]["schema"]["required"] == ["ids"]


def test_batch_spooled_and_decoded_keeps_bytes_digest_and_errors(http: Any) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB, '/' and '+' in its base64
    text = base64.b64encode(data).decode().replace("/", "\\/")  # JSON may escape '/'
    body = (
        '{"batch": {"data": "' + text + '", "media_type": "application/octet-stream"}, '
        '"tags": ["x"], "backend": "echo"}'
    )
    answer = _raw_post(http, "/v1/jobs", body.encode())
    assert answer.status_code == 201, answer.text
    job = http.wait(answer.json()["id"])
    assert http.get(f"/v1/jobs/{job['id']}/result").content == data
    for bad_data, words in (("YQ", "padding"), ("Y Q==", "base64"), ("YQ==YQ==", "padding")):
        bad = http.post("/v1/jobs", json={"backend": "echo", "batch": {"data": bad_data}})
        assert bad.status_code == 422 and words in bad.json()["error"]["message"], bad.text
    not_json = http.post("/v1/jobs", json={"backend": "echo", "batch": _batch(b"{nope")}).json()[
        "error"
    ]["message"]
    assert "declared JSON" in not_json
