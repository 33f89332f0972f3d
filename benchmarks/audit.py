"""B10: ``audit verify`` throughput next to ``sha256sum`` of the same bytes.

A store is filled with large random blobs (kept as files by the store), then
:func:`jobledger.audit.verify` and ``sha256sum`` over the store's files run
alternately; the figure is verify's throughput as a fraction of sha256sum's. Both read
the same bytes from the page cache after the warm-up, so the ratio measures the
hashing path (chunked reads through the store, the registry walk), not the disk.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from benchmarks.common import Bench, Figure, median, side_by_side

__all__ = ["b10_audit_verify"]

_MIB = 1 << 20


def _fill(root: Path, count: int, size: int) -> list[Path]:
    from jobledger.paths import Paths
    from jobledger.store import Store

    paths = Paths(root / "data", root / "cache", root / "config", root / "runtime")
    files = []
    with Store(paths.store) as store:
        for _ in range(count):
            data = os.urandom(size)
            digest, _ = store.put_stream([data[i : i + _MIB] for i in range(0, size, _MIB)])
            path = store.path_of(digest)
            if path is None:
                raise RuntimeError("the benchmark blobs were stored inline, not as files")
            files.append(path)
    return files


def b10_audit_verify(bench: Bench) -> Figure:
    """B10: re-hash every stored blob with ``audit verify`` vs ``sha256sum``."""
    from jobledger.audit import verify
    from jobledger.paths import Paths

    count = bench.settings.pick(8, 2)
    size = bench.settings.pick(64 * _MIB, 2 * _MIB)
    root = bench.scratch("b10-home")
    files = _fill(root, count, size)
    paths = Paths(root / "data", root / "cache", root / "config", root / "runtime")
    total = count * size

    def ours() -> None:
        report = verify(paths)
        if not report.ok or report.bytes != total:
            raise RuntimeError(f"verify did not check every byte: {report.as_dict()}")

    def raw() -> None:
        subprocess.run(["sha256sum", *map(str, files)], check=True, stdout=subprocess.DEVNULL)

    mine, theirs = side_by_side(ours, raw, bench.settings.pick(5, 1), warmup=1)
    ours_speed = total / median(mine)
    raw_speed = total / median(theirs)
    ratio = ours_speed / raw_speed
    figure = Figure(
        "B10",
        f"audit verify of {total / _MIB:,.0f} MiB in {count} blobs",
        f"{ours_speed / _MIB:,.0f} MiB/s",
        f"{raw_speed / _MIB:,.0f} MiB/s (sha256sum of the same files)",
        f"{ratio:.2f}x throughput",
        ">= 0.8x",
        ratio >= 0.8,
    )
    if shutil.which("openssl"):
        # coreutils' sha256sum may lack the CPU's SHA instructions; OpenSSL (which
        # hashlib uses) has them: the fairer floor for the hashing itself.
        _, openssl = side_by_side(
            ours,
            lambda: subprocess.run(
                ["openssl", "dgst", "-sha256", *map(str, files)],
                check=True,
                stdout=subprocess.DEVNULL,
            ),
            bench.settings.pick(3, 1),
            warmup=1,
        )
        speed = total / median(openssl)
        figure.notes.append(
            f"B10: openssl dgst -sha256 of the same files: {speed / _MIB:,.0f} MiB/s "
            f"(verify is {ours_speed / speed:.2f}x that)"
        )
    return figure
