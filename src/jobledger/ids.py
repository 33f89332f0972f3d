"""Job ids: time-sortable, URL-safe, and valid Python identifiers.

An id is ``"J"`` followed by 10 Crockford base32 characters of the millisecond
timestamp and 8 random ones, e.g. ``J01JD7K3V8Q0B6TWXYZ``. The leading letter makes it
an identifier, so ``from jobledger.jobs import J01JD7K3V8Q0B6TWXYZ`` works.
"""

from __future__ import annotations

import re
import secrets
import time

__all__ = ["ID_PATTERN", "new_job_id"]

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ID_PATTERN = re.compile(r"^J[0-9A-HJKMNP-TV-Z]{18}$")


def _b32(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        value, digit = divmod(value, 32)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def new_job_id(now_ms: int | None = None) -> str:
    """Return a new job id for the time *now_ms* (default: now)."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    return "J" + _b32(ms, 10) + _b32(secrets.randbits(40), 8)
