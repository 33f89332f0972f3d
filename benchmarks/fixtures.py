"""Registries filled the way users fill them: the fixtures of the scale figures.

A *scale fixture* is what a user has after submitting N jobs to the reference service
and reading their results: a ``JOBLEDGER_HOME`` (registry and store) and the data
folder of the service that ran them. It is made by replaying, job after job, the calls
that ``conn.submit(batch, backend, ...)`` then ``job.result()`` make, through the
project's own write API. On the client: ``Store.put_bytes`` (the batch),
``Registry.record_submission``, ``Registry.acknowledge`` (the service's answer),
``Registry.apply_infos`` (the status round that sees the job end), ``Store.put_stream``
and ``Registry.set_result`` (the download). On the service: ``JobStore.insert``,
``claim_next`` and ``finish`` (plus the log line of a failing job). Every answer goes
through protocol v1's JSON (``wire.job_info`` / ``wire.status_entry`` serialized, then
``job_from_wire``), as over HTTP. No SQL is written here, so a new schema is picked up
by rebuilding, never by editing this module.

What differs from a user's history, and why it does not change what is measured:

- many jobs share one transaction (the registry's and the service's ``write`` join one
  open transaction, committed every :data:`JOBS_PER_COMMIT` jobs), so that 1,000,000
  jobs take minutes instead of a day of fsyncs; the statements, hence the rows and the
  indexes, are the same. ``B5c`` checks it: it compares the bytes per job of a fixture
  with those of a registry filled through the real service, one job per transaction.
- the service's blob files are not written, only its database rows: no scale figure
  downloads anything (every result is already in the client's store).
- the jobs run in no time, one after the other; dates are those of the build.

The jobs follow :func:`recipe`: 95 % ``blob`` jobs (a 512-byte result, different from
the batch, like a measurement's), 5 % ``fail`` jobs, two tags each (``exp-NN``, one of
100, and ``user-N``, one of 7), one job in ten in a session of ten, one in a thousand
with an alias. Fixtures are cached in ``benchmarks/.fixtures/scale-<N>-<key>``, where
the key hashes the sources of everything that writes them (registry, store, service
database, protocol) and :data:`RECIPE_VERSION`: any change there rebuilds them, and
fixtures of other keys are deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from benchmarks.common import FIXTURES, home

__all__ = [
    "JOBS_PER_COMMIT",
    "RECIPE_VERSION",
    "Recipe",
    "ScaleFixture",
    "recipe",
    "registry_bytes",
    "scale_fixture",
]

T = TypeVar("T")
JOBS_PER_COMMIT = 2000
USER = "bench-scale"
_BLOB_SIZE = 512
_CIRCUIT = "H 0; CNOT 0 1; MEASURE"
_FAIL_MESSAGE = "failed on purpose"
_SOURCES = (
    "src/jobledger/registry",
    "src/jobledger/store.py",
    "src/jobledger/provenance.py",
    "src/jobledger/codecs/core.py",
    "src/jobledger/service/db.py",
    "src/jobledger/service/store.py",
    "src/jobledger/service/auth.py",
    "src/jobledger/service/wire.py",
    "src/jobledger/providers/jobledger_http.py",
)
#: Bump when :func:`recipe` or :func:`build` change what a fixture holds.
RECIPE_VERSION = 1


@dataclass(frozen=True)
class Recipe:
    """What a user submitted as job *i*: ``conn.submit(batch, backend, params=..., ...)``."""

    batch: dict[str, Any]
    backend: str
    params: dict[str, Any]
    tags: list[str]
    session_id: str | None
    alias: str | None

    @property
    def fails(self) -> bool:
        """Whether the job ends in ERROR."""
        return self.backend == "fail"


def recipe(i: int) -> Recipe:
    """Job *i* of a fixture (deterministic; the same for the real-path comparison)."""
    # A hash, so that failing, the user tag and the experiment tag are independent.
    draw = int.from_bytes(hashlib.blake2b(i.to_bytes(8, "little"), digest_size=8).digest())
    fails = draw % 20 == 7
    return Recipe(
        batch={"circuit": _CIRCUIT, "shots": 1000, "run": i},
        backend="fail" if fails else "blob",
        params={"message": _FAIL_MESSAGE} if fails else {"size": _BLOB_SIZE, "seed": i},
        tags=[f"exp-{i % 100:02d}", f"user-{(draw >> 32) % 7}"],
        session_id=f"session-{i // 10:06d}" if (i // 10) % 10 == 3 else None,
        alias=f"run_{i:07d}" if i % 1000 == 999 else None,
    )


def blob_result(seed: int, size: int = _BLOB_SIZE) -> bytes:
    """The bytes the service's ``blob`` backend returns for *seed* and *size* (<= 1 MiB)."""
    parts = [
        hashlib.sha256(f"{seed}:{counter}".encode()).digest() for counter in range(-(-size // 32))
    ]
    return b"".join(parts)[:size]


def registry_bytes(registry: Path) -> int:
    """The registry's size on disk, write-ahead log folded in first (as after a close)."""
    db = sqlite3.connect(registry)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    return sum(p.stat().st_size for p in registry.parent.glob(registry.name + "*") if p.is_file())


@dataclass(frozen=True)
class ScaleFixture:
    """A cached fixture of *count* jobs: a client home and its service's data folder."""

    root: Path
    count: int
    build_seconds: float | None  # None when it was cached

    @property
    def home(self) -> Path:
        """The ``JOBLEDGER_HOME`` of the user who submitted the jobs."""
        return self.root / "home"

    @property
    def service_data(self) -> Path:
        """The ``--data`` folder of the service that ran them."""
        return self.root / "service"

    @property
    def token(self) -> str:
        """The user's token for that service."""
        return (self.root / "token").read_text().strip()

    @property
    def registry(self) -> Path:
        """The user's registry file."""
        return self.home / "data" / "registry.db"


def source_key() -> str:
    """A short hash of the sources that decide what a fixture's files hold."""
    from benchmarks.common import ROOT

    digest = hashlib.sha256(f"recipe {RECIPE_VERSION}".encode())
    for name in _SOURCES:
        path = ROOT / name
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            digest.update(str(file.relative_to(ROOT)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:12]


def scale_fixture(count: int, *, cache: bool, scratch: Path) -> ScaleFixture:
    """The fixture of *count* jobs: cached in ``benchmarks/.fixtures`` when *cache*
    (built on first use), else built afresh under *scratch*."""
    key = source_key()
    if cache:
        root = FIXTURES / f"scale-{count}-{key}"
        for stale in FIXTURES.glob(f"scale-{count}-*"):
            if stale != root:
                shutil.rmtree(stale, ignore_errors=True)
    else:
        root = scratch / f"scale-{count}"
    if (root / "complete").exists():
        return ScaleFixture(root, count, None)
    shutil.rmtree(root, ignore_errors=True)
    building = root.with_name(root.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    started = time.perf_counter()
    build(building, count)
    seconds = time.perf_counter() - started
    (building / "complete").write_text(f"{count} jobs built in {seconds:.1f} s\n")
    os.replace(building, root)
    return ScaleFixture(root, count, seconds)


# -- building ---------------------------------------------------------------------------


def _batched_registry(path: Path) -> Any:
    """A :class:`Registry` whose writes join one open transaction while
    :meth:`batch` runs (same statements, one commit for many jobs)."""
    from jobledger.registry import Registry

    class BatchedRegistry(Registry):
        _open: sqlite3.Connection | None = None

        def write(self, work: Callable[[sqlite3.Connection], T], *, durable: bool = False) -> T:
            if self._open is not None:
                return work(self._open)
            return super().write(work, durable=durable)

        def batch(self, jobs: Callable[[], None]) -> None:
            def work(conn: sqlite3.Connection) -> None:
                self._open = conn
                try:
                    jobs()
                finally:
                    self._open = None

            super().write(work)

    return BatchedRegistry(path)


def _batched_database(data: Path) -> Any:
    """The service's :class:`Database` with the same trick as :func:`_batched_registry`."""
    from jobledger.service.db import Database

    class BatchedDatabase(Database):
        _batching = False

        @contextlib.contextmanager
        def write(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
            if self._batching:
                yield self.conn()
                return
            with super().write(durable=durable) as conn:
                yield conn

        @contextlib.contextmanager
        def batch(self) -> Iterator[None]:
            with super().write():
                self._batching = True
                try:
                    yield
                finally:
                    self._batching = False

    return BatchedDatabase(data)


def _over_the_wire(info: dict[str, Any]) -> Any:
    """A service answer as the client reads it: serialized, parsed, decoded."""
    from jobledger.providers.jobledger_http import job_from_wire

    return job_from_wire(json.loads(json.dumps(info)))


def build(root: Path, count: int) -> None:
    """Write a fixture of *count* jobs into the empty folder *root*."""
    from jobledger import codecs
    from jobledger.paths import Paths
    from jobledger.provenance import capture_environment, provenance_digest
    from jobledger.registry import BlobRef, ServiceRecord
    from jobledger.service.auth import TokenAuthority
    from jobledger.service.blobs import BlobInfo
    from jobledger.service.store import JobRecord as ServiceJob
    from jobledger.service.store import JobStore, now_iso
    from jobledger.service.wire import job_info, status_entry
    from jobledger.status import JobStatus
    from jobledger.store import Store

    user_home = root / "home"
    with home(user_home):
        paths = Paths(
            user_home / "data", user_home / "cache", user_home / "config", user_home / "runtime"
        )
        database = _batched_database(root / "service")
        (root / "token").write_text(TokenAuthority(database).create(USER) + "\n")
        os.chmod(root / "token", 0o600)
        jobs = JobStore(database)
        service_id = database.service_id()
        registry = _batched_registry(paths.registry)
        store = Store(paths.store)
        registry.upsert_service(ServiceRecord(service_id, "http://127.0.0.1:8765", "remote", None))
        environment = capture_environment()
        environment_digest = provenance_digest(environment)

        def one(i: int) -> None:
            job = recipe(i)
            # conn.submit: batch into the store, intent into the registry, then the POST.
            data, media_type = codecs.encode(job.batch)
            digest = store.put_bytes(data, what="batch")
            key = uuid.uuid4().hex
            pk = registry.record_submission(
                service=service_id,
                backend=job.backend,
                batch=BlobRef(digest, len(data), media_type),
                params=job.params,
                tags=job.tags,
                alias=job.alias,
                session_id=job.session_id,
                provenance=environment,
                provenance_digest=environment_digest,
                idempotency_key=key,
            )
            from jobledger.ids import new_job_id

            created, _ = jobs.insert(
                ServiceJob(
                    seq=0,
                    id=new_job_id(),
                    owner=USER,
                    backend=job.backend,
                    backend_version="1.0",
                    status=JobStatus.QUEUED,
                    created_at=now_iso(),
                    started_at=None,
                    ended_at=None,
                    message=None,
                    tags=job.tags,
                    session_id=job.session_id,
                    params=job.params,
                    batch=BlobInfo(digest, len(data), media_type),
                    result=None,
                    usage_seconds=None,
                    metrics={},
                ),
                key,
            )
            registry.acknowledge(pk, _over_the_wire(job_info(created)))
            # The service runs it.
            running = jobs.claim_next()
            assert running is not None and running.id == created.id
            result: bytes | None = None
            if job.fails:
                jobs.add_event(
                    created.id,
                    "log",
                    {"line": f"failing on purpose: {_FAIL_MESSAGE}", "at": now_iso()},
                )
                jobs.finish(created.id, JobStatus.ERROR, _FAIL_MESSAGE)
            else:
                result = blob_result(i)
                info = BlobInfo(hashlib.sha256(result).hexdigest(), len(result), codecs.BYTES)
                jobs.finish(created.id, JobStatus.DONE, None, result=info)
            ended = jobs.get(created.id)
            assert ended is not None
            # job.result(): a status round sees it end, then the download.
            registry.apply_infos(service_id, [_over_the_wire(status_entry(ended))])
            if result is not None and ended.result is not None:
                got, size = store.put_stream(
                    [result], expected_sha256=ended.result.sha256, expected_size=len(result)
                )
                registry.set_result(pk, BlobRef(got, size, ended.result.media_type))

        try:
            for start in range(0, count, JOBS_PER_COMMIT):
                stop = min(count, start + JOBS_PER_COMMIT)

                def chunk(start: int = start, stop: int = stop) -> None:
                    with database.batch():
                        for i in range(start, stop):
                            one(i)

                registry.batch(chunk)
        finally:
            store.close()
            registry.close()
            database.close()
