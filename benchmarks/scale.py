"""B12-B15 and the scale table: what users feel on registries of 10k, 100k and 1M jobs.

Each size is a scale fixture (:mod:`benchmarks.fixtures`, filled through the real write
path), copied into the run's scratch folder once per run (the registry and the
service's database; the store, which nothing here writes, is linked), so that ``sync``
and ``cache prune`` may write without changing the cached fixture. The registry's
newest daily backup is marked as taken today in the copy: otherwise the first write of
every child process would start a backup of a 1 GiB file in the background, once a day
for a user but in every run here.

Python calls (``dir``, ``__all__``, IPython completion, listings, ``sync``) are measured
in fresh child processes (:mod:`benchmarks.probes`): time per call and the exact peak
memory growth during it. CLI commands are timed as whole processes, their peak RSS read
from ``wait4``. The figures at the largest size are memoized and reused by the scale
table, so nothing is measured twice.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import (
    Bench,
    Figure,
    ScaleRow,
    Service,
    clean_env,
    fmt_seconds,
    home,
    median,
    paired_ratio,
    ratio_spread,
    side_by_side,
    spread,
)
from benchmarks.fixtures import ScaleFixture, recipe, scale_fixture
from benchmarks.probes import NEWEST_ENV, URL_ENV
from benchmarks.worker import TOKEN_ENV

__all__ = [
    "b12_namespace",
    "b13_sync",
    "b14_cache",
    "b15_queries",
    "prepare",
    "scale_table",
    "sizes",
]

_MIB = 1 << 20
_SLOW = 3  # repeats of calls that take seconds at 1M
_FAST = 5


def sizes(bench: Bench) -> tuple[int, ...]:
    """The registry sizes of the scale table (the last one is the figures' size)."""
    if bench.settings.sizes:
        return bench.settings.sizes
    return (300, 600, 1_200) if bench.settings.quick else (10_000, 100_000, 1_000_000)


def size_name(count: int) -> str:
    """``10k``, ``1M``... for the tables."""
    if count >= 1_000_000 and count % 1_000_000 == 0:
        return f"{count // 1_000_000}M"
    if count >= 1000 and count % 1000 == 0:
        return f"{count // 1000}k"
    return f"{count:,}"


def fmt_mib(size: float) -> str:
    """Bytes as MiB, one decimal."""
    return f"{size / _MIB:,.1f} MiB"


@dataclass
class ScaleHome:
    """One run's copy of a scale fixture: a client home, and its service (started on
    first use)."""

    fixture: ScaleFixture
    root: Path
    newest: str
    service: Service | None = None
    ipython: Path = field(default_factory=Path)

    @property
    def count(self) -> int:
        """How many jobs it holds."""
        return self.fixture.count

    @property
    def home(self) -> Path:
        """The copy's ``JOBLEDGER_HOME``."""
        return self.root / "home"

    @property
    def registry(self) -> Path:
        """The copy's registry file."""
        return self.home / "data" / "registry.db"

    @property
    def session(self) -> str:
        """The newest session id of the fixture (one job in ten is in a session)."""
        i = max(i for i in range(max(0, self.count - 200), self.count) if recipe(i).session_id)
        session = recipe(i).session_id
        assert session is not None
        return session


def prepare(bench: Bench, count: int) -> ScaleHome:
    """This run's copy of the fixture of *count* jobs (built or reused, copied once)."""
    key = ("scale-home", count)
    found: ScaleHome | None = bench.memo.get(key)
    if found is not None:
        return found
    print(f"     preparing the {size_name(count)}-job fixture ...", flush=True)
    fixture = scale_fixture(count, cache=not bench.settings.quick, scratch=bench.settings.scratch)
    if fixture.build_seconds is not None:
        bench.memo.setdefault("builds", {})[count] = fixture.build_seconds
        print(f"     built in {fixture.build_seconds:.0f} s", flush=True)
    root = bench.scratch(f"scale-{count}")
    data = root / "home" / "data"
    source = fixture.home / "data"
    copy_registry(source, data)
    os.symlink(source / "store", data / "store")
    shutil.copytree(fixture.service_data, root / "service")
    from jobledger.registry import Registry

    registry = Registry(data / "registry.db", readonly=True)
    try:
        newest = registry.query(limit=1)[0].job_id or ""
    finally:
        registry.close()
    found = ScaleHome(fixture, root, newest, ipython=root / "ipython")
    bench.memo[key] = found
    return found


def copy_registry(source: Path, data: Path) -> Path:
    """Copy the registry of the data folder *source* (with its stamp and backups) into
    the new folder *data*; return the copy's path."""
    data.mkdir(parents=True)
    for path in source.glob("registry.db*"):
        if path.is_file():
            shutil.copy2(path, data / path.name)
    if (source / "backups").is_dir():
        shutil.copytree(source / "backups", data / "backups")
        for backup in (data / "backups").iterdir():
            os.utime(backup)  # "taken today": see the module docstring
    return data / "registry.db"


def completion_text(scale: ScaleHome) -> str:
    """What is typed before Tab: the namespace and most of the newest job's id (IPython
    offers at most 500 completions, so a short prefix could hide the newest job)."""
    return "jobledger.jobs." + scale.newest[:-4]


def service_of(bench: Bench, scale: ScaleHome) -> Service:
    """The service of the copy (its own data folder and user), started on first use."""
    if scale.service is None:
        service = Service(scale.root, data=scale.root / "service", token=scale.fixture.token)
        scale.service = bench._stack.enter_context(service)
    return scale.service


@dataclass(frozen=True)
class Probe:
    """What a probe measured: seconds and memory (bytes) per call, and its answer."""

    seconds: list[float]
    memory: list[int]
    answer: Any

    @property
    def time(self) -> float:
        """The median time per call."""
        return median(self.seconds)

    @property
    def peak(self) -> int:
        """The largest memory figure of the calls."""
        return max(self.memory)

    def cell(self, *, total: bool = False) -> str:
        """``12.3 ms · +4.1 MiB`` for the tables (``peak`` instead of ``+`` when *total*)."""
        memory = f"peak {fmt_mib(self.peak)}" if total else f"+{fmt_mib(self.peak)}"
        return f"{fmt_seconds(self.time)} · {memory}"


def probe(bench: Bench, scale: ScaleHome, op: str, repeat: int, text: str = "") -> Probe:
    """Run ``benchmarks.worker probe OP`` on *scale* in a fresh child process (memoized)."""
    key = ("probe", op, scale.count, text)
    found: Probe | None = bench.memo.get(key)
    if found is not None:
        return found
    env = clean_env(scale.home)
    env[NEWEST_ENV] = scale.newest
    env["IPYTHONDIR"] = str(scale.ipython)
    if op.startswith("sync"):
        service = service_of(bench, scale)
        env[URL_ENV] = service.url
        env[TOKEN_ENV] = service.token
    repeat = 1 if bench.settings.quick else repeat
    command = [sys.executable, "-m", "benchmarks.worker", "probe", op, "--repeat", str(repeat)]
    done = subprocess.run(
        [*command, "--text", text],
        env=env,
        capture_output=True,
        text=True,
        timeout=7200,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"probe {op} on {scale.count:,} jobs failed: {done.stderr[-2000:]}")
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    found = Probe(answer["seconds"], answer["growth"], answer["answer"])
    bench.memo[key] = found
    return found


def cli(bench: Bench, scale: ScaleHome, args: tuple[str, ...], repeat: int) -> Probe:
    """Run ``jobledger *args`` in *scale*'s home *repeat* times: wall time and peak RSS
    of each process (memoized)."""
    key = ("cli", args, scale.count)
    found: Probe | None = bench.memo.get(key)
    if found is not None:
        return found
    env = clean_env(scale.home)
    service = service_of(bench, scale)
    env["JOBLEDGER_URL"] = service.url
    env["JOBLEDGER_TOKEN"] = service.token
    seconds: list[float] = []
    peaks: list[int] = []
    out = ""
    for _ in range(1 if bench.settings.quick else repeat):
        took, peak, out = _timed_process([sys.executable, "-m", "jobledger", *args], env)
        seconds.append(took)
        peaks.append(peak)
    found = Probe(seconds, peaks, out.strip()[-300:])
    bench.memo[key] = found
    return found


# Run by a small launcher process rather than by this (large) one: Linux counts the
# memory of the process that forked a command in the command's ru_maxrss, so only a
# small parent gives a true peak. The launcher's own size (~10 MiB) is the floor.
_LAUNCHER = """
import json, os, sys, time
report, command = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
pid = os.posix_spawn(command[0], command, os.environ)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - start
with open(report, "w") as out:
    json.dump({"seconds": seconds, "maxrss": usage.ru_maxrss,
               "code": os.waitstatus_to_exitcode(status)}, out)
"""


def _timed_process(command: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Run *command*; its wall time, its peak RSS (from ``wait4``) and its stdout."""
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.json"
        done = subprocess.run(
            [sys.executable, "-c", _LAUNCHER, str(report), *command],
            env=env,
            capture_output=True,
            text=True,
            timeout=7200,
            check=False,
        )
        if not report.exists():
            raise RuntimeError(f"{' '.join(command[2:])} did not run: {done.stderr[-2000:]}")
        answer = json.loads(report.read_text())
    if answer["code"] != 0:
        raise RuntimeError(f"{' '.join(command[2:])} failed: {done.stderr[-2000:]}")
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    unit = 1 if sys.platform == "darwin" else 1024
    return float(answer["seconds"]), int(answer["maxrss"]) * unit, done.stdout


# -- B12: the namespace and completion ---------------------------------------------------


def _limits(found: Probe, seconds: float, memory: int) -> bool:
    return found.time <= seconds and found.peak <= memory


def _newest_note(name: str, found: Probe) -> list[str]:
    if found.answer.get("has_newest", True):
        return []
    return [f"{name}: the newest job is missing from what it returned ({found.answer})"]


def b12_namespace(bench: Bench) -> list[Figure]:
    """B12: ``dir(jobledger.jobs)``, ``__all__`` and IPython Tab completion at 1M jobs."""
    count = sizes(bench)[-1]
    scale = prepare(bench, count)
    text = completion_text(scale)
    figures: list[Figure] = []
    for fid, op, title in (
        ("B12a", "dir", "dir(jobledger.jobs)"),
        ("B12b", "all", "jobledger.jobs.__all__"),
    ):
        found = probe(bench, scale, op, _FAST)
        figure = Figure(
            fid,
            f"{size_name(count)} jobs: {title}",
            found.cell(),
            f"{found.answer['count']:,} names",
            "absolute",
            "<= 50 ms, <= +30 MiB",
            _limits(found, 0.050, 30 * _MIB) and found.answer["has_newest"],
            _newest_note(fid, found),
            spread(found.seconds),
        )
        figures.append(figure)
    for fid, op, title in (
        ("B12c", "complete", "IPython Tab completion"),
        ("B12d", "complete-jedi", "IPython Tab completion with jedi"),
    ):
        repeat = _SLOW if "jedi" in op else _FAST
        found = probe(bench, scale, op, repeat, text)
        floor = probe(bench, scale, op, repeat, "jobledger.conn")
        extra = found.time - floor.time
        figure = Figure(
            fid,
            f"{size_name(count)} jobs: {title} of `{text}`",
            found.cell(),
            f"{floor.cell()} (`jobledger.conn`)",
            f"+{fmt_seconds(max(0.0, extra))}",
            "<= floor + 50 ms, <= +30 MiB",
            extra <= 0.050 and found.peak <= 30 * _MIB and found.answer["has_newest"],
            _newest_note(fid, found),
            spread(found.seconds),
        )
        figure.notes.append(f"{fid}: {found.answer['count']:,} completions offered")
        figures.append(figure)
    return figures


# -- B13: sync ------------------------------------------------------------------------------


def b13_sync(bench: Bench) -> list[Figure]:
    """B13: ``conn.sync()`` and ``conn.sync(fetch_results=True)`` with nothing new, at 1M."""
    count = sizes(bench)[-1]
    scale = prepare(bench, count)
    figures = []
    for fid, op, title in (
        ("B13a", "sync", "conn.sync(), nothing new"),
        ("B13b", "sync-fetch", "conn.sync(fetch_results=True), all stored"),
    ):
        found = probe(bench, scale, op, _SLOW)
        answer = found.answer
        figure = Figure(
            fid,
            f"{size_name(count)} jobs: {title}",
            found.cell(),
            f"report: {answer['new']} new, {answer['fetched']} fetched",
            "absolute",
            "<= 1 s, <= +50 MiB (proposed)",
            _limits(found, 1.0, 50 * _MIB) and answer["errors"] == 0,
            [],
            spread(found.seconds),
        )
        if answer["new"] or answer["fetched"] or answer["errors"]:
            figure.notes.append(f"{fid}: expected nothing to do, the report says {answer}")
        figures.append(figure)
    return figures


# -- B14: the cache commands ------------------------------------------------------------


def b14_cache(bench: Bench) -> list[Figure]:
    """B14: ``jobledger cache info`` and ``cache prune --older-than`` at 1M jobs; the
    dry run of pruning every result at the size below (it took 12.5 minutes and 4.7 GiB
    at 1M before issue 15's fixes: too long to repeat on a shared machine each run)."""
    all_sizes = sizes(bench)
    figures = []
    for fid, args, title, count, passing in (
        ("B14a", ("cache", "info", "--json"), "jobledger cache info", all_sizes[-1], True),
        (
            "B14b",
            ("cache", "prune", "--older-than", "36500", "--dry-run", "--json"),
            "cache prune --older-than 36500 (nothing to prune)",
            all_sizes[-1],
            True,
        ),
        (
            "B14c",
            ("cache", "prune", "--older-than", "0", "--dry-run", "--json"),
            "cache prune --older-than 0 --dry-run (every result)",
            all_sizes[-2] if len(all_sizes) > 1 else all_sizes[-1],
            False,
        ),
    ):
        scale = prepare(bench, count)
        startup = cli(bench, scale, ("paths", "--json"), _FAST)
        floor = f"{fmt_seconds(startup.time)}, peak {fmt_mib(startup.peak)} (`jobledger paths`)"
        found = cli(bench, scale, args, _SLOW if passing else 1)
        above = found.peak - startup.peak
        figures.append(
            Figure(
                fid,
                f"{size_name(count)} jobs: {title}",
                found.cell(total=True),
                floor,
                f"+{fmt_mib(max(0, above))} above startup",
                "<= 1 s, <= +50 MiB (proposed)" if passing else "report",
                (found.time <= 1.0 and above <= 50 * _MIB) if passing else None,
                [],
                spread(found.seconds),
            )
        )
    return figures


# -- B15: item 7's queries and writes -----------------------------------------------------


def _record_and_refuse(registry: Any, service: str) -> Callable[[], None]:
    from jobledger.registry import BlobRef

    batch = BlobRef("0" * 64, 2, "application/json")

    def work() -> None:
        pk = registry.record_submission(
            service=service,
            backend="blob",
            batch=batch,
            params={},
            tags=["bench-write"],
            alias=None,
            session_id=None,
            provenance={},
            provenance_digest="1" * 64,
            idempotency_key=os.urandom(16).hex(),
        )
        registry.refuse_submission(pk, "benchmark: refused on purpose")

    return work


def b15_queries(bench: Bench) -> list[Figure]:
    """B15: session, deep skip, tag + backend, row decoding and a submission's write
    path, at 1M jobs."""
    import sqlite3

    import jobledger
    from jobledger.registry import Registry

    all_sizes = sizes(bench)
    count = all_sizes[-1]
    scale = prepare(bench, count)
    small = prepare(bench, all_sizes[0])
    rounds = bench.settings.pick(15, 2)
    figures: list[Figure] = []
    with home(scale.home):
        conn = jobledger.connect(offline=True)
        try:
            queries: list[tuple[str, str, dict[str, Any]]] = [
                ("B15a", "jobs(session_id=S, limit=100)", {"session_id": scale.session}),
                (
                    "B15b",
                    f"jobs(limit=100, skip={count // 10:,})",
                    {"skip": count // 10},
                ),
                (
                    "B15c",
                    "jobs(tags=[exp-07], backend_name=fail, limit=100)",
                    {"tags": ["exp-07"], "backend_name": "fail"},
                ),
            ]
            for fid, title, filters in queries:
                matched = len(conn.jobs(limit=100, **filters))
                samples = []
                for _ in range(rounds):
                    start = time.perf_counter()
                    conn.jobs(limit=100, **filters)
                    samples.append(time.perf_counter() - start)
                value = median(samples)
                figures.append(
                    Figure(
                        fid,
                        f"{size_name(count)} jobs: {title}",
                        fmt_seconds(value),
                        "-",
                        "absolute",
                        "<= 20 ms (proposed)",
                        value <= 0.020,
                        [] if matched else [f"{fid}: no job matched (a fixture too small)"],
                        spread(samples),
                    )
                )
            db = sqlite3.connect(f"file:{scale.registry}?mode=ro", uri=True)
            try:
                raw_sql = "SELECT * FROM jobs ORDER BY pk DESC LIMIT 1000"
                mine, theirs = side_by_side(
                    lambda: conn.jobs(limit=1000),
                    lambda: db.execute(raw_sql).fetchall(),
                    rounds,
                )
            finally:
                db.close()
        finally:
            conn.close()
    ratio = paired_ratio(mine, theirs)
    figures.append(
        Figure(
            "B15d",
            f"{size_name(count)} jobs: jobs(limit=1000), rows decoded",
            fmt_seconds(median(mine)),
            fmt_seconds(median(theirs)) + " (the same 1,000 rows, raw SQL)",
            f"{ratio:.2f}x",
            "<= 3x raw SQL (proposed)",
            ratio <= 3.0,
            [],
            ratio_spread(mine, theirs),
        )
    )
    # On copies of their own: the refused rows must not show up in other figures.
    big = Registry(copy_registry(scale.registry.parent, bench.scratch("b15e") / "data"))
    little = Registry(copy_registry(small.registry.parent, bench.scratch("b15e") / "data"))
    try:
        service = big.services()[0].id
        writes, baseline = side_by_side(
            _record_and_refuse(big, service),
            _record_and_refuse(little, little.services()[0].id),
            rounds,
            warmup=2,
        )
    finally:
        big.close()
        little.close()
    ratio = paired_ratio(writes, baseline)
    figures.append(
        Figure(
            "B15e",
            f"{size_name(count)} jobs: record a submission, then refuse it",
            fmt_seconds(median(writes)),
            f"{fmt_seconds(median(baseline))} (the same on {size_name(all_sizes[0])} jobs)",
            f"{ratio:.2f}x",
            f"<= 2x the {size_name(all_sizes[0])} registry",
            ratio <= 2.0,
            [],
            ratio_spread(writes, baseline),
        )
    )
    return figures


# -- the scale table ------------------------------------------------------------------------

_ROWS: tuple[tuple[str, str, int, str], ...] = (
    # (row, probe or cli, repeats, completion text: "newest" for the newest id's prefix)
    ("dir(jobledger.jobs)", "dir", _FAST, ""),
    ("jobledger.jobs.__all__", "all", _FAST, ""),
    ("IPython completion", "complete", _FAST, "newest"),
    ("IPython completion (jedi)", "complete-jedi", _SLOW, "newest"),
    ("conn.jobs(limit=100)", "jobs", _FAST, ""),
    ("conn.jobs(tags, status, limit=100)", "jobs-filtered", _FAST, ""),
    ("conn.sync(), nothing new", "sync", _SLOW, ""),
    ("conn.sync(fetch_results=True)", "sync-fetch", _SLOW, ""),
    ("jobledger cache info (process)", "cli:cache info --json", _SLOW, ""),
)


def scale_table(bench: Bench) -> list[Figure]:
    """The scale table: each row at every size (time per call · memory growth)."""
    rows: list[ScaleRow] = []
    counts = sizes(bench)
    scales = [prepare(bench, count) for count in counts]
    for title, op, repeat, text in _ROWS:
        row = ScaleRow(title, {})
        for scale in scales:
            if op.startswith("cli:"):
                args = tuple(op.removeprefix("cli:").split())
                found = cli(bench, scale, args, repeat)
                row.cells[size_name(scale.count)] = found.cell(total=True)
            else:
                where = completion_text(scale) if text == "newest" else text
                found = probe(bench, scale, op, repeat, where)
                row.cells[size_name(scale.count)] = found.cell()
        rows.append(row)
    bench.scale_rows = rows
    builds = bench.memo.get("builds", {})
    notes = [
        f"S: the {size_name(n)}-job fixture was built in {s:.0f} s (cached for next runs)"
        for n, s in sorted(builds.items())
    ]
    first, last = size_name(counts[0]), size_name(counts[-1])
    return [
        Figure(
            "S",
            f"scale table, {first} -> {last} jobs (below)",
            f"{len(rows)} rows x {len(counts)} sizes",
            "-",
            "-",
            "report",
            None,
            notes,
        )
    ]
