"""A connection to one job service, with the local registry and store beside it.

:class:`Connection` is where user calls meet the three layers: it records intent in
the :class:`~jobledger.registry.Registry`, keeps bytes in the
:class:`~jobledger.store.Store`, and only then talks to the service through a
:class:`~jobledger.providers.base.Provider`, which it creates on the first call that
needs the network (so reading what is recorded never starts or reaches anything).
Argument checks live in :mod:`.checks`; resolving pending submissions, remote listing
and ``sync`` in :mod:`.sync`; the binding to a service and the shared connections of
handles from :mod:`jobledger.jobs` in :mod:`.binding`.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from jobledger.client.binding import Binding
from jobledger.client.checks import check_date, check_params, check_statuses, check_tags
from jobledger.client.sync import (
    Resolution,
    SyncReport,
    is_refusal,
    remote_jobs,
    resolve_pending,
    sync,
)
from jobledger.errors import JobNotFoundError, OfflineError, ServiceError
from jobledger.names import ambiguous_message, check_alias, describe_unknown
from jobledger.paths import Paths, get_paths
from jobledger.providers.base import JobQuery, Submission
from jobledger.redact import redact_url
from jobledger.registry import BlobRef, JobRecord, Registry, ServiceRecord
from jobledger.status import FINAL_STATES, JobStatus

if TYPE_CHECKING:
    from jobledger.client.job import Job
    from jobledger.client.poller import Poller
    from jobledger.config import ResolvedConfig
    from jobledger.providers.base import Provider
    from jobledger.store import Store

__all__ = ["BackendInfo", "Connection", "SyncReport"]

T = TypeVar("T")
_UNREACHABLE_GRACE = 2.0


@dataclass(frozen=True)
class BackendInfo:
    """A backend offered by the service."""

    name: str
    version: str
    description: str


class Connection:
    """The registry, the store and (when needed) one job service.

    Build it with :func:`jobledger.connect`. Safe to share between threads; a
    context manager that closes everything it opened.
    """

    def __init__(self, config: ResolvedConfig, paths: Paths | None = None) -> None:
        self.config = config
        self.paths = paths or get_paths()
        self._binding: Binding | None = None
        self._bind_lock = threading.RLock()
        self._unreachable: tuple[float, OfflineError] | None = None
        self._closed = False
        self._resolved_on_bind = Resolution()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @classmethod
    def open(
        cls,
        *,
        url: str | None = None,
        token: str | None = None,
        profile: str | None = None,
        offline: bool | None = None,
        verify: bool | None = None,
    ) -> Connection:
        """Resolve the configuration and build a connection (no I/O yet)."""
        from jobledger.config import resolve

        paths = get_paths()
        config = resolve(
            url=url, token=token, profile=profile, offline=offline, verify=verify, paths=paths
        )
        return cls(config, paths)

    # -- local parts ------------------------------------------------------------

    @cached_property
    def registry(self) -> Registry:
        """The local registry."""
        return Registry(self.paths.registry)

    @cached_property
    def store(self) -> Store:
        """The local content-addressed store."""
        from jobledger.store import Store

        return Store(self.paths.store)

    @cached_property
    def poller(self) -> Poller:
        """The one status poller shared by every handle waiting on this connection."""
        from jobledger.client.poller import Poller

        return Poller(self)

    @property
    def offline(self) -> bool:
        """Whether this connection never touches the network."""
        return self.config.offline

    @property
    def url(self) -> str | None:
        """The service's URL (``None`` for the embedded service before it is started)."""
        if self._binding is not None:
            return self._binding.service.url
        return self.config.url

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop pollers and streams and close the network session and the files."""
        self._closed = True
        if "poller" in self.__dict__:
            self.poller.stop()
        with self._bind_lock:
            if self._binding is not None:
                self._binding.provider.close()
                self._binding = None
        if "registry" in self.__dict__:
            self.registry.close()
        if "store" in self.__dict__:
            self.store.close()

    def __repr__(self) -> str:
        where = "offline" if self.offline else (self.url or "embedded local service")
        return f"<jobledger.Connection {where} registry={self.paths.registry}>"

    # -- the service ------------------------------------------------------------

    def bind(self, *, start: bool = True) -> Binding:
        """The provider and service record, connecting (or starting the embedded
        service) on first use.

        :param start: with ``False``, an embedded service that is not running is not
            started (an :class:`OfflineError` says so): for calls that only read.

        :raises OfflineError: in offline mode, or when the service cannot be reached.
        """
        if self.offline:
            raise OfflineError(
                "this connection is offline (offline=True or JOBLEDGER_OFFLINE=1): only "
                "recorded jobs and stored results can be read"
            )
        binding = self._binding
        if binding is not None:
            return binding
        with self._bind_lock:
            if self._binding is not None:
                return self._binding
            if self._unreachable and time.monotonic() - self._unreachable[0] < _UNREACHABLE_GRACE:
                raise self._unreachable[1]
            try:
                self._binding = self._connect(start)
            except OfflineError as exc:
                if not start:
                    raise
                self._unreachable = (time.monotonic(), exc)
                raise
            self._unreachable = None
            done = resolve_pending(self, self._binding)
            before = self._resolved_on_bind
            self._resolved_on_bind = Resolution(
                before.resolved + done.resolved,
                before.refused + done.refused,
                before.problems + done.problems,
            )
            return self._binding

    def _connect(self, start: bool = True) -> Binding:
        from jobledger.providers.jobledger_http import HTTPProvider

        if self.config.provider != "jobledger":
            from jobledger.providers.factory import open_remote

            remote = open_remote(self.config)
            # The kind names the provider, so listings can say where each job runs.
            service = ServiceRecord(
                remote.service_id,
                redact_url(remote.url),
                self.config.provider,
                self.config.profile,
            )
            self.registry.upsert_service(service)
            return Binding(remote.provider, service)
        timeouts = (self.config.connect_timeout, self.config.timeout)
        if self.config.url is None:
            from jobledger.service.local import ensure_running, find_running

            found = ensure_running(self.paths) if start else find_running(self.paths)
            if found is None:
                raise OfflineError(
                    "the embedded local service is not running, and reading what is "
                    "recorded does not start it (`jobledger service start` does)"
                )
            local = found
            provider = HTTPProvider(
                local.url, local.token, verify=self.config.verify, timeout=timeouts
            )
            service = ServiceRecord(local.service_id, local.url, "local", None)
        else:
            provider = HTTPProvider(
                self.config.url, self.config.token, verify=self.config.verify, timeout=timeouts
            )
            try:
                health = provider.health()
            except BaseException:
                provider.close()
                raise
            # Credentials written into a URL are never stored or shown.
            service = ServiceRecord(
                health.service_id, redact_url(self.config.url), "remote", self.config.profile
            )
        self.registry.upsert_service(service)
        return Binding(provider, service)

    def call(self, work: Callable[[Provider], T]) -> T:
        """Run *work* with the provider. When the embedded service went away (or
        moved to another port), start or find it again and retry once."""
        binding = self.bind()
        try:
            return work(binding.provider)
        except OfflineError:
            if binding.service.kind != "local":
                raise
            with self._bind_lock:
                if self._binding is binding:
                    binding.provider.close()
                    self._binding = None
            return work(self.bind().provider)

    @property
    def service_id(self) -> str:
        """The id of the bound service (connects on first use)."""
        return self.bind().service.id

    def backends(self) -> list[BackendInfo]:
        """The backends the service offers."""
        return [
            BackendInfo(b.name, b.version, b.description)
            for b in self.call(lambda p: p.backends())
        ]

    # -- submitting -------------------------------------------------------------

    def submit(
        self,
        batch: Any,
        backend: str,
        *,
        params: dict[str, Any] | None = None,
        tags: Sequence[str] | None = None,
        alias: str | None = None,
        session_id: str | None = None,
    ) -> Job:
        """Record, then submit, a job; returns its handle.

        The job is written to the registry (with an idempotency key) and its batch
        to the store before the request leaves; a retried or resumed submit never
        creates a second job.

        :raises TypeError: when the batch, params or tags cannot be encoded.
        :raises ValueError: for a bad alias.
        :raises OfflineError: when the service cannot be reached (nothing recorded
            when it could not be reached at all; a submission whose answer was lost
            stays pending and is resolved by the next call or ``sync()``).
        """
        from jobledger.providers.factory import encode_batch

        data, media_type = encode_batch(self.config.provider, batch)
        params = check_params(params)
        tag_list = check_tags(tags)
        if not isinstance(backend, str) or not backend:
            raise TypeError(f"backend must be a non-empty string, not {backend!r}")
        if alias is not None:
            check_alias(alias)
        if session_id is not None and not isinstance(session_id, str):
            raise TypeError(f"session_id must be a string, not {type(session_id).__name__}")
        binding = self.bind()

        from jobledger.provenance import captured_environment

        # Shared, not copied: the registry only encodes it when the digest is new there.
        environment = captured_environment()
        # On disk before the request leaves, like the registry row: a pending
        # submission whose answer was lost is sent again from these bytes.
        digest = self.store.put_bytes(data, what="batch", durable=True)
        key = uuid.uuid4().hex
        pk = self.registry.record_submission(
            service=binding.service.id,
            backend=backend,
            batch=BlobRef(digest, len(data), media_type),
            params=params,
            tags=tag_list,
            alias=alias,
            session_id=session_id,
            provenance=environment.record,
            provenance_digest=environment.digest,
            idempotency_key=key,
        )
        submission = Submission(
            backend, data, media_type, digest, params, tuple(tag_list), session_id
        )
        record = self._send(pk, submission, key)
        from jobledger.client.job import Job

        return Job(record, self)

    def _send(self, pk: int, submission: Submission, key: str) -> JobRecord:
        try:
            info = self.call(lambda p: p.submit(submission, idempotency_key=key))
        except OfflineError as exc:
            raise OfflineError(
                f"{exc}. The submission is recorded (pending #{pk}) and will be resolved "
                "without duplication by the next connection or `jobledger sync`"
            ) from exc
        except ServiceError as exc:
            # The first send is answered before anything is created when credentials
            # are refused, so that, like a bad batch, is a definite refusal of this job.
            if is_refusal(exc) or exc.status_code in (401, 403):
                self.registry.refuse_submission(pk, exc.message)
            raise
        return self.registry.acknowledge(pk, info)

    # -- finding jobs -------------------------------------------------------------

    def job(self, job_id: str) -> Job:
        """The handle of a recorded job (by id or alias); asks the service for an id
        recorded nowhere locally, and records it.

        :raises JobNotFoundError: when neither the registry nor the service knows it.
        """
        from jobledger.client.job import Job

        if not isinstance(job_id, str) or not job_id:
            raise TypeError(f"job_id must be a non-empty string, not {job_id!r}")
        records = self.registry.find(job_id)
        if len(records) > 1 and self._binding is not None:
            records = [r for r in records if r.service == self._binding.service.id] or records
        if len(records) == 1:
            return Job(records[0], self)
        if len(records) > 1:
            raise JobNotFoundError(ambiguous_message(job_id, records, self.registry))
        from jobledger.ids import ID_PATTERN

        foreign = self.config.provider != "jobledger"  # other services have their own ids
        if self.offline or not (foreign or ID_PATTERN.match(job_id)):
            # Only a well-formed id is worth asking the service about.
            note = " (offline, so the service was not asked)" if self.offline else ""
            raise JobNotFoundError(describe_unknown(job_id, self.registry) + note)
        info = self.call(lambda p: p.info(job_id))
        service = self.service_id
        self.registry.apply_infos(service, [info])
        return Job(self.registry.find(job_id, service)[0], self)

    get_job = job

    def jobs(
        self,
        *,
        limit: int | None = 10,
        skip: int = 0,
        backend_name: str | None = None,
        status: str | JobStatus | Iterable[str | JobStatus] | None = None,
        pending: bool | None = None,
        tags: Sequence[str] | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        descending: bool = True,
        remote: bool = False,
        session_id: str | None = None,
    ) -> list[Job]:
        """Recorded jobs, newest first, filtered in the local registry.

        :param status: one status or several, in either dialect (``"done"``,
            ``"DONE"``, ``JobStatus.DONE``).
        :param pending: ``True`` for jobs not in a final state, ``False`` for final.
        :param tags: jobs carrying every one of these tags.
        :param remote: ask the service instead (and record what it returns).
        """
        from jobledger.client.job import Job

        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise ValueError(f"limit must be a non-negative integer or None, not {limit!r}")
        if not isinstance(skip, int) or skip < 0:
            raise ValueError(f"skip must be a non-negative integer, not {skip!r}")
        statuses = check_statuses(status)
        if pending is not None:
            chosen = (
                [s for s in JobStatus if s not in FINAL_STATES] if pending else list(FINAL_STATES)
            )
            statuses = [s for s in statuses if s in chosen] if statuses else chosen
            if not statuses:
                return []
        tag_list = check_tags(tags)
        after = check_date(created_after, "created_after")
        before = check_date(created_before, "created_before")
        if remote:
            query = JobQuery(
                backend=backend_name,
                statuses=tuple(statuses),
                tags=tuple(tag_list),
                created_after=after,
                created_before=before,
                session_id=session_id,
                descending=descending,
                page_size=min(1000, (skip + limit) if limit else 1000),
            )
            return remote_jobs(self, query, limit=limit, skip=skip)
        from jobledger.client.display import JobList

        records = self.registry.query(
            limit=limit,
            skip=skip,
            backend=backend_name,
            statuses=statuses,
            tags=tag_list,
            created_after=after,
            created_before=before,
            descending=descending,
            session_id=session_id,
        )
        return JobList(Job(r, self) for r in records)

    get_jobs = jobs

    # -- sync ---------------------------------------------------------------------

    def sync(self, *, fetch_results: bool = False) -> SyncReport:
        """Bring the registry up to date with the service.

        Resolves pending submissions, records jobs that exist on the service but not
        here, refreshes every non-final status with batch calls, and with
        ``fetch_results=True`` downloads every finished result not yet stored.
        """
        self.bind()  # binding resolves pending submissions: count those too
        resolved, self._resolved_on_bind = self._resolved_on_bind, Resolution()
        return sync(self, fetch_results=fetch_results, resolved_before=resolved)
