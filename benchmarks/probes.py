"""Calls measured inside a fresh child process: time per call and peak memory growth.

``python -m benchmarks.worker probe OP --repeat K [--text T]`` runs one of
:data:`PROBES` with ``JOBLEDGER_HOME`` pointing at a scale home: it sets the call up
(imports, opening, an IPython shell: not measured), then makes it *K* times, timing
each call and measuring the peak resident-memory growth during it (Linux: the kernel's
high-water mark ``VmHWM``, reset through ``/proc/self/clear_refs`` before each call, so
the peak is exact; elsewhere a thread samples RSS every millisecond). It prints one
JSON object: ``{"seconds": [...], "growth": [...], "answer": ...}``, where the answer
says what the call returned (how many names, whether the newest job was among them).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["PROBES", "PeakGrowth", "run_probe"]

URL_ENV = "JOBLEDGER_BENCH_URL"
NEWEST_ENV = "JOBLEDGER_BENCH_NEWEST"  # the newest job id, which every listing must show


class PeakGrowth:
    """The peak growth of this process's resident memory during a ``with`` block."""

    def __init__(self) -> None:
        self.growth = 0
        self._exact = _reset_peak()
        self._start = _rss()
        self._peak = self._start
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakGrowth:
        self._exact = _reset_peak()
        self._start = _rss()
        if not self._exact:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            self._peak = max(self._peak, _rss())

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            peak = max(self._peak, _rss())
        else:
            peak = _status_kib("VmHWM") * 1024
        self.growth = max(0, peak - self._start)


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as out:
            out.write("5")
        return _status_kib("VmHWM") > 0
    except OSError:
        return False


def _status_kib(field: str) -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _rss() -> int:
    kib = _status_kib("VmRSS")
    if kib:
        return kib * 1024
    import psutil

    return int(psutil.Process().memory_info().rss)


# -- the calls ---------------------------------------------------------------------------

Setup = Callable[[str], tuple[Callable[[], Any], Callable[[Any], Any]]]


def _newest() -> str:
    return os.environ.get(NEWEST_ENV, "")


def _names(found: Any) -> dict[str, Any]:
    names = list(found)
    return {"count": len(names), "has_newest": _newest() in names}


def _dir(text: str) -> tuple[Callable[[], Any], Callable[[Any], Any]]:
    import jobledger.jobs

    return (lambda: dir(jobledger.jobs)), _names


def _all(text: str) -> tuple[Callable[[], Any], Callable[[Any], Any]]:
    import jobledger.jobs

    return (lambda: jobledger.jobs.__all__), _names


def _completer(jedi: bool) -> Setup:
    def setup(text: str) -> tuple[Callable[[], Any], Callable[[Any], Any]]:
        from IPython.core.completer import provisionalcompleter
        from IPython.core.interactiveshell import InteractiveShell

        shell = InteractiveShell.instance()
        shell.run_cell("import jobledger.jobs", store_history=False)
        shell.Completer.use_jedi = jedi

        def complete() -> list[str]:
            with provisionalcompleter():
                found = shell.Completer.completions(text, len(text))
                return [c.text.rsplit(".", 1)[-1] for c in found]

        return complete, _names

    return setup


def _connection(offline: bool) -> Any:
    import jobledger

    if offline:
        return jobledger.connect(offline=True)
    from benchmarks.worker import TOKEN_ENV

    conn = jobledger.connect(url=os.environ[URL_ENV], token=os.environ[TOKEN_ENV])
    conn.bind()
    return conn


def _listing(**filters: Any) -> Setup:
    def setup(text: str) -> tuple[Callable[[], Any], Callable[[Any], Any]]:
        conn = _connection(offline=True)

        def describe(jobs: list[Any]) -> dict[str, Any]:
            ids = {j.get_info(refresh=False).job_id for j in jobs}
            return {"count": len(jobs), "has_newest": _newest() in ids}

        return (lambda: conn.jobs(**filters)), describe

    return setup


def _sync(fetch_results: bool) -> Setup:
    def setup(text: str) -> tuple[Callable[[], Any], Callable[[Any], Any]]:
        conn = _connection(offline=False)
        return (lambda: conn.sync(fetch_results=fetch_results)), (
            lambda report: {
                "new": report.new,
                "updated": report.updated,
                "fetched": report.fetched,
                "errors": len(report.errors),
            }
        )

    return setup


PROBES: dict[str, Setup] = {
    "dir": _dir,
    "all": _all,
    "complete": _completer(jedi=False),
    "complete-jedi": _completer(jedi=True),
    "jobs": _listing(limit=100),
    "jobs-filtered": _listing(tags=["exp-07", "user-3"], status="failed", limit=100),
    "sync": _sync(fetch_results=False),
    "sync-fetch": _sync(fetch_results=True),
}


def run_probe(op: str, repeat: int, text: str = "") -> dict[str, Any]:
    """Set *op* up, then time it *repeat* times; the JSON answer of ``worker probe``."""
    if "IPYTHONDIR" in os.environ:
        Path(os.environ["IPYTHONDIR"]).mkdir(parents=True, exist_ok=True)
    call, describe = PROBES[op](text)
    seconds: list[float] = []
    growth: list[int] = []
    answer: Any = None
    for _ in range(repeat):
        with PeakGrowth() as peak:
            start = time.perf_counter()
            found = call()
            seconds.append(time.perf_counter() - start)
        growth.append(peak.growth)
        answer = describe(found)
        del found
    return {"seconds": seconds, "growth": growth, "answer": answer}
