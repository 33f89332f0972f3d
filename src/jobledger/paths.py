"""Where jobledger keeps its files.

``JOBLEDGER_HOME`` puts everything under one folder (``data/``, ``cache/``,
``config/``, ``runtime/``); otherwise platformdirs' per-user folders are used. The
registry and the store live in the *data* folder, never the cache folder: offline
reads and audits depend on them, so nothing may evict them.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Paths", "get_paths"]

APP = "jobledger"


@dataclass(frozen=True)
class Paths:
    """The folders and files jobledger uses."""

    data: Path
    cache: Path
    config: Path
    runtime: Path

    @property
    def registry(self) -> Path:
        """The registry's SQLite file."""
        return self.data / "registry.db"

    @property
    def store(self) -> Path:
        """The content-addressed blob store (a diskcache folder)."""
        return self.data / "store"

    @property
    def config_file(self) -> Path:
        """The TOML configuration file."""
        return self.config / "config.toml"

    @property
    def tokens(self) -> Path:
        """The folder of token files (mode 0600)."""
        return self.config / "tokens"

    @property
    def local_service_data(self) -> Path:
        """The data folder of the embedded local service."""
        return self.data / "local-service"

    def as_dict(self) -> dict[str, str]:
        """The paths as strings, keyed by name (for ``jobledger paths --json``)."""
        return {
            "registry": str(self.registry),
            "store": str(self.store),
            "config": str(self.config),
            "config_file": str(self.config_file),
            "runtime": str(self.runtime),
            "data": str(self.data),
            "cache": str(self.cache),
            "local_service_data": str(self.local_service_data),
        }


def get_paths() -> Paths:
    """Return the paths for the current environment (read on every call)."""
    home = os.environ.get("JOBLEDGER_HOME")
    if home:
        root = Path(home).expanduser().absolute()
        return Paths(root / "data", root / "cache", root / "config", root / "runtime")
    import platformdirs

    cache = Path(platformdirs.user_cache_dir(APP))
    if sys.platform.startswith("linux") and not os.environ.get("XDG_RUNTIME_DIR"):
        # Without a per-user runtime folder (cron, containers), keep runtime files
        # beside the cache rather than in a shared temporary folder.
        runtime = cache / "run"
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runtime = Path(platformdirs.user_runtime_dir(APP))
    return Paths(
        Path(platformdirs.user_data_dir(APP)),
        cache,
        Path(platformdirs.user_config_dir(APP)),
        runtime,
    )
