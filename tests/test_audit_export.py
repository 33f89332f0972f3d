"""``jobledger export``: an RO-Crate that the real ``roc-validator`` accepts, offline.

The validator fetches JSON-LD contexts over HTTP through a ``requests_cache`` SQLite
cache; it runs here with ``--offline`` and a cache filled beforehand from the context
files shipped in ``tests/data/rocrate/`` (the RO-Crate 1.1 context and the Workflow Run
context, both public). The cache is filled through a ``requests`` adapter that answers
from those files, so the stored responses are real cached responses and nothing leaves
the machine.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

import jobledger
from jobledger import audit
from jobledger.client.connection import Connection
from jobledger.client.job import Job

pytestmark = pytest.mark.usefixtures("jobledger_home")

DATA = Path(__file__).resolve().parent / "data" / "rocrate"
CONTEXTS = {
    "https://w3id.org/ro/crate/1.1/context": DATA / "ro-crate-1.1-context.jsonld",
    "https://w3id.org/ro/terms/workflow-run/context": DATA / "workflow-run-context.jsonld",
}
VALIDATOR = Path(sys.executable).parent / "rocrate-validator"


class _Files(requests.adapters.BaseAdapter):
    """Answers GET requests for the known context URLs from local files."""

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        from urllib3 import HTTPResponse

        assert request.url is not None
        body = CONTEXTS[request.url].read_bytes()
        raw = HTTPResponse(
            body=io.BytesIO(body),
            headers={"Content-Type": "application/ld+json"},
            status=200,
            preload_content=False,
            request_url=request.url,
        )
        return requests.adapters.HTTPAdapter().build_response(request, raw)

    def close(self) -> None:
        pass


def fill_validator_cache(path: Path) -> Path:
    """A ``requests_cache`` SQLite cache holding the contexts, as roc-validator reads it."""
    import requests_cache

    session = requests_cache.CachedSession(
        cache_name=str(path), backend="sqlite", expire_after=-1, allowable_codes=(200,)
    )
    session.mount("https://", _Files())
    for url in CONTEXTS:
        session.get(url).raise_for_status()
    session.close()
    return path


def roc_validate(bundle: Path, tmp_path: Path, profile: str) -> subprocess.CompletedProcess[str]:
    """Run the real validator, offline, REQUIRED severity. Text output: its JSON
    report cannot serialize the settings of a ``.zip`` crate (roc-validator 0.13)."""
    cache = fill_validator_cache(tmp_path / f"validator-cache-{profile}")
    done = subprocess.run(
        [
            str(VALIDATOR),
            "-y",
            "--disable-color",
            "validate",
            "--offline",
            "--cache-path",
            str(cache),
            "-p",
            profile,
            "-l",
            "required",
            "-f",
            "text",
            "--no-paging",
            str(bundle),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = done.stdout + done.stderr
    assert "not available in the HTTP cache" not in output, output[-3000:]
    return done


@pytest.fixture
def token(service: Any) -> str:
    return str(service.create_token("exporter"))


@pytest.fixture
def conn(service: Any, token: str) -> Iterator[Connection]:
    with jobledger.connect(url=service.url, token=token) as connection:
        yield connection


@pytest.fixture
def jobs(conn: Connection) -> list[Job]:
    done = conn.submit(
        {"angles": [0.1, 0.2]}, "echo", params={"delay": 0.01}, alias="fig3_a", tags=["figure-3"]
    )
    other = conn.submit([1, 2, 3], "echo", tags=["figure-3"])
    failing = conn.submit(None, "fail", params={"message": "bad calibration"}, alias="broken")
    done.result(timeout=60)
    other.result(timeout=60)
    with pytest.raises(jobledger.JobFailureError):
        failing.result(timeout=60)
    return [done, other, failing]


def _metadata(bundle: Path) -> dict[str, Any]:
    if bundle.suffix == ".zip":
        with zipfile.ZipFile(bundle) as archive:
            return dict(json.loads(archive.read("ro-crate-metadata.json")))
    return dict(json.loads((bundle / "ro-crate-metadata.json").read_text()))


def _graph(bundle: Path) -> dict[str, dict[str, Any]]:
    return {e["@id"]: e for e in _metadata(bundle)["@graph"]}


@pytest.mark.parametrize("name", ["bundle", "bundle.zip"])
def test_bundle_passes_roc_validator(jobs: list[Job], tmp_path: Path, name: str) -> None:
    bundle = tmp_path / name
    report = audit.export(bundle)
    assert set(report.jobs) == {str(j.job_id) for j in jobs}
    for profile in ("ro-crate-1.1", "process-run-crate"):
        done = roc_validate(bundle, tmp_path, profile)
        assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
        assert "[OK] RO-Crate is a valid" in done.stdout


def test_each_job_is_a_create_action(jobs: list[Job], tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    audit.export(bundle)
    metadata = _metadata(bundle)
    assert metadata["@context"] == [
        "https://w3id.org/ro/crate/1.1/context",
        "https://w3id.org/ro/terms/workflow-run/context",
    ]
    graph = {e["@id"]: e for e in metadata["@graph"]}
    root = graph["./"]
    assert {"@id": "https://w3id.org/ro/wfrun/process/0.5"} in root["conformsTo"]
    done, _, failing = jobs
    action = graph[f"#job-{done.job_id}"]
    assert action["@type"] == "CreateAction"
    assert action["actionStatus"] == {"@id": "http://schema.org/CompletedActionStatus"}
    assert action["startTime"] and action["endTime"]
    backend = graph[action["instrument"]["@id"]]
    assert backend["@type"] == "SoftwareApplication" and backend["name"] == "echo"
    assert backend["softwareVersion"] == done.get_info(refresh=False).backend_version
    assert graph[backend["provider"]["@id"]]["identifier"] == done._record.service
    batch = graph[action["object"][0]["@id"]]
    result = graph[action["result"][0]["@id"]]
    for entity in (batch, result):
        path = bundle / entity["@id"]
        assert int(entity["contentSize"]) == path.stat().st_size
        import hashlib

        assert entity["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert entity["@id"] in [p["@id"] for p in root["hasPart"]]
    assert json.loads((bundle / result["@id"]).read_text()) == {"angles": [0.1, 0.2]}
    params = [graph[o["@id"]] for o in action["object"][1:]]
    assert [(p["name"], json.loads(p["value"])) for p in params] == [("delay", 0.01)]
    prov = graph[action["subjectOf"]["@id"]]
    program = graph[prov["mainEntity"]["@id"]]
    assert program["@type"] == "SoftwareSourceCode"
    assert program["runtimePlatform"].endswith(sys.version.split()[0])
    failed = graph[f"#job-{failing.job_id}"]
    assert failed["actionStatus"] == {"@id": "http://schema.org/FailedActionStatus"}
    assert failed["error"].endswith("bad calibration")
    rows = json.loads((bundle / "jobledger" / "jobs.json").read_text())
    assert {j["row"]["job_id"] for j in rows["jobs"]} == {str(j.job_id) for j in jobs}
    assert all(j["events"] for j in rows["jobs"])


def test_export_by_name_and_tag(jobs: list[Job], tmp_path: Path) -> None:
    by_alias = audit.export(tmp_path / "a", jobs=["broken"])
    assert by_alias.jobs == (str(jobs[2].job_id),)
    by_tag = audit.export(tmp_path / "b", tags=["figure-3"])
    assert set(by_tag.jobs) == {str(jobs[0].job_id), str(jobs[1].job_id)}
    with pytest.raises(jobledger.JobNotFoundError):
        audit.export(tmp_path / "c", jobs=["fig3_b"])


def test_no_token_and_no_home_path_in_the_bundle(
    jobs: list[Job], token: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The jobs were submitted from the current folder: make it sit in the home folder.
    monkeypatch.setenv("HOME", str(Path.cwd().parent))
    for name in ("bundle", "bundle.zip"):
        bundle = tmp_path / name
        audit.export(bundle)
        files = (
            [bundle.read_bytes()]
            if bundle.suffix == ".zip"
            else [p.read_bytes() for p in bundle.rglob("*") if p.is_file()]
        )
        if bundle.suffix == ".zip":
            with zipfile.ZipFile(bundle) as archive:
                files += [archive.read(n) for n in archive.namelist()]
        home = str(Path.home()).encode()
        for data in files:
            assert token.encode() not in data
            # A path inside the home folder (the folder name alone may be a prefix of
            # other words, e.g. /work of https://w3id.org/ro/terms/workflow-run).
            assert home + b"/" not in data


def test_cli_export_needs_a_choice(jobs: list[Job], tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "jobledger", "export", *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    assert run("--out", str(tmp_path / "x")).returncode == 2
    done = run("fig3_a", "--tag", "nothing-has-this", "--out", str(tmp_path / "y.zip"))
    assert done.returncode == 0, done.stderr
    assert zipfile.ZipFile(tmp_path / "y.zip").namelist()
    done = run("--all", "--out", str(tmp_path / "z"))
    assert done.returncode == 0 and "3 jobs" in done.stdout


def test_the_validator_run_can_fail(jobs: list[Job], tmp_path: Path) -> None:
    """The validation above means something: a crate without conformsTo is refused."""
    bundle = tmp_path / "bundle"
    audit.export(bundle)
    metadata = bundle / "ro-crate-metadata.json"
    body = json.loads(metadata.read_text())
    for entity in body["@graph"]:
        if entity["@id"] == "./":
            del entity["conformsTo"]
    metadata.write_text(json.dumps(body))
    assert roc_validate(bundle, tmp_path, "process-run-crate").returncode == 1
