"""What importing jobledger loads: the read path must stay light."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("requests", "urllib3", "sqlite_utils", "click", "starlette", "uvicorn", "numpy")


@pytest.mark.parametrize(
    "statement",
    [
        "import jobledger",
        "import jobledger.jobs",
        "import jobledger.jobs, jobledger.client.job, jobledger.store",
        "import jobledger.client.connection",
        "import jobledger.service.local",
    ],
)
def test_light_imports(statement: str) -> None:
    code = f"{statement}; import sys; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


SDKS = ("qiskit", "qiskit_aer", "qiskit_ibm_runtime", "braket", "qat", "thrift")


@pytest.mark.parametrize(
    "statement",
    [
        "import jobledger",
        "import jobledger.jobs",
        "from jobledger import codecs; assert codecs.decode(b'[1]', 'application/json') == [1]",
        "from jobledger.service.plugin import load_backends; assert 'myqlm' in load_backends()",
    ],
)
def test_no_quantum_sdk_is_imported(statement: str) -> None:
    code = (
        f"{statement}; import sys; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {SDKS!r}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_public_names() -> None:
    import jobledger

    for name in jobledger.__all__:
        assert getattr(jobledger, name) is not None
    assert issubclass(jobledger.JobNotFoundError, KeyError)
    assert issubclass(jobledger.JobTimeoutError, TimeoutError)
    assert issubclass(jobledger.OfflineError, ConnectionError)
    assert jobledger.JobStatus.DONE == "DONE"


# What a cold read must not load besides: dataclasses brings inspect, ast and dis, and
# typing is only for the type checker (docs/architecture.md, "The cold read path").
NOT_ON_THE_READ_PATH = ("dataclasses", "inspect", "typing")


def test_reading_a_stored_result_loads_no_network_nor_diskcache(tmp_path: Path) -> None:
    """``from jobledger.jobs import X; X.result()`` of a stored result, in a new process:
    only the registry and the store's index are read, through sqlite3, and nothing is
    imported that only defining records or type hints would need."""
    from jobledger.codecs import encode
    from jobledger.ids import new_job_id
    from jobledger.paths import Paths
    from jobledger.providers import RemoteJob
    from jobledger.registry import BlobRef, Registry
    from jobledger.status import JobStatus
    from jobledger.store import Store

    home = tmp_path / "home"
    paths = Paths(home / "data", home / "cache", home / "config", home / "runtime")
    job_id = new_job_id()
    registry = Registry(paths.registry)
    registry.apply_infos("svc-imports", [RemoteJob(job_id, JobStatus.DONE, "echo")])
    data, media_type = encode({"answer": 42})
    with Store(paths.store) as store:
        digest = store.put_bytes(data)
    (record,) = registry.find(job_id)
    registry.set_result(record.pk, BlobRef(digest, len(data), media_type))
    registry.close()
    watched = (*HEAVY, *SDKS, *NOT_ON_THE_READ_PATH, "diskcache", "socket", "uuid", "pickle")
    code = (
        "import sys; before = set(sys.modules); "  # what the interpreter's start-up loaded
        f"from jobledger.jobs import {job_id} as job; value = job.result(); "
        "print(value, sorted(m for m in set(sys.modules) - before "
        f"if m.split('.')[0] in {watched!r}))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBLEDGER_")}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**env, "JOBLEDGER_HOME": str(home)},
    )
    assert out.stdout.strip() == "{'answer': 42} []"
