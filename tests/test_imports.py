"""What importing jobledger loads: the read path must stay light."""

from __future__ import annotations

import subprocess
import sys

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
