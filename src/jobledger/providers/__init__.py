"""Providers: the one place that talks to a job service.

:mod:`.base` defines the :class:`~jobledger.providers.base.Provider` interface and the
frozen records that cross it; :mod:`.jobledger_http` is jobledger's own protocol v1 over
HTTP. Each other job service (an SDK's cloud) gets a module of its own here, imported
only when a profile names it. Modules here may import :mod:`jobledger.errors`,
:mod:`jobledger.status`, :mod:`jobledger.codecs` and their SDK or ``requests``; never the
registry, the store or the client: recording what a provider returns is the client's job.
"""

from __future__ import annotations

from jobledger.providers.base import (
    Download,
    Event,
    JobQuery,
    Provider,
    RemoteBackend,
    RemoteBlob,
    RemoteJob,
    ServiceHealth,
    StatusBatch,
    Submission,
)

__all__ = [
    "Download",
    "Event",
    "JobQuery",
    "Provider",
    "RemoteBackend",
    "RemoteBlob",
    "RemoteJob",
    "ServiceHealth",
    "StatusBatch",
    "Submission",
]
