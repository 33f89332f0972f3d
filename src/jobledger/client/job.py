"""The :class:`Job` handle: one object that speaks QLMaaS's and Qiskit Runtime's dialects.

Building a handle, ``repr()``, ``_repr_html_`` and attribute probes do no I/O: they
read the snapshot of the registry row the handle was built from. Reads go registry →
store → (only when missing) the service; a final status is never fetched again. The
thread behind :meth:`Job.stream_results` is in :mod:`.streaming`.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from jobledger import codecs
from jobledger.client.streaming import EventStream, reporting
from jobledger.errors import (
    CacheCorruptionError,
    JobCancelledError,
    JobFailureError,
    OfflineError,
    ResultNotReadyError,
    ServiceError,
)
from jobledger.registry import BlobRef, JobRecord, Registry
from jobledger.status import JobStatus

TYPE_CHECKING = False  # typing's flag without importing typing (see docs/architecture.md)
if TYPE_CHECKING:
    from typing import Any

    from jobledger.client.connection import Connection
    from jobledger.job_info import JobInfo, QueueInfo
    from jobledger.providers.base import Provider, RemoteJob
    from jobledger.store import Store

__all__ = ["BackendName", "Job", "JobId"]

_STATUS_TTL = 0.5


class JobId(str):
    """A job id that is also callable: ``job.job_id`` and ``job.job_id()`` both work."""

    __slots__ = ()

    def __call__(self) -> str:
        return str(self)


class BackendName(str):
    """A backend's name that also answers ``.name`` and ``.version`` (as Qiskit's
    backend objects do), so ``job.backend().name`` and ``job.backend() == "echo"`` both
    work."""

    __slots__ = ("version",)
    version: str | None

    def __new__(cls, name: str, version: str | None = None) -> BackendName:
        made = super().__new__(cls, name)
        made.version = version
        return made

    @property
    def name(self) -> str:
        """The backend's name."""
        return str(self)


def _apply(decoder: Any, data: bytes) -> Any:
    text = data.decode("utf-8", errors="replace")
    decode = getattr(decoder, "decode", None)
    if callable(decode):
        return decode(text)
    if callable(decoder):
        return decoder(text)
    raise TypeError(f"decoder must have decode(raw) or be callable, not {decoder!r}")


class Job:
    """A recorded job.

    Made by :meth:`Connection.submit`, :meth:`Connection.job` or
    ``from jobledger.jobs import <id or alias>``; not meant to be built by hand.
    """

    def __init__(
        self,
        record: JobRecord,
        connection: Connection | None = None,
        *,
        registry: Registry | None = None,
        store: Store | None = None,
    ) -> None:
        if connection is None and (registry is None or store is None):
            raise TypeError("a Job needs a connection, or a registry and a store")
        self._record = record
        self._connection = connection
        self._registry = registry if registry is not None else connection.registry  # type: ignore[union-attr]
        self._store_obj = store
        self._checked_at = 0.0
        self._stream: EventStream | None = None

    # -- plumbing ---------------------------------------------------------------

    @property
    def _conn(self) -> Connection:
        if self._connection is None:
            from jobledger.client.binding import connection_for

            self._connection = connection_for(self._record.service, self._registry)
        return self._connection

    @property
    def _store(self) -> Store:
        if self._store_obj is None:
            self._store_obj = self._conn.store
        return self._store_obj

    def _reload(self) -> JobRecord:
        self._record = self._registry.get(self._record.pk)
        return self._record

    def _require_id(self) -> str:
        record = self._record
        if record.job_id is None:
            record = self._reload()
        if record.submit_state == "refused":
            raise JobFailureError(
                f"job {record.name} was never created: {record.message}", job_id=None
            )
        if record.job_id is None:
            # A submission whose answer was lost: binding resolves pending rows.
            self._conn.bind()
            record = self._reload()
        if record.job_id is None:
            raise OfflineError(
                f"job #{record.pk} was recorded but the service has not acknowledged it yet; "
                "run `jobledger sync` when the service is reachable"
            )
        return record.job_id

    def _what(self, part: str) -> str:
        return f"{part} of job {self._record.name}"

    # -- identity ---------------------------------------------------------------

    @property
    def job_id(self) -> JobId:
        """The job's id (also callable, as in Qiskit: ``job.job_id()``)."""
        return JobId(self._record.job_id or self._require_id())

    @property
    def alias(self) -> str | None:
        """The job's alias, importable from :mod:`jobledger.jobs`."""
        return self._record.alias

    @alias.setter
    def alias(self, value: str | None) -> None:
        from jobledger.names import check_alias

        if value is not None:
            check_alias(value)
        self._conn.registry.set_alias(self._record.pk, value)
        self._reload()

    @property
    def tags(self) -> list[str]:
        """The job's tags."""
        return list(self._record.tags)

    def update_tags(self, new_tags: Sequence[str]) -> None:
        """Replace the job's tags (in the local registry)."""
        from jobledger.client.checks import check_tags

        self._conn.registry.set_tags(self._record.pk, check_tags(new_tags))
        self._reload()

    @property
    def session_id(self) -> str | None:
        """The session the job belongs to."""
        return self._record.session_id

    @property
    def program_id(self) -> str:
        """The backend's name (Qiskit's program id)."""
        return self._record.backend

    def backend(self) -> BackendName:
        """The backend the job runs on: its name, also as ``.name`` (as Qiskit's)."""
        return BackendName(self._record.backend, self._record.backend_version)

    primitive_id = program_id

    @property
    def instance(self) -> str | None:
        """The service the job was recorded for (Qiskit's instance): its id."""
        return self._record.service

    @property
    def private(self) -> bool:
        """Whether the job's results are private to its owner (always, here)."""
        return True

    @property
    def usage_estimation(self) -> dict[str, Any]:
        """The service's usage estimate; the reference service reports none, so ``{}``."""
        return {}

    def properties(self, refresh: bool = False) -> None:
        """The backend's calibration properties: none for the reference service's
        simulators (Qiskit returns ``None`` for simulators too)."""
        return None

    def queue_position(self, refresh: bool = False) -> int | None:
        """The job's place in the queue (Qiskit dialect of :meth:`queue`)."""
        if refresh:
            self.refresh()
        return self.queue()

    def queue_info(self) -> QueueInfo | None:
        """Where the job is in the queue, or ``None`` when it is not queued."""
        from jobledger.job_info import QueueInfo

        position = self.queue()
        if position is None:
            return None
        return QueueInfo(job_id=self._record.name, position=position)

    @property
    def submission_date(self) -> datetime:
        """When the job was submitted (UTC)."""
        return self._record.created_at

    creation_date = submission_date

    @property
    def starting_date(self) -> datetime | None:
        """When the job started running (UTC), or ``None``."""
        return self._record.started_at

    @property
    def ending_date(self) -> datetime | None:
        """When the job reached a final state (UTC), or ``None``."""
        return self._record.ended_at

    @property
    def provenance(self) -> dict[str, Any]:
        """What was recorded at submission: inputs, environment, code version."""
        record = self._record
        environment = self._registry.provenance(record.provenance) if record.provenance else None
        service = self._registry.service(record.service) if record.service else None
        return {
            "job_id": record.job_id,
            "backend": record.backend,
            "backend_version": record.backend_version,
            "params": dict(record.params),
            "batch_sha256": record.batch.sha256 if record.batch else None,
            "batch_media_type": record.batch.media_type if record.batch else None,
            "service_id": record.service,
            "service_url": service.url if service else None,
            "submitted_at": record.created_at.isoformat(),
            "result_sha256": record.result.sha256 if record.result else None,
            "environment": environment,
            "events": [
                {"at": at.isoformat(), "event": kind, "detail": detail}
                for at, kind, detail in self._registry.events(record.pk)
            ],
        }

    # -- status -----------------------------------------------------------------

    def refresh(self) -> JobInfo:
        """Ask the service for the job's info now (the one explicit status read)."""
        job_id = self._require_id()
        conn = self._conn
        info = conn.call(lambda p: p.info(job_id))
        conn.registry.apply_infos(conn.service_id, [info])
        self._checked_at = time.monotonic()
        self._reload()
        return self.get_info(refresh=False)

    def _current(self) -> JobRecord:
        """The record, refreshed from the service when not final (recorded status when
        the service cannot be reached)."""
        record = self._reload()
        if record.status.is_final:
            return record
        if time.monotonic() - self._checked_at < _STATUS_TTL:
            return record
        with contextlib.suppress(OfflineError):
            self.refresh()
        return self._record

    def status(self) -> JobStatus:
        """The job's status (Qiskit dialect): a :class:`JobStatus`."""
        return self._current().status

    def get_status(self, human_readable: bool = True) -> str | int:
        """The job's status (QLMaaS dialect): ``"done"``..., or the integer code."""
        status = self._current().status
        return status.qlmaas_name if human_readable else status.qlmaas_code

    def done(self) -> bool:
        """Whether the job finished successfully."""
        return self.status() is JobStatus.DONE

    def running(self) -> bool:
        """Whether the job is running."""
        return self.status() is JobStatus.RUNNING

    def errored(self) -> bool:
        """Whether the job failed."""
        return self.status() is JobStatus.ERROR

    def cancelled(self) -> bool:
        """Whether the job was cancelled."""
        return self.status() is JobStatus.CANCELLED

    def in_final_state(self) -> bool:
        """Whether the job is in a final state (DONE, ERROR, CANCELLED, DELETED)."""
        return self.status().is_final

    def error_message(self) -> str | None:
        """The service's reason when the job failed, else ``None``."""
        record = self._current()
        return record.message if record.status is JobStatus.ERROR else None

    def queue(self) -> int | None:
        """The job's place in the queue (1 is next), ``None`` when not queued."""
        record = self._current()
        return record.queue_position if record.status is JobStatus.QUEUED else None

    def get_info(self, refresh: bool = True) -> JobInfo:
        """Everything known about the job, as a :class:`JobInfo`."""
        from jobledger.job_info import JobInfo

        record = self._current() if refresh else self._record
        return JobInfo(
            job_id=record.job_id or record.name,
            status=record.status,
            backend=record.backend,
            submission_date=record.created_at,
            starting_date=record.started_at,
            ending_date=record.ended_at,
            queue_position=record.queue_position,
            message=record.message,
            tags=record.tags,
            session_id=record.session_id,
            backend_version=record.backend_version,
            usage=dict(record.usage),
        )

    # -- waiting ----------------------------------------------------------------

    def wait_for_final_state(
        self, timeout: float | None = None, poll_interval: float | None = None
    ) -> None:
        """Block until the job is final.

        :raises JobTimeoutError: when *timeout* seconds pass first.
        :raises OfflineError: at once, when the job is not final and the service
            cannot be reached.
        """
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0 seconds or None, not {timeout!r}")
        # A final status is never fetched again (not even re-read from the registry).
        if self._record.status.is_final or self._reload().status.is_final:
            return
        job_id = self._require_id()
        conn = self._conn
        conn.bind()
        conn.poller.wait(job_id, timeout, poll_interval)
        self._reload()

    def join(self, timeout: float | None = None) -> Any:
        """Wait for the job and return its result (QLMaaS dialect)."""
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0 seconds or None, not {timeout!r}")
        if not (self._record.status.is_final or self._reload().status.is_final):
            self._eager_result()
        self.wait_for_final_state(timeout)
        return self.get_result()

    def _eager_result(self) -> None:
        """Ask for the result of a job not seen finishing, where the service answers that
        in one request (:class:`~jobledger.providers.base.EagerResults`): when the job has
        finished, its result is stored and its final status recorded; otherwise nothing
        changes and the caller waits as usual."""
        from jobledger.providers.base import EagerResults

        record = self._record
        job_id = record.job_id
        if job_id is None:
            return
        conn = self._conn
        conn.bind()

        def attempt(provider: Provider) -> tuple[BlobRef, RemoteJob | None] | None:
            if not (isinstance(provider, EagerResults) and provider.eager_results):
                return None
            try:
                return self._download(provider, job_id, "result", record.result, None)
            except ResultNotReadyError:
                return None  # not finished (or failed: the status round says which)
            except ServiceError as exc:
                if exc.status_code in (409, 410):
                    return None
                raise

        found = conn.call(attempt)
        if found is None:
            return
        ref, job = found
        conn.registry.set_result(record.pk, ref)
        if job is not None:
            conn.registry.apply_infos(conn.service_id, [job])
        self._reload()

    def result(self, timeout: float | None = None, decoder: Any = None) -> Any:
        """Wait for the job and return its result (Qiskit dialect).

        Each call returns a fresh object decoded from the verified local copy.

        :param decoder: as Qiskit's: a class with ``decode(raw: str)`` (or a callable)
            given the stored result's text instead of jobledger's own decoding.
        :raises JobFailureError: with the service's message when the job failed.
        :raises JobCancelledError: when it was cancelled.
        :raises JobTimeoutError: when *timeout* seconds pass first.
        """
        if decoder is None:
            return self.join(timeout)
        self.wait_for_final_state(timeout)
        self.get_result()  # raises for failed, cancelled and unfinished jobs
        ref = self.fetch_result()
        return _apply(decoder, self._store.get_bytes(ref.sha256, what=self._what("result")))

    def get_result(self) -> Any:
        """The result, without waiting.

        :raises ResultNotReadyError: when the job is not final yet.
        """
        record = self._record
        if not (record.status is JobStatus.DONE and record.result is not None):
            record = self._current()
        status = record.status
        if status is JobStatus.DONE or (status is JobStatus.DELETED and record.result):
            return self._load_result(record)
        if status is JobStatus.ERROR:
            raise JobFailureError(
                f"job {record.name} failed: {record.message or 'no reason given'}",
                job_id=record.job_id,
            )
        if status is JobStatus.CANCELLED:
            raise JobCancelledError(f"job {record.name} was cancelled, so it has no result")
        if status is JobStatus.DELETED:
            raise ServiceError(
                f"the files of job {record.name} were deleted on the service and its result "
                "is not in the local store",
                status_code=410,
                code="deleted",
            )
        raise ResultNotReadyError(
            f"job {record.name} is {status.qlmaas_name}, so it has no result yet; wait for "
            f"it with job.result() (or `jobledger wait {record.name}`)"
        )

    # -- payloads ----------------------------------------------------------------

    def _load_result(self, record: JobRecord) -> Any:
        ref = record.result
        if ref is not None:
            try:
                data = self._store.get_bytes(ref.sha256, what=self._what("result"))
                return codecs.decode(data, ref.media_type)
            except KeyError:
                pass  # recorded by the service, not downloaded yet
            except CacheCorruptionError:
                if not self._reachable():
                    raise  # offline: never return bad bytes, and keep them as evidence
                self._store.delete(ref.sha256)
        ref = self.fetch_result()
        return codecs.decode(
            self._store.get_bytes(ref.sha256, what=self._what("result")), ref.media_type
        )

    def _reachable(self) -> bool:
        try:
            self._conn.bind()
        except OfflineError:
            return False
        return True

    def fetch_result(self, progress: Callable[[int, int | None], None] | None = None) -> BlobRef:
        """Download the result into the store (verified), unless it is there already.

        :param progress: called as ``progress(bytes_so_far, total_or_None)`` while
            downloading (for progress bars).
        """
        return self._fetch("result", progress)

    def _fetch(
        self, part: str, progress: Callable[[int, int | None], None] | None = None
    ) -> BlobRef:
        record = self._record
        known = record.result if part == "result" else record.batch
        if known is not None and self._store.has(known.sha256):
            return known
        job_id = record.job_id
        conn = self._conn
        try:
            conn.bind()
        except OfflineError as exc:
            seen = record.last_seen_at.isoformat() if record.last_seen_at else "never"
            raise OfflineError(
                f"the {part} of job {record.name} is not in the local store and the service "
                f"cannot be reached (last seen {record.status.qlmaas_name} at {seen}): {exc}"
            ) from exc
        assert job_id is not None

        def download(provider: Provider) -> BlobRef:
            return self._download(provider, job_id, part, known, progress)[0]

        ref: BlobRef = conn.call(download)
        if part == "result":
            conn.registry.set_result(record.pk, ref)
        else:
            conn.registry.set_batch(record.pk, ref)
        self._reload()
        return ref

    def _download(
        self,
        provider: Provider,
        job_id: str,
        part: str,
        known: BlobRef | None,
        progress: Callable[[int, int | None], None] | None,
    ) -> tuple[BlobRef, RemoteJob | None]:
        """Stream the job's *part* into the store (checked against the digest announced,
        else the one recorded); the blob, and the job's status if the service sent it."""
        with provider.download(job_id, part) as payload:
            expected = payload.sha256 or (known.sha256 if known else None)
            chunks = payload.chunks
            if progress is not None:
                chunks = reporting(chunks, payload.size, progress)
            digest, size = self._store.put_stream(
                chunks, expected_sha256=expected, expected_size=payload.size
            )
            return BlobRef(digest, size, payload.media_type), payload.job

    def get_batch(self) -> Any:
        """The submitted batch, from the store (downloaded once when missing, and again
        when the stored copy is damaged and the service can be reached)."""
        ref = self._fetch("batch")
        try:
            data = self._store.get_bytes(ref.sha256, what=self._what("batch"))
        except CacheCorruptionError:
            if not self._reachable():
                raise  # offline: never return bad bytes, and keep them as evidence
            self._store.delete(ref.sha256)
            ref = self._fetch("batch")
            data = self._store.get_bytes(ref.sha256, what=self._what("batch"))
        return codecs.decode(data, ref.media_type)

    @property
    def inputs(self) -> dict[str, Any]:
        """The job's inputs (Qiskit dialect): ``{"batch": ..., "params": ...}``."""
        return {"batch": self.get_batch(), "params": dict(self._record.params)}

    # -- extras (cached for final jobs) -----------------------------------------

    def _extra(self, key: str, fetch: Callable[[], Any]) -> Any:
        record = self._reload()
        digest = record.extras.get(key)
        if digest and self._store.has(digest):
            return json.loads(self._store.get_bytes(digest, what=self._what(key)))
        value = fetch()
        if record.status.is_final:
            data, _ = codecs.encode(value)
            self._conn.registry.set_extra(record.pk, key, self._store.put_bytes(data))
        return value

    def logs(self) -> str:
        """The job's log lines, as one string."""
        job_id = self._require_id()
        value: str = self._extra("logs", lambda: self._conn.call(lambda p: p.logs(job_id)))
        return value

    def metrics(self) -> dict[str, Any]:
        """The job's metrics: values set by the job, usage and timestamps."""
        job_id = self._require_id()
        value: dict[str, Any] = self._extra(
            "metrics", lambda: self._conn.call(lambda p: p.metrics(job_id))
        )
        return value

    def usage(self) -> dict[str, Any]:
        """The resources the job used (e.g. ``{"seconds": 1.2}``)."""
        return dict(self._current().usage)

    def interim_results(self, decoder: Any = None) -> list[Any]:
        """The interim results the job published, in order.

        :param decoder: as for :meth:`result`, applied to each one's JSON text.
        """
        job_id = self._require_id()
        value: list[Any] = self._extra(
            "interim", lambda: self._conn.call(lambda p: p.interim(job_id))
        )
        if decoder is None:
            return value
        return [_apply(decoder, json.dumps(v).encode()) for v in value]

    # -- actions ----------------------------------------------------------------

    def cancel(self) -> bool:
        """Ask the service to cancel the job; whether it was cancelled."""
        record = self._reload()
        if record.status.is_final:
            return False
        job_id = self._require_id()
        conn = self._conn
        cancelled = conn.call(lambda p: p.cancel(job_id))
        conn.registry.add_event(record.pk, "cancel", "cancelled" if cancelled else "refused")
        self.refresh()
        return cancelled

    def delete_files(self) -> bool:
        """Delete the job's files on the service (status becomes DELETED). A result
        not yet stored locally is downloaded first: the local copy stays."""
        record = self._current()
        if record.status is JobStatus.DELETED:
            return False
        job_id = self._require_id()
        if record.status is JobStatus.DONE:
            self.fetch_result()
        conn = self._conn
        deleted = conn.call(lambda p: p.delete_files(job_id))
        conn.registry.add_event(record.pk, "delete-files", "")
        self.refresh()
        if deleted and self._record.status is not JobStatus.DELETED:
            # Services that keep a task's record after its files are gone (Braket) still
            # call it finished; the ledger records what was done.
            from jobledger.providers.base import RemoteJob

            conn.registry.apply_infos(conn.service_id, [RemoteJob(job_id, JobStatus.DELETED)])
            self._reload()
        return deleted

    # -- streaming ---------------------------------------------------------------

    def stream_results(self, callback: Callable[[str, Any], None]) -> None:
        """Call ``callback(job_id, interim_result)`` from a background thread for every
        interim result the job publishes, until it ends or
        :meth:`cancel_result_streaming` is called."""
        if not callable(callback):
            raise TypeError("stream_results needs a callable(job_id, interim_result)")
        if self._reload().status.is_final:
            raise ResultNotReadyError(
                f"job {self._record.name} is already {self._record.status.qlmaas_name}; use "
                "interim_results() to read what it published"
            )
        self.cancel_result_streaming()
        job_id = self._require_id()
        self._conn.bind()
        self._stream = EventStream(self._conn, job_id, callback)
        self._stream.start()

    def cancel_result_streaming(self) -> None:
        """Stop the stream started by :meth:`stream_results`."""
        if self._stream is not None:
            self._stream.stop()
            self._stream = None

    # -- display ------------------------------------------------------------------

    def __repr__(self) -> str:
        record = self._record
        alias = f" alias={record.alias!r}" if record.alias else ""
        return (
            f"<Job {record.name} backend={record.backend!r} status={record.status.value}{alias}>"
        )

    def _repr_html_(self) -> str:
        from jobledger.client.display import job_html

        return job_html(self)

    def result_media_type(self) -> str:
        """The recorded media type of the result (``""`` when none is known)."""
        ref = self._record.result
        return ref.media_type if ref is not None else ""

    def result_state(self) -> str:
        """Where the result is, from what is recorded (no network): ``"stored"`` (in
        the local store), ``"remote"`` (on the service only) or ``"none"``."""
        ref = self._record.result
        if ref is None:
            return "none"
        try:
            return "stored" if self._store.has(ref.sha256) else "remote"
        except Exception:  # display must never fail on a damaged store
            return "remote"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Job):
            return NotImplemented
        return (self._record.service, self._record.pk) == (other._record.service, other._record.pk)

    def __hash__(self) -> int:
        return hash((self._record.service, self._record.pk))
