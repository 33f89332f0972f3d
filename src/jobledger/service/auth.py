"""Bearer tokens: creation (``jobledger token create``) and lookup per request.

A token is ``secrets.token_urlsafe(32)``; only its sha256 is stored, next to the
user name it belongs to. Lookups read the database on every request that is not in a
small positive cache, so a token created while the service runs works at once, and
an unknown token is never cached (it may be created a second later).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from datetime import UTC, datetime
from pathlib import Path

from jobledger.service.db import Database

__all__ = ["TokenAuthority", "create_token", "hash_token"]

_NAME_MAX = 100


def hash_token(token: str) -> str:
    """The hex sha256 of *token*, as stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _check_name(name: str) -> None:
    if not name or len(name) > _NAME_MAX or not name.isprintable() or name.strip() != name:
        raise ValueError(
            f"invalid user name {name!r}: use 1-{_NAME_MAX} printable characters "
            "without leading or trailing spaces"
        )


class TokenAuthority:
    """Creates tokens and resolves them to user names for one database."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: dict[str, str] = {}
        self._lock = threading.Lock()

    def create(self, name: str) -> str:
        """Create and store a new token for user *name*; return the token itself.

        :raises ValueError: when *name* is not a usable user name.
        """
        _check_name(name)
        token = secrets.token_urlsafe(32)
        now = datetime.now(UTC).isoformat(timespec="microseconds")
        with self._db.write() as conn:
            conn.execute(
                "INSERT INTO tokens (hash, name, created_at) VALUES (?, ?, ?)",
                (hash_token(token), name, now),
            )
        return token

    def user(self, token: str) -> str | None:
        """The user name of *token*, or ``None`` when the token is unknown."""
        digest = hash_token(token)
        with self._lock:
            cached = self._cache.get(digest)
        if cached is not None:
            return cached
        row = self._db.conn().execute("SELECT name FROM tokens WHERE hash = ?", (digest,))
        found = row.fetchone()
        if found is None:
            return None
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = str(found["name"])
        return str(found["name"])

    def user_from_header(self, header: str | None) -> str | None:
        """The user of an ``Authorization: Bearer <token>`` header, or ``None``."""
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        return self.user(token)


def create_token(data_dir: Path, name: str) -> str:
    """Create a token for user *name* in the service whose data is *data_dir*."""
    db = Database(data_dir)
    try:
        return TokenAuthority(db).create(name)
    finally:
        db.close()
