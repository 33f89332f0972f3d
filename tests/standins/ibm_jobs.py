"""The IBM stand-in's job book: IBM-format ids, job records, one device queue and its worker.

Jobs are kept in memory. One worker thread plays the device: it takes queued jobs
in submission order, holds each ``Queued`` for at least ``queued_seconds``, marks
it ``Running``, executes it (``ibm_sim.execute``), keeps it running for at least
``running_seconds`` and finishes it as ``Completed`` or ``Failed``. ``pause()``
stops the worker from taking new jobs, so a test can keep a job queued without
relying on timing. States use IBM's spelling (``Queued``, ``Running``,
``Completed``, ``Failed``, ``Cancelled``); the SDK upper-cases and maps them.
"""

from __future__ import annotations

import base64
import itertools
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

PENDING = ("Queued", "Running")
FINAL = ("Completed", "Failed", "Cancelled")


class XidGenerator:
    """Job ids in the format IBM uses: 20 lowercase base32hex characters (an *xid*).

    An xid packs 4 bytes of Unix time, 3 bytes of machine id, 2 bytes of process id
    and a 3-byte counter; for any date after 2000 the first character is a letter.
    """

    def __init__(self) -> None:
        self._machine = secrets.token_bytes(3)
        self._pid = (os.getpid() & 0xFFFF).to_bytes(2, "big")
        self._counter = itertools.count(secrets.randbelow(1 << 24))
        self._lock = threading.Lock()

    def new(self) -> str:
        """A fresh id, unique within this process."""
        with self._lock:
            count = next(self._counter) & 0xFFFFFF
        raw = int(time.time()).to_bytes(4, "big") + self._machine + self._pid
        raw += count.to_bytes(3, "big")
        return base64.b32hexencode(raw).decode("ascii").rstrip("=").lower()


def iso(moment: datetime | None) -> str | None:
    """IBM's timestamp spelling: UTC with microseconds and a ``Z``."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class StandInJob:
    """One submitted job, as the stand-in's service knows it."""

    id: str
    program_id: str
    backend: str
    params_text: str
    tags: list[str]
    created: datetime
    session_id: str | None = None
    private: bool = False
    status: str = "Queued"
    reason: str | None = None
    reason_code: int | None = None
    running: datetime | None = None
    finished: datetime | None = None
    result_text: str | None = None
    logs: str = ""
    fail_with: tuple[str, int] | None = None
    deleted: bool = False

    @property
    def pending(self) -> bool:
        """Whether the job is queued or running."""
        return self.status in PENDING

    def quantum_seconds(self) -> int:
        """Charged device time: whole seconds of running, at least one once it ran."""
        if self.running is None:
            return 0
        end = self.finished or datetime.now(UTC)
        return max(1, round((end - self.running).total_seconds()))


@dataclass
class JobBook:
    """All jobs of the stand-in and the worker that runs them."""

    run: Callable[[StandInJob], str]
    queued_seconds: float = 0.2
    running_seconds: float = 0.2
    ids: XidGenerator = field(default_factory=XidGenerator)
    _jobs: dict[str, StandInJob] = field(default_factory=dict)
    _queue: list[str] = field(default_factory=list)
    _paused: bool = False
    _stopping: bool = False
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _worker: threading.Thread | None = None

    def start(self) -> None:
        """Start the worker thread."""
        self._worker = threading.Thread(target=self._work, name="ibm-standin-device", daemon=True)
        self._worker.start()

    def stop(self) -> None:
        """Stop the worker; jobs still queued stay queued."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=30)

    def pause(self) -> None:
        """Let the worker finish its current job but take no new one."""
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        """Let the worker take queued jobs again."""
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    def add(self, job: StandInJob) -> None:
        """Record a new job and queue it."""
        with self._cond:
            self._jobs[job.id] = job
            self._queue.append(job.id)
            self._cond.notify_all()

    def get(self, job_id: str) -> StandInJob | None:
        """A copy of job *job_id*, or ``None`` if unknown or deleted."""
        with self._cond:
            job = self._jobs.get(job_id)
            return None if job is None or job.deleted else replace(job, tags=list(job.tags))

    def all(self) -> list[StandInJob]:
        """Copies of all jobs not deleted, oldest first."""
        with self._cond:
            return [replace(j, tags=list(j.tags)) for j in self._jobs.values() if not j.deleted]

    def queue_length(self, backend: str) -> int:
        """How many jobs wait for *backend*."""
        with self._cond:
            return sum(1 for j in self._jobs.values() if j.backend == backend and j.pending)

    def cancel(self, job_id: str) -> str:
        """Cancel a queued or running job; return ``"ok"``, ``"missing"`` or ``"final"``."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None or job.deleted:
                return "missing"
            if not job.pending:
                return "final"
            job.status = "Cancelled"
            job.reason = "Cancelled by user"
            job.finished = datetime.now(UTC)
            if job_id in self._queue:
                self._queue.remove(job_id)
            self._cond.notify_all()
            return "ok"

    def delete(self, job_id: str) -> str:
        """Delete a finished job; return ``"ok"``, ``"missing"`` or ``"pending"``."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None or job.deleted:
                return "missing"
            if job.pending:
                return "pending"
            job.deleted = True
            return "ok"

    def update_tags(self, job_id: str, tags: Iterable[str]) -> bool:
        """Replace the tags of job *job_id*; ``False`` if it is unknown."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None or job.deleted:
                return False
            job.tags = list(tags)
            return True

    def _next(self) -> StandInJob | None:
        with self._cond:
            while not self._stopping and (self._paused or not self._queue):
                self._cond.wait()
            if self._stopping:
                return None
            return self._jobs[self._queue.pop(0)]

    def _wait_until(self, moment: float, job: StandInJob) -> bool:
        """Sleep until *moment* unless the job gets cancelled; ``False`` if it did."""
        with self._cond:
            while not self._stopping and job.status != "Cancelled":
                left = moment - time.monotonic()
                if left <= 0:
                    return True
                self._cond.wait(left)
            return False

    def _work(self) -> None:
        while (job := self._next()) is not None:
            age = (datetime.now(UTC) - job.created).total_seconds()
            if not self._wait_until(time.monotonic() + self.queued_seconds - age, job):
                continue
            with self._cond:
                if job.status == "Cancelled":
                    continue
                job.status = "Running"
                job.running = datetime.now(UTC)
            began = time.monotonic()
            outcome, text, reason, code = self._execute(job)
            if not self._wait_until(began + self.running_seconds, job):
                continue
            with self._cond:
                if job.status == "Cancelled":
                    continue
                job.status, job.result_text = outcome, text
                job.reason, job.reason_code = reason, code
                job.finished = datetime.now(UTC)
                stamp = iso(job.finished)
                job.logs = f"{stamp} INFO job {job.id} ({job.program_id}) {outcome.lower()}\n"
                self._cond.notify_all()

    def _execute(self, job: StandInJob) -> tuple[str, str, str | None, int | None]:
        from .ibm_sim import ExecutionError

        if job.fail_with is not None:
            message, code = job.fail_with
            return "Failed", f"Traceback (most recent call last):\n{message}", message, code
        try:
            return "Completed", self.run(job), None, None
        except ExecutionError as exc:
            text = f"Traceback (most recent call last):\nExecutionError: {exc}"
            return "Failed", text, str(exc), 1500
