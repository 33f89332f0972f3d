"""The protocol-v1 provider: jobledger's own job service over HTTP.

One :class:`HTTPProvider` per connection holds one ``requests.Session`` per thread, with
connect and read timeouts. What ``requests`` would read from the environment (proxies,
``NO_PROXY``, a CA bundle) is read once, when the provider is made, not on every call.
Idempotent calls, and submits carrying an idempotency key, are retried with exponential
backoff and jitter. Every ``requests`` error becomes a jobledger error naming the URL and
what to do: unreachable services raise :class:`~jobledger.errors.OfflineError`, error
answers the class matching their status. The service's JSON becomes the records of
:mod:`jobledger.providers.base` here, and nowhere else. Only ``providers/`` imports
``requests``.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import requests
import requests.adapters
import urllib3.exceptions
from urllib3.util import Retry

from jobledger import __version__
from jobledger.config import DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT
from jobledger.errors import (
    AuthenticationError,
    JobNotFoundError,
    OfflineError,
    ResultNotReadyError,
    ServiceError,
)
from jobledger.providers.base import (
    ChangePage,
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
from jobledger.redact import redact_url
from jobledger.status import JobStatus

__all__ = ["HTTPProvider", "job_from_wire", "network_settings"]

#: how long a submit, or a download between two chunks, may wait
SLOW_READ_TIMEOUT = 120.0
CHUNK = 1 << 20
_RETRY_STATUSES = frozenset({429, 502, 503, 504})


class HTTPProvider:
    """Talks protocol v1 to one jobledger job service.

    Retries go through urllib3's :class:`~urllib3.util.Retry`: every call of protocol
    v1 is safe to repeat (reads, cancel, delete, the status query, and submits, which
    carry an idempotency key), with exponential backoff and ``Retry-After`` honoured.
    The first contact (``health``) is not retried, so an absent service is reported at
    once.

    :param url: the service's base URL.
    :param token: the bearer token (never logged, never part of an error message).
    :param verify: verify TLS certificates.
    :param retries: how many times a call is retried.
    :param timeout: ``(connect, read)`` seconds for status and metadata calls;
        submits and downloads wait up to :data:`SLOW_READ_TIMEOUT` for data.

    Proxies and TLS trust come from the environment as ``requests`` reads them for
    *url* (see :func:`network_settings`), once, here.
    """

    #: a result download of an unfinished job is a ``409`` at once, and a result
    #: carries the job's status entry (``X-Job-Status``): see :class:`EagerResults`
    eager_results = True

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        verify: bool = True,
        retries: int = 4,
        timeout: tuple[float, float] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.shown_url = redact_url(self.url)  # for messages: never credentials
        self.retries = retries
        self.timeout = timeout or (DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT)
        self._local = threading.local()
        self._token = token
        self._proxies, self._verify = network_settings(self.url, verify)
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()
        # Whether the service lists changes (updated_after): unknown until first asked;
        # an older protocol-v1 service refuses the parameter, and is then not asked again.
        self._lists_changes: bool | None = None

    # -- plumbing ---------------------------------------------------------------

    def _session(self, retry: bool) -> requests.Session:
        """This thread's session, with or without retries (sessions are not shared
        between threads)."""
        key = "retrying" if retry else "once"
        session: requests.Session | None = getattr(self._local, key, None)
        if session is None:
            session = requests.Session()
            # Resolved once in __init__: per request, requests would scan the environment
            # again (a tenth of a millisecond or more) and let ~/.netrc replace the token.
            session.trust_env = False
            session.proxies.update(self._proxies)
            session.verify = self._verify
            session.headers["User-Agent"] = f"jobledger/{__version__}"
            if self._token:
                session.headers["Authorization"] = f"Bearer {self._token}"
            policy = Retry(
                total=self.retries if retry else 0,
                connect=1 if retry else 0,
                read=self.retries if retry else 0,
                status=self.retries if retry else 0,
                status_forcelist=_RETRY_STATUSES,
                allowed_methods=None,  # every protocol-v1 call is idempotent (see above)
                backoff_factor=0.1,
                backoff_max=4.0,
                backoff_jitter=0.1,
                respect_retry_after_header=True,
                raise_on_status=False,
            )
            adapter = requests.adapters.HTTPAdapter(
                pool_connections=4, pool_maxsize=16, max_retries=policy
            )
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            setattr(self._local, key, session)
            with self._lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        """Close every session this provider opened."""
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
        session = self._session(retry)
        return self._answer(
            url,
            lambda: session.request(
                method, url, stream=stream, timeout=timeout or self.timeout, **kwargs
            ),
        )

    def _answer(self, url: str, send: Callable[[], requests.Response]) -> requests.Response:
        """The response *send()* gets, with ``requests``' errors and error answers turned
        into jobledger's."""
        try:
            response = send()
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise OfflineError(
                f"cannot reach the job service at {self.shown_url} ({_reason(exc)}); check that "
                "it is running and the URL is right, or work offline with "
                "JOBLEDGER_OFFLINE=1"
            ) from exc
        except requests.RequestException as exc:
            raise ServiceError(
                f"the request to {redact_url(url)} failed ({_reason(exc)})"
            ) from exc
        if response.status_code >= 400:
            raise _error_from(response, redact_url(url))
        return response

    def _json(self, method: str, path: str, *, retry: bool = True, **kwargs: Any) -> Any:
        return self._decoded(self._request(method, path, retry=retry, **kwargs), path)

    def _decoded(self, response: requests.Response, path: str) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise ServiceError(
                f"the service at {self.shown_url} answered {path} with something that is not "
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
            raise ServiceError(f"{self.shown_url} does not look like a jobledger service")
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
        session = self._session(retry=True)
        request = self._submit_template(session).copy()
        request.headers["Idempotency-Key"] = idempotency_key
        request.prepare_body(json.dumps(body, separators=(",", ":")), None)
        url = self.url + "/v1/jobs"
        response = self._answer(url, lambda: session.send(request, timeout=self.timeout))
        return job_from_wire(self._decoded(response, "/v1/jobs"))

    def _submit_template(self, session: requests.Session) -> requests.PreparedRequest:
        """``POST /v1/jobs`` prepared once per session (URL, merged headers, hooks): a
        submit copies it and adds its key and body, instead of paying ``requests``'
        merging of session and request settings (about 80 µs a call) every time."""
        template: requests.PreparedRequest | None = getattr(self._local, "submit", None)
        if template is None:
            template = session.prepare_request(
                requests.Request(
                    "POST", self.url + "/v1/jobs", headers={"Content-Type": "application/json"}
                )
            )
            self._local.submit = template
        return template

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
        if query.updated_after is not None and self._lists_changes is not False:
            pages = self.changes(query.updated_after, page_size=query.page_size)
            if pages is not None:
                for change in pages:
                    yield from change.jobs
                return
        while True:
            page = self._json("GET", "/v1/jobs", params=params)
            for item in page["jobs"]:
                yield job_from_wire(item)
            cursor = page.get("next_cursor")
            if not cursor:
                return
            params["cursor"] = cursor

    def changes(self, after: str, *, page_size: int = 1000) -> Iterator[ChangePage] | None:
        """``GET /v1/jobs?updated_after=``: the jobs changed after the token *after*,
        page by page, each page with its ``updated_through`` token.

        The first page is asked for at once, so that a service that cannot list changes
        is known before anything is recorded: one that refuses the parameter (``400``
        or ``422``, as services before it did for unknown parameters) or ignores it (no
        ``updated_through`` in its answer) gives ``None``, and this provider does not ask
        it again. A token the service calls stale (``409 stale_cursor``: another user's, or from
        before its data was restored) starts again from ``""``.
        """
        if self._lists_changes is False:
            return None
        params: dict[str, Any] = {"updated_after": after, "limit": page_size}
        try:
            try:
                first = self._json("GET", "/v1/jobs", params=params)
            except ServiceError as exc:
                if exc.code != "stale_cursor" or not after:
                    raise
                params["updated_after"] = ""
                first = self._json("GET", "/v1/jobs", params=params)
        except ServiceError as exc:
            if isinstance(exc, AuthenticationError) or exc.status_code not in (400, 422):
                raise
            self._lists_changes = False
            return None
        if not isinstance(first, dict) or not isinstance(first.get("updated_through"), str):
            self._lists_changes = False
            return None
        self._lists_changes = True
        return self._change_pages(first, params)

    def _change_pages(self, page: dict[str, Any], params: dict[str, Any]) -> Iterator[ChangePage]:
        while True:
            through = page.get("updated_through")
            if not isinstance(through, str):
                raise ServiceError(
                    f"the service at {self.shown_url} stopped saying updated_through while "
                    "listing changes; run sync again"
                )
            yield ChangePage([job_from_wire(item) for item in page["jobs"]], through)
            cursor = page.get("next_cursor")
            if not cursor:
                return
            params["cursor"] = cursor
            page = self._json("GET", "/v1/jobs", params=params)

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
        response = self._request(
            "GET",
            f"/v1/jobs/{job_id}/{part}",
            retry=True,
            stream=True,
            timeout=(self.timeout[0], SLOW_READ_TIMEOUT),
        )
        try:
            length = response.headers.get("Content-Length")
            status = response.headers.get("X-Job-Status") if part == "result" else None
            yield Download(
                media_type=response.headers.get("Content-Type", "application/octet-stream"),
                sha256=response.headers.get("X-Content-SHA256"),
                size=int(length) if length and length.isdigit() else None,
                chunks=_chunks(response, self.shown_url),
                job=_status_header(status) if status else None,
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


def network_settings(url: str, verify: bool) -> tuple[dict[str, str], bool | str]:
    """The proxies and the ``verify`` value ``requests`` would use for *url*, read from
    the environment now.

    Proxies are those of ``HTTP_PROXY``, ``HTTPS_PROXY`` and ``ALL_PROXY`` (any case),
    none when ``NO_PROXY`` names *url*'s host (the rules of :mod:`requests.utils`). With
    *verify*, certificates are checked against ``REQUESTS_CA_BUNDLE`` or
    ``CURL_CA_BUNDLE`` when one is set, else the default bundle; without it, not at all
    (``requests`` itself would let one of those variables turn checking back on).
    """
    found = requests.utils.get_environ_proxies(url)
    proxies = {scheme: proxy for scheme, proxy in found.items() if scheme != "no" and proxy}
    if not verify:
        return proxies, False
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    return proxies, bundle or True


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
            f"the download from {url} was interrupted ({_reason(exc)}); try again"
        ) from exc


def _reason(exc: BaseException) -> str:
    """A short reason a person can act on, instead of urllib3's nested repr."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError):
            return "connection refused: nothing listens there"
        if isinstance(current, socket.gaierror):
            return "the host name cannot be resolved"
        if isinstance(current, urllib3.exceptions.NewConnectionError):
            text = str(current).lower()
            if "refused" in text:
                return "connection refused: nothing listens there"
            if "name or service" in text or "resolution" in text:
                return "the host name cannot be resolved"
        if isinstance(current, requests.exceptions.SSLError):
            return "TLS verification failed"
        if isinstance(current, requests.exceptions.ConnectTimeout | TimeoutError):
            return "no answer in time"
        if isinstance(current, requests.exceptions.ReadTimeout):
            return "connected, but no answer in time"
        if isinstance(current, ConnectionResetError):
            return "the connection was reset"
        nested = current.args[0] if current.args else None
        current = (
            nested.reason
            if isinstance(nested, urllib3.exceptions.MaxRetryError)
            else nested
            if isinstance(nested, BaseException)
            else current.__cause__ or current.__context__
        )
    return type(exc).__name__


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
            f"the service at {url.split('/v1/')[0]} refused the token ({message}); give a "
            "valid one in JOBLEDGER_TOKEN or in the profile's token file (`jobledger config` "
            "shows which is used); the service's admin makes one with `jobledger token "
            "create NAME`",
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


def _status_header(text: str) -> RemoteJob | None:
    """The job status entry a result download carries, or ``None`` when it cannot be
    read (the result itself is still good: the status is then asked for separately)."""
    try:
        data = json.loads(text)
        return job_from_wire(data) if isinstance(data, dict) else None
    except (ValueError, ServiceError):
        return None
