"""Folders jobledger creates are private (0700) whatever the umask.

Each test runs the code in a subprocess whose umask is 000, as a shared account or a
careless shell profile would set it; a folder that followed the umask would be 0777.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from jobledger.errors import ConfigError
from jobledger.paths import ensure_private_dir

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes only")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def run_with_umask_000(code: str, home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBLEDGER_")}
    env["JOBLEDGER_HOME"] = str(home)
    prelude = "import os\nos.umask(0)\n"
    done = subprocess.run(
        [sys.executable, "-c", prelude + code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_store_and_its_missing_parents_are_private_under_umask_000(tmp_path: Path) -> None:
    home = tmp_path / "home"
    run_with_umask_000(
        "from jobledger.paths import get_paths\n"
        "from jobledger.store import Store\n"
        "with Store(get_paths().store) as store:\n"
        "    store.put_bytes(b'small')\n"
        "    store.put_bytes(os.urandom(100_000))\n",
        home,
    )
    for folder in (home, home / "data", home / "data" / "store"):
        assert mode(folder) == 0o700, folder


def test_config_and_token_folders_are_private_under_umask_000(tmp_path: Path) -> None:
    home = tmp_path / "home"
    run_with_umask_000(
        "from jobledger.config import save_profile\n"
        "save_profile('lab', url='http://127.0.0.1:1', token='abc')\n",
        home,
    )
    config = home / "config"
    assert mode(config) == 0o700
    assert mode(config / "tokens") == 0o700
    assert mode(config / "tokens" / "lab") == 0o600
    assert mode(config / "config.toml") == 0o600


def test_ensure_private_dir_under_umask_000(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    target = shared / "a" / "b" / "c"
    run_with_umask_000(
        f"from jobledger.paths import ensure_private_dir\nensure_private_dir({str(target)!r})\n",
        tmp_path,
    )
    assert [mode(p) for p in (shared / "a", shared / "a" / "b", target)] == [0o700] * 3
    assert mode(shared) == 0o755  # an existing parent is not ours to change


def test_ensure_private_dir_narrows_an_existing_wide_folder(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    folder.chmod(0o777)
    assert ensure_private_dir(folder) == folder
    assert mode(folder) == 0o700
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="File exists"):
        ensure_private_dir(tmp_path / "file")
