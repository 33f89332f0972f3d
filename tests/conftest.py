"""Shared fixtures: an isolated JOBLEDGER_HOME and the real job service on loopback.

``service_factory`` starts ``python -m jobledger serve --port 0`` in a real
subprocess (no mocks), waits until ``/v1/health`` answers, and stops it at teardown.
``service`` is one such service shared by the tests of a module (restarted if a test
stopped it); its ``token`` belongs to user ``alice``, so tests that need an empty job
list should make their own user with ``service.create_token(name)``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

_LEAKY_ENV = ("JOBLEDGER_URL", "JOBLEDGER_TOKEN", "JOBLEDGER_OFFLINE", "JOBLEDGER_PROFILE")


def _clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _LEAKY_ENV}
    env["JOBLEDGER_HOME"] = str(home)
    return env


def jobledger_cli(
    *args: str, home: Path, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m jobledger *args`` and return the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "jobledger", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_clean_env(home),
        check=False,
    )


class RunningService:
    """A ``jobledger serve`` subprocess on a free loopback port."""

    def __init__(self, data: Path, workers: int = 2, max_body: int | None = None) -> None:
        self.data = data
        self.workers = workers
        self.max_body = max_body
        self.home = data.parent / f"{data.name}-home"
        self.runtime_file = data.parent / f"{data.name}-runtime.json"
        self.log_path = data.parent / f"{data.name}-serve.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.token = self.create_token("alice")
        self.start()

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self.process is not None
        return self.process.pid

    def create_token(self, name: str) -> str:
        """A new token for user *name*, made with ``jobledger token create``."""
        done = jobledger_cli("token", "create", name, "--data", str(self.data), home=self.home)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def start(self) -> None:
        """Start the server and wait until it answers."""
        self.runtime_file.unlink(missing_ok=True)
        command = [
            sys.executable,
            "-m",
            "jobledger",
            "serve",
            "--port",
            "0",
            "--data",
            str(self.data),
            "--workers",
            str(self.workers),
            "--runtime-file",
            str(self.runtime_file),
        ]
        if self.max_body is not None:
            command += ["--max-body", str(self.max_body)]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=log, env=_clean_env(self.home)
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited: {self.log_path.read_text()}")
            if self.runtime_file.exists():
                self.url = json.loads(self.runtime_file.read_text())["url"]
                try:
                    with requests.get(self.url + "/v1/health", timeout=2) as answer:
                        if answer.ok:
                            return
                except requests.ConnectionError:
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"serve did not come up: {self.log_path.read_text()}")

    def alive(self) -> bool:
        """Whether the server process still runs."""
        return self.process is not None and self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server (SIGTERM by default; SIGKILL simulates a crash)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        """Stop and start again on the same data folder (the port may change)."""
        self.stop()
        self.start()

    def headers(self, token: str | None = None) -> dict[str, str]:
        """The Authorization header for *token* (default: alice's)."""
        return {"Authorization": f"Bearer {token or self.token}"}


@pytest.fixture
def jobledger_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty JOBLEDGER_HOME for this test, with no JOBLEDGER_* leaking in."""
    home = tmp_path / "jobledger-home"
    home.mkdir()
    for name in _LEAKY_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JOBLEDGER_HOME", str(home))
    return home


class _Factory:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: list[RunningService] = []

    def __call__(
        self, data_dir: Path | None = None, workers: int = 2, max_body: int | None = None
    ) -> RunningService:
        data = data_dir or self.root / f"service-{len(self.started)}"
        running = RunningService(data, workers, max_body)
        self.started.append(running)
        return running

    def close(self) -> None:
        for running in self.started:
            running.stop()


@pytest.fixture
def service_factory(tmp_path: Path) -> Iterator[Callable[..., RunningService]]:
    """``start(data_dir=None, workers=2, max_body=None) -> RunningService``."""
    factory = _Factory(tmp_path)
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def _module_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    factory = _Factory(tmp_path_factory.mktemp("service"))
    running = factory()
    yield running
    factory.close()


@pytest.fixture
def service(_module_service: RunningService) -> RunningService:
    """The module's shared service (alice's token in ``.token``), started if stopped."""
    if not _module_service.alive():
        _module_service.start()
    return _module_service


class Http:
    """A tiny client for tests: ``http.get("/v1/jobs/...")`` with alice's token."""

    def __init__(self, running: RunningService) -> None:
        self.service = running
        self.session = requests.Session()

    def request(
        self, method: str, path: str, *, token: str | None = None, auth: bool = True, **kwargs: Any
    ) -> requests.Response:
        """Send a request; the response body is read and the connection released."""
        headers = dict(kwargs.pop("headers", None) or {})
        if auth:
            headers.update(self.service.headers(token))
        with self.session.request(
            method,
            self.service.url + path,
            headers=headers,
            timeout=kwargs.pop("timeout", 30),
            **kwargs,
        ) as answer:
            answer.content  # noqa: B018 - read the body before the connection closes
            return answer

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    def submit(
        self,
        backend: str,
        value: Any = None,
        *,
        params: dict[str, Any] | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Submit a JSON batch; return the job info (asserting 201)."""
        import base64

        data = json.dumps(value).encode()
        body = {
            "backend": backend,
            "params": params or {},
            **fields,
            "batch": {"media_type": "application/json", "data": base64.b64encode(data).decode()},
        }
        answer = self.post("/v1/jobs", json=body, token=token)
        assert answer.status_code == 201, answer.text
        info: dict[str, Any] = answer.json()
        return info

    def wait(
        self,
        job_id: str,
        *,
        token: str | None = None,
        timeout: float = 20.0,
        until: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        """Poll the job until final (or *until* holds); return its info."""
        deadline = time.monotonic() + timeout
        while True:
            info: dict[str, Any] = self.get(f"/v1/jobs/{job_id}", token=token).json()
            done = (
                until(info)
                if until
                else info["status"] in ("DONE", "ERROR", "CANCELLED", "DELETED")
            )
            if done:
                return info
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {info['status']} after {timeout} s")
            time.sleep(0.05)

    def close(self) -> None:
        self.session.close()


@pytest.fixture
def http(service: RunningService) -> Iterator[Http]:
    """An :class:`Http` helper bound to ``service``."""
    client = Http(service)
    yield client
    client.close()
