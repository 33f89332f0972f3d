"""A loopback stand-in for Amazon Braket's REST API and the S3 bucket its tasks write to.

Tests never reach AWS: they drive the real ``boto3``/``amazon-braket-sdk`` over HTTP
against this stand-in on ``127.0.0.1``. Two ports share one state: the Braket API
(``endpoint_url``) and S3 (``s3_endpoint_url``, path-style addressing). Routes follow
botocore's ``braket/2019-09-01/service-2.json``:

Braket (rest-json; errors as ``{"__type": Code, "message": ...}``, which botocore reads)
  - ``POST /quantum-task`` -- CreateQuantumTask. ``clientToken`` is honoured: the same
    token answers the task it created first, without creating another (as Braket does).
  - ``GET /quantum-task/{arn}`` -- GetQuantumTask (``failureReason`` when FAILED).
  - ``PUT /quantum-task/{arn}/cancel`` -- CancelQuantumTask (``ConflictException`` when final).
  - ``POST /quantum-tasks`` -- SearchQuantumTasks with ``quantumTaskArn``, ``deviceArn``,
    ``status`` (``EQUAL``, any of up to 10 values) and ``createdAt`` filters, pages of
    ``maxResults`` with ``nextToken``; newest first.
  - ``POST /devices`` -- SearchDevices (one device: SV1).
  - ``GET|POST /tags/{arn}`` -- ListTagsForResource / TagResource.
S3 (path-style ``/{bucket}/{key}``, XML errors)
  - ``PUT`` (PutObject), ``GET`` (GetObject), ``DELETE`` (DeleteObject),
    ``GET /{bucket}?list-type=2&prefix=`` (ListObjectsV2).

Every request must be signed (SigV4) with an access key id the stand-in accepts;
another gets ``403 UnrecognizedClientException`` (the signature itself is not checked).
Tasks run one at a time on a worker thread with Braket's local state-vector simulator
(``braket_sv``, what ``LocalSimulator("braket_sv")`` runs), which writes a real
``GateModelTaskResult`` to ``{outputS3KeyPrefix}/{task id}/results.json`` as Braket does.
Test controls: ``pause``/``resume``, ``drop_next_create`` (the task is created, then the
connection is closed without an answer), ``fail_next_task``, ``accept_keys``,
``requests`` (per-route counts of accepted requests), ``refused`` (of requests
with an unknown key), ``tasks`` and ``objects``.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote
from xml.sax.saxutils import escape

from .ibm_http import LoopbackServer, Reply, Request, Router

REGION = "us-east-1"
ACCOUNT = "123456789012"
SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"
ACCESS_KEY = "AKIASTANDINTEST00001"
SECRET_KEY = "standin-secret-key"
OPEN = ("CREATED", "QUEUED", "RUNNING", "CANCELLING")


@dataclass
class StandInTask:
    """One quantum task as the stand-in keeps it."""

    arn: str
    device_arn: str
    shots: int
    action: str
    bucket: str
    directory: str
    client_token: str
    tags: dict[str, str]
    created_at: datetime
    device_parameters: str = "{}"
    status: str = "QUEUED"
    ended_at: datetime | None = None
    failure_reason: str | None = None

    def summary(self) -> dict[str, Any]:
        """The task as SearchQuantumTasks lists it."""
        out: dict[str, Any] = {
            "quantumTaskArn": self.arn,
            "status": self.status,
            "deviceArn": self.device_arn,
            "shots": self.shots,
            "outputS3Bucket": self.bucket,
            "outputS3Directory": self.directory,
            "createdAt": _iso(self.created_at),
            "tags": dict(self.tags),
        }
        if self.ended_at is not None:
            out["endedAt"] = _iso(self.ended_at)
        return out

    def detail(self) -> dict[str, Any]:
        """The task as GetQuantumTask answers it."""
        out = self.summary()
        out["deviceParameters"] = self.device_parameters
        if self.failure_reason is not None:
            out["failureReason"] = self.failure_reason
        return out


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _error(code: str, message: str, status: int) -> Reply:
    return Reply.json({"__type": code, "message": message}, status)


def _s3_error(code: str, message: str, status: int) -> Reply:
    body = f"<Error><Code>{code}</Code><Message>{escape(message)}</Message></Error>"
    return Reply(status, body.encode("utf-8"), "application/xml")


_KEY_ID = re.compile(r"Credential=([^/,\s]+)/")


@dataclass
class BraketStandIn:
    """The stand-in's state, servers and test controls."""

    keys: set[str] = field(default_factory=lambda: {ACCESS_KEY})
    tasks: dict[str, StandInTask] = field(default_factory=dict)
    objects: dict[tuple[str, str], bytes] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._lock = threading.Condition()
        self._paused = False
        self._drop_next_create = False
        self._fail_next = False
        self._stopping = False
        self._api = Router()
        self._s3 = Router()
        self._routes()
        self.api_server = LoopbackServer(self._api)
        self.s3_server = LoopbackServer(self._s3)
        self._worker = threading.Thread(target=self._run_tasks, daemon=True)

    # -- lifecycle and controls ---------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        """The Braket API's base URL."""
        return self.api_server.base_url

    @property
    def s3_endpoint_url(self) -> str:
        """S3's base URL."""
        return self.s3_server.base_url

    def start(self) -> BraketStandIn:
        """Serve both ports and start the task worker."""
        self.api_server.start()
        self.s3_server.start()
        self._worker.start()
        return self

    def stop(self) -> None:
        """Stop serving (idempotent); tasks not run stay as they are."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            self._lock.notify_all()
        self.api_server.stop()
        self.s3_server.stop()
        self._worker.join(timeout=10)

    def pause(self) -> None:
        """Keep new tasks QUEUED until :meth:`resume`."""
        with self._lock:
            self._paused = True

    def resume(self) -> None:
        """Run queued tasks again."""
        with self._lock:
            self._paused = False
            self._lock.notify_all()

    def drop_next_create(self) -> None:
        """Create the next task, then close the connection without answering."""
        with self._lock:
            self._drop_next_create = True

    def fail_next_task(self) -> None:
        """Make the next task that runs end FAILED, with a failure reason."""
        with self._lock:
            self._fail_next = True

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until no task is open (for tests that create tasks outside jobledger)."""
        with self._lock:
            self._lock.wait_for(
                lambda: all(t.status not in OPEN for t in self.tasks.values()), timeout
            )

    # -- routes -------------------------------------------------------------------

    def _routes(self) -> None:
        api = self._api
        api.add("POST", "/quantum-task", self._signed(self._create))
        api.add("GET", "/quantum-task/{arn}", self._signed(self._get))
        api.add("PUT", "/quantum-task/{arn}/cancel", self._signed(self._cancel))
        api.add("POST", "/quantum-tasks", self._signed(self._search))
        api.add("POST", "/devices", self._signed(self._devices))
        api.add("GET", "/tags/{arn}", self._signed(self._list_tags))
        api.add("POST", "/tags/{arn}", self._signed(self._tag))
        for method in ("GET", "PUT", "DELETE"):
            # S3 keys span several path segments, so these patterns are written out.
            self._s3.routes.append(
                (
                    method,
                    re.compile(r"^/(?P<bucket>[^/]+)/(?P<key>.+)$"),
                    "/{bucket}/{key}",
                    self._signed(self._object, s3=True),
                )
            )
        self._s3.routes.append(
            (
                "GET",
                re.compile(r"^/(?P<bucket>[^/]+)/?$"),
                "/{bucket}",
                self._signed(self._list_objects, s3=True),
            )
        )

    def _signed(self, handler: Any, *, s3: bool = False) -> Any:
        def check(request: Request) -> Reply:
            found = _KEY_ID.search(request.headers.get("Authorization", ""))
            route = f"{request.method} {handler.__name__.strip('_')}"
            with self._lock:
                accepted = found is not None and found.group(1) in self.keys
                (self.requests if accepted else self.refused)[route] += 1
            if not accepted:
                message = "The security token included in the request is invalid."
                if s3:
                    return _s3_error("InvalidAccessKeyId", message, 403)
                return _error("UnrecognizedClientException", message, 403)
            return handler(request)  # type: ignore[no-any-return]

        return check

    def _create(self, request: Request) -> Reply:
        body = request.json()
        token = body.get("clientToken")
        with self._lock:
            for task in self.tasks.values():
                if token and task.client_token == token:
                    return Reply.json({"quantumTaskArn": task.arn}, 201)
        if body.get("deviceArn") != SV1:
            return _error(
                "ValidationException", f"Device {body.get('deviceArn')} is not available", 400
            )
        try:
            from braket.ir.openqasm import Program

            Program.parse_raw(body["action"])
        except (KeyError, ValueError) as exc:
            return _error("ValidationException", f"invalid action: {exc}", 400)
        task_id = str(uuid.uuid4())
        prefix = str(body["outputS3KeyPrefix"]).rstrip("/")
        task = StandInTask(
            arn=f"arn:aws:braket:{REGION}:{ACCOUNT}:quantum-task/{task_id}",
            device_arn=SV1,
            shots=int(body["shots"]),
            action=body["action"],
            bucket=body["outputS3Bucket"],
            directory=f"{prefix}/{task_id}",
            client_token=token or task_id,
            tags=dict(body.get("tags") or {}),
            created_at=datetime.now(UTC),
            device_parameters=body.get("deviceParameters") or "{}",
        )
        with self._lock:
            self.tasks[task.arn] = task
            self._lock.notify_all()
            drop, self._drop_next_create = self._drop_next_create, False
        if drop:
            return Reply(drop=True)
        return Reply.json({"quantumTaskArn": task.arn}, 201)

    def _task(self, request: Request) -> StandInTask | Reply:
        arn = unquote(request.params["arn"])
        with self._lock:
            task = self.tasks.get(arn)
        if task is None:
            return _error("ResourceNotFoundException", f"Quantum task {arn} not found", 404)
        return task

    def _get(self, request: Request) -> Reply:
        task = self._task(request)
        if isinstance(task, Reply):
            return task
        with self._lock:
            return Reply.json(task.detail())

    def _cancel(self, request: Request) -> Reply:
        task = self._task(request)
        if isinstance(task, Reply):
            return task
        with self._lock:
            if task.status not in OPEN:
                return _error("ConflictException", f"Quantum task is {task.status}", 409)
            task.status, task.ended_at = "CANCELLED", datetime.now(UTC)
            return Reply.json({"quantumTaskArn": task.arn, "cancellationStatus": "CANCELLED"})

    def _search(self, request: Request) -> Reply:
        body = request.json()
        filters = body.get("filters") or []
        limit = int(body.get("maxResults") or 100)
        start = int(body.get("nextToken") or 0)
        with self._lock:
            tasks = sorted(self.tasks.values(), key=lambda t: t.created_at, reverse=True)
            chosen = [t.summary() for t in tasks if all(_matches(t, f) for f in filters)]
        page = chosen[start : start + limit]
        out: dict[str, Any] = {"quantumTasks": page}
        if start + limit < len(chosen):
            out["nextToken"] = str(start + limit)
        return Reply.json(out)

    def _devices(self, request: Request) -> Reply:
        device = {
            "deviceArn": SV1,
            "deviceName": "SV1",
            "providerName": "Amazon Braket",
            "deviceType": "SIMULATOR",
            "deviceStatus": "ONLINE",
        }
        return Reply.json({"devices": [device]})

    def _list_tags(self, request: Request) -> Reply:
        task = self._task(request)
        if isinstance(task, Reply):
            return task
        with self._lock:
            return Reply.json({"tags": dict(task.tags)})

    def _tag(self, request: Request) -> Reply:
        task = self._task(request)
        if isinstance(task, Reply):
            return task
        with self._lock:
            task.tags.update(request.json().get("tags") or {})
        return Reply.json({})

    def _object(self, request: Request) -> Reply:
        where = (request.params["bucket"], unquote(request.params["key"]))
        with self._lock:
            if request.method == "PUT":
                self.objects[where] = request.body
                return Reply(200, b"", "application/xml")
            if request.method == "DELETE":
                self.objects.pop(where, None)
                return Reply(204, b"", "application/xml")
            data = self.objects.get(where)
        if data is None:
            return _s3_error("NoSuchKey", "The specified key does not exist.", 404)
        return Reply(200, data, "application/octet-stream")

    def _list_objects(self, request: Request) -> Reply:
        bucket = request.params["bucket"]
        prefix = request.arg("prefix") or ""
        with self._lock:
            keys = sorted(
                (k, len(v))
                for (b, k), v in self.objects.items()
                if b == bucket and k.startswith(prefix)
            )
        contents = "".join(
            f"<Contents><Key>{escape(k)}</Key><Size>{size}</Size></Contents>" for k, size in keys
        )
        body = (
            '<?xml version="1.0" encoding="UTF-8"?><ListBucketResult>'
            f"<Name>{escape(bucket)}</Name><Prefix>{escape(prefix)}</Prefix>"
            f"<KeyCount>{len(keys)}</KeyCount><IsTruncated>false</IsTruncated>{contents}"
            "</ListBucketResult>"
        )
        return Reply(200, body.encode("utf-8"), "application/xml")

    # -- the task worker ------------------------------------------------------------

    def _next(self) -> StandInTask | None:
        with self._lock:
            while not self._stopping:
                if not self._paused:
                    for task in sorted(self.tasks.values(), key=lambda t: t.created_at):
                        if task.status in ("CREATED", "QUEUED"):
                            task.status = "RUNNING"
                            return task
                self._lock.wait(0.5)
        return None

    def _run_tasks(self) -> None:
        while (task := self._next()) is not None:
            with self._lock:
                fail, self._fail_next = self._fail_next, False
            data, reason = None, "the stand-in was told to fail this task" if fail else None
            if not fail:
                try:
                    data = _simulate(task)
                except Exception as exc:  # the simulator raises many types for a bad program
                    reason = f"{type(exc).__name__}: {exc}"
            with self._lock:
                if data is not None:
                    self.objects[(task.bucket, f"{task.directory}/results.json")] = data
                if task.status == "RUNNING":
                    task.status = "COMPLETED" if reason is None else "FAILED"
                    task.failure_reason = reason
                    task.ended_at = datetime.now(UTC)
                self._lock.notify_all()


def _simulate(task: StandInTask) -> bytes:
    """Run the task's program on the local state-vector simulator: its results.json."""
    from braket.default_simulator import StateVectorSimulator
    from braket.ir.openqasm import Program

    result = StateVectorSimulator().run(Program.parse_raw(task.action), shots=task.shots)
    metadata = result.taskMetadata.copy(update={"id": task.arn, "deviceId": task.device_arn})
    text: str = result.copy(update={"taskMetadata": metadata}).json()
    return text.encode("utf-8")


def _matches(task: StandInTask, spec: dict[str, Any]) -> bool:
    name, values, operator = spec["name"], list(spec["values"]), spec["operator"]
    if name == "createdAt":
        stamp = _iso(task.created_at)
        bounds = {
            "LT": lambda: stamp < values[0],
            "LTE": lambda: stamp <= values[0],
            "GT": lambda: stamp > values[0],
            "GTE": lambda: stamp >= values[0],
            "EQUAL": lambda: stamp == values[0],
            "BETWEEN": lambda: values[0] <= stamp <= values[1],
        }
        return bounds[operator]()
    field_of = {"quantumTaskArn": task.arn, "deviceArn": task.device_arn, "status": task.status}
    return operator == "EQUAL" and field_of.get(name) in values


def credentials_env(access_key: str = ACCESS_KEY) -> dict[str, str]:
    """Environment variables that give boto3 fake credentials and no real AWS config."""
    return {
        "AWS_ACCESS_KEY_ID": access_key,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": "/nonexistent/aws-config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
