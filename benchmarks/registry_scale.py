"""B5: a registry of 1,000,000 jobs: filtered listing, id/alias lookup, file size.

The fixture is made once and cached in ``benchmarks/.fixtures``: the schema comes from
:class:`jobledger.registry.Registry` itself, then rows like the ones a submission, its
acknowledgement and two status changes write (a ``jobs`` row, its ``job_tags`` rows,
three events, one shared provenance record) are bulk-inserted in one transaction.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.common import FIXTURES, Bench, Figure, fmt_seconds, home, median, side_by_side

__all__ = ["b5_large_registry", "build_registry"]

_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
_SERVICE = "svc-benchmark"
_PROVENANCE = "p" * 64
_STATUSES = ["DONE"] * 90 + ["ERROR"] * 5 + ["CANCELLED"] * 3 + ["QUEUED", "RUNNING"]
_BACKENDS = ("echo", "sleep", "qpu-a", "qpu-b")
_JOB_COLUMNS = (
    "pk, job_id, service, idempotency_key, alias, backend, backend_version, status, "
    "created_at, started_at, ended_at, queue_position, message, tags, session_id, params, "
    "batch_sha256, batch_size, batch_media_type, result_sha256, result_size, "
    "result_media_type, provenance, usage, submit_state, last_seen_at, extras"
)


def _iso(seconds: int, micros: int, days: dict[int, str]) -> str:
    # Formatting by hand is ~10x faster than datetime.isoformat for a million rows.
    day, rest = divmod(seconds, 86400)
    prefix = days.get(day)
    if prefix is None:
        prefix = days[day] = (_EPOCH + timedelta(days=day)).strftime("%Y-%m-%d")
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{prefix}T{hours:02d}:{minutes:02d}:{secs:02d}.{micros:06d}+00:00"


def _rows(count: int) -> Iterator[tuple[tuple[Any, ...], list[tuple[Any, ...]], list[tuple]]]:
    from jobledger.ids import new_job_id

    rnd = random.Random(20240601)
    days: dict[int, str] = {}
    epoch_ms = int(_EPOCH.timestamp() * 1000)
    for pk in range(1, count + 1):
        seconds, micros = 30 * pk, rnd.randrange(10**6)
        created = _iso(seconds, micros, days)
        status = _STATUSES[rnd.randrange(len(_STATUSES))]
        final = status in ("DONE", "ERROR", "CANCELLED")
        ended = _iso(seconds + 5, micros, days) if final else None
        tags = [f"exp-{pk % 100:02d}", f"user-{rnd.randrange(7)}"]
        backend = _BACKENDS[pk % len(_BACKENDS)]
        done = status == "DONE"
        job = (
            pk,
            new_job_id(epoch_ms + seconds * 1000 + micros // 1000),
            _SERVICE,
            rnd.randbytes(16).hex(),
            f"run_{pk:07d}" if pk % 1000 == 0 else None,
            backend,
            "1.0",
            status,
            created,
            _iso(seconds + 1, micros, days) if final else None,
            ended,
            None,
            "failed on purpose" if status == "ERROR" else None,
            json.dumps(tags, separators=(",", ":")),
            None,
            '{"shots":1000}',
            rnd.randbytes(32).hex(),
            1024,
            "application/json",
            rnd.randbytes(32).hex() if done else None,
            2048 if done else None,
            "application/json" if done else None,
            _PROVENANCE,
            '{"seconds":4.0}' if final else "{}",
            "sent",
            ended or created,
            None,
        )
        job_tags = [(tag, created, pk, status) for tag in tags]
        events = [
            (pk, created, "submitted", backend),
            (pk, created, "status", "QUEUED"),
            (pk, ended or created, "status", status),
        ]
        yield job, job_tags, events


def build_registry(path: Path, count: int) -> None:
    """Write a registry of *count* jobs at *path* (schema from jobledger itself)."""
    from jobledger.registry import Registry

    registry = Registry(path)
    registry.count()  # creates the file and applies the migrations
    registry.close()
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode = OFF")
        db.execute("PRAGMA synchronous = OFF")
        db.execute("PRAGMA cache_size = -400000")
        db.execute("BEGIN")
        # Same indexes, built once after the rows: much faster than row by row.
        indexes = db.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        ).fetchall()
        for name, _sql in indexes:
            db.execute(f'DROP INDEX "{name}"')
        now = datetime.now(UTC).isoformat()
        db.execute(
            "INSERT INTO services (id, url, kind, profile, first_seen, last_seen) "
            "VALUES (?, 'http://127.0.0.1:9', 'remote', NULL, ?, ?)",
            (_SERVICE, now, now),
        )
        db.execute(
            "INSERT INTO provenance (digest, record, first_seen) VALUES (?, ?, ?)",
            (_PROVENANCE, json.dumps({"python": "3.11", "packages": {}}), now),
        )
        marks = ", ".join("?" * len(_JOB_COLUMNS.split(",")))
        batch: list[Any] = []
        for row in _rows(count):
            batch.append(row)
            if len(batch) == 20000:
                _insert(db, batch, marks)
                batch = []
        _insert(db, batch, marks)
        for _name, sql in indexes:
            db.execute(sql)
        db.execute("COMMIT")
        db.execute("PRAGMA journal_mode = WAL")
    finally:
        db.close()


def _insert(db: sqlite3.Connection, batch: list[Any], marks: str) -> None:
    db.executemany(f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES ({marks})", [b[0] for b in batch])
    db.executemany(
        "INSERT INTO job_tags (tag, created_at, job_pk, status) VALUES (?, ?, ?, ?)",
        [t for b in batch for t in b[1]],
    )
    db.executemany(
        "INSERT INTO events (job_pk, at, kind, detail) VALUES (?, ?, ?, ?)",
        [e for b in batch for e in b[2]],
    )


def fixture_home(bench: Bench, count: int) -> tuple[Path, float | None]:
    """A JOBLEDGER_HOME holding a registry of *count* jobs, built once and cached.

    Returns the folder and the build time in seconds (``None`` when cached).
    """
    from jobledger.registry import SCHEMA_VERSION

    if bench.settings.quick:
        root = bench.scratch("b5-home")
    else:
        root = FIXTURES / f"registry-{count}-schema{SCHEMA_VERSION}"
    done = root / "complete"
    if done.exists():
        return root, None
    shutil.rmtree(root, ignore_errors=True)
    (root / "data").mkdir(parents=True)
    start = time.perf_counter()
    build_registry(root / "data" / "registry.db", count)
    done.write_text("built\n")
    return root, time.perf_counter() - start


def _per_call(work: Callable[[], object], calls: int, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            work()
        samples.append((time.perf_counter() - start) / calls)
    return median(samples)


def b5_large_registry(bench: Bench) -> list[Figure]:
    """B5: listing, lookups and size of a 1,000,000-job registry."""
    import jobledger
    import jobledger.jobs

    count = bench.settings.pick(1_000_000, 2_000)
    root, built = fixture_home(bench, count)
    registry_file = root / "data" / "registry.db"
    rounds = bench.settings.pick(9, 2)
    with home(root):
        db = sqlite3.connect(f"file:{registry_file}?mode=ro", uri=True)
        conn = jobledger.connect(offline=True)
        try:
            tag_sql = (
                "SELECT jobs.* FROM job_tags t JOIN jobs ON jobs.pk = t.job_pk WHERE t.tag = ? "
            )
            second = (
                "AND EXISTS (SELECT 1 FROM job_tags u WHERE u.tag = ? AND "
                "u.created_at = t.created_at AND u.job_pk = t.job_pk) "
            )
            order = "AND t.status IN (?) ORDER BY t.created_at DESC, t.job_pk DESC LIMIT 100"
            # (name, Connection.jobs filters, the same query in raw SQL, its parameters)
            queries: list[tuple[str, dict[str, Any], str, tuple[str, ...]]] = [
                (
                    "tag exp-07 + done",
                    {"tags": ["exp-07"], "status": "done"},
                    tag_sql + order,
                    ("exp-07", "DONE"),
                ),
                (
                    "tags exp-07,user-3 + failed",
                    {"tags": ["exp-07", "user-3"], "status": "failed"},
                    tag_sql + second + order,
                    ("exp-07", "user-3", "ERROR"),
                ),
            ]
            if not conn.jobs(limit=100, **queries[0][1]):
                raise RuntimeError(f"{registry_file} has no jobs matching {queries[0][0]}")
            listing: list[tuple[str, float, float]] = []
            for name, filters, sql, args in queries:
                mine, theirs = side_by_side(
                    lambda f=filters: conn.jobs(limit=100, **f),
                    lambda q=sql, a=args: db.execute(q, a).fetchall(),
                    rounds * 3,
                )
                listing.append((name, median(mine), median(theirs)))
            ids = [
                r[0]
                for r in db.execute(
                    "SELECT job_id FROM jobs WHERE pk % ? = 0", (max(1, count // 200),)
                )
            ]
            aliases = [r[0] for r in db.execute("SELECT alias FROM jobs WHERE alias IS NOT NULL")]
            pick = random.Random(5)

            def by_id() -> object:
                return jobledger.jobs.get(pick.choice(ids))

            def by_alias() -> object:
                return jobledger.jobs.get(pick.choice(aliases))

            def offline_job() -> object:
                return conn.job(pick.choice(ids))

            def raw_lookup() -> object:
                return db.execute(
                    "SELECT * FROM jobs WHERE job_id = ?", (pick.choice(ids),)
                ).fetchall()

            by_id()
            lookups = [
                ("jobs.get(id)", _per_call(by_id, 200, rounds)),
                ("jobs.get(alias)", _per_call(by_alias, 200, rounds)),
                ("offline conn.job(id)", _per_call(offline_job, 200, rounds)),
            ]
            raw_lookup_time = _per_call(raw_lookup, 200, rounds)
        finally:
            conn.close()
            db.close()
            for registry, store in jobledger.jobs._opened.values():
                registry.close()
                store.close()
            jobledger.jobs._opened.clear()
    size = sum(
        os.path.getsize(p) for p in registry_file.parent.glob("registry.db*") if p.is_file()
    )
    _, worst_query, raw_query = max(listing, key=lambda item: item[1])
    worst_lookup = max(t for _, t in lookups)
    per_job = size / count
    query = Figure(
        "B5a",
        f"{count:,}-job registry: jobs(tags, status, limit=100)",
        fmt_seconds(worst_query),
        fmt_seconds(raw_query) + " (raw SQL)",
        "absolute",
        "<= 20 ms",
        worst_query <= 0.020,
    )
    query.notes.append(
        "B5a: "
        + "; ".join(f"{n} {fmt_seconds(t)} (raw SQL {fmt_seconds(r)})" for n, t, r in listing)
    )
    lookup = Figure(
        "B5b",
        f"{count:,}-job registry: id/alias lookup, warm",
        fmt_seconds(worst_lookup),
        fmt_seconds(raw_lookup_time) + " (raw SQL)",
        "absolute",
        "<= 1 ms",
        worst_lookup <= 0.001,
    )
    lookup.notes.append("B5b: " + "; ".join(f"{n} {fmt_seconds(t)}" for n, t in lookups))
    figure_size = Figure(
        "B5c",
        f"{count:,}-job registry: file size",
        f"{per_job:.0f} B/job",
        f"{size / 2**20:,.0f} MiB total",
        "absolute",
        "<= 1024 B/job",
        per_job <= 1024,
    )
    if built is not None:
        figure_size.notes.append(f"B5: fixture built in {built:.1f} s (cached for next runs)")
    return [query, lookup, figure_size]
