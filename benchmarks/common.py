"""Shared plumbing for the benchmarks: isolated homes, the real service, timing.

Every benchmark runs against a real ``jobledger serve`` subprocess on a free loopback
port (never a mock), with ``JOBLEDGER_HOME`` pointing at a temporary folder so that
the user's own registry is never touched. Timings are taken side by side: the
jobledger call and its raw baseline alternate in one loop, and the median of the
per-pair ratios is the figure, so a noisy shared machine slows both alike.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "ROOT",
    "Bench",
    "Figure",
    "ScaleRow",
    "Service",
    "Settings",
    "clean_env",
    "home",
    "machine",
    "median",
    "paired_ratio",
    "ratio_spread",
    "ratios",
    "side_by_side",
    "spread",
]

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / ".fixtures"
_LEAKY_ENV = ("JOBLEDGER_URL", "JOBLEDGER_TOKEN", "JOBLEDGER_OFFLINE", "JOBLEDGER_PROFILE")


@dataclass(frozen=True)
class Settings:
    """Sizes of one run: the default ones, or tiny ones with ``--quick``."""

    quick: bool
    scratch: Path
    sizes: tuple[int, ...] = ()  # registry sizes of the scale figures (default: 10k, 100k, 1M)

    def pick(self, default: int, quick: int) -> int:
        """*quick* in quick mode, else *default*."""
        return quick if self.quick else default


@dataclass
class Figure:
    """One measured figure, next to its baseline measured in the same run.

    ``ratio`` is what the target is checked against; ``passed`` is ``None`` for
    figures that are only reported.
    """

    id: str
    title: str
    value: str
    baseline: str
    ratio: str
    target: str
    passed: bool | None
    notes: list[str] = field(default_factory=list)
    spread: str = ""  # how noisy ``value`` (or ``ratio``) is: IQR or min-max, and n

    @property
    def verdict(self) -> str:
        """``PASS``, ``MISS`` or ``info``."""
        return "info" if self.passed is None else ("PASS" if self.passed else "MISS")


@dataclass
class ScaleRow:
    """One row of the scale table: an operation, and a cell per registry size."""

    title: str
    cells: dict[str, str]


def median(values: list[float]) -> float:
    """The median of *values*."""
    return statistics.median(values)


def quartiles(values: list[float]) -> tuple[float, float]:
    """The first and third quartiles of *values* (min and max below 4 values)."""
    if len(values) < 4:
        return min(values), max(values)
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q3


def spread(values: list[float], fmt: Callable[[float], str] | None = None) -> str:
    """How spread *values* are, for the table: ``IQR a-b, n=N`` (``min-max`` below 4)."""
    show = fmt or fmt_seconds
    low, high = quartiles(values)
    kind = "IQR" if len(values) >= 4 else "min-max"
    return f"{kind} {show(low)}-{show(high)}, n={len(values)}"


def ratios(mine: list[float], theirs: list[float]) -> list[float]:
    """The ratio of each interleaved pair (``mine[i] / theirs[i]``)."""
    return [a / b for a, b in zip(mine, theirs, strict=True) if b > 0]


def paired_ratio(mine: list[float], theirs: list[float]) -> float:
    """The median of the per-pair ratios: what an interleaved figure is judged on (a
    load burst slows both halves of a pair, so it cancels out of each pair's ratio)."""
    return median(ratios(mine, theirs))


def ratio_spread(mine: list[float], theirs: list[float]) -> str:
    """The spread of the per-pair ratios of an interleaved measurement."""
    return "pairs " + spread(ratios(mine, theirs), lambda r: f"{r:.2f}x")


def side_by_side(
    ours: Callable[[], object], raw: Callable[[], object], rounds: int, *, warmup: int = 3
) -> tuple[list[float], list[float]]:
    """Time *ours* and *raw* alternately, *rounds* times each, after a warm-up.

    Returns both lists of durations in seconds; the order alternates each round so
    neither side always runs first.
    """
    for _ in range(warmup):
        ours()
        raw()
    mine: list[float] = []
    theirs: list[float] = []
    for i in range(rounds):
        pair = ((ours, mine), (raw, theirs)) if i % 2 == 0 else ((raw, theirs), (ours, mine))
        for work, out in pair:
            start = time.perf_counter()
            work()
            out.append(time.perf_counter() - start)
    return mine, theirs


def clean_env(home_dir: Path) -> dict[str, str]:
    """The environment for a child process: JOBLEDGER_HOME set, no JOBLEDGER_* leaks."""
    env = {k: v for k, v in os.environ.items() if k not in _LEAKY_ENV}
    env["JOBLEDGER_HOME"] = str(home_dir)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


@contextlib.contextmanager
def home(path: Path) -> Iterator[Path]:
    """Point this process's ``JOBLEDGER_HOME`` at *path* (restored afterwards)."""
    saved = {k: os.environ.get(k) for k in ("JOBLEDGER_HOME", *_LEAKY_ENV)}
    for key in _LEAKY_ENV:
        os.environ.pop(key, None)
    os.environ["JOBLEDGER_HOME"] = str(path)
    try:
        yield path
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_jobledger(*args: str, home_dir: Path, timeout: float = 60.0) -> str:
    """Run ``python -m jobledger *args``; return its stdout (raises on failure)."""
    done = subprocess.run(
        [sys.executable, "-m", "jobledger", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(home_dir),
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"jobledger {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


class Service:
    """A ``jobledger serve --port 0`` subprocess with its own data folder and token.

    A context manager: the process is stopped (SIGTERM, then SIGKILL) on exit. With
    *data* and *token* it serves an existing data folder (a scale fixture's).
    """

    def __init__(
        self,
        root: Path,
        *,
        workers: int = 2,
        user: str = "bench",
        data: Path | None = None,
        token: str | None = None,
    ) -> None:
        self.root = root
        self.data = data or root / "service-data"
        self.home = root / "service-home"
        self.workers = workers
        self.url = ""
        self.process: subprocess.Popen[bytes] | None = None
        self.token = token or self.create_token(user)

    def create_token(self, user: str) -> str:
        """A new token for *user*, made with ``jobledger token create``."""
        out = run_jobledger("token", "create", user, "--data", str(self.data), home_dir=self.home)
        return out.strip()

    def __enter__(self) -> Service:
        runtime = self.root / "service-runtime.json"
        log_path = self.root / "service.log"
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
            str(runtime),
        ]
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=log, env=clean_env(self.home)
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jobledger serve exited: {log_path.read_text()}")
            if runtime.exists():
                with contextlib.suppress(ValueError, KeyError):
                    self.url = json.loads(runtime.read_text())["url"]
                    if self._healthy():
                        return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"jobledger serve did not come up: {log_path.read_text()}")

    def _healthy(self) -> bool:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(self.url + "/v1/health", timeout=2) as answer:
                return bool(answer.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the server and wait for it."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    @property
    def headers(self) -> dict[str, str]:
        """The Authorization header of this service's token."""
        return {"Authorization": f"Bearer {self.token}"}


def scratch_dir(parent: Path | None = None, name: str = "bench") -> Path:
    """A new, empty temporary folder whose name starts with *name*."""
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=parent))


def machine() -> str:
    """One line describing this machine: CPU, cores, RAM, Python, OS, date."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 2**20:.1f} GiB RAM"
                break
    return (
        f"{cpu}, {os.cpu_count()} cores, {ram}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )


def fmt_seconds(seconds: float) -> str:
    """A duration in the unit that reads best (µs, ms or s)."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


class Bench:
    """What one run shares: its settings, one service (started on first use) and
    client homes. Closing it stops the service and closes every connection."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._service: Service | None = None
        self._stack = contextlib.ExitStack()
        self.memo: dict[Any, Any] = {}  # measurements and fixtures shared between figures
        self.scale_rows: list[ScaleRow] = []

    @property
    def service(self) -> Service:
        """The shared service (two workers), started on first use."""
        if self._service is None:
            self._service = self._stack.enter_context(Service(self.scratch("service")))
        return self._service

    def scratch(self, name: str) -> Path:
        """A new, empty folder for one benchmark."""
        return scratch_dir(self.settings.scratch, name)

    def connect(self, home_dir: Path, *, token: str | None = None) -> Any:
        """A connection to the shared service for a client whose home is *home_dir*.

        ``JOBLEDGER_HOME`` must point at *home_dir* while the connection is used.
        """
        import jobledger

        conn = jobledger.connect(url=self.service.url, token=token or self.service.token)
        self._stack.callback(conn.close)
        return conn

    def close(self) -> None:
        """Stop what this run started."""
        self._stack.close()
