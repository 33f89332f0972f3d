"""The IBM Quantum provider: Qiskit Runtime jobs recorded and cached by jobledger.

:class:`IBMProvider` talks to IBM only through ``qiskit-ibm-runtime``'s public objects
(``QiskitRuntimeService``, ``SamplerV2``/``EstimatorV2`` with ``mode=backend``,
``service.job``, ``service.jobs``, ``RuntimeJobV2``'s methods, ``service.delete_job``);
the SDK is imported lazily here and nowhere else. IBM has no idempotency keys, so a
submission carries the tag ``jobledger:<key>`` and :meth:`IBMProvider.submit` first
looks for a job with that tag: a process killed after sending, or an answer lost on the
way, is resolved by the next connection through the tag, never by sending again. A
status round costs one listing of the open jobs plus one lookup per job that left that
listing. IBM has no event stream: :meth:`IBMProvider.events` yields nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from jobledger import codecs
from jobledger.errors import (
    AuthenticationError,
    JobNotFoundError,
    OfflineError,
    ResultNotReadyError,
    ServiceError,
)
from jobledger.providers.base import (
    Download,
    Event,
    JobQuery,
    RemoteBackend,
    RemoteJob,
    ServiceHealth,
    StatusBatch,
    Submission,
)
from jobledger.status import FINAL_STATES, JobStatus

if TYPE_CHECKING:
    from jobledger.config import ResolvedConfig

__all__ = ["ENV_API_URL", "RUNTIME_JSON", "TAG_PREFIX", "IBMProvider", "encode_pubs", "service_id"]

RUNTIME_JSON = "application/vnd.qiskit.runtime+json"
TAG_PREFIX = "jobledger:"
#: Overrides the Runtime API base URL the SDK derives from url and instance (a private
#: deployment, or the loopback stand-in the tests use).
ENV_API_URL = "JOBLEDGER_IBM_API_URL"
_PAGE = 100
_STATUS = {
    "QUEUED": JobStatus.QUEUED,
    "INITIALIZING": JobStatus.QUEUED,
    "VALIDATING": JobStatus.QUEUED,
    "RUNNING": JobStatus.RUNNING,
    "DONE": JobStatus.DONE,
    "ERROR": JobStatus.ERROR,
    "CANCELLED": JobStatus.CANCELLED,
}


def service_id(channel: str, instance: str) -> str:
    """The stable service id of one IBM account instance on one channel."""
    digest = hashlib.sha256(f"{channel}\n{instance}".encode()).hexdigest()
    return f"ibm-{digest[:24]}"


def encode_pubs(value: Any) -> tuple[bytes, str]:
    """PUBs as Qiskit Runtime JSON, through :mod:`jobledger.codecs`.

    :raises TypeError: when the value is not something Qiskit Runtime runs.
    """
    data, media_type = codecs.encode(value)
    if media_type != RUNTIME_JSON:
        raise TypeError(
            f"IBM Quantum runs Qiskit PUBs (circuits, or tuples as SamplerV2.run takes), "
            f"not {type(value).__qualname__}"
        )
    return data, media_type


def decode_payload(data: bytes, media_type: str) -> Any:
    """Decode a batch or result by the codecs' fixed table (screened, never pickle)."""
    return codecs.decode(data, media_type)


class IBMProvider:
    """IBM Quantum Platform (or IBM Cloud) through ``qiskit-ibm-runtime``.

    :param url: IBM's cloud URL (``https://cloud.ibm.com``).
    :param token: the IBM API key (never logged, never in a message).
    :param profile: the jobledger profile, named in authentication errors.
    :param api_url: the Runtime API base URL, when it is not the one IBM derives.
    """

    def __init__(
        self,
        *,
        url: str,
        channel: str,
        instance: str,
        token: str | None,
        profile: str | None,
        verify: bool = True,
        api_url: str | None = None,
    ) -> None:
        self.url = url
        self.channel = channel
        self.instance = instance
        self.profile = profile
        self._token = token
        self._verify = verify
        self._api_url = api_url
        self._service: Any = None
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: ResolvedConfig) -> IBMProvider:
        """The provider a resolved ``ibm-quantum`` profile describes."""
        assert config.url is not None and config.channel and config.instance
        return cls(
            url=config.url,
            channel=config.channel,
            instance=config.instance,
            token=config.token,
            profile=config.profile,
            verify=config.verify,
            api_url=os.environ.get(ENV_API_URL) or None,
        )

    # -- plumbing ---------------------------------------------------------------

    @property
    def service(self) -> Any:
        """The ``QiskitRuntimeService``, built (and the account checked) on first use."""
        with self._lock:
            if self._service is None:
                from qiskit_ibm_runtime import QiskitRuntimeService

                kwargs: dict[str, Any] = {
                    "channel": self.channel,
                    "url": self.url,
                    "instance": self.instance,
                    "verify": self._verify,
                }
                if self._token is not None:
                    kwargs["token"] = self._token
                if self._api_url is not None:
                    api_url = self._api_url.rstrip("/")
                    kwargs["url_resolver"] = lambda *_args, **_kwargs: api_url
                with self._errors("connecting"):
                    self._service = QiskitRuntimeService(**kwargs)
            return self._service

    @contextmanager
    def _errors(self, what: str, job_id: str | None = None) -> Iterator[None]:
        """Turn the SDK's exceptions into jobledger's, naming the profile or the job."""
        from qiskit_ibm_runtime.accounts import InvalidAccountError
        from qiskit_ibm_runtime.exceptions import IBMError, IBMNotAuthorizedError

        try:
            yield
        except (JobNotFoundError, ServiceError, OfflineError):
            raise
        except Exception as exc:
            status = _status_code(exc)
            refused = status in (401, 403) or (status == 400 and what == "connecting")
            if isinstance(exc, (InvalidAccountError, IBMNotAuthorizedError)) or refused:
                raise AuthenticationError(
                    f"IBM Quantum refused the credentials of profile {self.profile!r} while "
                    f"{what}; check its API key (`jobledger config add-profile`) and "
                    "instance. Pending submissions are kept",
                    status_code=status or 401,
                ) from exc
            if status == 404 or type(exc).__name__ == "RuntimeJobNotFound":
                raise JobNotFoundError(
                    f"IBM Quantum does not know job {job_id} (profile {self.profile!r})"
                ) from exc
            if _unreachable(exc):
                raise OfflineError(
                    f"cannot reach IBM Quantum at {self.url} while {what} ({_short(exc)}); "
                    "check the network, or work offline with JOBLEDGER_OFFLINE=1"
                ) from exc
            if isinstance(exc, (IBMError, ValueError, TypeError)):
                raise ServiceError(
                    f"IBM Quantum failed while {what}: {_short(exc)}", status_code=status
                ) from exc
            raise

    def _job(self, job_id: str) -> Any:
        with self._errors(f"reading job {job_id}", job_id):
            return self.service.job(job_id)

    # -- calls ------------------------------------------------------------------

    def health(self) -> ServiceHealth:
        """The instance's service id (connecting checks the account)."""
        _ = self.service
        return ServiceHealth(service_id(self.channel, self.instance), "qiskit-ibm-runtime")

    def backends(self) -> list[RemoteBackend]:
        """The devices this instance may use."""
        with self._errors("listing backends"):
            return [
                RemoteBackend(b.name, str(getattr(b, "backend_version", "") or ""))
                for b in self.service.backends()
            ]

    def submit(self, submission: Submission, *, idempotency_key: str) -> RemoteJob:
        """Run the primitive named by ``params["primitive"]`` on the backend, tagged
        with the key; a job already carrying that tag is returned instead."""
        found = self.find_submission(idempotency_key)
        if found is not None:
            return found
        pubs = decode_payload(submission.data, submission.media_type)
        params = dict(submission.params)
        primitive = params.get("primitive", "sampler")
        if primitive not in ("sampler", "estimator"):
            raise ServiceError(
                f"params['primitive'] must be 'sampler' or 'estimator', not {primitive!r}",
                status_code=422,
            )
        tags = [*submission.tags, f"{TAG_PREFIX}{idempotency_key}"]
        with self._errors(f"submitting to {submission.backend}"):
            backend = self.service.backend(submission.backend)
        try:
            with self._errors(f"submitting to {submission.backend}"):
                job = self._run(primitive, backend, pubs, params, tags)
        except (ServiceError, OfflineError) as exc:
            if isinstance(exc, AuthenticationError) or (
                isinstance(exc, ServiceError) and exc.status_code in (400, 422)
            ):
                raise
            # The answer may be lost while the job exists: the tag tells.
            found = _quietly(lambda: self.find_submission(idempotency_key))
            if found is not None:
                return found
            raise OfflineError(f"IBM Quantum did not confirm the submission ({exc})") from exc
        return self._remote(job, status=JobStatus.QUEUED, params=params)

    def _run(
        self, primitive: str, backend: Any, pubs: Any, params: dict[str, Any], tags: list[str]
    ) -> Any:
        from qiskit_ibm_runtime import EstimatorV2, SamplerV2

        options = dict(params.get("options") or {})
        if primitive == "sampler":
            sampler = SamplerV2(mode=backend, options=options or None)
            sampler.options.environment.job_tags = tags
            return sampler.run(pubs, shots=params.get("shots"))
        estimator = EstimatorV2(mode=backend, options=options or None)
        estimator.options.environment.job_tags = tags
        return estimator.run(pubs, precision=params.get("precision"))

    def find_submission(self, idempotency_key: str) -> RemoteJob | None:
        """The job tagged ``jobledger:<key>``, or ``None``."""
        with self._errors("looking up a submission"):
            jobs = self.service.jobs(job_tags=[f"{TAG_PREFIX}{idempotency_key}"], limit=1)
        return self._remote(jobs[0]) if jobs else None

    def info(self, job_id: str) -> RemoteJob:
        """Status, dates, tags and usage of one job."""
        job = self._job(job_id)
        with self._errors(f"reading job {job_id}", job_id):
            metrics = job.metrics()
        return self._remote(job, metrics=metrics)

    def list_jobs(self, query: JobQuery) -> Iterator[RemoteJob]:
        """``service.jobs`` with the query's filters, page after page."""
        wanted = set(query.statuses)
        pending: bool | None = None
        if wanted and wanted <= {JobStatus.QUEUED, JobStatus.RUNNING}:
            pending = True
        elif wanted and wanted <= set(FINAL_STATES):
            pending = False
        page_size = max(1, min(query.page_size, _PAGE))
        skip = 0
        while True:
            with self._errors("listing jobs"):
                page = self.service.jobs(
                    limit=page_size,
                    skip=skip,
                    backend_name=query.backend,
                    pending=pending,
                    job_tags=list(query.tags) or None,
                    session_id=query.session_id,
                    created_after=query.created_after,
                    created_before=query.created_before,
                    descending=query.descending,
                )
            for job in page:
                remote = self._remote(job)
                if not wanted or remote.status in wanted:
                    yield remote
            if len(page) < page_size:
                return
            skip += len(page)

    def statuses(self, ids: Sequence[str]) -> StatusBatch:
        """One listing of the open jobs; a lookup only for the ids that left it.

        Open jobs are reported with the state the listing gives (so a poll round sees
        QUEUED become RUNNING); a job that left the listing is read once, for its final
        state, dates and message.
        """
        if not ids:
            return StatusBatch([], [])
        with self._errors("listing open jobs"):
            still_open = self._open_states(len(ids))
        found: list[RemoteJob] = []
        missing: list[str] = []
        for job_id in ids:
            if job_id in still_open:
                state = still_open[job_id]
                if state is not None:
                    found.append(RemoteJob(id=job_id, status=state))
                continue
            try:
                found.append(self._remote(self._job(job_id)))
            except JobNotFoundError:
                missing.append(job_id)
        return StatusBatch(found, missing)

    def _open_states(self, limit: int) -> dict[str, JobStatus | None]:
        """The open jobs' ids and states, from one listing call.

        The SDK's ``service.jobs()`` drops the state that IBM's listing carries, and no
        public call keeps it; so the listing is read through the SDK's own API client
        (``jobs_get``, the request ``service.jobs()`` makes) when this SDK version has
        it, and through ``service.jobs()`` (states unknown: ``None``) otherwise.
        """
        client = getattr(self.service, "_active_api_client", None)
        listing = getattr(client, "jobs_get", None)
        if callable(listing):
            from qiskit_ibm_runtime.runtime_job_v2 import API_TO_JOB_STATUS

            states: dict[str, JobStatus | None] = {}
            while len(states) < limit:  # in pages, as service.jobs() reads them
                answer = listing(limit=limit - len(states), skip=len(states), pending=True)
                page = answer.get("jobs", []) if isinstance(answer, dict) else []
                for raw in page:
                    api_state = str((raw.get("state") or {}).get("status", "")).upper()
                    states[str(raw["id"])] = _STATUS.get(API_TO_JOB_STATUS.get(api_state, ""))
                if not page or len(states) >= int(answer.get("count", 0)):
                    break
            return states
        return {job.job_id(): None for job in self.service.jobs(pending=True, limit=limit)}

    @contextmanager
    def download(self, job_id: str, part: str) -> Iterator[Download]:
        """The result's JSON exactly as IBM sent it, or the job's inputs re-encoded."""
        job = self._job(job_id)
        with self._errors(f"downloading the {part} of job {job_id}", job_id):
            if part == "result":
                status = self._remote(job).status
                if status is not JobStatus.DONE:
                    raise ResultNotReadyError(f"IBM job {job_id} is {status.value}, no result")
                data = job.result(decoder=_RawResult).encode("utf-8")
            elif part == "batch":
                data = json.dumps(job.inputs, separators=(",", ":")).encode("utf-8")
            else:
                raise ValueError(f"unknown part {part!r}: use 'result' or 'batch'")
        yield Download(RUNTIME_JSON, hashlib.sha256(data).hexdigest(), len(data), iter([data]))

    def logs(self, job_id: str) -> str:
        """The job's logs."""
        job = self._job(job_id)
        with self._errors(f"reading the logs of job {job_id}", job_id):
            return str(job.logs())

    def metrics(self, job_id: str) -> dict[str, Any]:
        """The job's metrics (timestamps, usage)."""
        job = self._job(job_id)
        with self._errors(f"reading the metrics of job {job_id}", job_id):
            return dict(job.metrics())

    def interim(self, job_id: str) -> list[Any]:
        """IBM's primitives publish no interim results."""
        return []

    def cancel(self, job_id: str) -> bool:
        """``job.cancel()``; ``False`` when the job was already final."""
        from qiskit_ibm_runtime.exceptions import RuntimeInvalidStateError

        job = self._job(job_id)
        try:
            with self._errors(f"cancelling job {job_id}", job_id):
                job.cancel()
        except ServiceError as exc:
            if isinstance(exc.__cause__, RuntimeInvalidStateError):
                return False
            raise
        return True

    def delete_files(self, job_id: str) -> bool:
        """``service.delete_job``: IBM deletes the whole job."""
        with self._errors(f"deleting job {job_id}", job_id):
            self.service.delete_job(job_id)
        return True

    def events(
        self,
        job_id: str,
        *,
        last_event_id: int | None = None,
        on_response: Callable[[Any], None] | None = None,
    ) -> Iterator[Event]:
        """IBM offers no event stream through the SDK: nothing is yielded."""
        return iter(())

    def close(self) -> None:
        """Forget the service object (the SDK keeps no open stream)."""
        with self._lock:
            self._service = None

    # -- records ------------------------------------------------------------------

    def _remote(
        self,
        job: Any,
        *,
        status: JobStatus | None = None,
        params: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> RemoteJob:
        job_id = str(job.job_id())
        with self._errors(f"reading job {job_id}", job_id):
            if status is None:
                raw = str(job.status())
                status = _STATUS.get(raw)
                if status is None:
                    raise ServiceError(
                        f"IBM job {job_id} has a status jobledger does not know: {raw}"
                    )
            message = job.error_message() if status is JobStatus.ERROR else None
            backend = _backend_of(job)
        stamps = (metrics or {}).get("timestamps") or {}
        usage = (metrics or {}).get("usage")
        tags = tuple(job.tags or ())
        return RemoteJob(
            id=job_id,
            status=status,
            backend=getattr(backend, "name", None),
            created_at=_date(job.creation_date),
            started_at=_date(stamps.get("running")),
            ended_at=_date(stamps.get("finished")),
            message=message,
            tags=tags,
            params=params if params is not None else {"primitive": job.primitive_id},
            usage=dict(usage) if isinstance(usage, dict) else None,
            batch=None,
            result=None,
        )


class _RawResult:
    """A result decoder (duck-typed ``ResultDecoder``) that keeps IBM's JSON text as is."""

    @classmethod
    def is_applicable(cls, data: Any) -> bool:
        return True

    @classmethod
    def decode(cls, raw_result: str) -> str:
        return raw_result


def _backend_of(job: Any) -> Any:
    """The job's backend, without waiting: ``backend()`` waits for the job only when
    the listing did not name a backend."""
    from qiskit_ibm_runtime.exceptions import IBMError, RuntimeJobTimeoutError

    try:
        return job.backend(timeout=0.01)
    except (IBMError, RuntimeJobTimeoutError):
        return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _status_code(exc: BaseException) -> int | None:
    for item in _chain(exc):
        code = getattr(item, "status_code", None)
        if isinstance(code, int):
            return code
    return None


def _unreachable(exc: BaseException) -> bool:
    import requests

    return any(
        isinstance(item, (requests.ConnectionError, requests.Timeout, ConnectionError))
        for item in _chain(exc)
    ) or "Max retries exceeded" in str(exc)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _quietly(work: Callable[[], RemoteJob | None]) -> RemoteJob | None:
    try:
        return work()
    except (ServiceError, OfflineError):
        return None


def _date(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None
