"""Read-only queries for :mod:`jobledger.audit` (verify, export, provenance), in text form.

:class:`AuditReads` answers an audit with the values as schema 4 stored them and as
bundles carry them (hex digests, ISO dates, status and kind names, service ids),
whatever the file stores: the event hash chain covers that text form, and exported
bundles keep one format. A schema 5 event whose ``prev_sha256`` is NULL gets the
sha256 of the row before it (:attr:`ChainedEvent.prev_implied` says so). Nothing here
writes. Imported by the audit only, so a cold read never loads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jobledger.errors import RegistryError
from jobledger.registry.codec import date_text, digest_text, digest_value, text_job
from jobledger.registry.writes import GENESIS

if TYPE_CHECKING:
    from jobledger.registry.core import Registry

__all__ = ["AuditReads", "ChainedEvent"]

_EVENT_COLUMNS = "id, job_pk, at, kind, detail, sha256, prev_sha256"


@dataclass(frozen=True)
class ChainedEvent:
    """One row of the ``events`` table with its place in the hash chain (schema 4),
    in text form."""

    id: int
    job_pk: int | None
    at: str
    kind: str
    detail: str
    sha256: str | None
    prev_sha256: str | None
    prev_implied: bool = False  # schema 5 stored no prev_sha256: the row before's sha256


class AuditReads:
    """The queries of an audit, on a (read-only) :class:`Registry`."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def schema_version(self) -> int:
        """The file's schema version (0 when there is no registry yet)."""
        rows = self.registry.rows("SELECT value FROM meta WHERE key = 'schema_version'")
        return int(rows[0][0]) if rows else 0

    def events_head(self) -> tuple[int, str] | None:
        """The id and hash of the last event jobledger wrote (``meta.events_head``)."""
        rows = self.registry.rows("SELECT value FROM meta WHERE key = 'events_head'")
        if not rows or not rows[0][0]:
            return None
        event_id, _, digest = str(rows[0][0]).partition(" ")
        return int(event_id), digest

    def _chained(self, rows: list[tuple[Any, ...]], before: str | None) -> list[ChainedEvent]:
        """*rows* (consecutive in id order) in text form; *before* is the sha256 of the
        row preceding the first one (``GENESIS`` when there is none)."""
        keys = self.registry.keys
        legacy = self.registry.version < 5
        events = []
        for event_id, job_pk, at, kind, detail, sha256, prev in rows:
            implied = prev is None and not legacy
            events.append(
                ChainedEvent(
                    event_id,
                    job_pk,
                    str(date_text(at) or ""),
                    keys.string(kind) if isinstance(kind, int) else str(kind or ""),
                    str(digest_text(detail) or ""),
                    digest_text(sha256),
                    before if implied else digest_text(prev),
                    implied,
                )
            )
            before = digest_text(sha256)
        return events

    def _sha_before(self, event_id: int) -> str | None:
        rows = self.registry.rows(
            "SELECT sha256 FROM events WHERE id < ? ORDER BY id DESC LIMIT 1", (event_id,)
        )
        return digest_text(rows[0][0]) if rows else GENESIS

    def event_page(self, after: int, limit: int = 10000) -> list[ChainedEvent]:
        """Events with ids above *after*, in id order, at most *limit* of them."""
        rows = self.registry.rows(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE id > ? ORDER BY id LIMIT ?",
            (after, limit),
        )
        return self._chained(rows, self._sha_before(rows[0][0])) if rows else []

    def job_events(self, pk: int) -> list[ChainedEvent]:
        """The job's events with their hashes, oldest first."""
        rows = self.registry.rows(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE job_pk = ? ORDER BY id", (pk,)
        )
        # A job's events are not consecutive in the log: each gets its own row before.
        return [self._chained([row], self._sha_before(row[0]))[0] for row in rows]

    def provenance_text(self, digest: str) -> str | None:
        """The provenance record with this digest, as stored (JSON text)."""
        registry = self.registry
        registry.rows("SELECT 1")  # opens the file, so that its version is known
        stored = digest if registry.version < 5 else digest_value(digest)
        rows = registry.rows("SELECT record FROM provenance WHERE digest = ?", (stored,))
        return str(rows[0][0]) if rows and rows[0][0] is not None else None

    def job_row(self, pk: int) -> dict[str, Any]:
        """The job's ``jobs`` row, column by column, in its text form."""
        rows = self.registry.rows(
            f"SELECT {self.registry.job_columns()} FROM jobs WHERE pk = ?", (pk,)
        )
        if not rows:
            raise RegistryError(f"no job #{pk} in the registry {self.registry.path}")
        return text_job(rows[0], self.registry.keys)

    def service_row(self, service_id: str) -> dict[str, Any] | None:
        """The service's ``services`` row in its text form (it never holds a token);
        ``None`` for a service only named by its jobs."""
        rows = self.registry.rows(
            "SELECT id, url, kind, profile, first_seen, last_seen FROM services "
            "WHERE id = ? AND kind IS NOT NULL",
            (service_id,),
        )
        if not rows:
            return None
        service_id, url, kind, profile, first_seen, last_seen = rows[0]
        return {
            "id": service_id,
            "url": url,
            "kind": kind,
            "profile": profile,
            "first_seen": date_text(first_seen),
            "last_seen": date_text(last_seen),
        }
