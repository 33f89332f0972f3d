"""A loopback stand-in for IBM Quantum Platform (Qiskit Runtime REST API v1, IAM, instance lookup).

Tests never reach IBM: they drive the real ``qiskit-ibm-runtime`` SDK (0.51)
over HTTP against this stand-in on ``127.0.0.1``. One port serves everything the
SDK calls for the ``ibm_quantum_platform`` / ``ibm_cloud`` channel:

IAM (``IAM_URL`` = ``<url>/iam``)
  - ``POST /iam/identity/token`` -- API key to bearer token (form body,
    ``grant_type=urn:ibm:params:oauth:grant-type:apikey``). Answers a JWT whose
    ``exp``/``iat`` drive the SDK's refresh; an unknown or revoked key gets IBM's
    ``400 BXNIM0415E``.
Instance lookup (what ``QiskitRuntimeService.__init__`` does to check ``instance``)
  - ``POST /global-search/v3/resources/search`` -- Global Search
    (``GLOBAL_SEARCH_URL`` = ``<url>/global-search``): the one instance CRN.
  - ``GET /global-catalog/api/v1/{id}`` -- Global Catalog
    (``GLOBAL_CATALOG_URL`` = ``<url>/global-catalog/api/v1``): its plan.
Runtime API (``<url>/api/v1``, reached through ``url_resolver``), bearer token
and ``Service-CRN`` header required (``401`` otherwise, ``403`` for another CRN;
the SDK's ``apikey`` fallback header is refused with ``401`` as IBM does):
  - ``GET /backends`` (``{"devices": [...]}``), ``GET /backends/{name}/configuration``,
    ``/properties``, ``/status`` -- real device snapshots from
    ``qiskit_ibm_runtime.fake_provider``.
  - ``GET /instances/usage`` -- instance usage (never at its limit).
  - ``POST /jobs`` -- submit ``{"program_id", "backend", "params", "tags", ...}``;
    answers ``{"id", "backend"}``.
  - ``GET /jobs`` -- list with ``limit``, ``offset``, ``backend``, ``pending``,
    ``program``, ``tags`` (all must match), ``session_id``, ``created_after``,
    ``created_before``, ``sort=ASC``; answers ``{"jobs", "count", "limit", "offset"}``,
    newest first, pages capped at ``max_page_size``.
  - ``GET /jobs/{id}`` (``params`` unless ``exclude_params=true``), ``DELETE /jobs/{id}``,
    ``GET /jobs/{id}/results``, ``POST /jobs/{id}/cancel``, ``GET /jobs/{id}/logs``,
    ``GET /jobs/{id}/metrics``, ``PUT /jobs/{id}/tags``.

Job ids are xids, as IBM's: 20 lowercase base32hex characters starting with a
letter (``"d4k2..."``). States are ``Queued``, ``Running``, ``Completed``,
``Failed``, ``Cancelled`` in ``state.status`` (the SDK maps them to ``QUEUED``,
``RUNNING``, ``DONE``, ``ERROR``, ``CANCELLED``). Sampler and Estimator jobs run
on Aer with the device's noise model; results are ``RuntimeEncoder`` JSON.

Simplified, compared with IBM: one account with one instance and one plan;
tokens are unsigned JWTs; no sessions or batches (``/sessions`` answers 404), no
``/workloads``, no calibration ids, no Qiskit Functions, no ``dry_run`` mock
devices; one device queue for all devices (one job runs at a time); result
metadata carries IBM's keys with simulator values; usage is wall-clock seconds of
the simulated run; logs are one line; errors carry IBM's status codes with a
short ``{"errors": [...]}`` body; the ``IBM-API-Version`` header is logged, not
enforced. Test controls: ``pause_queue``/``resume_queue``/``queue_paused``,
``queued_seconds``/``running_seconds``, ``drop_next_submit_response`` (a lost
answer: connection closed, or a 502 the SDK retries), ``fail_next_job``,
``revoke_key``/``rotate_key``/``expire_tokens``, ``set_device_status``,
``requests`` (per-route counts), ``request_log`` and ``jobs``.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, NamedTuple

from .ibm_account import PLAN_ID, StandInAccount, ibm_error
from .ibm_http import LoggedRequest, LoopbackServer, Reply, Request, Router
from .ibm_jobs import FINAL, PENDING, JobBook, StandInJob, iso
from .ibm_sim import DEFAULT_DEVICES, StandInDevice, execute, load_device

API = "/api/v1"


def standin_url_resolver(
    url: str, instance: str, private_endpoint: bool | None = False, channel: str = ""
) -> str:
    """``url_resolver`` for ``QiskitRuntimeService``: the Runtime API lives at ``<url>/api/v1``."""
    return f"{url.rstrip('/')}{API}"


class StandInEndpoints(NamedTuple):
    """Where the stand-in listens and the credentials it accepts."""

    url: str
    iam_url: str
    api_key: str
    instance: str

    @property
    def api_url(self) -> str:
        """Base of the Runtime REST API."""
        return f"{self.url}{API}"

    @property
    def search_url(self) -> str:
        """Base of the Global Search stand-in."""
        return f"{self.url}/global-search"

    @property
    def catalog_url(self) -> str:
        """Base of the Global Catalog stand-in."""
        return f"{self.url}/global-catalog/api/v1"

    def env(self) -> dict[str, str]:
        """Environment variables that point the SDK's IBM Cloud lookups at the stand-in."""
        return {
            "IAM_URL": self.iam_url,
            "GLOBAL_SEARCH_URL": self.search_url,
            "GLOBAL_CATALOG_URL": self.catalog_url,
        }

    def service_kwargs(self, token: str | None = None) -> dict[str, Any]:
        """Keyword arguments for ``QiskitRuntimeService`` (set ``env()`` first)."""
        return {
            "channel": "ibm_quantum_platform",
            "token": token if token is not None else self.api_key,
            "url": self.url,
            "instance": self.instance,
            "url_resolver": standin_url_resolver,
        }


class IBMStandIn:
    """IBM Quantum Platform on a loopback port; see the module docstring for what it serves.

    :param devices: device name -> ``qiskit_ibm_runtime.fake_provider`` class name.
    :param queued_seconds: least time a job stays ``Queued``.
    :param running_seconds: least time a job stays ``Running``.
    :param noise: simulate with each device's noise model.
    :param token_ttl: lifetime of IAM tokens in seconds (the SDK refreshes at 80 %,
        and treats a token as expired 10 s before ``exp``).
    :param max_page_size: most jobs one ``GET /jobs`` answers.
    """

    def __init__(
        self,
        *,
        devices: Mapping[str, str] | None = None,
        queued_seconds: float = 0.2,
        running_seconds: float = 0.2,
        noise: bool = True,
        token_ttl: int = 3600,
        max_page_size: int = 200,
    ) -> None:
        self.devices: dict[str, StandInDevice] = {
            name: load_device(name, fake) for name, fake in (devices or DEFAULT_DEVICES).items()
        }
        self.noise = noise
        self.max_page_size = max_page_size
        self.account = StandInAccount(token_ttl, sorted(self.devices))
        self._lock = threading.Lock()
        self._drop_next_submit: str | None = None
        self._fail_next: tuple[str, int] | None = None
        self._book = JobBook(self._run, queued_seconds, running_seconds)
        self._router = Router()
        self._server: LoopbackServer | None = None
        self._add_routes()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> StandInEndpoints:
        """Start serving; return the endpoints and credentials."""
        self._server = LoopbackServer(self._router)
        self._server.start()
        self._book.start()
        return self.endpoints

    def stop(self) -> None:
        """Stop the server and the device worker."""
        self._book.stop()
        if self._server is not None:
            self._server.stop()

    def __enter__(self) -> StandInEndpoints:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoints(self) -> StandInEndpoints:
        """Where the running stand-in listens, with the current API key."""
        if self._server is None:
            raise RuntimeError("The IBM stand-in is not started; call start() first.")
        url = self._server.base_url
        return StandInEndpoints(url, f"{url}/iam", self.api_key, self.instance)

    # -- test controls ---------------------------------------------------------------------

    @property
    def queued_seconds(self) -> float:
        """Least time a job stays ``Queued`` (settable)."""
        return self._book.queued_seconds

    @queued_seconds.setter
    def queued_seconds(self, seconds: float) -> None:
        self._book.queued_seconds = seconds

    @property
    def running_seconds(self) -> float:
        """Least time a job stays ``Running`` (settable)."""
        return self._book.running_seconds

    @running_seconds.setter
    def running_seconds(self, seconds: float) -> None:
        self._book.running_seconds = seconds

    @property
    def requests(self) -> Counter[str]:
        """Requests served so far, keyed ``"METHOD /template"`` (e.g. ``"GET /api/v1/jobs"``)."""
        with self._router.lock:
            return Counter(self._router.counts)

    @property
    def request_log(self) -> list[LoggedRequest]:
        """Every request served so far, oldest first."""
        with self._router.lock:
            return list(self._router.log)

    def reset_requests(self) -> None:
        """Forget the counters and the log."""
        with self._router.lock:
            self._router.counts.clear()
            self._router.log.clear()

    @property
    def jobs(self) -> dict[str, StandInJob]:
        """Copies of all jobs not deleted, by id, oldest first."""
        return {job.id: job for job in self._book.all()}

    def pause_queue(self) -> None:
        """Keep new jobs ``Queued`` until ``resume_queue()`` (a running job still finishes)."""
        self._book.pause()

    def resume_queue(self) -> None:
        """Let queued jobs run."""
        self._book.resume()

    @contextmanager
    def queue_paused(self) -> Iterator[None]:
        """Hold the queue for the ``with`` block."""
        self.pause_queue()
        try:
            yield
        finally:
            self.resume_queue()

    def drop_next_submit_response(self, mode: str = "disconnect") -> None:
        """Accept the next ``POST /jobs`` but lose its answer.

        :param mode: ``"disconnect"`` closes the connection without a response (the SDK
            raises, and does not retry a POST); ``"bad_gateway"`` answers 502 (the SDK
            retries the POST, so the job is submitted again).
        """
        if mode not in ("disconnect", "bad_gateway"):
            raise ValueError(f"Unknown drop mode {mode!r}; use 'disconnect' or 'bad_gateway'.")
        with self._lock:
            self._drop_next_submit = mode

    def fail_next_job(self, message: str = "Simulated device failure", code: int = 1500) -> None:
        """Make the next submitted job end ``Failed`` with *message* and reason *code*."""
        with self._lock:
            self._fail_next = (message, code)

    @property
    def instance(self) -> str:
        """The instance CRN."""
        return self.account.instance

    @property
    def api_key(self) -> str:
        """The API key IAM currently accepts (empty once revoked)."""
        return self.account.api_key

    def revoke_key(self) -> None:
        """Revoke the API key and every token issued for it (IAM 400, API 401 from now on)."""
        self.account.revoke_key()

    def rotate_key(self) -> str:
        """Revoke the API key and tokens, issue a new key and return it."""
        return self.account.rotate_key()

    def expire_tokens(self) -> None:
        """Invalidate every bearer token; the API key stays valid."""
        self.account.expire_tokens()

    def set_device_status(self, name: str, *, operational: bool, status_msg: str) -> None:
        """Change what ``GET /backends/{name}/status`` reports."""
        device = self.devices[name]
        device.operational, device.status_msg = operational, status_msg

    # -- routes ----------------------------------------------------------------------------

    def _add_routes(self) -> None:
        self.account.add_routes(self._router)
        add, api = self._router.add, self.account.guard_api
        add("GET", f"{API}/backends", api(self._backends))
        add("GET", f"{API}/backends/{{name}}/configuration", api(self._configuration))
        add("GET", f"{API}/backends/{{name}}/properties", api(self._properties))
        add("GET", f"{API}/backends/{{name}}/status", api(self._status))
        add("GET", f"{API}/instances/usage", api(self._usage))
        add("POST", f"{API}/jobs", api(self._submit))
        add("GET", f"{API}/jobs", api(self._list_jobs))
        add("GET", f"{API}/jobs/{{id}}", api(self._get_job))
        add("DELETE", f"{API}/jobs/{{id}}", api(self._delete_job))
        add("GET", f"{API}/jobs/{{id}}/results", api(self._results))
        add("POST", f"{API}/jobs/{{id}}/cancel", api(self._cancel))
        add("GET", f"{API}/jobs/{{id}}/logs", api(self._logs))
        add("GET", f"{API}/jobs/{{id}}/metrics", api(self._metrics))
        add("PUT", f"{API}/jobs/{{id}}/tags", api(self._tags))

    def _device(self, request: Request) -> StandInDevice | Reply:
        device = self.devices.get(request.params["name"])
        if device is None:
            return ibm_error(404, "not_found", f"Backend {request.params['name']} not found.")
        return device

    def _backends(self, request: Request) -> Reply:
        devices = [
            {
                "name": device.name,
                "status": {"name": "online" if device.operational else "offline"},
                "is_simulator": False,
                "qubits": device.num_qubits,
                "processor_type": device.configuration.get("processor_type", {}),
                "queue_length": self._book.queue_length(device.name),
            }
            for device in self.devices.values()
        ]
        return Reply.json({"devices": devices})

    def _configuration(self, request: Request) -> Reply:
        found = self._device(request)
        return found if isinstance(found, Reply) else Reply.json(found.configuration)

    def _properties(self, request: Request) -> Reply:
        found = self._device(request)
        return found if isinstance(found, Reply) else Reply.json(found.properties)

    def _status(self, request: Request) -> Reply:
        found = self._device(request)
        if isinstance(found, Reply):
            return found
        return Reply.json(
            {
                "state": found.operational,
                "status": found.status_msg,
                "message": "available" if found.operational else "unavailable",
                "length_queue": self._book.queue_length(found.name),
                "backend_version": found.configuration.get("backend_version", "1.0.0"),
            }
        )

    def _usage(self, request: Request) -> Reply:
        used = sum(job.quantum_seconds() for job in self._book.all())
        return Reply.json(
            {
                "instance_id": self.instance,
                "plan_id": PLAN_ID,
                "usage_consumed_seconds": used,
                "usage_allocation_seconds": 600,
                "usage_limit_reached": False,
            }
        )

    # -- jobs ------------------------------------------------------------------------------

    def _run(self, job: StandInJob) -> str:
        device = self.devices[job.backend]
        return execute(job.program_id, job.params_text, device, noise=self.noise)

    def _submit(self, request: Request) -> Reply:
        try:
            body = request.json()
        except ValueError:
            return ibm_error(400, "invalid_json", "The request body is not JSON.")
        program_id = body.get("program_id")
        if program_id not in ("sampler", "estimator"):
            return ibm_error(404, "not_found", f"Program {program_id} not found.")
        backend = body.get("backend")
        if backend not in self.devices:
            return ibm_error(400, "invalid_backend", f"Backend {backend} is not available.")
        tags = body.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            return ibm_error(400, "invalid_tags", "Tags must be a list of strings.")
        with self._lock:
            fail, self._fail_next = self._fail_next, None
            drop, self._drop_next_submit = self._drop_next_submit, None
        job = StandInJob(
            id=self._book.ids.new(),
            program_id=program_id,
            backend=backend,
            params_text=json.dumps(body.get("params") or {}),
            tags=list(tags),
            created=datetime.now(UTC),
            session_id=body.get("session_id"),
            private=bool(body.get("private", False)),
            fail_with=fail,
        )
        self._book.add(job)
        if drop == "disconnect":
            return Reply(drop=True)
        if drop == "bad_gateway":
            return ibm_error(502, "bad_gateway", "Bad Gateway")
        return Reply.json({"id": job.id, "backend": job.backend})

    def _job_json(self, job: StandInJob, *, with_params: bool) -> dict[str, Any]:
        quantum = job.quantum_seconds()
        data: dict[str, Any] = {
            "id": job.id,
            "backend": job.backend,
            "state": {"status": job.status, "reason": job.reason, "reason_code": job.reason_code},
            "status": job.status,
            "program": {"id": job.program_id},
            "created": iso(job.created),
            "runtime": "",
            "tags": job.tags,
            "session_id": job.session_id,
            "private": job.private,
            "user_id": "IBMid-standin",
            "cost": 600,
            "estimated_running_time_seconds": 1,
            "usage": {"quantum_seconds": quantum, "seconds": quantum},
        }
        if with_params:
            data["params"] = json.loads(job.params_text)
        return data

    def _find(self, request: Request) -> StandInJob | Reply:
        job = self._book.get(request.params["id"])
        if job is None:
            return ibm_error(404, "not_found", f"Job {request.params['id']} not found.")
        return job

    def _get_job(self, request: Request) -> Reply:
        found = self._find(request)
        if isinstance(found, Reply):
            return found
        with_params = request.arg("exclude_params") != "true"
        return Reply.json(self._job_json(found, with_params=with_params))

    def _list_jobs(self, request: Request) -> Reply:
        jobs = self._book.all()
        if backend := request.arg("backend"):
            jobs = [j for j in jobs if j.backend == backend]
        if (pending := request.arg("pending")) is not None:
            wanted = PENDING if pending == "true" else FINAL
            jobs = [j for j in jobs if j.status in wanted]
        if program := request.arg("program"):
            jobs = [j for j in jobs if j.program_id == program]
        if tags := request.query.get("tags"):
            jobs = [j for j in jobs if set(tags) <= set(j.tags)]
        if session_id := request.arg("session_id"):
            jobs = [j for j in jobs if j.session_id == session_id]
        if after := request.arg("created_after"):
            jobs = [j for j in jobs if j.created >= _parse_time(after)]
        if before := request.arg("created_before"):
            jobs = [j for j in jobs if j.created <= _parse_time(before)]
        jobs.sort(key=lambda j: j.created, reverse=request.arg("sort") != "ASC")
        offset = int(request.arg("offset") or 0)
        limit = min(int(request.arg("limit") or self.max_page_size), self.max_page_size)
        page = jobs[offset : offset + limit]
        with_params = request.arg("exclude_params") != "true"
        return Reply.json(
            {
                "jobs": [self._job_json(j, with_params=with_params) for j in page],
                "count": len(jobs),
                "limit": limit,
                "offset": offset,
            }
        )

    def _delete_job(self, request: Request) -> Reply:
        outcome = self._book.delete(request.params["id"])
        if outcome == "missing":
            return ibm_error(404, "not_found", f"Job {request.params['id']} not found.")
        if outcome == "pending":
            return ibm_error(409, "conflict", "Only a job in a final state can be deleted.")
        return Reply(204)

    def _results(self, request: Request) -> Reply:
        found = self._find(request)
        if isinstance(found, Reply):
            return found
        if found.result_text is None:
            return ibm_error(404, "not_found", f"Job {found.id} has no results ({found.status}).")
        return Reply.text(found.result_text, content_type="application/json")

    def _cancel(self, request: Request) -> Reply:
        outcome = self._book.cancel(request.params["id"])
        if outcome == "missing":
            return ibm_error(404, "not_found", f"Job {request.params['id']} not found.")
        if outcome == "final":
            return ibm_error(
                409, "conflict", "The job is in a final state and cannot be cancelled."
            )
        return Reply(204)

    def _logs(self, request: Request) -> Reply:
        found = self._find(request)
        if isinstance(found, Reply):
            return found
        if found.pending:
            return ibm_error(404, "not_found", "Logs are available once the job finishes.")
        return Reply.text(found.logs)

    def _metrics(self, request: Request) -> Reply:
        found = self._find(request)
        if isinstance(found, Reply):
            return found
        quantum = found.quantum_seconds()
        pubs = json.loads(found.params_text).get("pubs") or []
        position = [j.id for j in self._book.all() if j.status == "Queued"]
        queued_at = position.index(found.id) + 1 if found.id in position else None
        return Reply.json(
            {
                "timestamps": {
                    "created": iso(found.created),
                    "running": iso(found.running),
                    "finished": iso(found.finished),
                },
                "bss": {"seconds": quantum},
                "usage": {
                    "quantum_seconds": quantum,
                    "seconds": quantum,
                    "qpu_charge_time_seconds": quantum,
                    "status": "pending" if found.pending else "final",
                },
                "executions": len(pubs),
                "num_circuits": len(pubs),
                "position_in_queue": queued_at,
                "position_in_provider": queued_at,
                "qiskit_version": "",
                "caller": "qiskit",
            }
        )

    def _tags(self, request: Request) -> Reply:
        tags = (request.json() or {}).get("tags")
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            return ibm_error(400, "invalid_tags", "Tags must be a list of strings.")
        if not self._book.update_tags(request.params["id"], tags):
            return ibm_error(404, "not_found", f"Job {request.params['id']} not found.")
        return Reply(204)


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
