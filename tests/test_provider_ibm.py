"""jobledger in front of IBM Quantum: the real qiskit-ibm-runtime SDK against the stand-in.

Every test drives jobledger's IBM provider through a profile (``provider =
"ibm-quantum"``) against the loopback stand-in of IBM's Runtime REST API under
``tests/standins/``: record before send, a process killed after the request left, a
lost answer, a revoked key, jobs submitted with the SDK directly, offline reads in a
fresh process, and the cost of a poll round.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from qiskit import QuantumCircuit
from qiskit.transpiler import generate_preset_pass_manager
from qiskit_ibm_runtime import QiskitRuntimeService, SamplerV2

import jobledger
from jobledger import JobStatus
from jobledger.config import save_profile
from jobledger.errors import AuthenticationError, ConfigError
from jobledger.providers.ibm import RUNTIME_JSON
from standins.ibm_fixtures import (
    SDK_PRIMITIVE_DEPRECATIONS,
    ibm_service,
    ibm_standin,
    save_ibm_profile,
)
from standins.ibm_runtime import IBMStandIn

__all__ = ["ibm_service", "ibm_standin"]  # fixtures used by name below

pytestmark = SDK_PRIMITIVE_DEPRECATIONS

LIST = "GET /api/v1/jobs"
SUBMIT = "POST /api/v1/jobs"


@pytest.fixture
def profile(ibm_standin: IBMStandIn, jobledger_home: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A saved ``ibm-quantum`` profile pointing at the stand-in."""
    return save_ibm_profile(ibm_standin, monkeypatch)


_CIRCUITS: dict[str, Any] = {}


def bell_pubs(service: QiskitRuntimeService | None = None) -> list[Any]:
    """One Bell-pair PUB transpiled for ibm_nairobi (its target is the fake device's)."""
    if "bell" not in _CIRCUITS:
        from qiskit_ibm_runtime.fake_provider import FakeNairobiV2

        circuit = QuantumCircuit(2)
        circuit.h(0)
        circuit.cx(0, 1)
        circuit.measure_all()
        manager = generate_preset_pass_manager(optimization_level=1, backend=FakeNairobiV2())
        _CIRCUITS["bell"] = manager.run(circuit)
    return [(_CIRCUITS["bell"],)]


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
        check=False,
    )


def stored(conn: jobledger.Connection, job: Any) -> bytes:
    ref = job.fetch_result()
    assert ref.media_type == RUNTIME_JSON
    return conn.store.get_bytes(ref.sha256, what="result")


def test_profile_keys_are_checked_naming_profile_and_key(jobledger_home: Path) -> None:
    with pytest.raises(ConfigError, match=r"profile 'x'.*'instance'"):
        save_profile("x", url="https://cloud.ibm.com", provider="ibm-quantum")
    with pytest.raises(ConfigError, match=r"profile 'x'.*'provider'"):
        save_profile("x", url="https://cloud.ibm.com", provider="ibm")
    with pytest.raises(ConfigError, match=r"profile 'x'.*'channel'"):
        save_profile(
            "x", url="https://cloud.ibm.com", provider="ibm-quantum", channel="no", instance="i"
        )
    config = jobledger_home / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text('[profiles.y]\nurl = "http://127.0.0.1:1"\ninstance = "crn"\n')
    with pytest.raises(ConfigError, match=r"profile 'y'.*'instance'"):
        jobledger.connect(profile="y")


def test_submit_read_and_import_offline_in_a_fresh_process(
    profile: str, ibm_standin: IBMStandIn
) -> None:
    with jobledger.connect(profile=profile) as conn:
        job = conn.submit(
            bell_pubs(),
            "ibm_nairobi",
            params={"primitive": "sampler", "shots": 100},
            alias="bell_ibm",
            tags=["demo"],
        )
        assert job.job_id in ibm_standin.jobs and job.job_id.isidentifier()
        created = ibm_standin.jobs[job.job_id]
        assert "demo" in created.tags and any(t.startswith("jobledger:") for t in created.tags)
        job.wait_for_final_state(timeout=30)
        assert job.status() is jobledger.JobStatus.DONE
        first = stored(conn, job)
        result = job.result()
        assert sum(result[0].data.meas.get_counts().values()) == 100
        counts = result[0].data.meas.get_counts()
        job_id = str(job.job_id)
    ibm_standin.stop()
    child = run_python(
        f"""
        import hashlib, json
        from jobledger.jobs import bell_ibm, {job_id} as by_id
        assert bell_ibm.job_id == by_id.job_id == {job_id!r}
        print(json.dumps(bell_ibm.result()[0].data.meas.get_counts(), sort_keys=True))
        print(bell_ibm.provenance["result_sha256"])
        """
    )
    assert child.returncode == 0, child.stderr
    import hashlib

    printed_counts, printed_digest = child.stdout.strip().splitlines()
    assert json.loads(printed_counts) == counts
    assert printed_digest == hashlib.sha256(first).hexdigest()


def test_process_killed_after_send_is_resolved_by_tag_without_duplicate(
    profile: str, ibm_standin: IBMStandIn
) -> None:
    bell_pubs()
    died = run_python(
        f"""
        import os, sys, warnings
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        warnings.simplefilter("ignore", DeprecationWarning)
        import jobledger
        from jobledger.registry import Registry
        from test_provider_ibm import bell_pubs
        Registry.acknowledge = lambda *a, **k: os._exit(3)
        jobledger.connect(profile={profile!r}).submit(
            bell_pubs(), "ibm_nairobi", params={{"primitive": "sampler", "shots": 10}})
        """
    )
    assert died.returncode == 3, died.stderr
    assert len(ibm_standin.jobs) == 1
    with jobledger.connect(profile=profile) as conn:
        (pending,) = conn.registry.query(limit=None)
        assert pending.submit_state == "pending" and pending.job_id is None
        report = conn.sync()
        assert report.resolved == 1
        (job,) = conn.jobs()
        assert job.job_id in ibm_standin.jobs
    assert ibm_standin.requests[SUBMIT] == 1 and len(ibm_standin.jobs) == 1


def test_lost_answer_is_resolved_by_tag_without_sending_again(
    profile: str, ibm_standin: IBMStandIn
) -> None:
    with jobledger.connect(profile=profile) as conn:
        conn.bind()
        ibm_standin.drop_next_submit_response("disconnect")
        job = conn.submit(bell_pubs(), "ibm_nairobi", params={"primitive": "sampler"})
        (created,) = ibm_standin.jobs
        assert job.job_id == created
        assert conn.sync().resolved == 0
    assert ibm_standin.requests[SUBMIT] == 1


def test_revoked_key_raises_authentication_error_and_keeps_pending_rows(
    profile: str, ibm_standin: IBMStandIn
) -> None:
    with jobledger.connect(profile=profile) as conn, ibm_standin.queue_paused():
        job = conn.submit(bell_pubs(), "ibm_nairobi", params={"primitive": "sampler"})
        conn.registry.query(limit=None)
        ibm_standin.revoke_key()
        ibm_standin.expire_tokens()
        with pytest.raises(AuthenticationError, match="profile 'ibm'"):
            job.refresh()
    with jobledger.connect(profile=profile) as conn:
        with pytest.raises(AuthenticationError, match="profile 'ibm'"):
            conn.sync()
        (kept,) = conn.registry.query(limit=None)
        assert kept.job_id == job.job_id and not kept.status.is_final


def test_sync_records_a_job_submitted_with_the_sdk(
    profile: str, ibm_standin: IBMStandIn, ibm_service: QiskitRuntimeService
) -> None:
    sampler = SamplerV2(mode=ibm_service.backend("ibm_nairobi"))
    outside = sampler.run(bell_pubs(), shots=20)
    outside.result()
    with jobledger.connect(profile=profile) as conn:
        report = conn.sync()
        assert report.new == 1
        job = conn.job(outside.job_id())
        assert job.backend() == "ibm_nairobi"
        assert job.status() is jobledger.JobStatus.DONE
        assert job.result()[0].data.meas.num_shots == 20


def test_a_poll_round_for_100_open_jobs_costs_one_listing(
    profile: str, ibm_standin: IBMStandIn, ibm_service: QiskitRuntimeService
) -> None:
    ibm_standin.pause_queue()
    sampler = SamplerV2(mode=ibm_service.backend("ibm_nairobi"))
    pubs = bell_pubs()
    for _ in range(100):
        sampler.run(pubs, shots=1)
    with jobledger.connect(profile=profile) as conn:
        conn.sync()
        assert conn.registry.count() == 100
        ibm_standin.reset_requests()
        ids = [r.job_id for r in conn.registry.query(limit=None)]
        batch = conn.call(lambda p: p.statuses(ids))
        assert {(j.id, j.status) for j in batch.found} == {(i, JobStatus.QUEUED) for i in ids}
        assert batch.missing == []
        assert dict(ibm_standin.requests) == {LIST: 1}
        # The same single listing shows a job that started: QUEUED -> RUNNING.
        ibm_standin.running_seconds = 3.0
        ibm_standin.resume_queue()
        deadline = time.monotonic() + 20
        running: list[str] = []
        while not running and time.monotonic() < deadline:
            ibm_standin.reset_requests()
            batch = conn.call(lambda p: p.statuses(ids))
            assert dict(ibm_standin.requests) == {LIST: 1}
            running = [j.id for j in batch.found if j.status is JobStatus.RUNNING]
        assert len(running) == 1
        conn.registry.apply_infos(conn.service_id, batch.found)
        assert conn.job(running[0]).status() is JobStatus.RUNNING
        ibm_standin.running_seconds = 0.05
