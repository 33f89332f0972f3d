"""The backend process of a Dask job: the pool's worker protocol, started by ``subprocess``.

The Dask executor's supervisor task (:mod:`.dask_supervisor`) cannot start workers
the way the local pool does: a Dask worker under a nanny is a daemonic process, and
:mod:`multiprocessing` refuses to let those have children. So the supervisor runs
``python -m jobledger.service.executors.dask_child CONN LIFELINE PARENT`` with the
two descriptors inherited, and this module wraps them as
:class:`~multiprocessing.connection.Connection` objects and runs the very same
:func:`~jobledger.service.worker.worker_main` loop: JSON orders in, JSON messages
out, results written as blobs. Cancellation is ``SIGUSR1``, which sets the flag
that ``ctx.cancelled()`` reads; the process says it is ready once that handler is in
place. A process that was asked to cancel is never reused, so the flag is never reset.
"""

from __future__ import annotations

import signal
import sys
from multiprocessing.connection import Connection
from types import FrameType

from jobledger.service.executors.dask_supervisor import CANCEL_SIGNAL, READY
from jobledger.service.worker import worker_main

__all__ = ["main"]


class _SignalFlag:
    """The cancel flag ``worker_main`` reads through ``.value``; set by a signal."""

    def __init__(self) -> None:
        self.value = 0
        signal.signal(CANCEL_SIGNAL, self._set)

    def _set(self, signum: int, frame: FrameType | None) -> None:
        self.value = 1


def main(argv: list[str]) -> None:
    """Run the worker loop on the descriptors named in *argv* (conn, lifeline, parent pid)."""
    conn_fd, lifeline_fd, parent_pid = (int(arg) for arg in argv)
    conn = Connection(conn_fd)
    lifeline = Connection(lifeline_fd, writable=False)
    flag = _SignalFlag()
    # Only now may the supervisor signal us: before the handler, SIGUSR1 would kill.
    conn.send_bytes(READY)
    worker_main(conn, flag, lifeline, parent_pid)


if __name__ == "__main__":
    main(sys.argv[1:])
