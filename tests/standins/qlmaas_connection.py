"""A stand-in QLMaaS server behind the real ``qat.qlmaas.QLMaaSConnection`` client.

:class:`QLMaaSStandIn` *is* a ``QLMaaSConnection``: every public method is the real
client's code (the generated ``RemoteScheduler``/``RemoteQLMHelpers`` stubs build the
thrift request and read the thrift answer, and ``QLMaaSConnection.get_result`` is its
own dill-reading self). Only two things are replaced: ``__init__`` (which would log in
over HTTPS) checks the password the SDK's password login reads (``QLM_USER`` and
``QLM_PASSWD``) against the stand-in's accounts, and ``send`` (the HTTPS transport)
hands the thrift request to a server kept in a folder, so several processes share it.
Refused credentials raise exactly what the client raises for an HTTP 401, through its
own ``_check_response_code``.

A worker thread (only in the instance made with ``run=True``) runs WAITING jobs one by
one on myQLM's PyLinalg: WAITING, then RUNNING for ``run_seconds``, then DONE with the
thrift ``BatchResult`` stored exactly as PyLinalg returned it. ``pause()`` holds the
queue so that WAITING can be observed. The answer's ``serialized`` field holds bytes
that are not a pickle: a client that tried to load them would fail.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore", ImportWarning)
    import qat.bind.qlmaas_QLMHelpers_client as helpers
    import qat.bind.qlmaas_Scheduler_client as scheduler
    from qat.comm.asynchronous.ttypes import AsyncBatch, QLMaaSResult
    from qat.comm.qlmaas.ttypes import JobInfo, JobStatus, QLMServiceException, ServiceDescription
    from qat.comm.resource.ttypes import ResourceModel
    from qat.qlmaas.connection import QLMaaSConnection
    from qat.qlmaas.https import _check_response_code
    from thrift.TSerialization import deserialize, serialize

__all__ = ["NOT_A_PICKLE", "QPU", "QLMaaSStandIn"]

QPU = "qat.qpus:PyLinalg"
#: What the stand-in puts in ``QLMaaSResult.serialized``.
NOT_A_PICKLE = b"jobledger must never load this field"
_DATE = "%Y-%m-%d %H:%M:%S.%f"


class _Refusal:
    """Just enough of an HTTP response for the client's ``_check_response_code``."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        self.headers: dict[str, str] = {}
        self.msg: dict[str, str] = {}

    def read(self) -> bytes:
        return json.dumps({"message": self.reason}).encode()

    def getheader(self, *args: Any) -> None:
        return None


class QLMaaSStandIn(QLMaaSConnection):  # type: ignore[misc]
    """A ``QLMaaSConnection`` whose server is the folder *root*.

    :param run: start the worker thread that runs jobs (one instance per folder).
    :param accounts: usernames and passwords accepted (written to the folder).
    """

    def __init__(
        self,
        root: str | Path,
        *,
        run: bool = False,
        accounts: dict[str, str] | None = None,
        run_seconds: float = 0.2,
        hostname: str = "127.0.0.1",
        port: int = 443,
        authentication: str = "password",
        **kwargs: Any,
    ) -> None:
        self.root = Path(root)
        (self.root / "jobs").mkdir(parents=True, exist_ok=True)
        if accounts is not None:
            (self.root / "accounts.json").write_text(json.dumps(accounts))
        self.hostname = hostname
        self.port = port
        self.username = os.environ.get("QLM_USER", "")
        self._password = os.environ.get("QLM_PASSWD", "")
        self._scheduling_info_builder = None
        self.kwargs = {"authentication": authentication, **kwargs}
        self.calls: Counter[str] = Counter()
        self.run_seconds = run_seconds
        self._stop = threading.Event()
        self._check_login()
        self._worker: threading.Thread | None = None
        if run:
            self._worker = threading.Thread(target=self._work, daemon=True)
            self._worker.start()

    def __hash__(self) -> int:
        return hash((self.hostname, self.port, str(self.root)))

    # -- control (tests only) -----------------------------------------------------

    def stop(self) -> None:
        """Stop the worker thread."""
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout=10)

    def pause(self) -> None:
        """Hold every waiting job in WAITING."""
        (self.root / "paused").touch()

    def resume(self) -> None:
        """Let the worker run waiting jobs again."""
        (self.root / "paused").unlink(missing_ok=True)

    def revoke(self, username: str) -> None:
        """Refuse *username* from now on (every call of every instance answers 401)."""
        accounts = self._accounts()
        accounts.pop(username, None)
        (self.root / "accounts.json").write_text(json.dumps(accounts))

    def job_ids(self) -> list[str]:
        """Every job id the server holds, oldest first."""
        return sorted((p.name for p in (self.root / "jobs").iterdir()), key=lambda n: int(n[3:]))

    def set_status(self, job_id: str, status: int) -> None:
        """Force a job's status (to show how every QLMaaS status is read)."""
        with self._locked():
            info = self._info(job_id)
            info.status = status
            self._save(job_id, "info", info)

    # -- the transport ------------------------------------------------------------

    def send(self, service_name: str, method_name: str, data: bytes) -> bytes:
        """Serve one thrift call as the server would, and answer its thrift bytes."""
        self._check_login()
        self.calls[method_name] += 1
        module = scheduler if service_name == "Scheduler" else helpers
        args = deserialize(getattr(module, f"{method_name}_args")(), data)
        reply = getattr(module, f"{method_name}_result")()
        handler = getattr(self, f"_serve_{method_name}")
        try:
            with self._locked():
                reply.success = handler(*[getattr(args, e[2]) for e in args.thrift_spec if e])
        except QLMServiceException as exc:
            reply.err = exc
        return bytes(serialize(reply))

    def _check_login(self) -> None:
        if self._accounts().get(self.username) != self._password or not self.username:
            _check_response_code(_Refusal(401, "Unauthorized: wrong username or password"))

    def _accounts(self) -> dict[str, str]:
        path = self.root / "accounts.json"
        return dict(json.loads(path.read_text())) if path.exists() else {}

    # -- the server -----------------------------------------------------------------

    def _serve_get_qpus(self) -> list[Any]:
        return [ServiceDescription(name=QPU, description="myQLM's PyLinalg (stand-in)")]

    def _serve_check_qpu_constructor(self, qpu_name: str, constructor: Any) -> bool:
        return qpu_name == QPU

    def _serve_submit_batch(self, batch: Any) -> str:
        if batch.qpu is None or batch.qpu.name != QPU:
            name = batch.qpu.name if batch.qpu else None
            raise QLMServiceException(message=f"unknown QPU {name}", service_name="Scheduler")
        jobs = self.root / "jobs"
        number = len(list(jobs.iterdir())) + 1
        while (jobs / f"Job{number}").exists():
            number += 1
        job_id = f"Job{number}"
        (jobs / job_id).mkdir()
        self._save(job_id, "asyncbatch", batch)
        info = JobInfo(
            id=job_id,
            status=JobStatus.WAITING,
            submission_date=_now(),
            owner=self.username,
            type=batch.type,
            resources=[ResourceModel(qpu=batch.qpu.name)],
            session_id=batch.session_id,
            queue_pos=number,
            meta_data={},
        )
        self._save(job_id, "info", info)
        return job_id

    def _serve_get_job_info(self, job_id: str) -> Any:
        if not (self.root / "jobs" / str(job_id)).is_dir():
            return JobInfo(id=job_id, status=JobStatus.UNKNOWN_JOB)
        return self._info(job_id)

    def _serve_get_jobs_info(self) -> list[Any]:
        infos = [self._info(job_id) for job_id in self.job_ids()]
        return [i for i in infos if i.status != JobStatus.DELETED]

    def _serve_get_asyncbatch(self, job_id: str) -> Any:
        self._known(job_id)
        return self._load(job_id, "asyncbatch", AsyncBatch)

    def _serve_get_result(self, job_id: str) -> Any:
        info = self._known(job_id)
        if info.status != JobStatus.DONE:
            raise QLMServiceException(message=f"{job_id} is not done", service_name="Scheduler")
        from qat.comm.shared.ttypes import BatchResult

        results = self._load(job_id, "result", BatchResult)
        return QLMaaSResult(results=results, serialized=NOT_A_PICKLE)

    def _serve_cancel_job(self, job_id: str) -> bool:
        info = self._known(job_id)
        if info.status not in (JobStatus.WAITING, JobStatus.RUNNING):
            return False
        info.status = JobStatus.CANCELLED
        info.ending_date = _now()
        self._save(job_id, "info", info)
        return True

    def _serve_delete_job_files(self, job_id: str) -> bool:
        info = self._known(job_id)
        info.status = JobStatus.DELETED
        self._save(job_id, "info", info)
        for name in ("asyncbatch", "result"):
            (self.root / "jobs" / job_id / f"{name}.bin").unlink(missing_ok=True)
        return True

    # -- storage and the worker -------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.root / "lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _known(self, job_id: str) -> Any:
        if not (self.root / "jobs" / str(job_id)).is_dir():
            raise QLMServiceException(message=f"unknown job {job_id}", service_name="Scheduler")
        return self._info(job_id)

    def _info(self, job_id: str) -> Any:
        return self._load(job_id, "info", JobInfo)

    def _load(self, job_id: str, name: str, cls: type) -> Any:
        return deserialize(cls(), (self.root / "jobs" / job_id / f"{name}.bin").read_bytes())

    def _save(self, job_id: str, name: str, struct: Any) -> None:
        path = self.root / "jobs" / job_id / f"{name}.bin"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(serialize(struct))
        os.replace(tmp, path)

    def _work(self) -> None:
        while not self._stop.wait(0.05):
            if (self.root / "paused").exists():
                continue
            with self._locked():
                waiting = [j for j in self.job_ids() if self._info(j).status == JobStatus.WAITING]
                if not waiting:
                    continue
                job_id = waiting[0]
                info = self._info(job_id)
                info.status, info.starting_date, info.queue_pos = JobStatus.RUNNING, _now(), None
                self._save(job_id, "info", info)
            self._stop.wait(self.run_seconds)
            self._run(job_id)

    def _run(self, job_id: str) -> None:
        try:
            result = _simulate(self._load(job_id, "asyncbatch", AsyncBatch).batch)
            error = None
        except Exception as exc:  # a failing batch fails its job, as on the server
            result, error = None, f"{type(exc).__name__}: {exc}"
        with self._locked():
            info = self._info(job_id)
            if info.status != JobStatus.RUNNING:
                return  # cancelled or deleted meanwhile
            if result is not None:
                self._save(job_id, "result", result)
            info.status = JobStatus.DONE if error is None else JobStatus.FAILED
            info.message, info.ending_date = error, _now()
            self._save(job_id, "info", info)


def _simulate(batch: Any) -> Any:
    """Run *batch* on PyLinalg; read through jobledger's codec (the stand-in, too,
    never unpickles what it received)."""
    from jobledger.codecs.qlm import BATCH, decode

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from qat.qpus import PyLinalg

        return PyLinalg().submit(decode(bytes(serialize(batch)), BATCH))


def _now() -> str:
    return datetime.now(UTC).strftime(_DATE)
