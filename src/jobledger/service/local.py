"""The embedded local service: find it, start it on demand, stop it.

When no service is configured, the client uses a private service on a free loopback
port, with its data in ``paths.local_service_data``. The running service is
described by ``paths.runtime / "local-service.json"`` (written by the server itself
once it is listening); its token, for the user ``local``, is in
``paths.tokens / "@local-service"`` (mode 0600; the ``@`` keeps it apart from
profile token files). Starting happens under an exclusive lock file, so two
processes starting it at once share one service; a runtime file whose pid is dead
is removed. This module imports neither Starlette, uvicorn nor requests: the
client imports it, and checks health with :mod:`urllib`.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobledger.errors import ConfigError
from jobledger.paths import Paths, get_paths

__all__ = ["LocalService", "ensure_running", "find_running", "stop"]

RUNTIME_NAME = "local-service.json"
LOCAL_USER = "local"


@dataclass(frozen=True)
class LocalService:
    """A running embedded local service."""

    url: str
    pid: int
    port: int
    service_id: str
    token: str
    data: Path


def _runtime_file(paths: Paths) -> Path:
    return paths.runtime / RUNTIME_NAME


def token_file(paths: Paths) -> Path:
    """Where the embedded service's token is kept."""
    # "@" cannot appear in a profile name, so no profile's token file can clash.
    return paths.tokens / "@local-service"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) counts as dead.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _health(url: str, timeout: float = 2.0) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url + "/v1/health", timeout=timeout) as answer:
            body: dict[str, Any] = json.loads(answer.read())
            return body
    except (OSError, ValueError, urllib.error.URLError):
        return None


def _read_runtime(paths: Paths) -> dict[str, Any] | None:
    try:
        record: dict[str, Any] = json.loads(_runtime_file(paths).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record.get("pid"), int) else None


def find_running(paths: Paths | None = None) -> LocalService | None:
    """The running local service, or ``None``; never starts anything.

    A runtime file naming a dead process is removed.
    """
    paths = paths or get_paths()
    record = _read_runtime(paths)
    if record is None:
        return None
    if not _pid_alive(record["pid"]):
        _runtime_file(paths).unlink(missing_ok=True)
        return None
    health = _health(record["url"])
    if health is None or health.get("service_id") != record.get("service_id"):
        return None
    try:
        token = Path(record.get("token_file") or token_file(paths)).read_text().strip()
    except OSError:
        return None
    return LocalService(
        record["url"],
        record["pid"],
        record["port"],
        record["service_id"],
        token,
        Path(record["data"]),
    )


@contextlib.contextmanager
def _start_lock(paths: Paths) -> Iterator[None]:
    paths.runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(paths.runtime / "local-service.lock", "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _ensure_token(paths: Paths) -> Path:
    from jobledger.service.auth import TokenAuthority, create_token
    from jobledger.service.db import Database

    path = token_file(paths)
    data = paths.local_service_data
    if path.exists():
        db = Database(data)
        try:
            if TokenAuthority(db).user(path.read_text().strip()) == LOCAL_USER:
                return path
        finally:
            db.close()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    token = create_token(data, LOCAL_USER)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    os.chmod(path, 0o600)
    return path


def _spawn(paths: Paths, token_file: Path, timeout: float) -> LocalService:
    log_path = paths.runtime / "local-service.log"
    command = [
        sys.executable,
        "-m",
        "jobledger",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--data",
        str(paths.local_service_data),
        "--runtime-file",
        str(_runtime_file(paths)),
        "--token-file",
        str(token_file),
    ]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ConfigError(
                f"the local job service exited at start (code "
                f"{process.returncode}); see its log: {log_path}"
            )
        record = _read_runtime(paths)
        if record is not None and record["pid"] == process.pid:
            found = find_running(paths)
            if found is not None:
                # The service is detached; stop() ends it, so the handle can go.
                process.returncode = 0
                return found
        time.sleep(0.05)
    process.kill()
    process.wait()
    raise ConfigError(
        f"the local job service did not come up within {timeout:g} s; see its log: {log_path}"
    )


def ensure_running(paths: Paths | None = None, *, timeout: float = 30.0) -> LocalService:
    """The running local service, started first if needed.

    :raises ConfigError: when the server extras are not installed, or when the
        service does not come up (the message names its log file).
    """
    paths = paths or get_paths()
    found = find_running(paths)
    if found is not None:
        return found
    missing = [m for m in ("starlette", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(
            f"cannot start the local job service: {', '.join(missing)} not "
            "installed; install jobledger[server] or configure a service URL"
        )
    with _start_lock(paths):
        found = find_running(paths)
        if found is not None:
            return found
        record = _read_runtime(paths)
        if record is not None:
            # Alive but not answering as the recorded service: give a slow starter a
            # moment, then treat the file as stale.
            for _ in range(20):
                found = find_running(paths)
                if found is not None:
                    return found
                time.sleep(0.1)
            _runtime_file(paths).unlink(missing_ok=True)
        return _spawn(paths, _ensure_token(paths), timeout)


def stop(paths: Paths | None = None, *, timeout: float = 10.0) -> bool:
    """Stop the local service and its workers; return whether one was running."""
    paths = paths or get_paths()
    record = _read_runtime(paths)
    if record is None:
        return False
    pid = int(record["pid"])
    stopped = _pid_alive(pid)
    if stopped:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.05)
    # The server leads its own process group (start_new_session): whatever is left in
    # it after the server ends (a worker of a killed server) is ended too.
    deadline = time.monotonic() + 2.0
    while _group_alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    _reap(pid)
    _runtime_file(paths).unlink(missing_ok=True)
    return stopped


def _reap(pid: int) -> None:
    # The server is our child only when this process started it.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _group_alive(group: int) -> bool:
    # killpg(group, 0) also counts zombies, which an init that reaps slowly keeps
    # around; read /proc instead and look for a live member of the group.
    try:
        entries = os.listdir("/proc")
    except OSError:
        return False
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(group) and fields[0] != "Z":
            return True
    return False
