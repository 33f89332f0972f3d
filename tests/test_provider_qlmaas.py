"""jobledger in front of QLMaaS: the real ``qat.qlmaas`` client against a stand-in server.

No QLMaaS server is available to test against. Every test drives jobledger's QLMaaS
provider through a profile (``provider = "qlmaas"``) whose connection is
:class:`~standins.qlmaas_connection.QLMaaSStandIn`: the real ``QLMaaSConnection``
client code over a stand-in transport, running batches on myQLM's PyLinalg. Covered:
submit, read and import offline in a fresh process; every QLMaaS status code; a process
killed after the request left; refused credentials; jobs submitted with the client
directly; results never read through the client's dill path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import jobledger
from jobledger.codecs.qlm import BATCH_RESULT
from jobledger.config import save_profile
from jobledger.errors import AuthenticationError, JobNotFoundError
from jobledger.providers import qlmaas
from standins.qlmaas_connection import QPU, QLMaaSStandIn

with warnings.catch_warnings():
    warnings.simplefilter("ignore", ImportWarning)
    from qat.comm.qlmaas.ttypes import JobStatus as QLMStatus
    from qat.core import Batch
    from qat.lang.AQASM import CNOT, H, Program

TESTS = Path(__file__).parent
EXPECTED = {
    "WAITING": "QUEUED",
    "PENDING": "QUEUED",
    "IN_BUCKET": "QUEUED",
    "SLURM_SENT": "QUEUED",
    "SLURM_OFFLOAD": "QUEUED",
    "RUNNING": "RUNNING",
    "DONE": "DONE",
    "CANCELLED": "CANCELLED",
    "STOPPED": "CANCELLED",
    "FAILED": "ERROR",
    "DELETED": "DELETED",
    "UNKNOWN_JOB": None,
}


def bell_job(nbshots: int = 0) -> Any:
    program = Program()
    qubits = program.qalloc(2)
    program.apply(H, qubits[0])
    program.apply(CNOT, qubits)
    return program.to_circ().to_job(nbshots=nbshots)


def probabilities(result: Any) -> dict[str, float]:
    return {str(s.state): round(s.probability, 9) for r in result.results for s in r.raw_data}


@pytest.fixture
def standin(
    tmp_path: Path, jobledger_home: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[QLMaaSStandIn]:
    """The stand-in server (worker running), the SDK's password variables set, and
    jobledger's connection factory pointed at it; the client's dill path is refused."""
    root = tmp_path / "qlmaas-server"
    monkeypatch.setenv("QLM_USER", "ada")
    monkeypatch.setenv("QLM_PASSWD", "secret")
    server = QLMaaSStandIn(root, run=True, accounts={"ada": "secret"})
    monkeypatch.setattr(qlmaas, "CONNECTION_FACTORY", lambda **kw: QLMaaSStandIn(root, **kw))

    def never(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("QLMaaSConnection.get_result (dill) must never be called")

    monkeypatch.setattr(QLMaaSStandIn, "get_result", never)
    save_profile("qlm", url="https://127.0.0.1:4443", provider="qlmaas")
    yield server
    server.stop()


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        check=False,
    )


def test_submit_read_and_import_offline_in_a_fresh_process(standin: QLMaaSStandIn) -> None:
    with jobledger.connect(profile="qlm") as conn:
        job = conn.submit(Batch(jobs=[bell_job()]), QPU, alias="bell_qlm")
        assert job.job_id in standin.job_ids() and job.job_id.isidentifier()
        sent = standin.get_asyncbatch(job.job_id).batch.meta_data
        assert sent[qlmaas.KEY]  # the idempotency key travels in the batch
        job.wait_for_final_state(timeout=30)
        assert job.status() is jobledger.JobStatus.DONE
        assert job.fetch_result().media_type == BATCH_RESULT
        first = probabilities(job.result())
        assert first == {"|00>": 0.5, "|11>": 0.5}
        assert len(job.get_batch().jobs) == 1
        job_id = str(job.job_id)
    standin.stop()
    child = run_python(
        f"""
        import json
        from jobledger.jobs import bell_qlm, {job_id} as by_id
        assert bell_qlm.job_id == by_id.job_id == {job_id!r}
        result = bell_qlm.result()
        print(json.dumps({{str(s.state): round(s.probability, 9)
                          for r in result.results for s in r.raw_data}}))
        """,
        JOBLEDGER_OFFLINE="1",
    )
    assert child.returncode == 0, child.stderr
    assert json.loads(child.stdout.strip().splitlines()[-1]) == first


def test_every_qlmaas_status_code_is_mapped(standin: QLMaaSStandIn) -> None:
    assert set(QLMStatus._NAMES_TO_VALUES) == set(EXPECTED) == set(qlmaas.STATUSES)
    standin.pause()
    with jobledger.connect(profile="qlm") as conn:
        job = conn.submit(bell_job(), QPU)
        for name, code in sorted(QLMStatus._NAMES_TO_VALUES.items(), key=lambda kv: kv[1]):
            standin.set_status(job.job_id, code)
            if EXPECTED[name] is None:
                with pytest.raises(JobNotFoundError, match=job.job_id):
                    conn.call(lambda p: p.info(job.job_id))
            else:
                info = conn.call(lambda p: p.info(job.job_id))
                assert info.status.value == EXPECTED[name], name


def test_process_killed_after_send_is_resolved_by_key_without_duplicate(
    standin: QLMaaSStandIn,
) -> None:
    standin.pause()
    died = run_python(
        f"""
        import os, sys
        sys.path.insert(0, {str(TESTS)!r})
        import jobledger
        from jobledger.providers import qlmaas
        from jobledger.registry import Registry
        from standins.qlmaas_connection import QLMaaSStandIn, QPU
        from test_provider_qlmaas import bell_job
        qlmaas.CONNECTION_FACTORY = lambda **kw: QLMaaSStandIn({str(standin.root)!r}, **kw)
        Registry.acknowledge = lambda *a, **k: os._exit(3)
        jobledger.connect(profile="qlm").submit(bell_job(), QPU)
        """
    )
    assert died.returncode == 3, died.stderr
    assert standin.job_ids() == ["Job1"]
    standin.resume()
    with jobledger.connect(profile="qlm") as conn:
        (pending,) = conn.registry.query(limit=None)
        assert pending.submit_state == "pending" and pending.job_id is None
        assert conn.sync().resolved == 1
        (job,) = conn.jobs()
        assert job.job_id == "Job1"
        assert probabilities(job.result(timeout=30)) == {"|00>": 0.5, "|11>": 0.5}
    assert standin.job_ids() == ["Job1"]


def test_refused_credentials_raise_authentication_error_and_keep_rows(
    standin: QLMaaSStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    standin.pause()
    with jobledger.connect(profile="qlm") as conn:
        job = conn.submit(bell_job(), QPU)
    standin.revoke("ada")
    with jobledger.connect(profile="qlm") as conn:
        with pytest.raises(AuthenticationError, match="profile 'qlm'"):
            conn.sync()
        with pytest.raises(AuthenticationError, match="profile 'qlm'"):
            conn.job(job.job_id).refresh()
        (kept,) = conn.registry.query(limit=None)
        assert kept.job_id == job.job_id and not kept.status.is_final
    monkeypatch.delenv("QLM_PASSWD")
    monkeypatch.setenv("NETRC", str(standin.root / "no-netrc"))
    with jobledger.connect(profile="qlm") as conn:
        with pytest.raises(AuthenticationError, match="QLM_USER"):
            conn.submit(bell_job(), QPU)  # refused before anything is recorded or prompted
        assert conn.registry.count() == 1


def test_sync_records_a_job_submitted_with_the_client(standin: QLMaaSStandIn) -> None:
    outside = standin.get_qpu(QPU)().submit(bell_job(nbshots=50))
    with jobledger.connect(profile="qlm") as conn:
        report = conn.sync()
        assert report.new == 1
        job = conn.job(outside.job_id)
        assert job.backend() == QPU
        result = job.result(timeout=30)
        assert sum(s.probability or 0 for s in result.results[0].raw_data) == pytest.approx(1)
        assert result.results[0].meta_data.get("nbshots") in (None, "50")
        assert job.get_batch().jobs[0].nbshots == 50
