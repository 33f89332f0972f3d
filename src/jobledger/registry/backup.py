"""Keeping the registry recoverable: its stamp, rolling backups, integrity and restore.

A registry that existed must never be silently re-initialised: when it is created a
small *stamp* file is written beside it, and a registry file that is later missing or
empty while its stamp remains is refused with a :class:`~jobledger.errors.RegistryError`
pointing at ``jobledger doctor``. Backups are taken with SQLite's online backup API
(consistent while other processes write) into ``backups/`` beside the registry: before
every migration, and once a day after the first write of a process (in a background
thread, into a temporary file renamed only when complete). The newest
:data:`KEEP` are kept. :func:`restore` puts a backup back, keeping the damaged file aside.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from jobledger.errors import RegistryError

__all__ = [
    "KEEP",
    "backup_folder",
    "backups",
    "check_not_lost",
    "integrity_problems",
    "restore",
    "start_daily_backup",
    "take_backup",
    "write_stamp",
]

KEEP = 10
DAY = 24 * 3600.0
_started: set[Path] = set()
_started_lock = threading.Lock()


def stamp_path(registry: Path) -> Path:
    """The stamp file written beside the registry when it is created."""
    return registry.with_name(registry.name + ".stamp")


def backup_folder(registry: Path) -> Path:
    """Where the registry's backups are kept."""
    return registry.parent / "backups"


def write_stamp(registry: Path) -> None:
    """Record that this registry exists (once; an existing stamp is kept)."""
    stamp = stamp_path(registry)
    if stamp.exists():
        return
    created = datetime.now(UTC).isoformat()
    with contextlib.suppress(OSError):  # a read-only folder: nothing to protect here
        stamp.write_text(json.dumps({"registry": registry.name, "created": created}) + "\n")


def check_not_lost(registry: Path) -> None:
    """Refuse a registry that existed (its stamp says so) but is now missing or empty.

    :raises RegistryError: naming the file, the newest backup and the commands that
        restore it or, deliberately, start over.
    """
    if not stamp_path(registry).exists():
        return
    try:
        size = registry.stat().st_size
    except FileNotFoundError:
        size = -1
    if size > 0:
        return
    state = "is missing" if size < 0 else "is empty (0 bytes)"
    found = backups(registry)
    hint = (
        f"restore the newest backup ({found[0].name}) with `jobledger doctor --restore`"
        if found
        else "no backup exists; `jobledger doctor --reset` starts a new registry and "
        "`jobledger sync` re-learns the jobs the service still knows"
    )
    raise RegistryError(
        f"the registry {registry} {state}, but it held jobs before (see "
        f"{stamp_path(registry).name}); nothing was changed: {hint}"
    )


def backups(registry: Path) -> list[Path]:
    """The registry's backups, newest first."""
    folder = backup_folder(registry)
    if not folder.is_dir():
        return []
    return sorted(folder.glob("registry-*.db"), reverse=True)


def take_backup(registry: Path, reason: str) -> Path:
    """Copy the registry with SQLite's online backup API; returns the backup's path.

    :param reason: a word for the file name (``daily``, ``migration``, ``restore``).
    """
    from jobledger.paths import ensure_private_dir

    folder = ensure_private_dir(backup_folder(registry))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    final = folder / f"registry-{stamp}-{reason}.db"
    partial = folder / f".partial-{stamp}-{os.getpid()}.db"
    source = sqlite3.connect(f"file:{registry}?mode=ro", uri=True, timeout=30)
    try:
        target = sqlite3.connect(partial)
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()
    os.chmod(partial, 0o600)
    os.replace(partial, final)
    for old in backups(registry)[KEEP:]:
        old.unlink(missing_ok=True)
    return final


def start_daily_backup(registry: Path) -> None:
    """Take a backup in a background thread when the newest is older than a day
    (once per process and registry)."""
    with _started_lock:
        if registry in _started:
            return
        _started.add(registry)
    found = backups(registry)
    if found and time.time() - found[0].stat().st_mtime < DAY:
        return

    def work() -> None:
        # A failed daily backup must never fail the user's write; the next process
        # tries again.
        with contextlib.suppress(OSError, sqlite3.Error):
            take_backup(registry, "daily")

    threading.Thread(target=work, name="jobledger-backup", daemon=True).start()


def integrity_problems(path: Path) -> list[str]:
    """What SQLite's ``integrity_check`` finds wrong with the file (empty when sound)."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            rows = db.execute("PRAGMA integrity_check").fetchall()
            db.execute("SELECT count(*) FROM jobs").fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        return [str(exc)]
    problems = [str(r[0]) for r in rows]
    return [] if problems == ["ok"] else problems


def restore(registry: Path, backup: Path) -> Path | None:
    """Put *backup* in place of the registry; the file it replaces (if any) is kept
    aside, and its path returned.

    :raises RegistryError: when the backup itself is not sound.
    """
    problems = integrity_problems(backup)
    if problems:
        raise RegistryError(f"the backup {backup} is damaged too: {problems[0]}")
    aside = None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for suffix in ("", "-wal", "-shm"):
        current = registry.with_name(registry.name + suffix)
        if current.exists():
            moved = current.with_name(f"{current.name}.damaged-{stamp}")
            os.replace(current, moved)
            aside = aside or moved
    copy = registry.with_name(registry.name + ".restoring")
    copy.write_bytes(backup.read_bytes())
    os.chmod(copy, 0o600)
    os.replace(copy, registry)
    write_stamp(registry)
    return aside
