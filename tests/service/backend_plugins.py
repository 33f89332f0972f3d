"""A test-only backend plug-in package, installed into a folder put on PYTHONPATH.

The service finds backends through the ``jobledger.backends`` entry point group, so
tests install real plug-ins the way a user would: a ``*.dist-info`` folder with an
``entry_points.txt`` next to the module. ``hog`` allocates and touches ``mb`` MiB;
``slowpoke`` sleeps ``seconds`` (ignoring cancellation) and declares its own
wall-time limit through the optional ``max_seconds`` attribute.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_MODULE = """
import time


class Hog:
    name = "hog"
    version = "1.0"
    description = "allocates and touches mb MiB"

    def run(self, batch, params, ctx):
        block = bytearray(int(params.get("mb", 1)) * 1024 * 1024)
        for i in range(0, len(block), 4096):
            block[i] = 1
        return {"mb": len(block) // (1024 * 1024)}


class Slowpoke:
    name = "slowpoke"
    version = "1.0"
    description = "sleeps, ignoring cancellation; declares max_seconds"
    max_seconds = 1.0

    def run(self, batch, params, ctx):
        time.sleep(float(params.get("seconds", 30)))
        return None


hog = Hog()
slowpoke = Slowpoke()
"""

_ENTRY_POINTS = """[jobledger.backends]
hog = jobledger_test_plugins:hog
slowpoke = jobledger_test_plugins:slowpoke
"""

_METADATA = "Metadata-Version: 2.1\nName: jobledger-test-plugins\nVersion: 1.0\n"


def install_test_plugins(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Install the plug-ins into *folder* and put it on PYTHONPATH for services."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "jobledger_test_plugins.py").write_text(_MODULE, encoding="utf-8")
    info = folder / "jobledger_test_plugins-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "entry_points.txt").write_text(_ENTRY_POINTS, encoding="utf-8")
    (info / "METADATA").write_text(_METADATA, encoding="utf-8")
    existing = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [existing, str(folder)])))
