"""Running the service in the foreground: bind, announce, serve, shut down cleanly.

:func:`serve` binds the listening socket itself (so ``--port 0`` can pick a free
port and the real one is known before serving), builds the app, and runs uvicorn on
that socket. Once the executor is up it prints the URL on stderr and, when asked
(the embedded local service does), writes a runtime file describing the running
service; the file is removed again at shutdown. SIGTERM and SIGINT stop the server,
its executor and every worker process.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import uvicorn

import jobledger
from jobledger.service.app import Service, create_app

__all__ = ["serve"]


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


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
) -> None:
    """Serve protocol v1 from *data_dir* on *host*:*port* until SIGTERM/SIGINT."""
    sock = _bind(host, port)
    real_port = int(sock.getsockname()[1])
    url = _url(host, real_port)
    svc = Service.open(data_dir, workers, max_body)

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
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        if runtime_file is not None:
            _remove_runtime_file(runtime_file)
        svc.db.close()
