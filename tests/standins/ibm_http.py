"""HTTP plumbing of the IBM stand-in: a threaded loopback server, routes, replies, counters.

The stand-in uses the standard library's ``ThreadingHTTPServer`` rather than an
ASGI stack because one of its features needs the raw socket: a "lost answer"
closes the connection after the work is done, without writing a response, which
is what a client sees when a proxy or the network drops a reply. Routes are
``(method, template)`` pairs; ``template`` uses ``{name}`` for one path segment.
Every request is counted under ``"METHOD /template"`` and logged (method, route,
path, query, status, a few headers with secrets redacted) so tests can assert
what the SDK sent.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

LOGGED_HEADERS = ("Authorization", "Service-CRN", "IBM-API-Version", "X-Qx-Client-Application")


@dataclass(frozen=True)
class Request:
    """One parsed request as a route handler sees it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str]

    def arg(self, name: str) -> str | None:
        """The last value of query parameter *name*, or ``None``."""
        values = self.query.get(name)
        return values[-1] if values else None

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body or b"null")


@dataclass(frozen=True)
class Reply:
    """What a route answers; ``drop=True`` closes the connection without answering."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    drop: bool = False

    @classmethod
    def json(cls, payload: Any, status: int = 200) -> Reply:
        """A JSON reply."""
        return cls(status, json.dumps(payload).encode("utf-8"))

    @classmethod
    def text(cls, text: str, status: int = 200, content_type: str = "text/plain") -> Reply:
        """A text reply."""
        return cls(status, text.encode("utf-8"), content_type)


@dataclass(frozen=True)
class LoggedRequest:
    """One request as recorded by the stand-in."""

    method: str
    route: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    status: int


Handler = Callable[[Request], Reply]


@dataclass
class Router:
    """Route table, request counters and log, shared by all connections."""

    routes: list[tuple[str, re.Pattern[str], str, Handler]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    log: list[LoggedRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, method: str, template: str, handler: Handler) -> None:
        """Serve ``method template`` with *handler*."""
        # Templates are plain paths (letters, digits, "/", "-", "_"), so only {name} is special.
        pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
        self.routes.append((method, re.compile(f"^{pattern}$"), template, handler))

    def dispatch(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply:
        """Find the route for a request, run it, count and log it."""
        split = urlsplit(target)
        query = parse_qs(split.query, keep_blank_values=True)
        route, reply = f"{method} {split.path}", None
        for route_method, pattern, template, handler in self.routes:
            match = pattern.match(split.path)
            if match and route_method == method:
                route = f"{method} {template}"
                request = Request(method, split.path, query, headers, body, match.groupdict())
                reply = handler(request)
                break
        if reply is None:
            reply = Reply.json(
                {"errors": [{"code": "not_found", "message": f"No route {method} {split.path}"}]},
                404,
            )
        logged = {k: _redact(k, v) for k, v in headers.items() if k.lower() in _LOWER_LOGGED}
        with self.lock:
            self.counts[route] += 1
            self.log.append(LoggedRequest(method, route, split.path, query, logged, reply.status))
        return reply


_LOWER_LOGGED = {name.lower() for name in LOGGED_HEADERS}


def _redact(name: str, value: str) -> str:
    # Keep the scheme ("Bearer", "apikey") so tests can check it, never the secret.
    if name.lower() == "authorization":
        scheme, _, secret = value.partition(" ")
        return f"{scheme} <{len(secret)} chars>"
    return value


class _Connection(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: LoopbackServer

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k: v for k, v in self.headers.items()}
        reply = self.server.router.dispatch(self.command, self.path, headers, body)
        if reply.drop:
            self.close_connection = True
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def log_message(self, format: str, *args: Any) -> None:
        # The request log lives in Router.log; stderr stays quiet during tests.
        return


class LoopbackServer(ThreadingHTTPServer):
    """A threaded HTTP server on 127.0.0.1 that can close its open connections."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, router: Router) -> None:
        self.router = router
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Connection)
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close every connection still open."""
        self.shutdown()
        with self._open_lock:
            for sock in self._open:
                with contextlib.suppress(OSError):  # already closed by the client
                    sock.shutdown(socket.SHUT_RDWR)
        self.server_close()
        self._thread.join(timeout=10)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)
