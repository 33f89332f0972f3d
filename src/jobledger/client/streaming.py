"""Following a job as it runs: interim results from its event stream, download progress.

:class:`EventStream` is the background thread behind :meth:`Job.stream_results
<jobledger.client.job.Job.stream_results>`: it follows the service's event stream
(resuming after the last event seen when the connection drops) and calls the user's
callback for every interim result until the job ends or the stream is stopped.
:func:`reporting` wraps a download's chunks to report progress for
:meth:`~jobledger.client.job.Job.fetch_result`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from jobledger.errors import JobledgerError
from jobledger.status import JobStatus

TYPE_CHECKING = False  # typing's flag without importing typing (see docs/architecture.md)
if TYPE_CHECKING:
    from typing import Any

    from jobledger.client.connection import Connection

__all__ = ["EventStream", "reporting"]


def reporting(
    chunks: Iterator[bytes], total: int | None, progress: Callable[[int, int | None], None]
) -> Iterator[bytes]:
    done = 0
    progress(0, total)
    for chunk in chunks:
        done += len(chunk)
        progress(done, total)
        yield chunk


class EventStream:
    """A background thread following a job's event stream for interim results."""

    def __init__(
        self, connection: Connection, job_id: str, callback: Callable[[str, Any], None]
    ) -> None:
        self._conn = connection
        self._job_id = job_id
        self._callback = callback
        self._stopped = threading.Event()
        self._response: Any = None
        self._thread = threading.Thread(
            target=self._run, name=f"jobledger-stream-{job_id}", daemon=True
        )

    def start(self) -> None:
        """Start following the stream."""
        self._thread.start()

    def stop(self) -> None:
        """Stop following it (closes the open response, joins the thread)."""
        self._stopped.set()
        response = self._response
        if response is not None:
            response.close()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _remember(self, response: Any) -> None:
        self._response = response
        if self._stopped.is_set():
            response.close()

    def _run(self) -> None:
        last: int | None = None
        provider = self._conn.bind().provider
        while not self._stopped.is_set():
            try:
                for event in provider.events(
                    self._job_id, last_event_id=last, on_response=self._remember
                ):
                    last = event.id
                    if self._stopped.is_set():
                        return
                    if event.kind == "interim":
                        self._callback(self._job_id, event.data.get("value"))
                    elif event.kind == "status" and JobStatus(event.data["status"]).is_final:
                        return
                return
            except JobledgerError:
                if self._stopped.wait(1.0):
                    return
