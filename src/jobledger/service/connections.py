"""Connection hygiene for the HTTP server: a cap on open connections, request timeouts.

uvicorn times out idle keep-alive connections (``timeout_keep_alive``) but not a
connection that has sent half a request, or nothing at all: each holds a file
descriptor forever, and a thousand of them starve the server of descriptors so that
even ``/v1/health`` goes unanswered. ``limit_concurrency`` does not help, since it
answers ``503`` only once a whole request head has arrived. :class:`ConnectionGuard`
closes the gap through a subclass of uvicorn's h11 protocol:

- at most ``max_connections`` connections are open; a new one beyond the cap evicts
  the oldest connection that is still waiting for a request head (half-sent or
  idle), or, if every connection is busy with a request, is answered ``503``;
- a request head must arrive whole within ``request_timeout`` seconds (``408``
  otherwise), and a request body may not stall for longer than that.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["ConnectionGuard"]

_SWEEP_SECONDS = 0.25


def _raw_response(status: int, reason: str, code: str, message: str) -> bytes:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class ConnectionGuard:
    """Tracks the server's connections; see the module docstring for the rules."""

    def __init__(self, max_connections: int, request_timeout: float) -> None:
        self.max_connections = max(1, max_connections)
        self.request_timeout = request_timeout
        # Insertion order is age order: the first entry is the oldest connection.
        self._open: dict[H11Protocol, list[float]] = {}
        self._sweeping: asyncio.TimerHandle | None = None
        self.evicted = 0
        self.timed_out = 0

    def protocol(self) -> type[H11Protocol]:
        """An h11 protocol class that reports to this guard (for ``uvicorn.Config``)."""
        guard = self

        class GuardedH11Protocol(H11Protocol):
            def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
                super().connection_made(transport)
                guard._admit(self)

            def data_received(self, data: bytes) -> None:
                guard._touch(self)
                super().data_received(data)

            def on_response_complete(self) -> None:
                guard._restart_head_clock(self)
                super().on_response_complete()

            def connection_lost(self, exc: Exception | None) -> None:
                guard._open.pop(self, None)
                super().connection_lost(exc)

        return GuardedH11Protocol

    # -- bookkeeping ---------------------------------------------------------------

    def _admit(self, proto: H11Protocol) -> None:
        now = time.monotonic()
        # [when the current request head started to be awaited, when data last came]
        self._open[proto] = [now, now]
        if self._sweeping is None:
            self._sweeping = proto.loop.call_later(_SWEEP_SECONDS, self._sweep, proto.loop)
        if len(self._open) <= self.max_connections:
            return
        for older in self._open:
            if older is not proto and _awaiting_head(older):
                self.evicted += 1
                self._close(older, None)
                return
        self._close(
            proto,
            _raw_response(
                503,
                "Service Unavailable",
                "busy",
                f"the service has {self.max_connections} connections open, all busy; "
                "retry shortly (jobledger serve --max-connections)",
            ),
        )

    def _touch(self, proto: H11Protocol) -> None:
        times = self._open.get(proto)
        if times is not None:
            times[1] = time.monotonic()

    def _restart_head_clock(self, proto: H11Protocol) -> None:
        times = self._open.get(proto)
        if times is not None:
            times[0] = time.monotonic()

    def _close(self, proto: H11Protocol, answer: bytes | None) -> None:
        self._open.pop(proto, None)
        transport = proto.transport
        if transport is None or transport.is_closing():
            return
        if answer is not None:
            transport.write(answer)
        transport.close()

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = time.monotonic()
        limit = self.request_timeout
        for proto, (head_since, data_at) in list(self._open.items()):
            if _awaiting_head(proto):
                if now - head_since > limit:
                    self.timed_out += 1
                    self._close(proto, _request_timeout(limit))
            elif (
                proto.conn.their_state is h11.SEND_BODY
                and not _reading_paused(proto)
                and now - data_at > limit
            ):
                self.timed_out += 1
                self._close(proto, None)
        self._sweeping = loop.call_later(_SWEEP_SECONDS, self._sweep, loop) if self._open else None


def _awaiting_head(proto: H11Protocol) -> bool:
    """Whether *proto* waits for a (next) request head: nothing is in progress."""
    cycle: Any = proto.cycle
    idle = cycle is None or cycle.response_complete
    return idle and proto.conn.their_state is h11.IDLE


def _reading_paused(proto: H11Protocol) -> bool:
    # The server itself stopped reading (the app is slow): not the client's stall.
    flow: Any = proto.flow
    return flow is not None and bool(flow.read_paused)


def _request_timeout(limit: float) -> bytes:
    return _raw_response(
        408,
        "Request Timeout",
        "timeout",
        f"the request did not arrive within {limit:g} s (jobledger serve --request-timeout)",
    )
