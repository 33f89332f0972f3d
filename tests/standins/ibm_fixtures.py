"""Pytest fixtures that start the IBM stand-in and point the real SDK at it, loopback only.

Import the fixtures into a test module (``from standins.ibm_fixtures import
ibm_standin, ibm_service``) and mark it with ``SDK_PRIMITIVE_DEPRECATIONS``:
``qiskit-ibm-runtime`` 0.50+ deprecates ``SamplerV2``/``EstimatorV2`` with a
``DeprecationWarning`` on construction, which ``filterwarnings = error`` would
turn into a failure. ``loopback_guard`` records (and refuses) every connection
or name lookup that is not for 127.0.0.1, so a test fails loudly if the SDK
tries to reach IBM (``iam.cloud.ibm.com``, ``quantum.cloud.ibm.com``, ...).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from .ibm_runtime import IBMStandIn

SDK_PRIMITIVE_DEPRECATIONS = [
    pytest.mark.filterwarnings("ignore:The SamplerV2 class is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The EstimatorV2 class is deprecated:DeprecationWarning"),
]
# Environment variables through which the SDK could be sent elsewhere.
_SDK_ENV = (
    "QISKIT_IBM_TOKEN",
    "QISKIT_IBM_URL",
    "QISKIT_IBM_INSTANCE",
    "QISKIT_IBM_CHANNEL",
    "QISKIT_FUNCTIONS_EXPERIMENTAL",
    "IBM_CREDENTIALS_FILE",
)
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class NonLoopbackConnection(ConnectionRefusedError):
    """A test tried to reach a host other than 127.0.0.1."""


@contextmanager
def loopback_guard() -> Iterator[list[str]]:
    """Refuse connections and name lookups off 127.0.0.1; yield the list of refused hosts.

    The guard raises ``NonLoopbackConnection`` (a ``ConnectionRefusedError``) at the
    attempt, but SDK code may swallow it, so callers should also assert that the
    yielded list is empty at the end.
    """
    attempts: list[str] = []
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def check(host: Any) -> None:
        if str(host) not in _LOOPBACK:
            attempts.append(str(host))
            raise NonLoopbackConnection(f"Test tried to reach {host}; only 127.0.0.1 is allowed.")

    def connect(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            check(address[0])
        real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            check(address[0])
        return real_connect_ex(sock, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        check(host.decode() if isinstance(host, bytes) else host)
        return real_getaddrinfo(host, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", connect)
        patch.setattr(socket.socket, "connect_ex", connect_ex)
        patch.setattr(socket, "getaddrinfo", getaddrinfo)
        yield attempts


@pytest.fixture
def ibm_standin(monkeypatch: pytest.MonkeyPatch) -> Iterator[IBMStandIn]:
    """A started stand-in with fast jobs; the SDK's IBM Cloud URLs point at it.

    Fails the test if anything tried to leave the loopback interface.
    """
    with loopback_guard() as refused:
        standin = IBMStandIn(queued_seconds=0.05, running_seconds=0.05)
        endpoints = standin.start()
        for name in _SDK_ENV:
            monkeypatch.delenv(name, raising=False)
        for name, value in endpoints.env().items():
            monkeypatch.setenv(name, value)
        try:
            yield standin
        finally:
            standin.stop()
    assert not refused, f"Non-loopback connections were attempted: {refused}"


@pytest.fixture
def ibm_service(ibm_standin: IBMStandIn) -> Any:
    """A ``QiskitRuntimeService`` connected to the stand-in."""
    from qiskit_ibm_runtime import QiskitRuntimeService

    return QiskitRuntimeService(**ibm_standin.endpoints.service_kwargs())


def save_ibm_profile(
    standin: IBMStandIn, monkeypatch: pytest.MonkeyPatch, name: str = "ibm"
) -> str:
    """Save an ``ibm-quantum`` profile *name* pointing at the started *standin*."""
    from jobledger.config import save_profile
    from jobledger.providers.ibm import ENV_API_URL

    endpoints = standin.endpoints
    monkeypatch.setenv(ENV_API_URL, endpoints.api_url)
    save_profile(
        name,
        url=endpoints.url,
        token=endpoints.api_key,
        provider="ibm-quantum",
        instance=endpoints.instance,
    )
    return name
