"""jobledger in front of Amazon Braket: the real boto3 and Braket SDK against the stand-in.

Every test drives jobledger's Braket provider through a profile (``provider =
"braket"``) against the loopback stand-in of the Braket API and S3 under
``tests/standins/``, whose tasks run on Braket's local state-vector simulator: record
before send, a process killed after the request left, a lost answer, refused
credentials, tasks created with the SDK directly, offline reads in a fresh process,
cancel, failure and deletion of a task's files.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import boto3
import pytest
from braket.aws import AwsQuantumTask, AwsSession
from braket.circuits import Circuit
from braket.circuits.serialization import IRType

import jobledger
from jobledger.config import save_profile
from jobledger.errors import AuthenticationError, ConfigError, OfflineError, ServiceError
from jobledger.providers.braket import KEY_TAG, TASK_RESULT
from standins.braket_api import ACCESS_KEY, SV1, BraketStandIn
from standins.braket_fixtures import braket_standin, save_braket_profile

__all__ = ["braket_standin"]  # fixtures used by name below

BUCKET = "jobledger-results"
CREATE = "POST create"


@pytest.fixture
def profile(braket_standin: BraketStandIn, jobledger_home: Path) -> str:
    """A saved ``braket`` profile pointing at the stand-in."""
    return save_braket_profile(braket_standin, bucket=BUCKET)


def bell() -> Circuit:
    return Circuit().h(0).cnot(0, 1)


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        check=False,
    )


def sdk_session(standin: BraketStandIn) -> AwsSession:
    """An ``AwsSession`` on the stand-in, as a user of the SDK alone would build one."""
    boto = boto3.Session(region_name="us-east-1")
    client = boto.client("braket", endpoint_url=standin.endpoint_url)
    return AwsSession(boto_session=boto, braket_client=client)


def test_profile_options_are_checked_and_credentials_never_stored(
    profile: str, braket_standin: BraketStandIn, jobledger_home: Path
) -> None:
    save_profile("bare", url="https://braket.amazonaws.com", provider="braket")
    with pytest.raises(ConfigError, match=r"profile 'bare'.*'region'"):
        jobledger.connect(profile="bare").bind()
    with jobledger.connect(profile=profile) as conn:
        assert [b.name for b in conn.backends()] == [SV1]
        conn.submit(bell(), SV1, params={"shots": 10})
    for path in jobledger_home.rglob("*"):
        if path.is_file() and path.suffix in (".toml", ".json", ""):
            assert ACCESS_KEY.encode() not in path.read_bytes(), path


def test_submit_read_and_import_offline_in_a_fresh_process(
    profile: str, braket_standin: BraketStandIn
) -> None:
    with jobledger.connect(profile=profile) as conn:
        job = conn.submit(
            bell(), SV1, params={"shots": 100}, alias="bell_braket", tags=["demo", "team=q"]
        )
        arn = str(job.job_id)
        task = braket_standin.tasks[arn]
        (record,) = conn.registry.query(limit=None)
        assert task.client_token == record.idempotency_key
        assert task.tags == {"demo": "", "team": "q", KEY_TAG: record.idempotency_key}
        assert task.action == bell().to_ir(IRType.OPENQASM).json()
        job.wait_for_final_state(timeout=30)
        assert job.status() is jobledger.JobStatus.DONE
        ref = job.fetch_result()
        assert ref.media_type == TASK_RESULT
        stored = conn.store.get_bytes(ref.sha256, what="result")
        assert stored == braket_standin.objects[(BUCKET, f"{task.directory}/results.json")]
        counts = dict(job.result().measurement_counts)
        assert sum(counts.values()) == 100 and set(counts) <= {"00", "11"}
        assert set(job.tags) >= {"demo", "team=q"}
    braket_standin.stop()
    child = run_python(
        f"""
        import json
        import jobledger.jobs
        from jobledger.jobs import bell_braket
        by_arn = jobledger.jobs.get({arn!r})
        assert bell_braket.job_id == by_arn.job_id == {arn!r}
        print(json.dumps(dict(by_arn.result().measurement_counts), sort_keys=True))
        print(bell_braket.provenance["result_sha256"])
        """,
        JOBLEDGER_OFFLINE="1",
    )
    assert child.returncode == 0, child.stderr
    printed_counts, printed_digest = child.stdout.strip().splitlines()
    assert json.loads(printed_counts) == counts
    assert printed_digest == hashlib.sha256(stored).hexdigest()


def test_process_killed_after_send_is_resolved_by_client_token_without_duplicate(
    profile: str, braket_standin: BraketStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    died = run_python(
        f"""
        import os
        import jobledger
        from braket.circuits import Circuit
        from jobledger.registry import Registry
        Registry.acknowledge = lambda *a, **k: os._exit(3)
        jobledger.connect(profile={profile!r}).submit(
            Circuit().h(0).cnot(0, 1), {SV1!r}, params={{"shots": 10}})
        """
    )
    assert died.returncode == 3, died.stderr
    assert len(braket_standin.tasks) == 1
    # Credentials AWS refuses: the pending row stays pending, nothing is sent again.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAREVOKEDKEY000000")
    with jobledger.connect(profile=profile) as conn:
        with pytest.raises(AuthenticationError, match="profile 'aws'"):
            conn.sync()
        (pending,) = conn.registry.query(limit=None)
        assert pending.submit_state == "pending" and pending.job_id is None
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    with jobledger.connect(profile=profile) as conn:
        report = conn.sync()
        assert report.resolved == 1
        (job,) = conn.jobs()
        assert job.job_id in braket_standin.tasks
    assert braket_standin.requests[CREATE] == 2 and len(braket_standin.tasks) == 1


def test_lost_answer_is_retried_with_the_same_client_token(
    profile: str, braket_standin: BraketStandIn
) -> None:
    with jobledger.connect(profile=profile) as conn:
        braket_standin.drop_next_create()
        job = conn.submit(bell(), SV1, params={"shots": 10})
        (created,) = braket_standin.tasks
        assert job.job_id == created
        (record,) = conn.registry.query(limit=None)
        assert braket_standin.tasks[created].client_token == record.idempotency_key
        assert conn.sync().resolved == 0
    assert braket_standin.requests[CREATE] == 2


def test_refused_credentials_name_the_profile_and_keep_the_job(
    profile: str, braket_standin: BraketStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    braket_standin.pause()
    with jobledger.connect(profile=profile) as conn:
        job = conn.submit(bell(), SV1, params={"shots": 10})
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAREVOKEDKEY000000")
    with jobledger.connect(profile=profile) as conn:
        with pytest.raises(AuthenticationError, match=r"profile 'aws'.*UnrecognizedClient"):
            conn.job(str(job.job_id)).refresh()
        (kept,) = conn.registry.query(limit=None)
        assert kept.job_id == job.job_id and not kept.status.is_final


def test_sync_records_a_task_created_with_the_sdk(
    profile: str, braket_standin: BraketStandIn
) -> None:
    outside = AwsQuantumTask.create(
        sdk_session(braket_standin), SV1, bell(), (BUCKET, "elsewhere"), 20, quiet=True
    )
    braket_standin.wait_idle()
    with jobledger.connect(profile=profile) as conn:
        assert conn.sync().new == 1
        job = conn.job(outside.id)
        assert job.backend() == SV1
        assert job.status() is jobledger.JobStatus.DONE
        assert sum(job.result().measurement_counts.values()) == 20
        with pytest.raises(ServiceError, match="only in the local store"):
            job.get_batch()
        # An ARN not yet recorded is asked of Braket and recorded.
        second = AwsQuantumTask.create(
            sdk_session(braket_standin), SV1, bell(), (BUCKET, "elsewhere"), 5, quiet=True
        )
        assert conn.job(second.id).job_id == second.id
        listed = conn.jobs(remote=True, backend_name=SV1, limit=5)
        assert {j.job_id for j in listed} == {outside.id, second.id}


def test_cancel_failure_and_deleted_files(profile: str, braket_standin: BraketStandIn) -> None:
    with jobledger.connect(profile=profile) as conn:
        braket_standin.pause()
        queued = conn.submit(bell(), SV1, params={"shots": 10})
        assert queued.cancel() is True
        assert queued.status() is jobledger.JobStatus.CANCELLED
        braket_standin.fail_next_task()
        failed = conn.submit(bell(), SV1, params={"shots": 10})
        done = conn.submit(bell(), SV1, params={"shots": 10})
        braket_standin.resume()
        braket_standin.wait_idle()
        batch = conn.call(lambda p: p.statuses([failed.job_id, done.job_id, "arn:nope"]))
        states = {info.id: info for info in batch.found}
        assert states[failed.job_id].status is jobledger.JobStatus.ERROR
        assert "told to fail" in (states[failed.job_id].message or "")
        assert states[done.job_id].status is jobledger.JobStatus.DONE
        assert batch.missing == ["arn:nope"]
        assert done.cancel() is False
        task = braket_standin.tasks[str(done.job_id)]
        assert done.delete_files() is True
        assert done.status() is jobledger.JobStatus.DELETED
        assert not [k for (_, k) in braket_standin.objects if k.startswith(task.directory)]
        assert sum(done.result().measurement_counts.values()) == 10  # the local copy stays


def test_unreachable_endpoint_is_offline_and_keeps_the_submission_pending(
    profile: str, braket_standin: BraketStandIn
) -> None:
    with jobledger.connect(profile=profile) as conn:
        conn.bind()
        braket_standin.stop()
        with pytest.raises(OfflineError, match="recorded"):
            conn.submit(bell(), SV1, params={"shots": 10})
        (pending,) = conn.registry.query(limit=None)
        assert pending.submit_state == "pending"
