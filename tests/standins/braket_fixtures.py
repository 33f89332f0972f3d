"""Pytest fixtures that start the Braket stand-in and give boto3 fake credentials, loopback only.

Import them into a test module (``from standins.braket_fixtures import braket_standin``).
Every ``AWS_*`` variable that could send boto3 elsewhere (a profile, a role, a real
key) is removed and fake credentials are set, the config and credentials files point
nowhere, and ``loopback_guard`` fails the test if anything tried to reach a host other
than 127.0.0.1 (``braket.us-east-1.amazonaws.com``, the instance metadata service...).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from .braket_api import BraketStandIn, credentials_env
from .ibm_fixtures import loopback_guard

# Variables through which boto3 or the Braket SDK could be sent elsewhere.
_SDK_ENV_PREFIXES = ("AWS_", "AMZN_BRAKET_", "BRAKET_")


@pytest.fixture
def braket_standin(monkeypatch: pytest.MonkeyPatch) -> Iterator[BraketStandIn]:
    """A started stand-in; boto3 in this process and its children uses fake credentials."""
    with loopback_guard() as refused:
        for name in list(os.environ):
            if name.startswith(_SDK_ENV_PREFIXES):
                monkeypatch.delenv(name)
        for name, value in credentials_env().items():
            monkeypatch.setenv(name, value)
        standin = BraketStandIn().start()
        try:
            yield standin
        finally:
            standin.stop()
    assert not refused, f"Non-loopback connections were attempted: {refused}"


def save_braket_profile(
    standin: BraketStandIn,
    name: str = "aws",
    bucket: str = "jobledger-results",
    prefix: str = "runs",
) -> str:
    """Save a ``braket`` profile *name* whose API and S3 are the started *standin*."""
    from jobledger.config import save_profile

    save_profile(
        name,
        url="https://braket.amazonaws.com",
        provider="braket",
        options={
            "region": "us-east-1",
            "s3_bucket": bucket,
            "s3_prefix": prefix,
            "endpoint_url": standin.endpoint_url,
            "s3_endpoint_url": standin.s3_endpoint_url,
        },
    )
    return name
