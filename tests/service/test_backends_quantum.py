"""The quantum backends as the service offers them: listing, params, refusals, and
what a service without an SDK does (hides the backend, names the extra on submit)."""

from __future__ import annotations

import base64
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import requests

from jobledger import codecs

# myQLM's module loader emits an ImportWarning on Python 3.11+.
pytestmark = pytest.mark.filterwarnings("ignore::ImportWarning")


def submit_raw(
    http: Any, name: str, data: bytes, media_type: str, params: dict[str, Any] | None = None
) -> Any:
    body = {
        "backend": name,
        "params": params or {},
        "batch": {"media_type": media_type, "data": base64.b64encode(data).decode()},
    }
    return http.post("/v1/jobs", json=body)


def test_quantum_backends_are_listed_with_their_sdk_versions(http: Any) -> None:
    listed = {b["name"]: b for b in http.get("/v1/backends").json()["backends"]}
    expected = {
        "qiskit-sampler": "qiskit",
        "qiskit-estimator": "qiskit",
        "braket-local": "amazon-braket-sdk",
        "myqlm": "myqlm",
    }
    for name, distribution in expected.items():
        assert listed[name]["version"] == metadata.version(distribution)
        assert "param" in listed[name]["description"]


@pytest.mark.parametrize(
    ("backend", "params", "message"),
    [
        ("qiskit-sampler", {"shots": 0}, "param 'shots' must be an integer >= 1"),
        ("qiskit-sampler", {"backend": "fake_nowhere"}, "fake_manila"),
        ("qiskit-sampler", {"seed": -1}, "param 'seed'"),
        ("qiskit-estimator", {"precision": -0.1}, "param 'precision' must be a number >= 0"),
        ("qiskit-estimator", {"shots": 10}, "unknown params shots; this backend takes: backend"),
        ("braket-local", {"device": "braket_gpu"}, "one of braket_sv, braket_dm"),
        ("braket-local", {"shots": -1}, "param 'shots' must be an integer >= 0"),
        ("myqlm", {"qpu": "Feynman"}, "param 'qpu' must be one of PyLinalg, CLinalg"),
    ],
)
def test_bad_params_are_refused_naming_what_is_allowed(
    http: Any, backend: str, params: dict[str, Any], message: str
) -> None:
    answer = submit_raw(http, backend, b"[]", "application/json", params)
    assert answer.status_code == 422
    assert message in answer.json()["error"]["message"]


def test_wrong_batch_fails_the_job_with_a_clear_message(http: Any) -> None:
    answer = submit_raw(http, "myqlm", b"[1, 2]", "application/json")
    assert answer.status_code == 201
    info = http.wait(answer.json()["id"], timeout=60)
    assert info["status"] == "ERROR"
    assert "myqlm runs a qat.core Job or Batch, not list" in info["message"]


def test_braket_program_with_include_is_refused_on_the_service(http: Any, tmp_path: Path) -> None:
    from braket.ir.openqasm import Program

    secret = tmp_path / "service-side.inc"
    secret.write_text("gate planted q { x q; }\n")
    source = f'OPENQASM 3.0;\ninclude "{secret}";\nqubit[1] q;\nplanted q[0];\n'
    data, media_type = codecs.encode(Program(source=source, inputs={}))
    answer = submit_raw(http, "braket-local", data, media_type, {"shots": 10})
    info = http.wait(answer.json()["id"], timeout=60)
    assert info["status"] == "ERROR"
    assert "include statements are refused" in info["message"]


def test_a_service_without_an_sdk_hides_its_backend_and_names_the_extra(
    service_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "no-qat"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import importlib.abc, sys\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'qat' or name.startswith('qat.'):\n"
        "            raise ImportError(name + ' is blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(blocker))
    running = service_factory()
    headers = running.headers()
    with requests.get(running.url + "/v1/backends", headers=headers, timeout=10) as answer:
        names = {b["name"] for b in answer.json()["backends"]}
    assert "myqlm" not in names and {"echo", "qiskit-sampler", "braket-local"} <= names

    body = {"backend": "myqlm", "batch": {"media_type": "application/json", "data": "W10="}}
    with requests.post(running.url + "/v1/jobs", json=body, headers=headers, timeout=10) as answer:
        assert answer.status_code == 422
        assert "pip install 'jobledger[qlm]'" in answer.json()["error"]["message"]
