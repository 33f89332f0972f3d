"""Recording jobs from an exported bundle: all of them in one transaction, or none.

:func:`record_imports` inserts the jobs' rows, their services (kind ``imported`` when
this registry does not know the service), provenance records, tag index rows and
events (appended to this registry's hash chain through :func:`.writes.add_event`, with
their original times), then an ``imported`` event per job naming the bundle. A job
already recorded here (same id and service, or same idempotency key) is left alone, so
importing twice changes nothing. An alias taken by another job is an error naming it,
unless *rename_aliases* gives the imported job a suffixed alias. Bundles carry rows in
their text form (:func:`.codec.text_job`); they are stored in this registry's compact
form (:func:`.codec.stored_job`). Used by :mod:`jobledger.audit.bundle`, which checks
every byte before calling it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jobledger.registry import writes
from jobledger.registry.codec import date_value, key_value, stored_job
from jobledger.registry.records import now_micros

if TYPE_CHECKING:
    from jobledger.registry.core import Registry

__all__ = ["ImportOutcome", "ImportedJob", "record_imports"]


@dataclass(frozen=True)
class ImportedJob:
    """One job of a bundle, as exported: its row, events, service and provenance."""

    row: dict[str, Any]  # the ``jobs`` columns in text form, without ``pk``
    events: tuple[tuple[str, str, str], ...]  # (at, kind, detail), oldest first
    service: dict[str, Any] | None  # the ``services`` row it was recorded under
    provenance: tuple[str, str] | None  # (digest, JSON record)


@dataclass(frozen=True)
class ImportOutcome:
    """Which jobs were recorded, which were already here, which aliases changed."""

    imported: tuple[str, ...]
    present: tuple[str, ...]
    renamed: tuple[tuple[str, str], ...] = field(default_factory=tuple)


def record_imports(
    registry: Registry, jobs: Sequence[ImportedJob], *, source: str, rename_aliases: bool
) -> ImportOutcome:
    """Record *jobs* in one ``BEGIN IMMEDIATE`` transaction (nothing on any error).

    :raises ValueError: when an alias is taken here and *rename_aliases* is false.
    """

    def work(conn: sqlite3.Connection) -> ImportOutcome:
        resolve = registry.keys.resolver(conn)
        imported: list[str] = []
        present: list[str] = []
        renamed: list[tuple[str, str]] = []
        now = now_micros()
        for job in jobs:
            row = {k: v for k, v in job.row.items() if k != "pk"}
            name = str(row.get("job_id"))
            if _already_here(conn, row):
                present.append(name)
                continue
            alias = row.get("alias")
            if alias and not _alias_free(conn, alias):
                if not rename_aliases:
                    raise ValueError(
                        f"the alias {alias!r} of job {name} is already used here; nothing "
                        "was imported. Import again with --rename-aliases "
                        "(rename_aliases=True) to give it a suffixed alias"
                    )
                row["alias"] = _free_alias(conn, alias)
                renamed.append((alias, row["alias"]))
            if job.service is not None:
                _record_service(conn, job.service, now)
            texts = dict([job.provenance]) if job.provenance is not None else {}
            values = stored_job(row, resolve, at=now, provenance=texts.get)
            keys = sorted(values)
            cursor = conn.execute(
                f"INSERT INTO jobs ({', '.join(keys)}) VALUES ({', '.join('?' * len(keys))})",
                [values[k] for k in keys],
            )
            pk = int(cursor.lastrowid or 0)
            writes.set_tags(
                conn, pk, (), json.loads(row.get("tags") or "[]"), values["created_at"]
            )
            for at, kind, detail in job.events:
                writes.add_event(conn, resolve, pk, kind, detail, at)
            writes.add_event(conn, resolve, pk, "imported", source, now)
            imported.append(name)
        return ImportOutcome(tuple(imported), tuple(present), tuple(renamed))

    return registry.write(work, durable=True)


def _already_here(conn: sqlite3.Connection, row: dict[str, Any]) -> bool:
    key = row.get("idempotency_key")
    found = conn.execute(
        "SELECT 1 FROM jobs WHERE (job_id = ? AND service = "
        "(SELECT key FROM services WHERE id = ?)) OR idempotency_key = ?",
        (row.get("job_id"), row.get("service"), key_value(key) if isinstance(key, str) else key),
    ).fetchone()
    return found is not None


def _alias_free(conn: sqlite3.Connection, alias: str) -> bool:
    taken = conn.execute(
        "SELECT 1 FROM jobs WHERE alias = ? OR job_id = ?", (alias, alias)
    ).fetchone()
    return taken is None


def _free_alias(conn: sqlite3.Connection, alias: str) -> str:
    candidate, number = f"{alias}_imported", 1
    while not _alias_free(conn, candidate):
        number += 1
        candidate = f"{alias}_imported{number}"
    return candidate


def _record_service(conn: sqlite3.Connection, service: dict[str, Any], now: int) -> None:
    # A service this registry already knows keeps its record (and its kind): the
    # imported jobs are then that service's jobs. Otherwise it is marked imported
    # (also when only jobs named it so far).
    first_seen = date_value(service.get("first_seen")) or now
    conn.execute(
        "INSERT INTO services (id, url, kind, profile, first_seen, last_seen) "
        "VALUES (?, ?, 'imported', NULL, ?, ?) ON CONFLICT(id) DO UPDATE SET "
        "url = excluded.url, kind = excluded.kind, first_seen = excluded.first_seen, "
        "last_seen = excluded.last_seen WHERE services.kind IS NULL",
        (service.get("id"), service.get("url") or "", first_seen, now),
    )
