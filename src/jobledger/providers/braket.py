"""The Amazon Braket provider: quantum tasks recorded and cached by jobledger.

:class:`BraketProvider` submits through the SDK's public objects (``AwsSession`` over a
``boto3`` session, ``AwsQuantumTask.create``) and reads through the ``boto3`` ``braket``
and ``s3`` clients' public operations; ``boto3`` and the SDK are imported lazily here and
nowhere else. Credentials come only from the usual AWS chain (environment variables,
``~/.aws``, a role): jobledger never reads, copies or stores them. A task is created
with CreateQuantumTask's ``clientToken`` set to jobledger's idempotency key (through a
botocore ``provide-client-params`` hook, so the SDK is used unpatched) and the tag
``jobledger-key``: a retried or resumed submit answers the task the first one created.
The task ARN is the job's id. A status round costs one SearchQuantumTasks call per ten
ids (filtered by ARN), plus one GetQuantumTask per id the search did not answer and per
failed task (for its reason). Results are the task's ``results.json`` from S3, byte for
byte; Braket keeps no copy of the program, so the batch lives only in the local store.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from jobledger import codecs
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

__all__ = ["KEY_TAG", "PROGRAM", "TASK_RESULT", "BraketProvider", "encode_program", "service_id"]

PROGRAM = "application/vnd.braket.ir.openqasm+json"
TASK_RESULT = "application/vnd.braket.task-result+json"
#: The Braket tag carrying jobledger's idempotency key on every task it creates.
KEY_TAG = "jobledger-key"
DEFAULT_URL = "https://braket.amazonaws.com"
DEFAULT_SHOTS = 1000
_SEARCH_VALUES = 10  # SearchQuantumTasks takes at most 10 values per filter
_PAGE = 100
_STATUS = {
    "CREATED": JobStatus.QUEUED,
    "QUEUED": JobStatus.QUEUED,
    "RUNNING": JobStatus.RUNNING,
    "COMPLETED": JobStatus.DONE,
    "FAILED": JobStatus.ERROR,
    "CANCELLING": JobStatus.CANCELLED,
    "CANCELLED": JobStatus.CANCELLED,
}
_AUTH_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidAccessKeyId",
        "ExpiredToken",
        "ExpiredTokenException",
        "SignatureDoesNotMatch",
        "InvalidSignatureException",
        "MissingAuthenticationTokenException",
    }
)
_BUSY_CODES = frozenset(
    {"ThrottlingException", "Throttling", "TooManyRequestsException", "SlowDown"}
)


def service_id(region: str, endpoint_url: str | None) -> str:
    """The stable service id of Braket in one region (at one endpoint)."""
    digest = hashlib.sha256(f"{region}\n{endpoint_url or ''}".encode()).hexdigest()
    return f"braket-{digest[:24]}"


def encode_program(value: Any) -> tuple[bytes, str]:
    """A circuit or OpenQASM program as Braket program JSON, through :mod:`jobledger.codecs`.

    :raises TypeError: when the value is not something Braket runs.
    """
    data, media_type = codecs.encode(value)
    if media_type != PROGRAM:
        raise TypeError(
            "Amazon Braket runs one braket.circuits.Circuit or braket.ir.openqasm.Program "
            f"per job, not {type(value).__qualname__}"
        )
    return data, media_type


def _option(config: ResolvedConfig, name: str, *, required: bool = False) -> str | None:
    value = config.options.get(name)
    if value is None and required:
        raise ConfigError(
            f"profile {config.profile!r} (provider 'braket') needs the option {name!r}: add "
            f"it to the profile's [profiles.{config.profile}.options] table"
        )
    if value is not None and not isinstance(value, str):
        raise ConfigError(
            f"profile {config.profile!r}: option {name!r} must be a string, not {value!r}"
        )
    return value


class BraketProvider:
    """Amazon Braket in one region, results in one S3 bucket and prefix.

    :param url: the URL recorded for the service (the profile's).
    :param region: the AWS region (``us-east-1``...).
    :param bucket: the S3 bucket tasks write their results to.
    :param prefix: the key prefix under which each task gets a folder.
    :param profile: the jobledger profile, named in authentication errors.
    :param endpoint_url: the Braket API's URL, when not the region's (tests, private endpoints).
    :param s3_endpoint_url: S3's URL, likewise (path-style addressing is then used).
    """

    def __init__(
        self,
        *,
        url: str,
        region: str,
        bucket: str,
        prefix: str,
        profile: str | None,
        endpoint_url: str | None = None,
        s3_endpoint_url: str | None = None,
        verify: bool = True,
    ) -> None:
        self.url = url
        self.region = region
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.profile = profile
        self.endpoint_url = endpoint_url
        self.s3_endpoint_url = s3_endpoint_url
        self._verify = verify
        self._clients: tuple[Any, Any, Any] | None = None
        self._lock = threading.Lock()
        self._token = threading.local()

    @classmethod
    def from_config(cls, config: ResolvedConfig) -> BraketProvider:
        """The provider a resolved ``braket`` profile describes.

        :raises ConfigError: naming the profile and the option when one is missing.
        """
        region = _option(config, "region", required=True)
        bucket = _option(config, "s3_bucket", required=True)
        assert region is not None and bucket is not None
        url = config.url or DEFAULT_URL
        # A profile URL other than the generic one is the API endpoint itself.
        endpoint = _option(config, "endpoint_url") or (url if url != DEFAULT_URL else None)
        return cls(
            url=url,
            region=region,
            bucket=bucket,
            prefix=_option(config, "s3_prefix") or "jobledger",
            profile=config.profile,
            endpoint_url=endpoint,
            s3_endpoint_url=_option(config, "s3_endpoint_url"),
            verify=config.verify,
        )

    @property
    def service_id(self) -> str:
        """This provider's stable service id."""
        return service_id(self.region, self.endpoint_url)

    # -- plumbing ---------------------------------------------------------------

    def _sdk(self) -> tuple[Any, Any, Any]:
        """The ``braket`` client, the ``s3`` client and the SDK's ``AwsSession``."""
        with self._lock:
            if self._clients is None:
                import boto3  # type: ignore[import-untyped]
                from botocore.config import Config  # type: ignore[import-untyped]

                with self._errors("connecting"):
                    session = boto3.Session(region_name=self.region)
                    config = Config(retries={"max_attempts": 3, "mode": "standard"})
                    braket = session.client(
                        "braket",
                        endpoint_url=self.endpoint_url,
                        config=config,
                        verify=self._verify,
                    )
                    braket.meta.events.register(
                        "provide-client-params.braket.CreateQuantumTask", self._add_client_token
                    )
                    s3 = session.client(
                        "s3",
                        endpoint_url=self.s3_endpoint_url,
                        config=config.merge(Config(s3={"addressing_style": "path"})),
                        verify=self._verify,
                    )
                    from braket.aws import AwsSession

                    aws = AwsSession(boto_session=session, braket_client=braket)
                self._clients = (braket, s3, aws)
            return self._clients

    @property
    def _braket(self) -> Any:
        return self._sdk()[0]

    @property
    def _s3(self) -> Any:
        return self._sdk()[1]

    def _add_client_token(self, params: dict[str, Any], **_: Any) -> None:
        """botocore hook: the idempotency key of the submit running on this thread
        becomes CreateQuantumTask's ``clientToken`` (botocore keeps it across retries)."""
        key = getattr(self._token, "key", None)
        if key is not None:
            params["clientToken"] = key

    @contextmanager
    def _errors(self, what: str, job_id: str | None = None) -> Iterator[None]:
        """Turn botocore's exceptions into jobledger's, naming the profile or the task."""
        from botocore.exceptions import (  # type: ignore[import-untyped]
            BotoCoreError,
            ClientError,
            ConnectionError,
            HTTPClientError,
            NoCredentialsError,
            ParamValidationError,
            PartialCredentialsError,
        )

        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            message = str(error.get("Message", "")) or code
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in _AUTH_CODES:
                raise AuthenticationError(
                    f"AWS refused the credentials used by profile {self.profile!r} while "
                    f"{what} ({code}: {message}); check the AWS credential chain (AWS_* "
                    "environment variables, ~/.aws/credentials). Pending submissions are kept",
                    status_code=403,
                    code=code,
                ) from exc
            if code in ("ResourceNotFoundException", "NoSuchKey", "NotFound") or status == 404:
                raise JobNotFoundError(
                    f"Amazon Braket does not know task {job_id} (profile {self.profile!r}): "
                    f"{message}"
                ) from exc
            if code == "ValidationException":
                raise ServiceError(
                    f"Amazon Braket refused the request while {what}: {message}",
                    status_code=422,
                    code=code,
                ) from exc
            if code in _BUSY_CODES or (isinstance(status, int) and status >= 500):
                raise ServiceError(
                    f"Amazon Braket is busy or failing while {what} ({code}: {message}); "
                    "try again later",
                    status_code=503,
                    code=code,
                ) from exc
            raise ServiceError(
                f"Amazon Braket failed while {what}: {code}: {message}",
                status_code=status if isinstance(status, int) else None,
                code=code,
            ) from exc
        except (NoCredentialsError, PartialCredentialsError) as exc:
            raise AuthenticationError(
                f"no usable AWS credentials for profile {self.profile!r} while {what} ({exc}); "
                "set them the usual AWS way (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                "~/.aws/credentials or AWS_PROFILE): jobledger never stores them",
                status_code=401,
            ) from exc
        except (ConnectionError, HTTPClientError) as exc:
            where = self.endpoint_url or f"Amazon Braket in {self.region}"
            raise OfflineError(
                f"cannot reach {where} while {what} ({exc}); check the network, or work "
                "offline with JOBLEDGER_OFFLINE=1"
            ) from exc
        except ParamValidationError as exc:
            # Checked before sending: nothing reached Braket, the request itself is wrong.
            raise ServiceError(
                f"Amazon Braket would refuse the request while {what}: {exc}", status_code=422
            ) from exc
        except BotoCoreError as exc:
            raise ServiceError(f"Amazon Braket failed while {what}: {exc}") from exc

    def _get(self, job_id: str) -> dict[str, Any]:
        with self._errors(f"reading task {job_id}", job_id):
            answer: dict[str, Any] = self._braket.get_quantum_task(quantumTaskArn=job_id)
        return answer

    # -- calls ------------------------------------------------------------------

    def health(self) -> ServiceHealth:
        """The service id; one device search checks the credentials."""
        with self._errors("connecting"):
            self._braket.search_devices(filters=[], maxResults=1)
        return ServiceHealth(self.service_id, "amazon-braket")

    def backends(self) -> list[RemoteBackend]:
        """The devices of the region, named by their ARN (what ``submit`` takes)."""
        out: list[RemoteBackend] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"filters": []}
            if token:
                kwargs["nextToken"] = token
            with self._errors("listing devices"):
                page = self._braket.search_devices(**kwargs)
            for device in page.get("devices", []):
                description = (
                    f"{device.get('providerName', '')} {device.get('deviceName', '')} "
                    f"({device.get('deviceType', '')}, {device.get('deviceStatus', '')})"
                )
                out.append(RemoteBackend(device["deviceArn"], "", description.strip()))
            token = page.get("nextToken")
            if not token:
                return out

    def submit(self, submission: Submission, *, idempotency_key: str) -> RemoteJob:
        """Create a task on the device ARN *backend*, with ``clientToken`` = the key.

        ``params``: ``shots`` (default 1000; 0 asks a simulator for exact results) and
        ``device_parameters`` (a dict, passed to the SDK as it is).
        """
        program = self._program(submission)
        params = dict(submission.params)
        shots = params.get("shots", DEFAULT_SHOTS)
        if not isinstance(shots, int) or isinstance(shots, bool) or shots < 0:
            raise ServiceError(
                f"params['shots'] must be a non-negative integer, not {shots!r}", status_code=422
            )
        device_parameters = params.get("device_parameters")
        if device_parameters is not None and not isinstance(device_parameters, dict):
            raise ServiceError("params['device_parameters'] must be a dict", status_code=422)
        tags = dict(_tag_pair(tag) for tag in submission.tags)
        tags[KEY_TAG] = idempotency_key
        _, _, aws = self._sdk()
        from braket.aws import AwsQuantumTask

        self._token.key = idempotency_key
        try:
            with self._errors(f"submitting to {submission.backend}"):
                task = AwsQuantumTask.create(
                    aws,
                    submission.backend,
                    program,
                    (self.bucket, self.prefix),
                    shots,
                    device_parameters=device_parameters,
                    tags=tags,
                    quiet=True,
                )
        finally:
            self._token.key = None
        return RemoteJob(
            id=str(task.id),
            status=JobStatus.QUEUED,
            backend=submission.backend,
            tags=_jobledger_tags(tags),
            params=params,
        )

    @staticmethod
    def _program(submission: Submission) -> Any:
        if submission.media_type != PROGRAM:
            raise ServiceError(
                f"Amazon Braket runs {PROGRAM} batches, not {submission.media_type}",
                status_code=422,
            )
        from braket.ir.openqasm import Program

        try:
            # A schema parse (plain data) of the very bytes recorded, never a Circuit rebuild.
            return Program.parse_raw(submission.data)
        except ValueError as exc:
            raise ServiceError(f"malformed Braket program: {exc}", status_code=422) from exc

    def find_submission(self, idempotency_key: str) -> RemoteJob | None:
        """The task tagged ``jobledger-key: <key>``, or ``None`` (searches every task:
        Braket cannot filter by tag)."""
        for summary in self._search([]):
            if (summary.get("tags") or {}).get(KEY_TAG) == idempotency_key:
                return self._remote(summary)
        return None

    def info(self, job_id: str) -> RemoteJob:
        """Status, device, dates, shots, tags and failure reason of one task."""
        return self._remote(self._get(job_id))

    def list_jobs(self, query: JobQuery) -> Iterator[RemoteJob]:
        """SearchQuantumTasks with the query's filters (Braket's order; tags filtered
        here). Braket tasks have no sessions: a query for a session lists nothing."""
        if query.session_id is not None:
            return
        filters: list[dict[str, Any]] = []
        if query.backend:
            filters.append({"name": "deviceArn", "operator": "EQUAL", "values": [query.backend]})
        if query.statuses:
            wanted = [raw for raw, status in _STATUS.items() if status in query.statuses]
            filters.append({"name": "status", "operator": "EQUAL", "values": wanted})
        if query.created_after:
            filters.append(_date_filter("GTE", query.created_after))
        if query.created_before:
            filters.append(_date_filter("LTE", query.created_before))
        for summary in self._search(filters, query.page_size):
            remote = self._remote(summary)
            if all(tag in remote.tags for tag in query.tags):
                yield remote

    def _search(self, filters: list[dict[str, Any]], page_size: int = _PAGE) -> Iterator[Any]:
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "filters": filters,
                "maxResults": max(1, min(page_size, _PAGE)),
            }
            if token:
                kwargs["nextToken"] = token
            with self._errors("searching tasks"):
                page = self._braket.search_quantum_tasks(**kwargs)
            yield from page.get("quantumTasks", [])
            token = page.get("nextToken")
            if not token:
                return

    def statuses(self, ids: Sequence[str]) -> StatusBatch:
        """One search per ten ARNs; GetQuantumTask for ids the search did not answer
        and for failed tasks (the search carries no failure reason)."""
        found: list[RemoteJob] = []
        missing: list[str] = []
        for start in range(0, len(ids), _SEARCH_VALUES):
            chunk = list(ids[start : start + _SEARCH_VALUES])
            arn_filter = {"name": "quantumTaskArn", "operator": "EQUAL", "values": chunk}
            answered = {s["quantumTaskArn"]: s for s in self._search([arn_filter])}
            for job_id in chunk:
                summary = answered.get(job_id)
                try:
                    if summary is None or summary.get("status") == "FAILED":
                        summary = self._get(job_id)
                except JobNotFoundError:
                    missing.append(job_id)
                    continue
                found.append(self._remote(summary))
        return StatusBatch(found, missing)

    @contextmanager
    def download(self, job_id: str, part: str) -> Iterator[Download]:
        """The task's ``results.json`` from S3, byte for byte.

        :raises ServiceError: for ``"batch"``: Braket does not return a task's program.
        """
        if part == "batch":
            raise ServiceError(
                f"Amazon Braket does not return the program of task {job_id}: a batch lives "
                "only in the local store of the machine that submitted it (jobledger records "
                "it there before sending); a task created outside jobledger has none",
                status_code=404,
                code="batch_not_kept",
            )
        if part != "result":
            raise ValueError(f"unknown part {part!r}: use 'result' or 'batch'")
        task = self._get(job_id)
        status = _status(task)
        if status is not JobStatus.DONE:
            raise ResultNotReadyError(f"Braket task {job_id} is {status.value}, no result yet")
        bucket, key = task["outputS3Bucket"], f"{task['outputS3Directory']}/results.json"
        with self._errors(f"downloading s3://{bucket}/{key} of task {job_id}", job_id):
            body = self._s3.get_object(Bucket=bucket, Key=key)["Body"]
            try:
                data: bytes = body.read()
            finally:
                body.close()
        yield Download(TASK_RESULT, hashlib.sha256(data).hexdigest(), len(data), iter([data]))

    def logs(self, job_id: str) -> str:
        """Braket tasks have no logs."""
        return ""

    def metrics(self, job_id: str) -> dict[str, Any]:
        """Shots and dates of the task."""
        task = self._get(job_id)
        return {
            "shots": task.get("shots"),
            "created_at": _stamp(task.get("createdAt")),
            "ended_at": _stamp(task.get("endedAt")),
        }

    def interim(self, job_id: str) -> list[Any]:
        """Braket tasks publish no interim results."""
        return []

    def cancel(self, job_id: str) -> bool:
        """CancelQuantumTask; ``False`` when the task was already final."""
        if _status(self._get(job_id)).is_final:
            return False
        try:
            with self._errors(f"cancelling task {job_id}", job_id):
                self._braket.cancel_quantum_task(
                    quantumTaskArn=job_id, clientToken=uuid.uuid4().hex
                )
        except ServiceError as exc:
            if exc.code == "ConflictException":
                return False  # it ended between the two calls
            raise
        return True

    def delete_files(self, job_id: str) -> bool:
        """Delete the task's objects in S3 (``results.json`` and the rest of its folder).

        Braket itself keeps the task's record (it offers no delete); whether anything
        was deleted is returned.
        """
        task = self._get(job_id)
        bucket, folder = task["outputS3Bucket"], f"{task['outputS3Directory']}/"
        deleted = False
        with self._errors(f"deleting s3://{bucket}/{folder} of task {job_id}", job_id):
            listing = self._s3.list_objects_v2(Bucket=bucket, Prefix=folder)
            for item in listing.get("Contents", []):
                self._s3.delete_object(Bucket=bucket, Key=item["Key"])
                deleted = True
        return deleted

    def events(
        self,
        job_id: str,
        *,
        last_event_id: int | None = None,
        on_response: Callable[[Any], None] | None = None,
    ) -> Iterator[Event]:
        """Braket offers no event stream: nothing is yielded."""
        return iter(())

    def close(self) -> None:
        """Close the clients' connection pools."""
        with self._lock:
            clients, self._clients = self._clients, None
        if clients is not None:
            clients[0].close()
            clients[1].close()

    # -- records ------------------------------------------------------------------

    def _remote(self, task: dict[str, Any]) -> RemoteJob:
        status = _status(task)
        tags = dict(task.get("tags") or {})
        return RemoteJob(
            id=str(task["quantumTaskArn"]),
            status=status,
            backend=task.get("deviceArn"),
            created_at=_date(task.get("createdAt")),
            ended_at=_date(task.get("endedAt")),
            queue_position=_position(task.get("queueInfo")),
            message=task.get("failureReason") if status is JobStatus.ERROR else None,
            tags=_jobledger_tags(tags),
            params={"shots": task["shots"]} if "shots" in task else {},
        )


def _status(task: dict[str, Any]) -> JobStatus:
    raw = str(task.get("status"))
    status = _STATUS.get(raw)
    if status is None:
        raise ServiceError(
            f"Braket task {task.get('quantumTaskArn')} has a status jobledger does not know: {raw}"
        )
    return status


def _tag_pair(tag: str) -> tuple[str, str]:
    """A jobledger tag as a Braket tag: ``"k=v"`` is key ``k``, value ``v``; else empty."""
    key, _, value = tag.partition("=")
    return key, value


def _jobledger_tags(tags: dict[str, str]) -> tuple[str, ...]:
    return tuple(
        key if not value else f"{key}={value}" for key, value in tags.items() if key != KEY_TAG
    )


def _date_filter(operator: str, value: datetime) -> dict[str, Any]:
    stamp = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    text = stamp.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return {"name": "createdAt", "operator": operator, "values": [text]}


def _position(queue: Any) -> int | None:
    position = queue.get("position") if isinstance(queue, dict) else None
    return int(position) if isinstance(position, str) and position.isdigit() else None


def _date(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return None


def _stamp(value: object) -> str | None:
    date = _date(value)
    return date.isoformat() if date else None
