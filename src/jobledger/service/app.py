"""The Starlette application: protocol v1's routes over the store, blobs and executor.

:func:`create_app` wires one :class:`Service` (database, job store, blob folder,
tokens, executor, event broker, backends) into a Starlette app. Handlers are thin:
authenticate, parse with :mod:`jobledger.service.wire`, call the store or executor,
answer JSON or stream bytes. Every error, including unknown routes and wrong
methods, is answered as ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

import jobledger
from jobledger.ids import new_job_id
from jobledger.service import bodies, wire
from jobledger.service.auth import TokenAuthority
from jobledger.service.blobs import BlobInfo, BlobStore
from jobledger.service.db import Database
from jobledger.service.events import Broker, sse_stream
from jobledger.service.executors import DaskExecutor, Executor, JobExecutor
from jobledger.service.limits import JobLimits, Limit
from jobledger.service.openapi import openapi_document
from jobledger.service.plugin import Backend, load_backends, unavailable_reason
from jobledger.service.store import JobFilter, JobRecord, JobStore, now_iso
from jobledger.status import JobStatus

__all__ = ["DEFAULT_MAX_BODY", "Service", "create_app"]

# What the service makes (J + 18 Crockford base32 characters), as a route pattern.
ID_REGEX = "J[0-9A-HJKMNP-TV-Z]{18}"

DEFAULT_MAX_BODY = 256 * 1024 * 1024
_IDEMPOTENCY_KEY = re.compile(r"^[\x20-\x7e]{1,200}$")
ApiError = wire.ApiError


@dataclass
class Service:
    """Everything the handlers need, built once per server process."""

    data_dir: Path
    db: Database
    store: JobStore
    blobs: BlobStore
    tokens: TokenAuthority
    broker: Broker
    executor: JobExecutor
    backends: dict[str, Backend]
    max_body: int
    limits: dict[str, Limit]

    @classmethod
    def open(
        cls,
        data_dir: Path,
        workers: int,
        max_body: int,
        limits: JobLimits | None = None,
        *,
        executor: str = "process",
        scheduler: str | None = None,
    ) -> Service:
        """Open (or create) the service whose data is in *data_dir*.

        :param executor: ``"process"`` (the local pool of *workers* processes) or
            ``"dask"`` (the Dask cluster at *scheduler*, or a LocalCluster of *workers*).
        """
        db = Database(data_dir)
        store = JobStore(db)
        blobs = BlobStore(data_dir / "blobs")
        broker = Broker()
        backends = load_backends()
        limits = limits or JobLimits()
        resolved = limits.resolve(backends)

        def limit_of(name: str) -> Limit:
            return resolved.get(name) or limits.for_backend(name)

        runner: JobExecutor
        if executor == "dask":
            runner = DaskExecutor(
                store, blobs, workers, broker.notify, limit_of, scheduler=scheduler
            )
        else:
            runner = Executor(store, blobs, workers, broker.notify, limit_of)
        return cls(
            data_dir,
            db,
            store,
            blobs,
            TokenAuthority(db),
            broker,
            runner,
            backends,
            max_body,
            resolved,
        )

    def user(self, request: Request) -> str:
        """The user of the request's bearer token.

        :raises ApiError: 401 when the token is missing or unknown.
        """
        user = self.tokens.user_from_header(request.headers.get("authorization"))
        if user is None:
            raise ApiError(
                401,
                "unauthorized",
                "missing or unknown bearer token; create one with "
                "'jobledger token create NAME --data DIR'",
            )
        return user

    def job(self, request: Request) -> JobRecord:
        """The job named in the path, if the requesting user owns it.

        :raises ApiError: 401 without a valid token, 404 for unknown or foreign jobs.
        """
        user = self.user(request)
        job_id = request.path_params["job_id"]
        record = self.store.get(job_id, owner=user)
        if record is None:
            raise ApiError(404, "not_found", f"no job {job_id!r} on this service")
        return record

    async def spool(self, request: Request) -> IO[bytes]:
        """The request body in a temporary file; ``413`` beyond :attr:`max_body` bytes.

        ``Content-Length`` is checked before anything is read, and the bytes are
        counted while they arrive, so an oversized body is never buffered.
        """
        return await bodies.spool(
            request.stream(),
            request.headers.get("content-length"),
            self.max_body,
            self.blobs.root / "tmp",
        )

    async def json_body(self, request: Request) -> Any:
        """The request body parsed as strict JSON (see :mod:`jobledger.service.bodies`)."""
        spooled = await self.spool(request)
        try:
            return await run_in_threadpool(lambda: bodies.split_envelope(spooled)[0])
        finally:
            spooled.close()


def _decimal(text: str) -> bool:
    # str.isdigit alone accepts digits int() refuses, such as superscripts.
    return text.isascii() and text.isdigit() and len(text) <= 18


class _JobIdConvertor(Convertor[str]):
    """Matches job ids only, so ``/v1/jobs/status`` is never taken for a job."""

    regex = ID_REGEX

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("job_id", _JobIdConvertor())


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers)


def _handlers(svc: Service) -> list[Route]:
    async def health(request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "protocol": 1,
                "version": jobledger.__version__,
                "service_id": svc.db.service_id(),
            }
        )

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document(jobledger.__version__, sorted(svc.backends)))

    async def backends(request: Request) -> Response:
        svc.user(request)
        listed = [
            {
                "name": b.name,
                "version": b.version,
                "description": b.description,
                "limits": {
                    "seconds": svc.limits[name].seconds,
                    "memory_mb": svc.limits[name].memory_mb,
                },
            }
            for name, b in sorted(svc.backends.items())
            if unavailable_reason(b) is None
        ]
        return JSONResponse({"backends": listed})

    def earlier_submission(user: str, key: str) -> JobRecord | None:
        job_id = svc.store.idempotent_job(user, key)
        found = None if job_id is None else svc.store.get(job_id)
        if found is not None:
            return found
        # A key another user sent means a client is re-sending a submission with
        # the wrong credentials: creating a second job under them would duplicate it.
        owner = svc.store.key_owner(key)
        if owner is not None and owner != user:
            raise wire.ApiError(
                409,
                "idempotency_key_in_use",
                "this Idempotency-Key was sent by another user; send it again with the "
                "token that first sent it",
            )
        return None

    def accept(spooled: IO[bytes], user: str, key: str | None) -> tuple[JobRecord, bool]:
        # One trip to the thread pool for the batch (written and fsynced) and the row
        # (committed durably): the answer leaves only once both are on disk.
        parsed, batch, inline = bodies.read_submit(spooled, svc.backends, svc.blobs)
        record = JobRecord(
            seq=0,
            id=new_job_id(),
            owner=user,
            backend=parsed.backend.name,
            backend_version=parsed.backend.version,
            status=JobStatus.QUEUED,
            created_at=now_iso(),
            started_at=None,
            ended_at=None,
            message=None,
            tags=parsed.tags,
            session_id=parsed.session_id,
            params=parsed.params,
            batch=batch,
            result=None,
            usage_seconds=None,
            metrics={},
        )
        return svc.store.insert(record, key, inline)

    async def submit(request: Request) -> Response:
        user = svc.user(request)
        key = request.headers.get("idempotency-key")
        if key is not None and not _IDEMPOTENCY_KEY.match(key):
            raise wire.invalid("Idempotency-Key must be 1-200 printable ASCII characters")
        if key is not None:
            # Looked up before the body is read: a known key answers whatever the body.
            earlier = await run_in_threadpool(earlier_submission, user, key)
            if earlier is not None:
                return JSONResponse(wire.job_info(earlier), 200)
        spooled = await svc.spool(request)
        try:
            job, created = await run_in_threadpool(accept, spooled, user, key)
        finally:
            spooled.close()
        if created:
            svc.executor.wake()
        return JSONResponse(wire.job_info(job), 201 if created else 200)

    async def list_jobs(request: Request) -> Response:
        user = svc.user(request)
        query = request.query_params
        flt = wire.parse_filter(query)
        limit_text = query.get("limit", "100")
        if not _decimal(limit_text) or not 1 <= int(limit_text) <= wire.MAX_IDS:
            raise wire.invalid(f"limit must be an integer from 1 to {wire.MAX_IDS}")
        order = query.get("order", "desc")
        if order not in ("asc", "desc"):
            raise wire.invalid("order must be 'asc' or 'desc'")
        limit = int(limit_text)
        after = wire.decode_cursor(query.get("cursor"))
        token = query.get("updated_after")
        if token is not None:
            # Changes come oldest first whatever the order: a page's token covers them all.
            return await list_changes(user, flt, limit, token, after)
        page = await run_in_threadpool(
            lambda: svc.store.list_jobs(
                user, flt, limit=limit + 1, after_seq=after, descending=order == "desc"
            )
        )
        next_cursor = wire.encode_cursor(page[limit - 1].seq) if len(page) > limit else None
        return JSONResponse(
            {"jobs": [wire.job_info(j) for j in page[:limit]], "next_cursor": next_cursor}
        )

    async def list_changes(
        user: str, flt: JobFilter, limit: int, token: str, after: int | None
    ) -> Response:
        # Pages go by change number: a job changed while the client pages gets a number
        # above every one listed so far, so it comes again on a later page.
        def read() -> tuple[str, int, list[JobRecord]]:
            tag = wire.change_tag(svc.db.service_id(), user)
            start = wire.decode_change_token(token, tag, svc.db.change_seq())
            lower = max(start, after or 0)
            page = svc.store.list_jobs(
                user, flt, limit=limit + 1, after_seq=None, descending=False, changed_after=lower
            )
            return tag, lower, page

        tag, lower, page = await run_in_threadpool(read)
        shown = page[:limit]
        through = max([lower, *(j.changed for j in shown)])
        return JSONResponse(
            {
                "jobs": [wire.job_info(j) for j in shown],
                "next_cursor": wire.encode_cursor(shown[-1].changed)
                if len(page) > limit
                else None,
                "updated_through": wire.encode_change_token(through, tag),
            }
        )

    async def jobs(request: Request) -> Response:
        # One route for both methods, so a 405 on /v1/jobs lists both in Allow.
        if request.method == "POST":
            return await submit(request)
        return await list_jobs(request)

    async def statuses(request: Request) -> Response:
        user = svc.user(request)
        ids = wire.parse_ids(await svc.json_body(request))
        found = await run_in_threadpool(svc.store.many, user, ids)
        return JSONResponse(
            {
                "jobs": [wire.status_entry(found[i]) for i in dict.fromkeys(ids) if i in found],
                "not_found": [i for i in dict.fromkeys(ids) if i not in found],
            }
        )

    async def info(request: Request) -> Response:
        return JSONResponse(wire.job_info(await run_in_threadpool(svc.job, request)))

    def payload(blob: BlobInfo | None, job: JobRecord, what: str) -> Response:
        if job.status is JobStatus.DELETED:
            raise ApiError(410, "deleted", f"the files of job {job.id} were deleted")
        if blob is None:
            raise ApiError(
                409,
                "not_ready",
                f"job {job.id} has no {what}: it is "
                f"{job.status.value}" + ("" if job.status.is_final else "; wait until it is DONE"),
            )
        headers = {"X-Content-SHA256": blob.sha256}
        path = svc.blobs.path(blob.sha256)
        try:
            whole = path.stat().st_size == blob.size
        except OSError:
            whole = False
        if not whole:
            # A small batch's file that a power failure cut short: the database has its
            # bytes (an echo's result is the same bytes, so the same digest).
            inline = svc.store.inline_blob(blob.sha256)
            if inline is None:
                raise ApiError(
                    410, "deleted", f"the {what} of job {job.id} is gone from the service"
                )
            return Response(inline, media_type=blob.media_type, headers=headers)
        return FileResponse(path, media_type=blob.media_type, headers=headers)

    async def batch(request: Request) -> Response:
        job = await run_in_threadpool(svc.job, request)
        return await run_in_threadpool(payload, job.batch, job, "batch")

    async def result(request: Request) -> Response:
        job = await run_in_threadpool(svc.job, request)
        shown = job.result if job.status is JobStatus.DONE else None
        response = await run_in_threadpool(payload, shown, job, "result")
        # The job's status entry rides along, so a client that asks for the result of
        # a job it has not seen finish learns its final state in the same request.
        response.headers["X-Job-Status"] = json.dumps(
            wire.status_entry(job), ensure_ascii=True, separators=(",", ":")
        )
        return response

    async def events(request: Request) -> Response:
        job = await run_in_threadpool(svc.job, request)
        last = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
        if last is not None and not _decimal(last.strip()):
            raise wire.invalid(f"Last-Event-ID must be an event number, not {last!r}")
        stream = sse_stream(svc.store, svc.broker, job.id, int(last or 0))
        return StreamingResponse(
            stream, media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    async def logs(request: Request) -> Response:
        job = await run_in_threadpool(svc.job, request)
        events = await run_in_threadpool(svc.store.events_after, job.id, 0)
        lines = [e.data["line"] for e in events if e.kind == "log"]
        return PlainTextResponse("".join(line + "\n" for line in lines))

    async def interim(request: Request) -> Response:
        job = await run_in_threadpool(svc.job, request)
        events = await run_in_threadpool(svc.store.events_after, job.id, 0)
        values = [e.data["value"] for e in events if e.kind == "interim"]
        return JSONResponse({"interim": values})

    async def metrics(request: Request) -> Response:
        job = await run_in_threadpool(svc.job, request)
        return JSONResponse(
            {
                "metrics": job.metrics,
                "usage": {"seconds": job.usage_seconds},
                "timestamps": {
                    "created": job.created_at,
                    "running": job.started_at,
                    "finished": job.ended_at,
                },
            }
        )

    async def cancel(request: Request) -> Response:
        job = await run_in_threadpool(svc.job, request)
        cancelled = await run_in_threadpool(svc.executor.cancel, job.id)
        current = await run_in_threadpool(svc.store.get, job.id)
        # A running job is stopped within about a second; answer with its final state.
        for _ in range(50):
            if current is None or current.status.is_final:
                break
            await asyncio.sleep(0.05)
            current = await run_in_threadpool(svc.store.get, job.id)
        status = (current or job).status.value
        return JSONResponse({"cancelled": cancelled, "status": status})

    async def delete_files(request: Request) -> Response:
        job = await run_in_threadpool(svc.job, request)
        if not job.status.is_final:
            raise ApiError(
                409,
                "not_ready",
                f"job {job.id} is {job.status.value}; "
                "cancel it or wait until it is final before deleting its files",
            )

        def delete() -> bool:
            before = svc.store.mark_deleted(job.id)
            deleted = before is not None and before.status is not JobStatus.DELETED
            if deleted:
                for blob in (job.batch, job.result):
                    if blob is not None and not svc.store.blob_in_use(blob.sha256, job.id):
                        svc.blobs.delete(blob.sha256)
                        svc.store.forget_inline(blob.sha256)
            return deleted

        deleted = await run_in_threadpool(delete)
        if deleted:
            svc.broker.notify(job.id)
        return JSONResponse({"deleted": deleted, "status": JobStatus.DELETED.value})

    return [
        Route("/v1/health", health, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/v1/backends", backends, methods=["GET"]),
        Route("/v1/jobs", jobs, methods=["GET", "POST"]),
        Route("/v1/jobs/status", statuses, methods=["POST"]),
        Route("/v1/jobs/{job_id:job_id}", info, methods=["GET"]),
        Route("/v1/jobs/{job_id:job_id}/batch", batch, methods=["GET"]),
        Route("/v1/jobs/{job_id:job_id}/result", result, methods=["GET"]),
        Route("/v1/jobs/{job_id:job_id}/events", events, methods=["GET"]),
        Route("/v1/jobs/{job_id:job_id}/logs", logs, methods=["GET"]),
        Route("/v1/jobs/{job_id:job_id}/metrics", metrics, methods=["GET"]),
        Route("/v1/jobs/{job_id:job_id}/interim", interim, methods=["GET"]),
        Route("/v1/jobs/{job_id:job_id}/cancel", cancel, methods=["POST"]),
        Route("/v1/jobs/{job_id:job_id}/files", delete_files, methods=["DELETE"]),
    ]


def create_app(
    svc: Service,
    on_ready: Callable[[Service], None] | None = None,
    on_stop: Callable[[Service], None] | None = None,
) -> Starlette:
    """The Starlette app serving *svc*.

    *on_ready* runs once the executor is up; *on_stop* after it stopped (uvicorn
    re-raises SIGTERM once it is done, so this is the last code that surely runs).
    """

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        svc.store.recover()
        svc.store.restore_batches(svc.blobs)
        svc.broker.bind(asyncio.get_running_loop())
        svc.executor.start()
        if on_ready is not None:
            on_ready(svc)
        try:
            yield
        finally:
            svc.broker.close()
            await run_in_threadpool(svc.executor.stop)
            if on_stop is not None:
                on_stop(svc)

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return _error(exc.status, exc.code, exc.message, headers)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            path = request.url.path
            if path.startswith("/v1/jobs/") and path.count("/") == 3:
                return _error(404, "not_found", f"no job {path[9:]!r} on this service")
            return _error(404, "not_found", f"no route {path!r}; see /openapi.json")
        if exc.status_code == 405:
            return _error(
                405,
                "method_not_allowed",
                f"{request.method} is not allowed on {request.url.path!r}",
                dict(exc.headers or {}),
            )
        return _error(exc.status_code, "http_error", str(exc.detail))

    async def server_error(request: Request, exc: Exception) -> Response:
        return _error(500, "internal", f"internal error: {type(exc).__name__}: {exc}")

    handlers: dict[Any, Any] = {
        ApiError: api_error,
        HTTPException: http_error,
        Exception: server_error,
    }
    return Starlette(routes=_handlers(svc), lifespan=lifespan, exception_handlers=handlers)
