"""HTTP transport to a job service: the only module that imports ``requests``.

One :class:`Transport` per connection holds one ``requests.Session`` with connect and
read timeouts. Idempotent calls, and submits carrying an idempotency key, are retried
with exponential backoff and jitter. Every ``requests`` error becomes a jobledger
error naming the URL and what to do: unreachable services raise
:class:`~jobledger.errors.OfflineError`, error answers the class matching their status.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

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

__all__ = ["Download", "Event", "Transport"]

T = TypeVar("T")

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 60.0
CHUNK = 1 << 20
_RETRY_STATUSES = frozenset({429, 502, 503, 504})


@dataclass(frozen=True)
class Event:
    """One server-sent event of a job's event stream."""

    id: int
    kind: str
    data: dict[str, Any]


@dataclass
class Download:
    """A payload being downloaded: its announced media type, digest and size."""

    media_type: str
    sha256: str | None
    size: int | None
    chunks: Iterator[bytes]


class Transport:
    """Talks protocol v1 to one job service.

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

    def health(self) -> dict[str, Any]:
        """``GET /v1/health``: protocol, version and the service's stable id."""
        data: dict[str, Any] = self._json("GET", "/v1/health", retry=False)
        if not isinstance(data, dict) or "service_id" not in data:
            raise ServiceError(f"{self.url} does not look like a jobledger service")
        return data

    def backends(self) -> list[dict[str, Any]]:
        """``GET /v1/backends``."""
        return list(self._json("GET", "/v1/backends")["backends"])

    def submit(self, body: dict[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        """``POST /v1/jobs``; retried safely thanks to the idempotency key."""
        data = json.dumps(body, separators=(",", ":"))
        headers = {"Idempotency-Key": idempotency_key, "Content-Type": "application/json"}
        result: dict[str, Any] = self._json(
            "POST", "/v1/jobs", retry=True, data=data, headers=headers
        )
        return result

    def info(self, job_id: str) -> dict[str, Any]:
        """``GET /v1/jobs/{id}``."""
        result: dict[str, Any] = self._json("GET", f"/v1/jobs/{job_id}")
        return result

    def list_jobs(self, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """``GET /v1/jobs``, following the cursor through every page."""
        query = dict(params)
        while True:
            page = self._json("GET", "/v1/jobs", params=query)
            yield from page["jobs"]
            cursor = page.get("next_cursor")
            if not cursor:
                return
            query["cursor"] = cursor

    def statuses(self, ids: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
        """``POST /v1/jobs/status`` in chunks of 1,000 ids: ``(statuses, not_found)``."""
        found: list[dict[str, Any]] = []
        missing: list[str] = []
        for start in range(0, len(ids), 1000):
            page = self._json("POST", "/v1/jobs/status", json={"ids": ids[start : start + 1000]})
            found.extend(page["jobs"])
            missing.extend(page.get("not_found", []))
        return found, missing

    @contextmanager
    def download(self, job_id: str, what: str) -> Iterator[Download]:
        """Stream ``GET /v1/jobs/{id}/{what}`` (``batch`` or ``result``)."""
        response = self._request("GET", f"/v1/jobs/{job_id}/{what}", retry=True, stream=True)
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

    def text(self, job_id: str, what: str) -> str:
        """``GET /v1/jobs/{id}/logs`` as text."""
        response = self._request("GET", f"/v1/jobs/{job_id}/{what}", retry=True)
        try:
            return response.text
        finally:
            response.close()

    def get(self, job_id: str, what: str) -> dict[str, Any]:
        """``GET /v1/jobs/{id}/{what}`` for JSON sub-resources (metrics, interim)."""
        result: dict[str, Any] = self._json("GET", f"/v1/jobs/{job_id}/{what}")
        return result

    def cancel(self, job_id: str) -> dict[str, Any]:
        """``POST /v1/jobs/{id}/cancel`` (cancelling twice is harmless, so retried)."""
        result: dict[str, Any] = self._json("POST", f"/v1/jobs/{job_id}/cancel")
        return result

    def delete_files(self, job_id: str) -> dict[str, Any]:
        """``DELETE /v1/jobs/{id}/files``."""
        result: dict[str, Any] = self._json("DELETE", f"/v1/jobs/{job_id}/files")
        return result

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
