"""A registry that existed is never silently re-created; backups, doctor, a lost WAL.

Real registry files, the real service, the real CLI in subprocesses.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import jobledger
from conftest import jobledger_cli
from jobledger.paths import get_paths
from jobledger.registry import Registry
from jobledger.registry.backup import backups, take_backup
from jobledger.registry.schema import migration_1


def _python(code: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "JOBLEDGER_HOME": str(home)},
        check=False,
    )


def _submit(service: Any, token: str, aliases: list[str]) -> list[str]:
    with jobledger.connect(url=service.url, token=token) as conn:
        jobs = [conn.submit({"alias": a}, "echo", alias=a) for a in aliases]
        return [str(j.job_id) for j in jobs]


def test_an_emptied_registry_is_refused_then_restored_and_relearnt(
    service: Any, jobledger_home: Path
) -> None:
    token = service.create_token("recovery")
    first = _submit(service, token, ["alpha", "beta"])
    registry = get_paths().registry
    take_backup(registry, "manual")
    later = _submit(service, token, ["gamma"])
    for suffix in ("-wal", "-shm"):
        registry.with_name(registry.name + suffix).unlink(missing_ok=True)
    registry.write_bytes(b"")

    listed = jobledger_cli("ls", home=jobledger_home)
    assert listed.returncode == 1
    assert "is empty (0 bytes)" in listed.stderr and "jobledger doctor --restore" in listed.stderr
    imported = _python("from jobledger.jobs import alpha", jobledger_home)
    assert "jobledger doctor --restore" in imported.stderr
    assert registry.stat().st_size == 0  # nothing re-initialised it

    checked = jobledger_cli("doctor", "--json", home=jobledger_home)
    assert checked.returncode == 1
    assert json.loads(checked.stdout)["state"] == "empty"

    env = {**os.environ, "JOBLEDGER_HOME": str(jobledger_home)}
    env.update(JOBLEDGER_URL=service.url, JOBLEDGER_TOKEN=token)
    restored = subprocess.run(
        [sys.executable, "-m", "jobledger", "doctor", "--restore", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert restored.returncode == 0, restored.stderr
    actions = json.loads(restored.stdout)["actions"]
    assert any("could not be recovered" in a for a in actions)
    assert any("1 job(s) recorded" in a for a in actions)
    with jobledger.connect(url=service.url, token=token, offline=True) as conn:
        ids = sorted(str(j.job_id) for j in conn.jobs(limit=None))
        assert ids == sorted(first + later)
        assert conn.job("alpha").result() == {"alias": "alpha"}
    assert list(registry.parent.glob("registry.db.damaged-*"))


def test_a_damaged_registry_is_a_clear_error_everywhere(
    service: Any, jobledger_home: Path
) -> None:
    token = service.create_token("damage")
    _submit(service, token, ["delta"])
    registry = get_paths().registry
    for suffix in ("-wal", "-shm"):
        registry.with_name(registry.name + suffix).unlink(missing_ok=True)
    registry.write_bytes(b"this is not a database, it was overwritten" * 100)
    listed = jobledger_cli("ls", home=jobledger_home)
    assert listed.returncode == 1
    assert "Traceback" not in listed.stderr
    assert str(registry) in listed.stderr and "jobledger doctor" in listed.stderr
    imported = _python(
        "import jobledger.jobs\n"
        "try:\n    jobledger.jobs.get('delta')\n"
        "except jobledger.RegistryError as exc:\n    print('RegistryError', exc)",
        jobledger_home,
    )
    assert imported.stdout.startswith("RegistryError") and "jobledger doctor" in imported.stdout


def test_deleting_the_wal_under_a_live_writer_loses_nothing(
    service: Any, jobledger_home: Path
) -> None:
    token = service.create_token("wal")
    registry = get_paths().registry
    with jobledger.connect(url=service.url, token=token) as conn:
        conn.submit({"n": -1}, "echo")
        registry.with_name(registry.name + "-wal").unlink()
        ids = [str(conn.submit({"n": n}, "echo").job_id) for n in range(10)]
        # Another process, while the writer is still open, sees every job it returned.
        seen = _python(
            "import sqlite3, sys\n"
            f"db = sqlite3.connect({str(registry)!r})\n"
            "print(db.execute('SELECT job_id FROM jobs').fetchall())",
            jobledger_home,
        )
        assert seen.returncode == 0, seen.stderr
        assert all(i in seen.stdout for i in ids)


def test_a_migration_is_preceded_by_a_backup(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    conn = sqlite3.connect(path)
    migration_1(conn)
    conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
    conn.commit()
    conn.close()
    Registry(path).count()
    (backup,) = backups(path)
    assert backup.name.endswith("-migration.db")
    with sqlite3.connect(backup) as copy:
        version = copy.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    copy.close()
    assert version == ("1",)


def test_a_read_only_copy_of_the_data_folder_reads(
    service: Any, jobledger_home: Path, tmp_path: Path
) -> None:
    token = service.create_token("archive")
    with jobledger.connect(url=service.url, token=token) as conn:
        job = conn.submit({"kept": "for years"}, "echo", alias="archived")
        assert job.result(timeout=30) == {"kept": "for years"}
    # A copy on a read-only file system (a mounted archive): a read-only bind mount.
    copy = tmp_path / "archive"
    shutil.copytree(jobledger_home, copy)
    mounted = subprocess.run(["mount", "--bind", str(copy), str(copy)], check=False)
    if mounted.returncode != 0:
        pytest.skip("this machine cannot bind-mount (needs root): no read-only file system")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(copy)], check=True)
        with pytest.raises(OSError):
            (copy / "probe").write_text("x")
        reader = subprocess.run(
            [
                sys.executable,
                "-c",
                "from jobledger.jobs import archived\nprint(archived.result())",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "JOBLEDGER_HOME": str(copy), "JOBLEDGER_OFFLINE": "1"},
            check=False,
        )
    finally:
        subprocess.run(["umount", str(copy)], check=False)
    assert reader.returncode == 0, reader.stderr
    assert reader.stdout.strip() == "{'kept': 'for years'}"
