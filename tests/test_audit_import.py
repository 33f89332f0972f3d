"""``jobledger import``: a bundle recorded in a fresh JOBLEDGER_HOME, offline, all or nothing.

Jobs are made on a service of their own, exported, and the service is stopped before
the import, so anything that tried to reach it would fail. Tampered bundles are
damaged byte by byte on disk.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import jobledger
import jobledger.jobs
from jobledger import audit
from jobledger.paths import get_paths

VALUES = {"fig3_a": {"angles": [0.1, 0.2]}, "fig3_b": [1, 2, 3]}


@pytest.fixture
def bundle(
    tmp_path: Path, service_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """A zip bundle of three jobs made in one home; the service is stopped afterwards."""
    monkeypatch.setenv("JOBLEDGER_HOME", str(tmp_path / "origin"))
    service = service_factory()
    with jobledger.connect(url=service.url, token=service.token) as conn:
        jobs = {
            alias: conn.submit(value, "echo", alias=alias, tags=["figure-3"])
            for alias, value in VALUES.items()
        }
        failing = conn.submit(None, "fail", params={"message": "bad calibration"})
        for job in jobs.values():
            job.result(timeout=60)
        with pytest.raises(jobledger.JobFailureError):
            failing.result(timeout=60)
        ids = {alias: str(job.job_id) for alias, job in jobs.items()}
        ids["failing"] = str(failing.job_id)
        events = {alias: job.provenance["events"] for alias, job in jobs.items()}
    path = tmp_path / "bundle.zip"
    audit.export(path)
    service.stop()
    monkeypatch.setenv("JOBLEDGER_HOME", str(tmp_path / "fresh"))
    return {"path": path, "ids": ids, "events": events, "service": service}


def _no_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("something tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _dump() -> list[str]:
    db = sqlite3.connect(get_paths().registry)
    try:
        return list(db.iterdump())
    finally:
        db.close()


def test_imported_jobs_read_offline(
    bundle: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    report = audit.import_bundle(bundle["path"])
    assert set(report.imported) == set(bundle["ids"].values())
    _no_sockets(monkeypatch)
    for alias, value in VALUES.items():
        by_alias = jobledger.jobs.get(alias)
        assert by_alias.result() == value
        by_id = jobledger.jobs.get(bundle["ids"][alias])
        assert by_id.result() == value and by_id.tags == ["figure-3"]
        kinds = [e["event"] for e in by_id.provenance["events"]]
        original = [e["event"] for e in bundle["events"][alias]]
        assert kinds == [*original, "imported"]
        assert by_id.provenance["environment"]["python"]["version"]
    failing = jobledger.jobs.get(bundle["ids"]["failing"])
    with pytest.raises(jobledger.JobFailureError, match="bad calibration"):
        failing.result()
    assert audit.verify().ok


def test_ls_and_result_cli_after_import(bundle: dict[str, Any]) -> None:
    audit.import_bundle(bundle["path"])

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "jobledger", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    listed = json.loads(run("ls", "--json").stdout)
    assert {j["id"] for j in listed} == set(bundle["ids"].values())
    done = run("result", "fig3_b", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == VALUES["fig3_b"]
    lineage = json.loads(run("provenance", "fig3_a", "--json").stdout)
    assert lineage["backend"]["service_kind"] == "imported"
    assert lineage["result"]["stored"] is True


def test_importing_twice_changes_nothing(bundle: dict[str, Any]) -> None:
    audit.import_bundle(bundle["path"])
    before = _dump()
    again = audit.import_bundle(bundle["path"])
    assert again.imported == () and set(again.present) == set(bundle["ids"].values())
    assert _dump() == before


@pytest.mark.parametrize("damage", ["flip", "truncate", "jobs.json"])
def test_a_tampered_bundle_is_refused_and_nothing_recorded(
    bundle: dict[str, Any], tmp_path: Path, damage: str
) -> None:
    import zipfile

    source = zipfile.ZipFile(bundle["path"])
    folder = tmp_path / "unpacked"
    source.extractall(folder)
    source.close()
    if damage == "jobs.json":
        target = folder / "jobledger" / "jobs.json"
        body = json.loads(target.read_text())
        body["jobs"][0]["row"]["params"] = '{"delay":99}'
        target.write_text(json.dumps(body))
        name = "jobledger/jobs.json"
    else:
        name = f"jobs/{bundle['ids']['fig3_a']}/result.json"
        target = folder / name
        data = bytearray(target.read_bytes())
        if damage == "flip":
            data[3] ^= 0x20
        else:
            del data[-2:]
        target.write_bytes(bytes(data))
    with pytest.raises(jobledger.CacheCorruptionError, match=name):
        audit.import_bundle(folder)
    paths = get_paths()
    assert not paths.registry.exists() or jobledger.connect(offline=True).jobs(limit=None) == []
    assert not paths.store.exists()


def test_an_alias_clash_names_the_alias(
    bundle: dict[str, Any], service: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with jobledger.connect(url=service.url, token=service.token) as conn:
        conn.submit({"mine": True}, "echo", alias="fig3_a").result(timeout=60)
    before = _dump()
    with pytest.raises(ValueError, match=r"'fig3_a'.*--rename-aliases"):
        audit.import_bundle(bundle["path"])
    assert _dump() == before
    report = audit.import_bundle(bundle["path"], rename_aliases=True)
    assert report.renamed == (("fig3_a", "fig3_a_imported"),)
    assert jobledger.jobs.get("fig3_a_imported").result() == VALUES["fig3_a"]
    assert jobledger.jobs.get("fig3_a").result() == {"mine": True}
