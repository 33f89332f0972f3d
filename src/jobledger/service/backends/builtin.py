"""The built-in backends of the reference service: ``echo``, ``sleep``, ``fail``, ``blob``.

They exist for demos and tests, so each has a parameter or two that makes a
behaviour easy to provoke: ``echo`` can be slow, ``sleep`` publishes interim results
and can ignore cancellation (``ignore_cancel``, a testing aid), ``fail`` can raise or
kill its worker process (``mode: "exit"``), and ``blob`` streams a large result of
deterministic pseudo-random bytes without holding it in memory.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from typing import Any

from jobledger import codecs
from jobledger.service.plugin import Context, Payload

__all__ = ["blob", "echo", "fail", "sleep"]

_CHUNK = 1 << 20


def _number(params: dict[str, Any], name: str, default: float, *, positive: bool) -> float:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"param {name!r} must be a number of seconds, not {value!r}")
    if value < 0 or (positive and value == 0):
        limit = "> 0" if positive else ">= 0"
        raise ValueError(f"param {name!r} must be {limit}, not {value!r}")
    return float(value)


def _only(params: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(params) - allowed)
    if unknown:
        known = ", ".join(sorted(allowed)) or "none"
        raise ValueError(f"unknown params {', '.join(unknown)}; this backend takes: {known}")


@dataclass(frozen=True)
class Echo:
    """Return the batch unchanged (same bytes, same media type)."""

    name: str = "echo"
    version: str = "1.0"
    description: str = "returns the batch unchanged; param delay (seconds, default 0)"

    def validate(self, params: dict[str, Any]) -> None:
        _only(params, {"delay"})
        _number(params, "delay", 0.0, positive=False)

    def run(self, batch: Payload, params: dict[str, Any], ctx: Context) -> Payload:
        delay = _number(params, "delay", 0.0, positive=False)
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and not ctx.cancelled():
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        return batch


@dataclass(frozen=True)
class Sleep:
    """Sleep, publishing ``{"elapsed": s}`` and a log line every interval."""

    name: str = "sleep"
    version: str = "1.0"
    description: str = (
        "sleeps; params seconds (default 1), interval (default 0.5), "
        "ignore_cancel (testing aid: keep sleeping when cancelled)"
    )

    def validate(self, params: dict[str, Any]) -> None:
        _only(params, {"seconds", "interval", "ignore_cancel"})
        _number(params, "seconds", 1.0, positive=False)
        _number(params, "interval", 0.5, positive=True)
        if not isinstance(params.get("ignore_cancel", False), bool):
            raise ValueError("param 'ignore_cancel' must be true or false")

    def run(self, batch: Payload, params: dict[str, Any], ctx: Context) -> dict[str, float]:
        seconds = _number(params, "seconds", 1.0, positive=False)
        interval = _number(params, "interval", 0.5, positive=True)
        polite = not params.get("ignore_cancel", False)
        start = time.monotonic()
        next_tick = start + interval
        while True:
            now = time.monotonic()
            if now - start >= seconds or (polite and ctx.cancelled()):
                break
            if now >= next_tick:
                elapsed = round(now - start, 3)
                ctx.publish({"elapsed": elapsed})
                ctx.log(f"slept {elapsed:.2f} of {seconds:g} s")
                next_tick += interval
            time.sleep(max(0.0, min(0.05, next_tick - now, start + seconds - now)))
        return {"slept": seconds}


@dataclass(frozen=True)
class Fail:
    """Fail on purpose: raise (default) or end the worker process abruptly."""

    name: str = "fail"
    version: str = "1.0"
    description: str = (
        'fails; params message (default "failed on purpose"), '
        'mode ("raise", the default, or "exit": the worker process calls os._exit(3))'
    )

    def validate(self, params: dict[str, Any]) -> None:
        _only(params, {"message", "mode"})
        if not isinstance(params.get("message", ""), str):
            raise ValueError("param 'message' must be a string")
        if params.get("mode", "raise") not in ("raise", "exit"):
            raise ValueError('param \'mode\' must be "raise" or "exit"')

    def run(self, batch: Payload, params: dict[str, Any], ctx: Context) -> None:
        message = str(params.get("message", "failed on purpose"))
        ctx.log(f"failing on purpose: {message}")
        if params.get("mode", "raise") == "exit":
            os._exit(3)
        raise RuntimeError(message)


@dataclass(frozen=True)
class Blob:
    """Stream *size* deterministic pseudo-random bytes as the result."""

    name: str = "blob"
    version: str = "1.0"
    description: str = "writes size deterministic pseudo-random bytes; params size, seed"

    def validate(self, params: dict[str, Any]) -> None:
        _only(params, {"size", "seed"})
        for key, default in (("size", None), ("seed", 0)):
            value = params.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"param {key!r} must be an integer >= 0, not {value!r}")

    def run(self, batch: Payload, params: dict[str, Any], ctx: Context) -> None:
        size = int(params["size"])
        block = _pseudo_random_block(int(params.get("seed", 0)))
        with ctx.open_result(codecs.BYTES) as out:
            left = size
            while left > 0:
                if ctx.cancelled():
                    return
                piece = block[: min(left, len(block))]
                out.write(piece)
                left -= len(piece)
        return None


def _pseudo_random_block(seed: int) -> bytes:
    # A 1 MiB block built from sha256 in counter mode, repeated: deterministic per
    # seed, cheap to produce, and incompressible enough for transfer tests.
    parts = []
    for counter in range(_CHUNK // 32):
        parts.append(hashlib.sha256(f"{seed}:{counter}".encode()).digest())
    return b"".join(parts)


echo = Echo()
sleep = Sleep()
fail = Fail()
blob = Blob()
