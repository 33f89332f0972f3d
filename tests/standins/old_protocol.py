"""A loopback stand-in for a protocol-v1 service of a version before ``updated_after``.

:class:`OldProtocolService` forwards every request to a real ``jobledger serve`` (so jobs,
statuses, downloads and the service id are the real ones) and answers like services
before change listings did in the one place they differ: a listing with
``updated_after`` gets the ``422`` they gave for any unknown query parameter, word for
word. ``refused`` counts those answers and ``listings`` every ``GET /v1/jobs`` forwarded.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import requests

__all__ = ["OldProtocolService"]

# What services before updated_after listed as the parameters they knew.
_OLD_PARAMETERS = (
    "status, backend, tag, created_after, created_before, session_id, limit, order, cursor"
)
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class OldProtocolService:
    """Started on a free loopback port in front of the real service at *target*."""

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.refused = 0
        self.listings = 0
        self._lock = threading.Lock()
        self._session = requests.Session()
        handler = self._handler()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop answering."""
        self._server.shutdown()
        self._server.server_close()
        self._session.close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _forward(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if self.command == "GET" and parts.path == "/v1/jobs":
                    with standin._lock:
                        standin.listings += 1
                    query = parse_qs(parts.query, keep_blank_values=True)
                    unknown = sorted(set(query) - set(_OLD_PARAMETERS.split(", ")))
                    if unknown:
                        with standin._lock:
                            standin.refused += 1
                        message = (
                            f"unknown query parameter {unknown[0]!r}; use any of: "
                            + _OLD_PARAMETERS
                        )
                        error = {"error": {"code": "invalid", "message": message}}
                        self._answer(
                            422,
                            json.dumps(error).encode(),
                            {"Content-Type": "application/json"},
                        )
                        return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                answer = standin._session.request(
                    self.command,
                    standin.target + self.path,
                    data=body,
                    headers=headers,
                    timeout=60,
                )
                kept = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP}
                self._answer(answer.status_code, answer.content, kept)

            do_GET = do_POST = do_DELETE = _forward

        return Handler
