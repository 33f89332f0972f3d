"""Where jobledger keeps its files.

``JOBLEDGER_HOME`` puts everything under one folder (``data/``, ``cache/``,
``config/``, ``runtime/``); otherwise platformdirs' per-user folders are used. The
registry and the store live in the *data* folder, never the cache folder: offline
reads and audits depend on them, so nothing may evict them. Every folder jobledger
creates is private (mode 0700) whatever the umask: :func:`ensure_private_dir`.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import warnings
from pathlib import Path

from jobledger.frozen import Frozen

__all__ = ["PRIVATE_DIR_MODE", "Paths", "ensure_private_dir", "get_paths"]

APP = "jobledger"
PRIVATE_DIR_MODE = 0o700


class Paths(Frozen):
    """The folders and files jobledger uses."""

    data: Path
    cache: Path
    config: Path
    runtime: Path

    def __init__(self, data: Path, cache: Path, config: Path, runtime: Path) -> None:
        self.__dict__.update(data=data, cache=cache, config=config, runtime=runtime)

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
    """Return the paths for the current environment (read on every call).

    :raises ConfigError: when ``JOBLEDGER_HOME`` names something that is not a folder.
    """
    home = os.environ.get("JOBLEDGER_HOME")
    if home:
        root = Path(home).expanduser().absolute()
        if root.exists() and not root.is_dir():
            raise _unusable(root, NotADirectoryError(20, "it is a file, not a folder"))
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


def ensure_private_dir(path: Path | str) -> Path:
    """Create the folder *path* with mode 0700 whatever the umask, and return it.

    Missing parents are created with mode 0700 too; parents that already exist are
    left as they are (they may be shared, e.g. ``~/.local/share``). When *path* itself
    exists with a wider mode it is narrowed to 0700 (when the system lets us).

    :raises ConfigError: when the folder cannot be created (a file is in the way, a
        read-only or foreign folder), naming ``JOBLEDGER_HOME`` when it is the cause.
    """
    try:
        return _make_private_dir(Path(path))
    except OSError as exc:
        raise _unusable(Path(path), exc) from exc


def _unusable(folder: Path, exc: OSError) -> Exception:
    from jobledger.errors import ConfigError

    reason = exc.strerror or str(exc)
    home = os.environ.get("JOBLEDGER_HOME")
    if home and (folder == Path(home) or Path(home) in folder.parents):
        return ConfigError(
            f"JOBLEDGER_HOME={home} cannot hold jobledger's files: creating {folder} failed "
            f"({reason}); point JOBLEDGER_HOME at a folder you can write, or unset it to use "
            "the default folders (`jobledger paths` shows them)"
        )
    return ConfigError(
        f"cannot create jobledger's folder {folder} ({reason}); make its parent writable, "
        "or set JOBLEDGER_HOME to a folder you can write"
    )


def _make_private_dir(folder: Path) -> Path:
    missing: list[Path] = []
    probe = folder
    while not probe.is_dir():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for step in reversed(missing):
        try:
            step.mkdir(mode=PRIVATE_DIR_MODE)
        except FileExistsError:
            if not step.is_dir():
                raise
            continue  # created meanwhile by another process; narrowed below if it is ours
        # mkdir's mode is filtered by the umask (which cannot widen it): chmod makes it exact.
        os.chmod(step, PRIVATE_DIR_MODE)
    # A folder of someone else cannot be narrowed; files can still be created in it.
    with contextlib.suppress(OSError):
        if stat.S_IMODE(folder.stat().st_mode) & 0o077:
            os.chmod(folder, PRIVATE_DIR_MODE)
    return folder
