"""Run the benchmark suite: ``python -m benchmarks [--quick] [--only B1,B5] [--no-write]``.

``--sizes 10000,100000`` measures the scale figures on other registry sizes (the largest
for B5 and B12-B15); such a run never writes the doc.

Each figure is printed next to its baseline, measured in the same run, with its
spread and PASS or MISS against its target, then the scale table (``S``: the same
operations on 10k, 100k and 1M jobs); both tables in ``docs/performance.md`` are
rewritten (unless ``--no-write``, and never in ``--quick`` mode). Everything runs in
a temporary folder with ``JOBLEDGER_HOME`` pointing into it; the service and every
child process are stopped at the end.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.audit import b10_audit_verify
from benchmarks.common import (
    ROOT,
    Bench,
    Figure,
    ScaleRow,
    Settings,
    home,
    machine,
    scratch_dir,
)
from benchmarks.heavy import b7_large_result, b8_concurrent_submits
from benchmarks.local_reads import b1_warm_result, b2_cold_process, b3_first_vs_cached
from benchmarks.providers import p1_ibm_cached_read
from benchmarks.quantum import q1_qiskit, q2_braket, q3_myqlm
from benchmarks.registry_scale import b5_large_registry
from benchmarks.report import print_scale, print_table, write_table
from benchmarks.scale import b12_namespace, b13_sync, b14_cache, b15_queries, scale_table
from benchmarks.scale_out import d1_scale_out
from benchmarks.service_calls import (
    b4_submit,
    b6_many_waiters,
    b9_end_to_end,
    b11_sequential_results,
    b16_many_echo_jobs,
)

__all__ = ["BENCHMARKS", "main"]

BENCHMARKS: dict[str, Callable[[Bench], Figure | list[Figure]]] = {
    "B1": b1_warm_result,
    "B2": b2_cold_process,
    "B3": b3_first_vs_cached,
    "B4": b4_submit,
    "B5": b5_large_registry,
    "B6": b6_many_waiters,
    "B7": b7_large_result,
    "B8": b8_concurrent_submits,
    "B9": b9_end_to_end,
    "B10": b10_audit_verify,
    "B11": b11_sequential_results,
    "B12": b12_namespace,
    "B13": b13_sync,
    "B14": b14_cache,
    "B15": b15_queries,
    "B16": b16_many_echo_jobs,
    "S": scale_table,
    "Q1": q1_qiskit,
    "Q2": q2_braket,
    "Q3": q3_myqlm,
    "P1": p1_ibm_cached_read,
    "D1": d1_scale_out,
}
DOC = ROOT / "docs" / "performance.md"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--only", default="", help="comma-separated ids, e.g. B1,B5")
    parser.add_argument("--no-write", action="store_true", help="do not rewrite the doc")
    parser.add_argument(
        "--sizes",
        default="",
        help="registry sizes of the scale figures, e.g. 10000,100000 (default 10k,100k,1M)",
    )
    parser.add_argument("--doc", type=Path, default=DOC, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    chosen = [name.strip().upper() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in BENCHMARKS]
    if unknown:
        parser.error(
            f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}"
        )
    args.chosen = chosen or list(BENCHMARKS)
    try:
        args.sizes = tuple(sorted(int(n) for n in args.sizes.split(",") if n.strip()))
    except ValueError:
        parser.error(f"--sizes takes comma-separated numbers of jobs, not {args.sizes!r}")
    return args


def run(
    chosen: list[str], settings: Settings, scale: list[ScaleRow] | None = None
) -> list[Figure]:
    """Run the chosen benchmarks; a failing one becomes a MISS row with its error.

    The rows of the scale table, when ``S`` ran, are added to *scale*.
    """
    figures: list[Figure] = []
    bench = Bench(settings)
    try:
        with home(scratch_dir(settings.scratch, "client")):
            for name in chosen:
                started = time.perf_counter()
                print(f"{name} ...", flush=True)
                try:
                    found = BENCHMARKS[name](bench)
                except Exception as exc:
                    traceback.print_exc()
                    found = Figure(name, "failed", "-", "-", "-", "-", False, [f"{name}: {exc!r}"])
                found = found if isinstance(found, list) else [found]
                figures.extend(found)
                print_table(found)
                print(f"     ({time.perf_counter() - started:.1f} s)", flush=True)
    finally:
        if scale is not None:
            scale.extend(bench.scale_rows)
        bench.close()
    return figures


def main(argv: list[str] | None = None) -> int:
    """Run the suite; exit status 0 even when targets are missed, 1 on errors."""
    args = _parse(argv)
    started = time.perf_counter()
    scratch = scratch_dir(None, "jobledger-bench")
    scale: list[ScaleRow] = []
    try:
        settings = Settings(quick=args.quick, scratch=scratch, sizes=args.sizes)
        figures = run(args.chosen, settings, scale)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    runtime = time.perf_counter() - started
    print(f"\n{machine()}\n")
    print_table(figures)
    print_scale(scale)
    print(f"\ntotal {runtime:.0f} s")
    if not (args.no_write or args.quick or args.sizes):
        scope = "all figures" if args.chosen == list(BENCHMARKS) else ", ".join(args.chosen)
        write_table(args.doc, figures, machine(), runtime, scope, scale)
        print(f"results written to {args.doc}")
    return 1 if any(f.title == "failed" for f in figures) else 0


if __name__ == "__main__":
    sys.exit(main())
