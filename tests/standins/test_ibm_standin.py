"""The real qiskit-ibm-runtime SDK against the IBM stand-in, over HTTP on loopback.

These tests check that the stand-in is faithful enough for the SDK's public
objects (``QiskitRuntimeService``, ``SamplerV2``/``EstimatorV2`` with
``mode=backend``, ``RuntimeJobV2``) to work unchanged, and that its test controls
(paused queue, lost answers, failures, revoked keys, request counters) behave.
"""

from __future__ import annotations

import re
import socket
from typing import Any

import pytest
from qiskit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp
from qiskit.transpiler import generate_preset_pass_manager
from qiskit_ibm_runtime import EstimatorV2, QiskitRuntimeService, SamplerV2
from qiskit_ibm_runtime.accounts.exceptions import InvalidAccountError
from qiskit_ibm_runtime.exceptions import (
    IBMNotAuthorizedError,
    IBMRuntimeError,
    RuntimeInvalidStateError,
    RuntimeJobFailureError,
    RuntimeJobNotFound,
)

from .ibm_fixtures import (
    SDK_PRIMITIVE_DEPRECATIONS,
    NonLoopbackConnection,
    ibm_service,
    ibm_standin,
    loopback_guard,
)
from .ibm_runtime import IBMStandIn

__all__ = ["ibm_service", "ibm_standin"]  # fixtures used by name below

pytestmark = SDK_PRIMITIVE_DEPRECATIONS

XID = re.compile(r"^[a-v][0-9a-v]{19}$")
LIST = "GET /api/v1/jobs"


def bell(backend: Any) -> QuantumCircuit:
    """A Bell-pair circuit transpiled for *backend* (an ISA circuit)."""
    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.measure_all()
    return generate_preset_pass_manager(optimization_level=1, backend=backend).run(circuit)


def sample(
    service: QiskitRuntimeService, *, tags: list[str] | None = None, shots: int = 200
) -> Any:
    backend = service.backend("ibm_nairobi")
    sampler = SamplerV2(mode=backend)
    if tags:
        sampler.options.environment.job_tags = tags
    return sampler.run([bell(backend)], shots=shots)


def test_service_init_resolves_the_instance_through_iam_and_search(
    ibm_standin: IBMStandIn, ibm_service: QiskitRuntimeService
) -> None:
    assert ibm_service.active_instance() == ibm_standin.instance
    assert [i["crn"] for i in ibm_service.instances()] == [ibm_standin.instance]
    counts = ibm_standin.requests
    assert counts["POST /iam/identity/token"] >= 1
    assert counts["POST /global-search/v3/resources/search"] == 1
    assert counts["GET /global-catalog/api/v1/{id}"] == 1
    sent = [r for r in ibm_standin.request_log if r.route.startswith("GET /api/v1/")]
    assert sent and all(r.headers["Service-CRN"] == ibm_standin.instance for r in sent)
    assert all(r.headers["Authorization"].startswith("Bearer ") for r in sent)
    assert all(r.headers["IBM-API-Version"] for r in sent)


def test_backends_are_real_device_snapshots(ibm_service: QiskitRuntimeService) -> None:
    backends = {b.name: b for b in ibm_service.backends()}
    assert set(backends) == {"ibm_nairobi", "ibmq_manila"}
    nairobi = backends["ibm_nairobi"]
    assert nairobi.num_qubits == 7
    assert "cx" in nairobi.target.operation_names
    status = nairobi.status()
    assert status.operational and status.status_msg == "active"
    assert nairobi.properties().backend_name == "ibm_nairobi"


def test_sampler_job_runs_and_returns_counts(
    ibm_standin: IBMStandIn, ibm_service: QiskitRuntimeService
) -> None:
    with ibm_standin.queue_paused():
        job = sample(ibm_service, tags=["bell"])
        assert job.status() == "QUEUED"
    assert XID.match(job.job_id()) and job.job_id().isidentifier()
    result = job.result()
    assert job.status() == "DONE"
    counts = result[0].data.meas.get_counts()
    assert sum(counts.values()) == 200
    assert counts.get("00", 0) + counts.get("11", 0) > 160
    assert 60 < counts.get("00", 0) < 140
    assert len(result.metadata["execution"]["execution_spans"]) == 1
    recorded = ibm_standin.jobs[job.job_id()]
    assert recorded.status == "Completed" and recorded.program_id == "sampler"
    assert recorded.tags == ["bell"]


def test_job_metadata_inputs_logs_and_usage(ibm_service: QiskitRuntimeService) -> None:
    job = sample(ibm_service, shots=50)
    job.wait_for_final_state(timeout=30)
    metrics = job.metrics()
    stamps = metrics["timestamps"]
    assert stamps["created"] <= stamps["running"] <= stamps["finished"]
    assert job.usage() == metrics["usage"]["quantum_seconds"] >= 1
    assert job.job_id() in job.logs()
    inputs = job.inputs
    circuit, _, shots = inputs["pubs"][0]
    assert isinstance(circuit, QuantumCircuit) and shots == 50
    assert inputs["version"] == 2
    assert job.creation_date is not None and not job.tags


def test_estimator_expectation_value(ibm_service: QiskitRuntimeService) -> None:
    backend = ibm_service.backend("ibmq_manila")
    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    isa = generate_preset_pass_manager(optimization_level=1, backend=backend).run(circuit)
    observable = SparsePauliOp("ZZ").apply_layout(isa.layout)
    job = EstimatorV2(mode=backend).run([(isa, observable)])
    result = job.result()
    assert job.status() == "DONE"
    assert 0.8 < float(result[0].data.evs) <= 1.1
    assert result[0].metadata["target_precision"] > 0


def test_jobs_filter_by_tag_and_pending_with_one_listing_call(
    ibm_standin: IBMStandIn, ibm_service: QiskitRuntimeService
) -> None:
    with ibm_standin.queue_paused():
        first = sample(ibm_service, tags=["alpha", "shared"])
        second = sample(ibm_service, tags=["beta", "shared"])
        ibm_standin.reset_requests()
        assert [j.job_id() for j in ibm_service.jobs(job_tags=["alpha"])] == [first.job_id()]
        shared = ibm_service.jobs(job_tags=["shared"])
        assert [j.job_id() for j in shared] == [second.job_id(), first.job_id()]
        pending = {j.job_id() for j in ibm_service.jobs(pending=True)}
        assert pending == {first.job_id(), second.job_id()}
        assert ibm_service.jobs(pending=False) == []
        assert ibm_standin.requests[LIST] == 4
    second.wait_for_final_state(timeout=30)
    assert {j.job_id() for j in ibm_service.jobs(pending=False)} == {
        first.job_id(),
        second.job_id(),
    }
    oldest_first = ibm_service.jobs(descending=False, backend_name="ibm_nairobi")
    assert [j.job_id() for j in oldest_first] == [first.job_id(), second.job_id()]
    assert ibm_service.jobs(created_after=ibm_service.job(second.job_id()).creation_date) != []


def test_jobs_pagination_follows_the_service_page_size(
    ibm_standin: IBMStandIn, ibm_service: QiskitRuntimeService
) -> None:
    ibm_standin.max_page_size = 2
    with ibm_standin.queue_paused():
        ids = [sample(ibm_service, tags=["page"]).job_id() for _ in range(5)]
        ibm_standin.reset_requests()
        listed = ibm_service.jobs(limit=5, job_tags=["page"])
        assert [j.job_id() for j in listed] == ids[::-1]
        assert ibm_standin.requests[LIST] == 3
        offsets = [r.query.get("offset", ["0"])[0] for r in ibm_standin.request_log]
        assert offsets == ["0", "2", "4"]
        for job_id in ids:
            ibm_service.job(job_id).cancel()


def test_cancel_a_queued_job(ibm_standin: IBMStandIn, ibm_service: QiskitRuntimeService) -> None:
    with ibm_standin.queue_paused():
        job = sample(ibm_service)
        job.cancel()
    assert job.status() == "CANCELLED"
    again = QiskitRuntimeService(**ibm_standin.endpoints.service_kwargs()).job(job.job_id())
    assert again.status() == "CANCELLED"
    with pytest.raises(RuntimeInvalidStateError):
        again.result()
    recorded = ibm_standin.jobs[job.job_id()]
    assert recorded.status == "Cancelled" and recorded.running is None


def test_cancel_a_finished_job_is_a_conflict(ibm_service: QiskitRuntimeService) -> None:
    job = sample(ibm_service, shots=20)
    job.wait_for_final_state(timeout=30)
    with pytest.raises(RuntimeInvalidStateError):
        job.cancel()


def test_job_by_id_from_a_fresh_service(
    ibm_standin: IBMStandIn, ibm_service: QiskitRuntimeService
) -> None:
    job = sample(ibm_service, tags=["again"])
    counts = job.result()[0].data.meas.get_counts()
    fresh = QiskitRuntimeService(**ibm_standin.endpoints.service_kwargs())
    found = fresh.job(job.job_id())
    assert found.status() == "DONE"
    assert found.primitive_id == "sampler" and found.tags == ["again"]
    assert found.backend().name == "ibm_nairobi"
    assert found.result()[0].data.meas.get_counts() == counts
    with pytest.raises(RuntimeJobNotFound):
        fresh.job("d0000000000000000000")


def test_update_tags_and_device_status(
    ibm_standin: IBMStandIn, ibm_service: QiskitRuntimeService
) -> None:
    job = sample(ibm_service, tags=["old"], shots=20)
    assert job.update_tags(["new", "newer"]) in (["new", "newer"], ["newer", "new"])
    assert sorted(ibm_standin.jobs[job.job_id()].tags) == ["new", "newer"]
    ibm_standin.set_device_status("ibm_nairobi", operational=True, status_msg="maintenance")
    assert ibm_service.backend("ibm_nairobi").status().status_msg == "maintenance"
    with pytest.warns(UserWarning, match="currently has a status of maintenance"):
        sample(ibm_service, shots=20)


def test_failed_job_reports_the_reason(
    ibm_standin: IBMStandIn, ibm_service: QiskitRuntimeService
) -> None:
    ibm_standin.fail_next_job("Qubit 3 lost calibration", code=1517)
    job = sample(ibm_service)
    with pytest.raises(RuntimeJobFailureError, match="Qubit 3 lost calibration"):
        job.result()
    assert job.status() == "ERROR"
    assert "1517" in (job.error_message() or "")


def test_delete_job(ibm_standin: IBMStandIn, ibm_service: QiskitRuntimeService) -> None:
    job = sample(ibm_service, shots=20)
    job.wait_for_final_state(timeout=30)
    ibm_service.delete_job(job.job_id())
    assert job.job_id() not in ibm_standin.jobs
    with pytest.raises(RuntimeJobNotFound):
        ibm_service.job(job.job_id())


def test_lost_submit_answer_still_creates_the_job(
    ibm_standin: IBMStandIn, ibm_service: QiskitRuntimeService
) -> None:
    ibm_standin.drop_next_submit_response()
    with pytest.raises(IBMRuntimeError, match="Failed to run program"):
        sample(ibm_service)
    (created,) = ibm_standin.jobs.values()
    listed = ibm_service.jobs()
    assert [j.job_id() for j in listed] == [created.id]
    assert ibm_standin.requests["POST /api/v1/jobs"] == 1


def test_bad_gateway_on_submit_makes_the_sdk_submit_twice(
    ibm_standin: IBMStandIn, ibm_service: QiskitRuntimeService
) -> None:
    ibm_standin.drop_next_submit_response("bad_gateway")
    job = sample(ibm_service)
    assert ibm_standin.requests["POST /api/v1/jobs"] == 2
    assert len(ibm_standin.jobs) == 2 and job.job_id() in ibm_standin.jobs


def test_wrong_api_key_is_refused_at_init(ibm_standin: IBMStandIn) -> None:
    kwargs = ibm_standin.endpoints.service_kwargs(token="not-the-key")
    with pytest.raises(InvalidAccountError, match="valid API token"):
        QiskitRuntimeService(**kwargs)
    assert ibm_standin.requests["POST /iam/identity/token"] == 1
    assert ibm_standin.request_log[-1].status == 400


def test_revoked_key_makes_api_calls_unauthorized(
    ibm_standin: IBMStandIn, ibm_service: QiskitRuntimeService
) -> None:
    ibm_standin.revoke_key()
    with pytest.raises(IBMNotAuthorizedError):
        ibm_service.jobs()
    new_key = ibm_standin.rotate_key()
    rebuilt = QiskitRuntimeService(**ibm_standin.endpoints.service_kwargs(token=new_key))
    assert rebuilt.jobs() == []


def test_without_the_env_the_sdk_would_leave_loopback(
    ibm_standin: IBMStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ibm_standin.endpoints.env():
        monkeypatch.delenv(name)
    with loopback_guard() as refused, pytest.raises(InvalidAccountError):
        QiskitRuntimeService(**ibm_standin.endpoints.service_kwargs())
    assert refused and refused[0].startswith("iam.")


def test_loopback_guard_refuses_other_hosts() -> None:
    with loopback_guard() as refused:
        with pytest.raises(NonLoopbackConnection):
            socket.create_connection(("192.0.2.1", 443), timeout=1)
        with pytest.raises(NonLoopbackConnection):
            socket.getaddrinfo("quantum.cloud.ibm.com", 443)
        server = socket.create_server(("127.0.0.1", 0))
        with server, socket.create_connection(server.getsockname(), timeout=1):
            pass
    assert refused == ["192.0.2.1", "quantum.cloud.ibm.com"]
