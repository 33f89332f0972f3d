"""Executors: where the reference service runs its jobs.

An executor takes queued jobs from the service's :class:`~jobledger.service.store.JobStore`
in FIFO order, runs each with its backend, and reports status, logs, interim results
and the result back; the store stays the only writer. :mod:`.process` is the local
pool of worker processes (the default). Modules here may import ``jobledger.service``
(store, blobs, worker protocol) and ``jobledger.status``; never the client.
"""

from __future__ import annotations

from jobledger.service.executors.process import Executor

__all__ = ["Executor"]
