"""Child-process entry points, run as ``python -m benchmarks.worker <mode> ...``.

``download`` fetches a result (jobledger or raw requests) while a sampling thread
records the process's peak RSS, ``submit`` makes a series of submissions for the
concurrency benchmark, and ``probe`` times a call on a scale fixture
(:mod:`benchmarks.probes`). Each prints one JSON object on stdout. The parent sets
``JOBLEDGER_HOME`` to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["TOKEN_ENV", "main"]

TOKEN_ENV = "JOBLEDGER_BENCH_TOKEN"  # the token travels in the environment, not argv


class PeakRss:
    """Samples this process's resident set size every few milliseconds."""

    def __init__(self, interval: float = 0.005) -> None:
        import psutil

        self._process = psutil.Process()
        self.start = self._process.memory_info().rss
        self.peak = self.start
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def growth(self) -> int:
        """Peak RSS minus RSS at the start, in bytes."""
        return self.peak - self.start


def download(args: argparse.Namespace) -> dict[str, Any]:
    """Download one result, the jobledger way or the raw way; report time and memory."""
    import requests

    import jobledger

    if args.raw:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {args.token}"
        url = f"{args.url}/v1/jobs/{args.job}/result"
        out = Path(args.out)
        with session.get(f"{args.url}/v1/health", timeout=10) as warm:  # warm keep-alive
            warm.raise_for_status()
        with PeakRss() as rss:
            start = time.perf_counter()
            size = 0
            with session.get(url, stream=True, timeout=60) as answer, open(out, "wb") as sink:
                answer.raise_for_status()
                for chunk in answer.iter_content(1 << 20):
                    sink.write(chunk)
                    size += len(chunk)
            seconds = time.perf_counter() - start
        out.unlink()
        session.close()
    else:
        with jobledger.connect(url=args.url, token=args.token) as conn:
            job = conn.job(args.job)
            conn.store.has("0" * 64)  # open the store before measuring
            with PeakRss() as rss:
                start = time.perf_counter()
                ref = job.fetch_result()
                seconds = time.perf_counter() - start
            size = ref.size
            conn.store.delete(ref.sha256)
    return {"seconds": seconds, "bytes": size, "rss_growth": rss.growth}


def submit(args: argparse.Namespace) -> dict[str, Any]:
    """Make *count* submissions from this process, starting at a shared instant."""
    import jobledger

    errors: list[str] = []
    ok = 0
    with jobledger.connect(url=args.url, token=args.token) as conn:
        delay = args.start_at - time.time()
        if delay > 0:
            time.sleep(delay)
        start = time.perf_counter()
        for i in range(args.count):
            try:
                conn.submit({"worker": os.getpid(), "i": i}, "echo", tags=["b8"])
                ok += 1
            except Exception as exc:  # counted and reported: the benchmark wants 0
                errors.append(f"{type(exc).__name__}: {exc}")
        seconds = time.perf_counter() - start
    return {"ok": ok, "errors": errors[:5], "error_count": len(errors), "seconds": seconds}


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments, run the mode, print its JSON answer."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.worker")
    sub = parser.add_subparsers(dest="mode", required=True)
    down = sub.add_parser("download")
    down.add_argument("--url", required=True)
    down.add_argument("--job", required=True)
    down.add_argument("--raw", action="store_true")
    down.add_argument("--out", default=os.devnull)
    many = sub.add_parser("submit")
    many.add_argument("--url", required=True)
    many.add_argument("--count", type=int, required=True)
    many.add_argument("--start-at", type=float, default=0.0)
    probe = sub.add_parser("probe")
    probe.add_argument("op")
    probe.add_argument("--repeat", type=int, default=1)
    probe.add_argument("--text", default="")
    args = parser.parse_args(argv)
    if args.mode == "probe":
        from benchmarks.probes import run_probe

        answer = run_probe(args.op, args.repeat, args.text)
    else:
        args.token = os.environ[TOKEN_ENV]
        answer = download(args) if args.mode == "download" else submit(args)
    print(json.dumps(answer))


if __name__ == "__main__":
    main()
