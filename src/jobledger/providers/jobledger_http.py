"""The protocol-v1 provider: jobledger's own job service over HTTP.

One :class:`HTTPProvider` per connection holds one ``requests.Session`` per thread, with
connect and read timeouts. Idempotent calls, and submits carrying an idempotency key, are retried
with exponential backoff and jitter. Every ``requests`` error becomes a jobledger
error naming the URL and what to do: unreachable services raise
:class:`~jobledger.errors.OfflineError`, error answers the class matching their status.
The service's JSON becomes the records of :mod:`jobledger.providers.base` here, and
nowhere else. Only ``providers/`` imports ``requests``.
"""

from __future__ import annotations

import base64
import json
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import requests
import requests.adapters
import urllib3.exceptions

from jobledger import __version__
from jobledger.errors import (
    AuthenticationError,
    JobNotFoundError,
    OfflineError,
    ResultNotReadyError,
    ServiceError,
)
from jobledger.providers.base import (
    Download,
    Event,
    JobQuery,
    RemoteBackend,
    RemoteBlob,
    RemoteJob,
    ServiceHealth,
    StatusBatch,
    Submission,
)
from jobledger.status import JobStatus

__all__ = ["HTTPProvider", "job_from_wire"]

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 60.0
CHUNK = 1 << 20
_RETRY_STATUSES = frozenset({429, 502, 503, 504})


class HTTPProvider:
    """Talks protocol v1 to one jobledger job service.

    :param url: the service's base URL.
    :param token: the bearer token (never logged, never part of an error message).
    :param verify: verify TLS certificates.
    :param retries: how many times an idempotent call is retried.
    """

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        verify: bool = True,
        retries: int = 4,
        timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT),
    ) -> None:
        self.url = url.rstrip("/")
        self.retries = retries
        self.timeout = timeout
        self._local = threading.local()
        self._token = token
        self._verify = verify
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()

    # -- plumbing ---------------------------------------------------------------

    @property
    def session(self) -> requests.Session:
        """This thread's session (sessions are not shared between threads)."""
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.verify = self._verify
            session.headers["User-Agent"] = f"jobledger/{__version__}"
            if self._token:
                session.headers["Authorization"] = f"Bearer {self._token}"
            adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=16)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        """Close every session this transport opened."""
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
        self._local = threading.local()

    def _request(
        self,
        method: str,
        path: str,
        *,
        retry: bool,
        stream: bool = False,
        timeout: tuple[float, float] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        url = self.url + path
        attempt = 0
        while True:
            try:
                response = self.session.request(
                    method, url, stream=stream, timeout=timeout or self.timeout, **kwargs
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                # A refused connection means nothing listens there: fail at once.
                if retry and attempt < self.retries and not _refused(exc):
                    attempt += 1
                    _backoff(attempt)
                    continue
                raise OfflineError(
                    f"cannot reach the job service at {self.url} ({_short(exc)}); check that "
                    "it is running and the URL is right, or work offline with "
                    "jobledger.connect(offline=True) or JOBLEDGER_OFFLINE=1"
                ) from exc
            except requests.RequestException as exc:
                raise ServiceError(f"request to {url} failed: {_short(exc)}") from exc
            if response.status_code in _RETRY_STATUSES and retry and attempt < self.retries:
                response.close()
                attempt += 1
                _backoff(attempt)
                continue
            if response.status_code >= 400:
                raise _error_from(response, url)
            return response

    def _json(self, method: str, path: str, *, retry: bool = True, **kwargs: Any) -> Any:
        response = self._request(method, path, retry=retry, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            raise ServiceError(
                f"the service at {self.url} answered {path} with something that is not "
                "JSON; is this URL a jobledger service?",
                status_code=response.status_code,
            ) from exc
        finally:
            response.close()

    # -- calls ------------------------------------------------------------------

    def health(self) -> ServiceHealth:
        """``GET /v1/health``: protocol, version and the service's stable id."""
        data = self._json("GET", "/v1/health", retry=False)
        if not isinstance(data, dict) or "service_id" not in data:
            raise ServiceError(f"{self.url} does not look like a jobledger service")
        return ServiceHealth(
            str(data["service_id"]), str(data.get("protocol", "")), str(data.get("version", ""))
        )

    def backends(self) -> list[RemoteBackend]:
        """``GET /v1/backends``."""
        return [
            RemoteBackend(b["name"], str(b.get("version", "")), str(b.get("description", "")))
            for b in self._json("GET", "/v1/backends")["backends"]
        ]

    def submit(self, submission: Submission, *, idempotency_key: str) -> RemoteJob:
        """``POST /v1/jobs``; retried safely thanks to the idempotency key."""
        body = {
            "backend": submission.backend,
            "batch": {
                "media_type": submission.media_type,
                "data": base64.b64encode(submission.data).decode("ascii"),
                "sha256": submission.sha256,
            },
            "params": submission.params,
            "tags": list(submission.tags),
            "session_id": submission.session_id,
        }
        data = json.dumps(body, separators=(",", ":"))
        headers = {"Idempotency-Key": idempotency_key, "Content-Type": "application/json"}
        return job_from_wire(
            self._json("POST", "/v1/jobs", retry=True, data=data, headers=headers)
        )

    def find_submission(self, idempotency_key: str) -> RemoteJob | None:
        """``POST /v1/jobs`` with the key and a body no service accepts: a service that
        knows the key answers with the job it created (protocol v1 checks the key before
        the body); one that does not refuses the body with 422."""
        headers = {"Idempotency-Key": idempotency_key, "Content-Type": "application/json"}
        try:
            answer = self._json("POST", "/v1/jobs", retry=True, data="{}", headers=headers)
        except ServiceError as exc:
            if exc.status_code in (400, 422):
                return None
            raise
        return job_from_wire(answer)

    def info(self, job_id: str) -> RemoteJob:
        """``GET /v1/jobs/{id}``."""
        return job_from_wire(self._json("GET", f"/v1/jobs/{job_id}"))

    def list_jobs(self, query: JobQuery) -> Iterator[RemoteJob]:
        """``GET /v1/jobs``, following the cursor through every page."""
        params: dict[str, Any] = {
            "order": "desc" if query.descending else "asc",
            "limit": query.page_size,
        }
        if query.backend:
            params["backend"] = query.backend
        if query.statuses:
            params["status"] = [s.value for s in query.statuses]
        if query.tags:
            params["tag"] = list(query.tags)
        if query.created_after:
            params["created_after"] = query.created_after.isoformat()
        if query.created_before:
            params["created_before"] = query.created_before.isoformat()
        if query.session_id:
            params["session_id"] = query.session_id
        while True:
            page = self._json("GET", "/v1/jobs", params=params)
            for item in page["jobs"]:
                yield job_from_wire(item)
            cursor = page.get("next_cursor")
            if not cursor:
                return
            params["cursor"] = cursor

    def statuses(self, ids: Sequence[str]) -> StatusBatch:
        """``POST /v1/jobs/status`` in chunks of 1,000 ids."""
        found: list[RemoteJob] = []
        missing: list[str] = []
        for start in range(0, len(ids), 1000):
            chunk = list(ids[start : start + 1000])
            page = self._json("POST", "/v1/jobs/status", json={"ids": chunk})
            found.extend(job_from_wire(item) for item in page["jobs"])
            missing.extend(page.get("not_found", []))
        return StatusBatch(found, missing)

    @contextmanager
    def download(self, job_id: str, part: str) -> Iterator[Download]:
        """Stream ``GET /v1/jobs/{id}/{part}`` (``batch`` or ``result``)."""
        response = self._request("GET", f"/v1/jobs/{job_id}/{part}", retry=True, stream=True)
        try:
            length = response.headers.get("Content-Length")
            yield Download(
                media_type=response.headers.get("Content-Type", "application/octet-stream"),
                sha256=response.headers.get("X-Content-SHA256"),
                size=int(length) if length and length.isdigit() else None,
                chunks=_chunks(response, self.url),
            )
        finally:
            response.close()

    def logs(self, job_id: str) -> str:
        """``GET /v1/jobs/{id}/logs`` as text."""
        response = self._request("GET", f"/v1/jobs/{job_id}/logs", retry=True)
        try:
            return response.text
        finally:
            response.close()

    def metrics(self, job_id: str) -> dict[str, Any]:
        """``GET /v1/jobs/{id}/metrics``."""
        return dict(self._json("GET", f"/v1/jobs/{job_id}/metrics"))

    def interim(self, job_id: str) -> list[Any]:
        """``GET /v1/jobs/{id}/interim``: the interim results, in order."""
        return list(self._json("GET", f"/v1/jobs/{job_id}/interim")["interim"])

    def cancel(self, job_id: str) -> bool:
        """``POST /v1/jobs/{id}/cancel`` (cancelling twice is harmless, so retried)."""
        return bool(self._json("POST", f"/v1/jobs/{job_id}/cancel").get("cancelled"))

    def delete_files(self, job_id: str) -> bool:
        """``DELETE /v1/jobs/{id}/files``."""
        return bool(self._json("DELETE", f"/v1/jobs/{job_id}/files").get("deleted"))

    def events(
        self,
        job_id: str,
        *,
        last_event_id: int | None = None,
        on_response: Callable[[requests.Response], None] | None = None,
    ) -> Iterator[Event]:
        """Follow ``GET /v1/jobs/{id}/events`` (server-sent events) until it ends.

        :param on_response: receives the open response, so another thread can close
            it to stop the stream.
        """
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        response = self._request(
            "GET",
            f"/v1/jobs/{job_id}/events",
            retry=True,
            stream=True,
            headers=headers,
            timeout=(self.timeout[0], 30.0),
        )
        if on_response is not None:
            on_response(response)
        try:
            yield from _parse_sse(response.iter_lines(decode_unicode=True))
        except (requests.ConnectionError, requests.Timeout, AttributeError, ValueError):
            # The stream was closed (by the service, or by cancel_result_streaming).
            return
        finally:
            response.close()


def job_from_wire(data: dict[str, Any]) -> RemoteJob:
    """A :class:`RemoteJob` from protocol v1's JSON (a full info or a status entry)."""
    try:
        backend = data.get("backend")
        name = version = None
        if isinstance(backend, dict):
            name, version = backend.get("name"), backend.get("version")
        elif isinstance(backend, str):
            name = backend
        usage = data.get("usage")
        tags = data.get("tags")
        return RemoteJob(
            id=str(data["id"]),
            status=JobStatus(data["status"]),
            backend=name,
            backend_version=version,
            created_at=_date(data.get("created_at")),
            started_at=_date(data.get("started_at")),
            ended_at=_date(data.get("ended_at")),
            queue_position=data.get("queue_position"),
            message=data.get("message"),
            tags=tuple(tags) if isinstance(tags, list) else (),
            session_id=data.get("session_id"),
            params=dict(data.get("params") or {}),
            usage=dict(usage) if isinstance(usage, dict) else None,
            batch=_blob(data.get("batch")),
            result=_blob(data.get("result")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ServiceError(
            f"the service sent a job description jobledger cannot read: {exc}"
        ) from exc


def _date(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    return datetime.fromisoformat(value)


def _blob(value: object) -> RemoteBlob | None:
    if not isinstance(value, dict) or not value.get("sha256"):
        return None
    size = value.get("size")
    return RemoteBlob(
        str(value["sha256"]),
        size if isinstance(size, int) else None,
        str(value.get("media_type") or "application/octet-stream"),
    )


def _parse_sse(lines: Iterator[str]) -> Iterator[Event]:
    event_id, kind = 0, "message"
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                try:
                    payload = json.loads("\n".join(data))
                except ValueError:
                    payload = {"raw": "\n".join(data)}
                yield Event(event_id, kind, payload)
            kind, data = "message", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "id" and value.isdigit():
            event_id = int(value)
        elif field == "event":
            kind = value
        elif field == "data":
            data.append(value)


def _chunks(response: requests.Response, url: str) -> Iterator[bytes]:
    try:
        yield from response.iter_content(CHUNK)
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise OfflineError(
            f"the download from {url} was interrupted ({_short(exc)}); try again"
        ) from exc


def _refused(exc: BaseException) -> bool:
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


def _backoff(attempt: int) -> None:
    delay = min(4.0, 0.1 * 2**attempt)
    time.sleep(delay / 2 + random.uniform(0, delay / 2))


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) < 200 else text[:197] + "..."


def _error_from(response: requests.Response, url: str) -> ServiceError:
    code: str | None = None
    try:
        body = response.json()
        error = body.get("error", {}) if isinstance(body, dict) else {}
        message = str(error.get("message") or response.reason)
        code = error.get("code")
    except ValueError:
        message = response.text[:200] or str(response.reason)
    finally:
        response.close()
    status = response.status_code
    if status == 401:
        return AuthenticationError(
            f"the service at {url.split('/v1/')[0]} refused the token ({message}); set a "
            "valid token with `jobledger config` or JOBLEDGER_TOKEN",
            status_code=status,
            code=code,
        )
    if status == 404 and "/v1/jobs/" in url:
        return _NotFound(message, status_code=status, code=code)
    if status == 409 and code == "not_ready":
        return _NotReady(message, status_code=status, code=code)
    return ServiceError(message, status_code=status, code=code)


class _NotFound(ServiceError, JobNotFoundError):
    """The service does not know the job (or it belongs to someone else)."""


class _NotReady(ServiceError, ResultNotReadyError):
    """The service has no result for the job yet."""
