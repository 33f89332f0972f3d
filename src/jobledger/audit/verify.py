"""``jobledger audit verify``: check that the registry and the store still hold what they say.

:func:`verify` re-hashes every stored blob (streamed through the store in chunks, so a
1 GiB result never sits in memory) and compares sizes with the registry's records,
walks the event log's hash chain (schema 4; each hash covers the event's text form, so
a schema 5 file, which stores a row's ``prev_sha256`` only where it is not the row
before's hash, verifies the same) from the first event to the head kept in ``meta``,
checks that every job's provenance record exists and still has its digest,
and that every finished job's result is either stored or known to be absent. It opens
the registry read-only, changes nothing and opens no socket. The answer is a frozen
:class:`VerifyReport`: failures (each naming the job when there is one) and notes
(what is not wrong but worth knowing, such as a result not downloaded).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, cast

from jobledger.errors import CacheCorruptionError
from jobledger.paths import Paths, get_paths
from jobledger.provenance import provenance_digest
from jobledger.registry import JobRecord, Registry
from jobledger.registry.audit_reads import AuditReads, ChainedEvent
from jobledger.registry.writes import GENESIS, event_digest
from jobledger.status import JobStatus

if TYPE_CHECKING:
    from jobledger.store import Store

__all__ = ["Finding", "VerifyReport", "verify"]

CHAIN_SCHEMA = 4


@dataclass(frozen=True)
class Finding:
    """One failure or note of an audit: what was checked, the job, what was found."""

    check: str  # "blob", "events", "provenance", "result" or "registry"
    job: str | None
    message: str

    def line(self) -> str:
        """The finding as one line, naming the job first."""
        return f"job {self.job}: {self.message}" if self.job else self.message


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify` checked and found; ``ok`` when there is no failure."""

    registry: str
    store: str
    jobs: int
    blobs: int
    bytes: int
    events: int
    failures: tuple[Finding, ...]
    notes: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        """Whether every check held."""
        return not self.failures

    def as_dict(self) -> dict[str, object]:
        """The report as JSON-able data (the shape of ``audit verify --json``)."""
        return {
            "ok": self.ok,
            "registry": self.registry,
            "store": self.store,
            "checked": {
                "jobs": self.jobs,
                "blobs": self.blobs,
                "bytes": self.bytes,
                "events": self.events,
            },
            "failures": [vars(f) for f in self.failures],
            "notes": [vars(f) for f in self.notes],
        }


class _Counter:
    """A sink for :meth:`Store.copy_to` that only counts, reporting progress."""

    def __init__(self, report: Callable[[int], None]) -> None:
        self.report = report

    def write(self, data: bytes) -> int:
        self.report(len(data))
        return len(data)


def verify(
    paths: Paths | None = None, *, progress: Callable[[int, int], None] | None = None
) -> VerifyReport:
    """Check every stored blob, the event chain and every job's provenance reference.

    :param paths: where the registry and store are (default: the current environment's).
    :param progress: called as ``progress(bytes_checked, bytes_total)`` while blobs
        are re-hashed.
    :returns: a :class:`VerifyReport`; nothing is changed, whatever it finds.
    """
    paths = paths or get_paths()
    registry = Registry(paths.registry, readonly=True)
    failures: list[Finding] = []
    notes: list[Finding] = []
    try:
        reads = AuditReads(registry)
        records = registry.query(limit=None, descending=False) if registry.exists() else []
        names = {r.pk: _name(r) for r in records}
        _check_jobs(records, reads, failures)
        events = _check_chain(reads, names, failures, notes)
        blobs, size = 0, 0
        if paths.store.exists():
            from jobledger.store import Store

            with Store(paths.store) as store:
                blobs, size = _check_blobs(store, records, progress, failures)
                _check_results(store, records, failures, notes)
        else:
            _check_results(None, records, failures, notes)
    finally:
        registry.close()
    return VerifyReport(
        registry=str(paths.registry),
        store=str(paths.store),
        jobs=len(records),
        blobs=blobs,
        bytes=size,
        events=events,
        failures=tuple(failures),
        notes=tuple(notes),
    )


def _name(record: JobRecord) -> str:
    if record.job_id and record.alias:
        return f"{record.job_id} ({record.alias})"
    return record.job_id or record.alias or record.name


# -- provenance and results -----------------------------------------------------------


def _check_jobs(records: Iterable[JobRecord], reads: AuditReads, failures: list[Finding]) -> None:
    checked: dict[str, str | None] = {}
    for record in records:
        digest = record.provenance
        if not digest:
            continue
        if digest not in checked:
            checked[digest] = _provenance_problem(reads, digest)
        problem = checked[digest]
        if problem:
            failures.append(Finding("provenance", _name(record), problem))


def _provenance_problem(reads: AuditReads, digest: str) -> str | None:
    text = reads.provenance_text(digest)
    if text is None:
        return f"its provenance record {digest} is missing from the registry"
    try:
        record = json.loads(text)
    except ValueError:
        return f"its provenance record {digest} is not valid JSON any more"
    if not isinstance(record, dict) or provenance_digest(record) != digest:
        return f"its provenance record {digest} was changed: its content has another digest"
    return None


def _check_results(
    store: Store | None,
    records: Iterable[JobRecord],
    failures: list[Finding],
    notes: list[Finding],
) -> None:
    for record in records:
        if record.status is not JobStatus.DONE:
            continue
        if record.result is None:
            failures.append(
                Finding("result", _name(record), "it is done but no result digest is recorded")
            )
        elif store is None or not store.has(record.result.sha256):
            notes.append(
                Finding(
                    "result",
                    _name(record),
                    f"its result (sha256 {record.result.sha256}) is not downloaded",
                )
            )


# -- blobs ----------------------------------------------------------------------------


def _owners(records: Iterable[JobRecord]) -> dict[str, list[tuple[JobRecord, str, int | None]]]:
    """Every digest the registry refers to: ``[(job, part, recorded size)]``."""
    owners: dict[str, list[tuple[JobRecord, str, int | None]]] = {}
    for record in records:
        for part, ref in (("batch", record.batch), ("result", record.result)):
            if ref is not None:
                owners.setdefault(ref.sha256, []).append((record, part, ref.size or None))
        for key, digest in record.extras.items():
            owners.setdefault(str(digest), []).append((record, key, None))
    return owners


def _check_blobs(
    store: Store,
    records: list[JobRecord],
    progress: Callable[[int, int], None] | None,
    failures: list[Finding],
) -> tuple[int, int]:
    owners = _owners(records)
    total = store.stats().size
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(done, total)

    sink = cast(BinaryIO, _Counter(advance))
    blobs = 0
    for digest in store.digests():
        refs = owners.get(digest, [])
        what = ", ".join(f"{part} of job {_name(r)}" for r, part, _ in refs) or "blob"
        blobs += 1
        try:
            size = store.copy_to(digest, sink, what=what)
        except KeyError:
            continue  # removed meanwhile (by `cache prune`)
        except CacheCorruptionError as exc:
            template = f"its {{part}} does not match its recorded digest: {exc}"
            for job, message in _per_job(refs, template):
                failures.append(Finding("blob", job, message))
            continue
        for record, part, recorded in refs:
            if recorded is not None and recorded != size:
                failures.append(
                    Finding(
                        "blob",
                        _name(record),
                        f"its {part} (sha256 {digest}) is {size} bytes, the registry "
                        f"recorded {recorded}",
                    )
                )
    return blobs, done


def _per_job(
    refs: list[tuple[JobRecord, str, int | None]], template: str
) -> list[tuple[str | None, str]]:
    if not refs:
        return [(None, template.replace("its {part}", "a stored blob nothing refers to"))]
    return [(_name(r), template.replace("{part}", part)) for r, part, _ in refs]


# -- the event chain ------------------------------------------------------------------


def _check_chain(
    reads: AuditReads, names: dict[int, str], failures: list[Finding], notes: list[Finding]
) -> int:
    version = reads.schema_version()
    if 0 < version < CHAIN_SCHEMA:
        notes.append(
            Finding(
                "events",
                None,
                f"the registry is at schema {version}: its events carry no hashes yet "
                "(the next jobledger command that records something adds them)",
            )
        )
        return 0
    walker = _ChainWalker(names, failures)
    after = 0
    while page := reads.event_page(after):
        for event in page:
            walker.step(event)
        after = page[-1].id
    walker.finish(reads.events_head())
    return walker.count


class _ChainWalker:
    """Walks the events in id order, checking each row's hash and its link."""

    def __init__(self, names: dict[int, str], failures: list[Finding]) -> None:
        self.names = names
        self.failures = failures
        self.count = 0
        self.prev = GENESIS
        self.prev_id = 0
        self.prev_job: int | None = None
        self.dropped: dict[int, tuple[str, str]] = {}
        self.reported: set[int] = set()
        self.prev_edited = False
        # The hashes of the run of failed rows just before: a row whose link is implied
        # (schema 5) and verifies against one of them is intact, only moved after.
        self.suspects: list[str] = []

    def _job(self, pk: int | None) -> str | None:
        return None if pk is None else self.names.get(pk, f"#{pk} (not in the registry)")

    def _fail(self, event: ChainedEvent, message: str) -> None:
        self.reported.add(event.id)
        self.failures.append(Finding("events", self._job(event.job_pk), message))

    def step(self, event: ChainedEvent) -> None:
        self.count += 1
        label = f"event #{event.id} ({event.kind} {event.detail[:40]!r})".replace(" '')", ")")
        if event.kind == "dropped" and event.job_pk is None:
            self._remember_dropped(event)
        self._bridge(event.id)
        edited = False
        if event.sha256 is None:
            self._fail(event, f"{label} has no hash: it was written outside jobledger")
            edited = True
        elif event.sha256 != self._digest(event, event.prev_sha256 or ""):
            if event.prev_implied and event.id != self.prev_id + 1:
                # Its link is the hash of the row before, which is not there any more.
                self._fail(event, f"{_span(self.prev_id + 1, event.id - 1)} before {label}")
                edited = True
            elif not (
                event.prev_implied
                and any(event.sha256 == self._digest(event, s) for s in self.suspects)
            ):
                self._fail(event, f"{label} was edited: its content does not match its hash")
                edited = True
        elif event.prev_sha256 != self.prev and not self.prev_edited:
            # After an edited row the broken link is its consequence, not news.
            if event.id != self.prev_id + 1:
                self._fail(event, f"{_span(self.prev_id + 1, event.id - 1)} before {label}")
            else:
                self._fail(event, f"{label} does not follow event #{self.prev_id} in the chain")
        self.prev, self.prev_id, self.prev_job = event.sha256 or "", event.id, event.job_pk
        self.prev_edited = edited
        self.suspects = [*self.suspects[-7:], self.prev] if edited else []

    @staticmethod
    def _digest(event: ChainedEvent, prev: str) -> str:
        return event_digest(event.id, event.job_pk, event.at, event.kind, event.detail, prev)

    def _remember_dropped(self, event: ChainedEvent) -> None:
        try:
            rows = json.loads(event.detail)
            for event_id, digest, prev in rows:
                self.dropped[int(event_id)] = (str(digest), str(prev))
        except (ValueError, TypeError):
            self._fail(event, f"event #{event.id} (dropped) has an unreadable detail")

    def _bridge(self, next_id: int) -> None:
        """Follow the rows a ``dropped`` event recorded, up to *next_id*."""
        while self.prev_id + 1 < next_id and self.prev_id + 1 in self.dropped:
            digest, prev = self.dropped.pop(self.prev_id + 1)
            if prev != self.prev:
                break
            self.prev, self.prev_id = digest, self.prev_id + 1

    def finish(self, head: tuple[int, str] | None) -> None:
        if head is None:
            if self.count:
                self.failures.append(
                    Finding("events", None, "the registry has events but no chain head in meta")
                )
            return
        head_id, head_sha = head
        self._bridge(head_id + 1)
        if (head_id, head_sha) == (self.prev_id, self.prev):
            return
        if head_id > self.prev_id:
            self.failures.append(
                Finding(
                    "events",
                    self._job(self.prev_job),
                    f"{_span(self.prev_id + 1, head_id)} at the end of the log",
                )
            )
        elif not set(range(head_id + 1, self.prev_id + 1)) <= self.reported:
            self.failures.append(
                Finding(
                    "events",
                    self._job(self.prev_job),
                    f"event #{self.prev_id} was added outside jobledger (the last event "
                    f"jobledger wrote is #{head_id})",
                )
            )


def _span(first: int, last: int) -> str:
    if first == last:
        return f"event #{first} was deleted"
    return f"events #{first} to #{last} were deleted"
