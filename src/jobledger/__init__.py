"""jobledger: a persistent local job tracker with a verified cache.

Every job submitted through jobledger is recorded in a local SQLite registry before
the request leaves the machine; results, once downloaded, are kept in a verified local
store. Import a recorded job anywhere with ``from jobledger.jobs import <id or alias>``.

This module imports nothing heavy: the network stack loads only when a call needs it.
"""

from __future__ import annotations

from jobledger.errors import (
    AuthenticationError,
    CacheCorruptionError,
    CodecError,
    ConfigError,
    JobCancelledError,
    JobFailureError,
    JobledgerError,
    JobNotFoundError,
    JobTimeoutError,
    OfflineError,
    RegistryError,
    ResultNotReadyError,
    ServiceError,
)
from jobledger.status import JobStatus

TYPE_CHECKING = False  # typing's flag without importing typing (see docs/architecture.md)
if TYPE_CHECKING:
    from typing import Any

    from jobledger.client.connection import Connection
    from jobledger.client.job import Job
    from jobledger.job_info import JobInfo

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "CacheCorruptionError",
    "CodecError",
    "ConfigError",
    "Connection",
    "Job",
    "JobCancelledError",
    "JobFailureError",
    "JobInfo",
    "JobNotFoundError",
    "JobStatus",
    "JobTimeoutError",
    "JobledgerError",
    "OfflineError",
    "RegistryError",
    "ResultNotReadyError",
    "ServiceError",
    "__version__",
    "connect",
]


def connect(
    url: str | None = None,
    token: str | None = None,
    *,
    profile: str | None = None,
    offline: bool | None = None,
    verify: bool | None = None,
) -> Connection:
    """Open a :class:`Connection` to a job service.

    Resolution order: explicit arguments, then ``JOBLEDGER_URL`` /
    ``JOBLEDGER_TOKEN`` / ``JOBLEDGER_OFFLINE``, then the config file's profile, and
    finally the embedded local service, started on demand when first needed.

    :param url: the service's base URL, e.g. ``http://host:8765``.
    :param token: the bearer token for that service.
    :param profile: a profile name from the config file.
    :param offline: never touch the network; read only what is recorded or cached.
    :param verify: verify TLS certificates (default true).
    :raises ConfigError: when the configuration is invalid.
    """
    from jobledger.client.connection import Connection

    return Connection.open(url=url, token=token, profile=profile, offline=offline, verify=verify)


def __getattr__(name: str) -> Any:
    if name == "Connection":
        from jobledger.client.connection import Connection

        return Connection
    if name == "Job":
        from jobledger.client.job import Job

        return Job
    if name == "JobInfo":
        from jobledger.job_info import JobInfo

        return JobInfo
    raise AttributeError(f"module 'jobledger' has no attribute {name!r}")
