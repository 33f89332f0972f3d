"""The QLMaaS provider: Qaptiva / QLM-as-a-Service jobs recorded and cached by jobledger.

:class:`QLMaaSProvider` talks to a QLMaaS server only through the public client of the
``qlmaas`` package, ``qat.qlmaas.QLMaaSConnection`` (``submit_batch``, ``get_job_info``,
``get_jobs_info``, ``get_asyncbatch``, ``cancel_job``, ``delete_job_files``, ``get_qpus``
and ``send``); the SDK is imported lazily here and nowhere else. Results are never read
with ``QLMaaSConnection.get_result``: that method unpickles the server's
``QLMaaSResult.serialized`` with dill, and builds ``qat.core`` objects whose
``from_thrift`` unpickles too. Instead the ``get_result`` call goes through the
connection's ``send`` (the same thrift call its generated client makes), the answer is
read into plain thrift structs, and only the thrift ``BatchResult`` in it is kept,
stored as ``application/vnd.qat.batchresult+thrift`` and decoded by
:mod:`jobledger.codecs`; the ``serialized`` field is never read. QLMaaS has no
idempotency keys, so the key travels in the batch's ``meta_data["jobledger.key"]`` and a
lost answer or a killed process is resolved by finding that key among recent jobs.
"""

from __future__ import annotations

import hashlib
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from jobledger import codecs
from jobledger.codecs.qlm import BATCH, BATCH_RESULT, JOB
from jobledger.errors import (
    AuthenticationError,
    ConfigError,
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
from jobledger.status import JobStatus

if TYPE_CHECKING:
    from jobledger.config import ResolvedConfig

__all__ = [
    "CONNECTION_FACTORY",
    "KEY",
    "OPTIONS",
    "STATUSES",
    "QLMaaSProvider",
    "encode_batch",
    "map_status",
    "service_id",
]

#: meta_data key of the batch that carries jobledger's idempotency key
KEY = "jobledger.key"
#: QLMaaS status name -> jobledger status; ``None`` means the job does not exist.
STATUSES: dict[str, JobStatus | None] = {
    "WAITING": JobStatus.QUEUED,
    "PENDING": JobStatus.QUEUED,
    "IN_BUCKET": JobStatus.QUEUED,
    "SLURM_SENT": JobStatus.QUEUED,
    "SLURM_OFFLOAD": JobStatus.QUEUED,
    "RUNNING": JobStatus.RUNNING,
    "DONE": JobStatus.DONE,
    "CANCELLED": JobStatus.CANCELLED,
    "STOPPED": JobStatus.CANCELLED,
    "FAILED": JobStatus.ERROR,
    "DELETED": JobStatus.DELETED,
    "UNKNOWN_JOB": None,
}
#: Profile options read by this provider (the profile's ``[options]`` table).
OPTIONS = (
    "authentication",
    "certificate",
    "key",
    "check_host",
    "proxy_host",
    "proxy_port",
    "timeout",
    "recovery_days",
)
#: Builds the connection instead of ``QLMaaSConnection`` when set: a test seam (the
#: tests point it at a stand-in that runs batches on myQLM), called with the keyword
#: arguments ``QLMaaSConnection`` would get. Leave it ``None`` in real use.
CONNECTION_FACTORY: Callable[..., Any] | None = None
_DEFAULT_RECOVERY_DAYS = 7.0


def service_id(hostname: str, port: int) -> str:
    """The stable service id of one QLMaaS server."""
    digest = hashlib.sha256(f"qlmaas\n{hostname.lower()}\n{port}".encode()).hexdigest()
    return f"qlmaas-{digest[:24]}"


def encode_batch(value: Any) -> tuple[bytes, str]:
    """A ``qat.core`` Job or Batch as scrubbed thrift, through :mod:`jobledger.codecs`.

    :raises TypeError: when the value is not something QLMaaS runs.
    """
    data, media_type = codecs.encode(value)
    if media_type not in (JOB, BATCH):
        raise TypeError(
            f"QLMaaS runs a qat.core.Job or Batch (circuit.to_job()), "
            f"not {type(value).__qualname__}"
        )
    return data, media_type


def map_status(code: int, job_id: str) -> JobStatus:
    """jobledger's status for a QLMaaS status code.

    :raises JobNotFoundError: for ``UNKNOWN_JOB``.
    :raises ServiceError: for a code this version of jobledger does not know.
    """
    from qat.comm.qlmaas.ttypes import JobStatus as QLMStatus

    name = QLMStatus._VALUES_TO_NAMES.get(code)
    if name is None or name not in STATUSES:
        raise ServiceError(f"QLMaaS job {job_id} has a status jobledger does not know: {code}")
    status = STATUSES[name]
    if status is None:
        raise JobNotFoundError(f"QLMaaS does not know job {job_id}")
    return status


class QLMaaSProvider:
    """A QLMaaS server through ``qat.qlmaas.QLMaaSConnection``.

    :param url: ``https://host[:port]`` of the server (port 443 when not given).
    :param options: the profile's options (see :data:`OPTIONS`).
    :param profile: the jobledger profile, named in authentication errors.
    :param connection: an already built connection object (anything with
        ``QLMaaSConnection``'s methods); built on first use when ``None``.
    """

    def __init__(
        self,
        *,
        url: str,
        options: dict[str, Any] | None = None,
        profile: str | None = None,
        verify: bool = True,
        connection: Any = None,
    ) -> None:
        parts = urlsplit(url)
        if not parts.hostname:
            raise ConfigError(f"the QLMaaS URL {url!r} names no host: use https://host[:port]")
        self.url = url
        self.hostname = parts.hostname
        self.port = parts.port or 443
        self.profile = profile
        self.options = dict(options or {})
        unknown = sorted(set(self.options) - set(OPTIONS))
        if unknown:
            raise ConfigError(
                f"profile {profile!r} (provider 'qlmaas') has unknown option(s) "
                f"{', '.join(map(repr, unknown))}; known: {', '.join(OPTIONS)}"
            )
        self._verify = verify
        self._connection = connection
        self._lock = threading.Lock()
        self._keys: dict[str, str | None] = {}  # job id -> its jobledger key, once read

    @classmethod
    def from_config(cls, config: ResolvedConfig) -> QLMaaSProvider:
        """The provider a resolved ``qlmaas`` profile describes."""
        assert config.url is not None
        return cls(
            url=config.url, options=config.options, profile=config.profile, verify=config.verify
        )

    # -- plumbing ---------------------------------------------------------------

    @property
    def connection(self) -> Any:
        """The ``QLMaaSConnection``, built (which logs in) on first use."""
        with self._lock:
            if self._connection is None:
                kwargs = self._connection_kwargs()
                with self._errors("connecting"):
                    if CONNECTION_FACTORY is not None:
                        self._connection = CONNECTION_FACTORY(**kwargs)
                    else:
                        from qat.qlmaas import QLMaaSConnection

                        self._connection = QLMaaSConnection(**kwargs)
            return self._connection

    def _connection_kwargs(self) -> dict[str, Any]:
        options = self.options
        auth = str(options.get("authentication", "password"))
        if auth not in ("password", "ssl"):
            raise ConfigError(
                f"profile {self.profile!r}: option 'authentication' is {auth!r}; "
                "use 'password' or 'ssl'"
            )
        if auth == "password" and not _password_source():
            # The SDK would prompt on stdin, which blocks a script or a poller thread.
            raise AuthenticationError(
                f"no QLMaaS credentials for profile {self.profile!r}: put them in ~/.netrc "
                f"(machine {self.hostname}) or in QLM_USER and QLM_PASSWD, or use "
                "authentication = 'ssl' with a certificate and key. Pending submissions "
                "are kept",
                status_code=401,
            )
        kwargs: dict[str, Any] = {
            "hostname": self.hostname,
            "port": self.port,
            "authentication": auth,
            "check_host": bool(options.get("check_host", self._verify)),
        }
        for name in ("certificate", "key", "proxy_host", "proxy_port", "timeout"):
            if name in options:
                kwargs[name] = options[name]
        return kwargs

    @contextmanager
    def _errors(self, what: str, job_id: str | None = None) -> Iterator[None]:
        """Turn the SDK's exceptions into jobledger's, naming the profile or the job."""
        try:
            yield
        except (ServiceError, OfflineError, ConfigError):
            raise
        except EOFError as exc:  # the SDK asked for a password on a closed stdin
            raise AuthenticationError(
                f"QLMaaS asked for credentials of profile {self.profile!r} while {what}; "
                "put them in ~/.netrc or QLM_USER/QLM_PASSWD. Pending submissions are kept",
                status_code=401,
            ) from exc
        except Exception as exc:
            code = _http_code(exc)
            if code in (401, 403):
                raise AuthenticationError(
                    f"QLMaaS at {self.url} refused the credentials of profile "
                    f"{self.profile!r} while {what}; check ~/.netrc, QLM_USER/QLM_PASSWD or "
                    "the SSL certificate. Pending submissions are kept",
                    status_code=code,
                ) from exc
            if code == 404 and job_id is not None:
                raise JobNotFoundError(f"QLMaaS does not know job {job_id}") from exc
            if isinstance(exc, OSError) or (code is not None and code >= 500):
                raise OfflineError(
                    f"cannot reach QLMaaS at {self.url} while {what} ({_short(exc)}); check "
                    "the network, or work offline with JOBLEDGER_OFFLINE=1"
                ) from exc
            if code is not None or type(exc).__name__ == "QLMServiceException":
                raise ServiceError(
                    f"QLMaaS failed while {what}: {_short(exc)}", status_code=code
                ) from exc
            raise

    # -- calls ------------------------------------------------------------------

    def health(self) -> ServiceHealth:
        """The server's service id (connecting logs in)."""
        _ = self.connection
        return ServiceHealth(service_id(self.hostname, self.port), "qlmaas")

    def backends(self) -> list[RemoteBackend]:
        """The QPUs the server offers (``module:Class`` names)."""
        with self._errors("listing QPUs"):
            qpus = self.connection.get_qpus()
        return [RemoteBackend(str(q.name), description=str(q.description or "")) for q in qpus]

    def submit(self, submission: Submission, *, idempotency_key: str) -> RemoteJob:
        """Send the batch to the QPU named by the backend, with the key in its
        ``meta_data``; a job already carrying that key is returned instead."""
        found = self.find_submission(idempotency_key)
        if found is not None:
            return found
        batch = codecs.decode(submission.data, submission.media_type)
        unknown = sorted(set(submission.params) - {"meta_data"})
        if unknown:
            raise ServiceError(
                f"QLMaaS jobs take no params {', '.join(map(repr, unknown))}: the batch "
                "carries its shots; params['meta_data'] adds to the batch's meta_data",
                status_code=422,
            )
        extra = submission.params.get("meta_data") or {}
        if not isinstance(extra, dict):
            raise ServiceError("params['meta_data'] must be a dict of strings", status_code=422)
        meta = {**{str(k): str(v) for k, v in extra.items()}, KEY: idempotency_key}
        job = build_async_batch(
            batch, submission.media_type, submission.backend, meta, submission.session_id
        )
        try:
            with self._errors(f"submitting to {submission.backend}"):
                job_id = str(self.connection.submit_batch(job))
        except OfflineError as exc:
            # The answer may be lost while the job exists: the key tells.
            found = _quietly(lambda: self.find_submission(idempotency_key))
            if found is not None:
                return found
            raise OfflineError(f"QLMaaS did not confirm the submission ({exc})") from exc
        self._keys[job_id] = idempotency_key
        return RemoteJob(
            id=job_id,
            status=JobStatus.QUEUED,
            backend=submission.backend,
            created_at=datetime.now(UTC),
            session_id=submission.session_id,
            params=dict(submission.params),
        )

    def find_submission(self, idempotency_key: str) -> RemoteJob | None:
        """The job whose batch carries this key among the jobs submitted in the last
        ``recovery_days`` (option, default 7), newest first, or ``None``.

        Each job's batch is read once per provider (its ``meta_data`` never changes).
        """
        days = float(self.options.get("recovery_days", _DEFAULT_RECOVERY_DAYS))
        since = datetime.now(UTC) - timedelta(days=days)
        with self._errors("looking up a submission"):
            infos = list(self.connection.get_jobs_info() or [])
        infos.sort(key=lambda i: _date(i.submission_date) or since, reverse=True)
        for info in infos:
            job_id = str(info.id)
            created = _date(info.submission_date)
            if created is not None and created < since:
                break
            if job_id not in self._keys:
                with self._errors(f"reading the batch of job {job_id}", job_id):
                    job = self.connection.get_asyncbatch(job_id)
                meta = (job.batch.meta_data if job is not None and job.batch else None) or {}
                self._keys[job_id] = meta.get(KEY)
            if self._keys[job_id] == idempotency_key:
                return self._remote(info)
        return None

    def info(self, job_id: str) -> RemoteJob:
        """Status, dates, QPU and message of one job."""
        with self._errors(f"reading job {job_id}", job_id):
            info = self.connection.get_job_info(job_id)
        if info is None:
            raise JobNotFoundError(f"QLMaaS does not know job {job_id}")
        return self._remote(info)

    def list_jobs(self, query: JobQuery) -> Iterator[RemoteJob]:
        """``get_jobs_info`` (one call: QLMaaS does not page), filtered here.

        QLMaaS jobs carry no tags: a query with tags matches nothing.
        """
        if query.tags:
            return
        with self._errors("listing jobs"):
            infos = list(self.connection.get_jobs_info() or [])
        jobs = []
        for info in infos:
            try:
                jobs.append(self._remote(info))
            except JobNotFoundError:
                continue
        jobs.sort(key=lambda j: j.created_at or datetime.min.replace(tzinfo=UTC))
        if query.descending:
            jobs.reverse()
        for job in jobs:
            if _matches(job, query):
                yield job

    def statuses(self, ids: Sequence[str]) -> StatusBatch:
        """One ``get_jobs_info``; a ``get_job_info`` only for the ids it lacks (deleted
        jobs are not listed)."""
        if not ids:
            return StatusBatch([], [])
        with self._errors("listing jobs"):
            listed = {str(i.id): i for i in self.connection.get_jobs_info() or []}
        found: list[RemoteJob] = []
        missing: list[str] = []
        for job_id in ids:
            try:
                found.append(
                    self._remote(listed[job_id]) if job_id in listed else self.info(job_id)
                )
            except JobNotFoundError:
                missing.append(job_id)
        return StatusBatch(found, missing)

    @contextmanager
    def download(self, job_id: str, part: str) -> Iterator[Download]:
        """The thrift ``BatchResult`` of a done job, or its submitted ``Batch``."""
        if part == "result":
            status = self.info(job_id).status
            if status is not JobStatus.DONE:
                raise ResultNotReadyError(f"QLMaaS job {job_id} is {status.value}, no result")
            with self._errors(f"downloading the result of job {job_id}", job_id):
                answer = self.connection.send("Scheduler", "get_result", result_request(job_id))
            data = read_result(answer, job_id)
            media_type = BATCH_RESULT
        elif part == "batch":
            with self._errors(f"downloading the batch of job {job_id}", job_id):
                job = self.connection.get_asyncbatch(job_id)
            if job is None or job.batch is None:
                raise ServiceError(f"QLMaaS job {job_id} has no batch (not a batch job)")
            data, media_type = thrift_bytes(job.batch), BATCH
        else:
            raise ValueError(f"unknown part {part!r}: use 'result' or 'batch'")
        yield Download(media_type, hashlib.sha256(data).hexdigest(), len(data), iter([data]))

    def logs(self, job_id: str) -> str:
        """QLMaaS keeps no logs: the job's message, if any."""
        return self.info(job_id).message or ""

    def metrics(self, job_id: str) -> dict[str, Any]:
        """Dates and queue position of the job."""
        job = self.info(job_id)
        stamps = {
            "created": job.created_at,
            "running": job.started_at,
            "finished": job.ended_at,
        }
        return {
            "timestamps": {k: v.isoformat() for k, v in stamps.items() if v is not None},
            "queue_position": job.queue_position,
        }

    def interim(self, job_id: str) -> list[Any]:
        """QLMaaS publishes no interim results."""
        return []

    def cancel(self, job_id: str) -> bool:
        """``cancel_job``: whether the job was cancelled."""
        with self._errors(f"cancelling job {job_id}", job_id):
            return bool(self.connection.cancel_job(job_id))

    def delete_files(self, job_id: str) -> bool:
        """``delete_job_files``: the job becomes DELETED."""
        with self._errors(f"deleting the files of job {job_id}", job_id):
            return bool(self.connection.delete_job_files(job_id))

    def events(
        self,
        job_id: str,
        *,
        last_event_id: int | None = None,
        on_response: Callable[[Any], None] | None = None,
    ) -> Iterator[Event]:
        """QLMaaS offers no event stream through its client: nothing is yielded."""
        return iter(())

    def close(self) -> None:
        """Forget the connection (the next call logs in again)."""
        with self._lock:
            self._connection = None

    # -- records ------------------------------------------------------------------

    def _remote(self, info: Any) -> RemoteJob:
        job_id = str(info.id)
        status = map_status(int(info.status), job_id)
        resources = info.resources or []
        qpu = next((r.qpu for r in resources if getattr(r, "qpu", None)), None)
        return RemoteJob(
            id=job_id,
            status=status,
            backend=str(qpu) if qpu else None,
            created_at=_date(info.submission_date),
            started_at=_date(info.starting_date),
            ended_at=_date(info.ending_date),
            queue_position=info.queue_pos if status is JobStatus.QUEUED else None,
            message=info.message or None,
            session_id=info.session_id or None,
        )


def _matches(job: RemoteJob, query: JobQuery) -> bool:
    if query.backend is not None and job.backend != query.backend:
        return False
    if query.statuses and job.status not in query.statuses:
        return False
    if query.session_id is not None and job.session_id != query.session_id:
        return False
    created = job.created_at
    if query.created_after is not None and (created is None or created < query.created_after):
        return False
    return not (
        query.created_before is not None and (created is None or created > query.created_before)
    )


def _password_source() -> bool:
    """Whether the SDK's password login will find credentials without prompting."""
    if os.environ.get("QLM_USER") and os.environ.get("QLM_PASSWD"):
        return True
    netrc = os.environ.get("NETRC") or str(Path.home() / ".netrc")
    return Path(netrc).is_file()


def _http_code(exc: BaseException) -> int | None:
    """The HTTP status the client put in its error (``"Code 401 - ..."``)."""
    text = str(exc).strip()
    if text.startswith("Code ") and text[5:8].isdigit():
        return int(text[5:8])
    return None


def _short(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc)
    lines = str(message).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__


def _quietly(work: Callable[[], RemoteJob | None]) -> RemoteJob | None:
    try:
        return work()
    except (ServiceError, OfflineError):
        return None


def _date(value: object) -> datetime | None:
    """A QLMaaS date (``YYYY-MM-DD HH:MM:SS.ffffff``, UTC) as an aware datetime."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# -- the wire: thrift structs of the QLMaaS client, read and written here only --------

# What QLMaaSConnection sends as a QPU's constructor arguments when there are none: the
# encodings of an empty tuple and an empty dict. Constants written, never read.
_NO_ARGS = b"\x80\x04)."
_NO_KWARGS = b"\x80\x04}\x94."


def build_async_batch(
    batch: Any, media_type: str, qpu: str, meta: dict[str, str], session_id: str | None
) -> Any:
    """The ``AsyncBatch`` that runs *batch* on the QPU named *qpu*, as the client's own
    remote QPUs build it; a single Job travels as a one-job Batch, as in the client."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImportWarning)
        from qat.comm.asynchronous.ttypes import (
            AsyncBatch,
            AsyncBatchType,
            QLMServiceIdentifier,
            SerializedArguments,
        )
        from qat.comm.resource.ttypes import ResourceModel
        from qat.comm.shared.ttypes import Batch

    if media_type == JOB:
        batch = Batch(jobs=[batch], meta_data={"single_job": "True"})
    batch.meta_data = {**(batch.meta_data or {}), **meta}
    return AsyncBatch(
        type=AsyncBatchType.ONESHOT,
        qpu=QLMServiceIdentifier(
            name=qpu, constructor=SerializedArguments(pyargs=_NO_ARGS, pykwargs=_NO_KWARGS)
        ),
        batch=batch,
        resources=[ResourceModel()],
        session_id=session_id,
        scheduling_info={},
    )


def thrift_bytes(struct: Any) -> bytes:
    """A thrift struct in thrift's binary protocol."""
    from thrift.protocol.TBinaryProtocol import TBinaryProtocolFactory
    from thrift.TSerialization import serialize

    data: bytes = serialize(struct, TBinaryProtocolFactory())
    return data


def result_request(job_id: str) -> bytes:
    """The body of the Scheduler's ``get_result`` call for *job_id*."""
    from qat.bind.qlmaas_Scheduler_client import get_result_args

    return thrift_bytes(get_result_args(job_id=job_id))


def read_result(answer: bytes, job_id: str) -> bytes:
    """The thrift ``BatchResult`` inside a ``get_result`` answer.

    The answer is read into plain thrift structs (which only fill in fields); its
    ``serialized`` field, a dill pickle, is never read.

    :raises ServiceError: when the server answered with an error, or sent the result
        only as a pickle.
    """
    from qat.bind.qlmaas_Scheduler_client import get_result_result
    from thrift.protocol.TBinaryProtocol import TBinaryProtocolFactory
    from thrift.TSerialization import deserialize

    limit = max(len(answer), 1)  # no string or container is longer than the answer
    factory = TBinaryProtocolFactory(string_length_limit=limit, container_length_limit=limit)
    try:
        reply = deserialize(get_result_result(), answer, factory)
    except Exception as exc:  # thrift raises EOFError, TProtocolException, struct.error...
        raise ServiceError(f"malformed QLMaaS result of job {job_id}: {exc}") from None
    for name in ("err", "plugin_err", "qpu_err", "generator_err"):
        error = getattr(reply, name, None)
        if error is not None:
            message = getattr(error, "message", None) or type(error).__name__
            raise ServiceError(f"QLMaaS returned no result for job {job_id}: {message}")
    results = reply.success.results if reply.success is not None else None
    if results is None:
        raise ServiceError(
            f"QLMaaS sent the result of job {job_id} only as a Python pickle, which "
            "jobledger never loads; read it with qat.qlmaas directly if you trust the server"
        )
    return thrift_bytes(results)
