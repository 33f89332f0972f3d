"""The adversarial campaign's harness: a service started with extra options and limits.

``JOBLEDGER_CAMPAIGN_SCALE`` (default 1) multiplies the size of every attack (sockets,
body size, kill rounds), so ``JOBLEDGER_CAMPAIGN_SCALE=5 pytest -m slow tests/campaign``
replays the campaign at the scale it was first run; the default keeps the suite quick.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from conftest import RunningService, _clean_env

SCALE = max(1, int(os.environ.get("JOBLEDGER_CAMPAIGN_SCALE", "1")))


class CampaignService(RunningService):
    """A ``jobledger serve`` with extra options and, optionally, a descriptor limit."""

    def __init__(
        self, data: Path, workers: int, extra: list[str], nofile: int | None = None
    ) -> None:
        self.extra = extra
        self.nofile = nofile
        super().__init__(data, workers)

    def _limit(self) -> None:
        if self.nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def start(self) -> None:
        """Start the server with :attr:`extra` options and wait until it answers."""
        self.runtime_file.unlink(missing_ok=True)
        command = [
            sys.executable, "-m", "jobledger", "serve", "--port", "0",
            "--data", str(self.data), "--workers", str(self.workers),
            "--runtime-file", str(self.runtime_file), *self.extra,
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=log, env=_clean_env(self.home), preexec_fn=self._limit
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


@pytest.fixture
def campaign_service(tmp_path: Path) -> Iterator[Callable[..., CampaignService]]:
    """``start(*extra_options, workers=1, nofile=None) -> CampaignService``."""
    started: list[CampaignService] = []

    def start(*extra: str, workers: int = 1, nofile: int | None = None) -> CampaignService:
        running = CampaignService(
            tmp_path / f"service-{len(started)}", workers, list(extra), nofile
        )
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()
