"""One ledger for every provider: jobs of IBM Quantum, Amazon Braket, QLMaaS and the
reference service side by side in one registry.

Each remote provider is reached through its real SDK over the loopback stand-in kept
under ``tests/standins/`` (no cloud is reachable from here). One job goes to each; then
``jobledger ls`` shows them with their provider, a fresh offline process imports each
by alias and reads its result, and ``jobledger audit verify`` holds for all of them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import pytest
from braket.circuits import Circuit

import jobledger
from conftest import RunningService
from jobledger.config import save_profile
from jobledger.providers import qlmaas
from standins.braket_api import SV1, BraketStandIn
from standins.braket_fixtures import braket_standin, save_braket_profile
from standins.ibm_fixtures import SDK_PRIMITIVE_DEPRECATIONS, ibm_standin, save_ibm_profile
from standins.ibm_runtime import IBMStandIn
from standins.qlmaas_connection import QPU, QLMaaSStandIn
from test_provider_ibm import bell_pubs
from test_provider_qlmaas import bell_job

with warnings.catch_warnings():
    warnings.simplefilter("ignore", ImportWarning)
    from qat.core import Batch

__all__ = ["braket_standin", "ibm_standin"]  # fixtures used by name below

pytestmark = SDK_PRIMITIVE_DEPRECATIONS


@pytest.fixture
def profiles(
    tmp_path: Path,
    jobledger_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    ibm_standin: IBMStandIn,
    braket_standin: BraketStandIn,
) -> dict[str, Any]:
    """Profiles ``ibm``, ``aws`` and ``qlm`` pointing at their stand-ins."""
    save_ibm_profile(ibm_standin, monkeypatch)
    save_braket_profile(braket_standin)
    root = tmp_path / "qlmaas-server"
    monkeypatch.setenv("QLM_USER", "ada")
    monkeypatch.setenv("QLM_PASSWD", "secret")
    server = QLMaaSStandIn(root, run=True, accounts={"ada": "secret"})
    monkeypatch.setattr(qlmaas, "CONNECTION_FACTORY", lambda **kw: QLMaaSStandIn(root, **kw))
    save_profile("qlm", url="https://127.0.0.1:4443", provider="qlmaas")
    yield {"qlmaas": server}
    server.stop()


def offline(*args: str, home: Path, code: str | None = None) -> subprocess.CompletedProcess[str]:
    """``jobledger ARGS`` (or ``python -c CODE``) in a fresh process with the network off."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBLEDGER_")}
    env.update(JOBLEDGER_HOME=str(home), JOBLEDGER_OFFLINE="1")
    command = ["-c", textwrap.dedent(code)] if code else ["-m", "jobledger", *args]
    return subprocess.run(
        [sys.executable, *command],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_one_registry_holds_jobs_of_every_provider(
    profiles: dict[str, Any], service: RunningService, jobledger_home: Path
) -> None:
    submitted: dict[str, str] = {}
    token = service.create_token("together")
    with jobledger.connect(url=service.url, token=token) as conn:
        job = conn.submit({"n": 1}, "echo", alias="ref_job")
        job.wait_for_final_state(timeout=30)
        submitted["jobledger"] = job.job_id
    with jobledger.connect(profile="ibm") as conn:
        job = conn.submit(
            bell_pubs(),
            "ibm_nairobi",
            params={"primitive": "sampler", "shots": 64},
            alias="ibm_job",
        )
        job.wait_for_final_state(timeout=60)
        submitted["ibm-quantum"] = job.job_id
        ibm_counts = job.result()[0].data.meas.get_counts()
    with jobledger.connect(profile="aws") as conn:
        job = conn.submit(Circuit().h(0).cnot(0, 1), SV1, params={"shots": 50}, alias="braket_job")
        job.wait_for_final_state(timeout=60)
        submitted["braket"] = job.job_id
        braket_counts = dict(job.result().measurement_counts)
    with jobledger.connect(profile="qlm") as conn:
        job = conn.submit(Batch(jobs=[bell_job()]), QPU, alias="qlm_job")
        job.wait_for_final_state(timeout=60)
        submitted["qlmaas"] = job.job_id
        assert job.result() is not job.result()  # downloaded once, a fresh object each read
    assert submitted["braket"].startswith("arn:aws:braket:")  # not an identifier

    listed = offline("ls", "--json", "--limit", "10", home=jobledger_home)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert {row["provider"]: row["id"] for row in rows} == submitted
    assert {row["status"] for row in rows} == {"done"}
    table = offline("ls", home=jobledger_home).stdout.splitlines()
    column = table[0].split().index("PROVIDER")
    assert sorted(line.split()[column] for line in table[1:]) == sorted(submitted)

    child = offline(
        home=jobledger_home,
        code=f"""
        import json
        import jobledger.jobs
        from jobledger.jobs import braket_job, ibm_job, qlm_job, ref_job
        assert jobledger.jobs.get({submitted["braket"]!r}).alias == "braket_job"
        qlm = qlm_job.result()
        print(json.dumps({{
            "ref": ref_job.result(),
            "ibm": ibm_job.result()[0].data.meas.get_counts(),
            "braket": dict(braket_job.result().measurement_counts),
            "qlm": sorted(str(s.state) for r in qlm.results for s in r.raw_data),
        }}))
        """,
    )
    assert child.returncode == 0, child.stderr
    read = json.loads(child.stdout.strip().splitlines()[-1])
    assert read == {
        "ref": {"n": 1},
        "ibm": ibm_counts,
        "braket": braket_counts,
        "qlm": ["|00>", "|11>"],
    }
    verified = offline("audit", "verify", home=jobledger_home)
    assert verified.returncode == 0, verified.stdout + verified.stderr
