"""The interface every provider implements, and the records that cross it.

A provider is the one object that talks to a job service: jobledger's own service
(protocol v1, :mod:`.jobledger_http`) or, through its SDK, another one. The client hands
it a :class:`Submission` and an idempotency key and gets :class:`RemoteJob` records
back; it never sees HTTP, an SDK object or a dict with magic keys. A provider knows
nothing of the registry or the store: recording what it returns is the client's job.
This module imports nothing heavy, so the client can name these types freely.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from jobledger.status import JobStatus

__all__ = [
    "ChangeFeed",
    "ChangePage",
    "Download",
    "EagerResults",
    "Event",
    "JobQuery",
    "Provider",
    "RemoteBackend",
    "RemoteBlob",
    "RemoteJob",
    "ServiceHealth",
    "StatusBatch",
    "Submission",
]


@dataclass(frozen=True)
class ServiceHealth:
    """Who answers: the service's stable id, its protocol and version."""

    service_id: str
    protocol: str = ""
    version: str = ""


@dataclass(frozen=True)
class RemoteBackend:
    """A backend offered by the service."""

    name: str
    version: str = ""
    description: str = ""


@dataclass(frozen=True)
class RemoteBlob:
    """A payload the service holds for a job, known by its digest."""

    sha256: str
    size: int | None
    media_type: str


@dataclass(frozen=True)
class RemoteJob:
    """What the service says about one job.

    ``None`` means "not said" (a short status entry carries no backend or tags), so a
    record keeps what it knew; ``usage`` is ``None`` when the service did not report it.
    """

    id: str
    status: JobStatus
    backend: str | None = None
    backend_version: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    queue_position: int | None = None
    message: str | None = None
    tags: tuple[str, ...] = ()
    session_id: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, Any] | None = None
    batch: RemoteBlob | None = None
    result: RemoteBlob | None = None


@dataclass(frozen=True)
class StatusBatch:
    """The answer to one status round: the jobs found, and the ids the service lacks."""

    found: list[RemoteJob]
    missing: list[str]


@dataclass(frozen=True)
class Submission:
    """A job to send: the encoded batch and what goes with it."""

    backend: str
    data: bytes
    media_type: str
    sha256: str
    params: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    session_id: str | None = None


@dataclass(frozen=True)
class JobQuery:
    """Filters for listing jobs on the service (all optional)."""

    backend: str | None = None
    statuses: tuple[JobStatus, ...] = ()
    tags: tuple[str, ...] = ()
    created_after: datetime | None = None
    created_before: datetime | None = None
    session_id: str | None = None
    descending: bool = True
    page_size: int = 1000
    #: only jobs changed after this token of the service (``""``: every job), oldest
    #: change first; a provider whose service has no such tokens ignores it
    updated_after: str | None = None


@dataclass(frozen=True)
class ChangePage:
    """One page of the jobs that changed on the service, and the token that covers them:
    once these jobs are recorded, the changes after :attr:`through` are what is left."""

    jobs: list[RemoteJob]
    through: str


@dataclass(frozen=True)
class Event:
    """One event of a job's event stream (``interim``, ``status``, ``log``...)."""

    id: int
    kind: str
    data: dict[str, Any]


@dataclass
class Download:
    """A payload being downloaded: its announced media type, digest and size, and
    (where the service says it with a result) the job's status entry."""

    media_type: str
    sha256: str | None
    size: int | None
    chunks: Iterator[bytes]
    job: RemoteJob | None = None


class Provider(Protocol):
    """A job service, as the client sees it. Every call may raise
    :class:`~jobledger.errors.OfflineError` (not reachable),
    :class:`~jobledger.errors.AuthenticationError` (credentials refused),
    :class:`~jobledger.errors.JobNotFoundError` (unknown job) or
    :class:`~jobledger.errors.ServiceError` (any other refusal, with its status)."""

    url: str

    def health(self) -> ServiceHealth:
        """Who answers at :attr:`url`."""
        ...

    def backends(self) -> list[RemoteBackend]:
        """The backends offered."""
        ...

    def submit(self, submission: Submission, *, idempotency_key: str) -> RemoteJob:
        """Send a job; sending the same key again never creates a second job."""
        ...

    def find_submission(self, idempotency_key: str) -> RemoteJob | None:
        """The job an earlier submit with this key created, or ``None`` when the
        service never received it (used when the batch cannot be sent again)."""
        ...

    def info(self, job_id: str) -> RemoteJob:
        """Everything the service says about one job."""
        ...

    def list_jobs(self, query: JobQuery) -> Iterator[RemoteJob]:
        """Every job matching *query*, page after page."""
        ...

    def statuses(self, ids: Sequence[str]) -> StatusBatch:
        """The status of many jobs, in as few calls as the service allows."""
        ...

    def download(self, job_id: str, part: str) -> AbstractContextManager[Download]:
        """Stream a job's ``batch`` or ``result``."""
        ...

    def logs(self, job_id: str) -> str:
        """The job's log lines."""
        ...

    def metrics(self, job_id: str) -> dict[str, Any]:
        """The job's metrics."""
        ...

    def interim(self, job_id: str) -> list[Any]:
        """The interim results the job published, in order."""
        ...

    def cancel(self, job_id: str) -> bool:
        """Ask for the job to be cancelled; whether it was."""
        ...

    def delete_files(self, job_id: str) -> bool:
        """Delete the job's files on the service; whether anything was deleted."""
        ...

    def events(
        self,
        job_id: str,
        *,
        last_event_id: int | None = None,
        on_response: Callable[[Any], None] | None = None,
    ) -> Iterator[Event]:
        """Follow the job's events until it ends; *on_response* receives an object
        with ``close()`` that stops the stream from another thread."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


@runtime_checkable
class EagerResults(Protocol):
    """A provider whose result download of an unfinished job fails at once with
    :class:`~jobledger.errors.ResultNotReadyError` and whose result download carries the
    job's final status (:attr:`Download.job`): ``result()`` of a job that may have
    finished unseen asks for the result directly, in one request, instead of a status
    round and then a download."""

    eager_results: bool


@runtime_checkable
class ChangeFeed(Protocol):
    """A provider whose service lists the jobs changed after a token (protocol v1's
    ``updated_after``), so that keeping up with it costs what changed, not what exists.
    Providers without it are listed in full."""

    def changes(self, after: str, *, page_size: int = 1000) -> Iterator[ChangePage] | None:
        """The jobs changed after the token *after* (``""``: every job), oldest change
        first, page by page; ``None`` when this service cannot list changes (then list
        every job). A token the service no longer accepts starts again from ``""``."""
        ...
