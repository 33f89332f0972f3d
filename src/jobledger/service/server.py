"""Running the service in the foreground: bind, announce, serve, shut down cleanly.

:func:`serve` binds the listening socket itself (so ``--port 0`` can pick a free
port and the real one is known before serving), builds the app, and runs uvicorn on
that socket. Once the executor is up it prints the URL on stderr and, when asked
(the embedded local service does), writes a runtime file describing the running
service; the file is removed again at shutdown. SIGTERM and SIGINT stop the server,
its executor and every worker process. Connections are capped and incomplete
requests time out (:mod:`jobledger.service.connections`).
"""

from __future__ import annotations

import json
import os
import resource
import socket
import sys
import time
from pathlib import Path

import uvicorn

import jobledger
from jobledger.service.app import Service, create_app
from jobledger.service.connections import ConnectionGuard
from jobledger.service.limits import JobLimits

__all__ = ["serve"]


DEFAULT_MAX_CONNECTIONS = 1000
DEFAULT_REQUEST_TIMEOUT = 20.0
DEFAULT_KEEP_ALIVE = 5
# Descriptors kept free for everything but client connections: SQLite (three per
# thread that touches the database), blobs being read or written, worker pipes.
_RESERVED_FDS = 256


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket.

    Created with ``IPPROTO_TCP`` as its protocol, so asyncio recognises accepted
    connections as TCP and sets ``TCP_NODELAY`` on them (with protocol 0 it does
    not, and each small keep-alive response waits for the client's delayed ACK).
    ``TCP_NODELAY`` is also set here, and Linux passes it on to accepted sockets.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _connection_cap(wanted: int, workers: int) -> int:
    """*wanted*, lowered to what the descriptor limit leaves (raised first if allowed)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError):
            pass
    room = soft - _RESERVED_FDS - 4 * workers
    cap = max(16, min(wanted, room))
    if cap < wanted:
        print(
            f"jobledger service: at most {cap} connections (the descriptor limit is {soft}; "
            "raise it with ulimit -n to allow more)",
            file=sys.stderr,
            flush=True,
        )
    return cap


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def _write_runtime_file(
    path: Path, svc: Service, url: str, port: int, token_file: Path | None
) -> None:
    record = {
        "url": url,
        "pid": os.getpid(),
        "port": port,
        "service_id": svc.db.service_id(),
        "token_file": str(token_file) if token_file else None,
        "data": str(svc.data_dir),
        "started_at": time.time(),
        "version": jobledger.__version__,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def _remove_runtime_file(path: Path) -> None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if record.get("pid") == os.getpid():
        path.unlink(missing_ok=True)


def serve(
    *,
    host: str,
    port: int,
    data_dir: Path,
    workers: int,
    max_body: int,
    runtime_file: Path | None = None,
    token_file: Path | None = None,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    keep_alive: int = DEFAULT_KEEP_ALIVE,
    limits: JobLimits | None = None,
    executor: str = "process",
    scheduler: str | None = None,
) -> None:
    """Serve protocol v1 from *data_dir* on *host*:*port* until SIGTERM/SIGINT.

    :param max_connections: open connections at most (see :mod:`.connections`).
    :param request_timeout: seconds a request head may take, and a body may stall.
    :param keep_alive: seconds an idle keep-alive connection stays open.
    :param limits: per-job wall-time and memory limits.
    :param executor: ``"process"`` (the local pool) or ``"dask"`` (a Dask cluster).
    :param scheduler: the Dask scheduler's address; ``None`` starts a LocalCluster
        of *workers* worker processes.
    """
    sock = _bind(host, port)
    real_port = int(sock.getsockname()[1])
    url = _url(host, real_port)
    svc = Service.open(data_dir, workers, max_body, limits, executor=executor, scheduler=scheduler)
    guard = ConnectionGuard(_connection_cap(max_connections, workers), request_timeout)

    def ready(svc: Service) -> None:
        if runtime_file is not None:
            _write_runtime_file(runtime_file, svc, url, real_port, token_file)
        print(
            f"jobledger service listening on {url} (data: {data_dir})", file=sys.stderr, flush=True
        )

    def stopped(svc: Service) -> None:
        if runtime_file is not None:
            _remove_runtime_file(runtime_file)
        print("jobledger service stopped", file=sys.stderr, flush=True)

    config = uvicorn.Config(
        create_app(svc, ready, stopped),
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,
        http=guard.protocol(),
        timeout_keep_alive=keep_alive,
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        if runtime_file is not None:
            _remove_runtime_file(runtime_file)
        svc.db.close()
