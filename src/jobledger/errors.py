"""The exception hierarchy of jobledger.

Every error jobledger raises derives from :class:`JobledgerError`. Some also derive
from a built-in class so that generic handlers keep working: ``JobNotFoundError`` is
a ``KeyError``, ``JobTimeoutError`` a ``TimeoutError`` and ``OfflineError`` a
``ConnectionError``. Messages name the job, path or URL concerned and say what to do.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "CacheCorruptionError",
    "CodecError",
    "ConfigError",
    "JobCancelledError",
    "JobFailureError",
    "JobNotFoundError",
    "JobTimeoutError",
    "JobledgerError",
    "OfflineError",
    "RegistryError",
    "ResultNotReadyError",
    "ServiceError",
    "StorageFullError",
]


class JobledgerError(Exception):
    """Base class of every error raised by jobledger."""


class ConfigError(JobledgerError):
    """The configuration (file, profile or environment) is invalid."""


class RegistryError(JobledgerError):
    """The local registry cannot be opened, migrated or written."""


class ServiceError(JobledgerError):
    """The job service answered with an error.

    :ivar status_code: the HTTP status code (``None`` when not from HTTP).
    :ivar code: the service's machine-readable error code, if any.
    :ivar message: the service's human-readable message.
    """

    def __init__(
        self, message: str, *, status_code: int | None = None, code: str | None = None
    ) -> None:
        self.status_code = status_code
        self.code = code
        self.message = message
        super().__init__(message)


class AuthenticationError(ServiceError):
    """The service refused the token (missing, wrong or revoked)."""


class JobNotFoundError(JobledgerError, KeyError):
    """No job with that id or alias is known (locally or on the service)."""

    def __str__(self) -> str:
        # KeyError's __str__ quotes its argument; a message reads better plain.
        return str(self.args[0]) if self.args else ""


class ResultNotReadyError(JobledgerError):
    """The job is not in a final state yet, so it has no result."""


class JobFailureError(JobledgerError):
    """The job failed on the service; the message is the service's reason."""

    def __init__(self, message: str, *, job_id: str | None = None) -> None:
        self.job_id = job_id
        super().__init__(message)


class JobCancelledError(JobledgerError):
    """The job was cancelled, so it has no result."""


class JobTimeoutError(JobledgerError, TimeoutError):
    """The service answered, but the job did not finish within the timeout."""


class OfflineError(JobledgerError, ConnectionError):
    """The service cannot be reached (or offline mode is on) and what was asked
    for is not in the local store."""


class CacheCorruptionError(JobledgerError):
    """Bytes in the local store do not match the digest recorded for them."""


class CodecError(JobledgerError, ValueError):
    """Bytes cannot be decoded: an unknown media type, malformed bytes, or an SDK
    that is not installed (the message names the extra to install)."""


class StorageFullError(JobledgerError, OSError):
    """The disk holding jobledger's files is full (or over quota); nothing was recorded."""
