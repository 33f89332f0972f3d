"""Output helpers of the ``jobledger`` command: tables, colours, times, progress, JSON.

Colours and progress displays appear only on a terminal: when ``NO_COLOR`` is set or
the stream is piped, output is plain text with no escape sequences, so it can be
parsed. The JSON shape of a job (:func:`job_fields`) is the one documented in
``docs/cli.md``; its field names are stable.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

import click

from jobledger.status import JobStatus

if TYPE_CHECKING:
    from jobledger.client.job import Job

__all__ = [
    "Progress",
    "absolute_time",
    "color_enabled",
    "duration",
    "echo_json",
    "format_table",
    "human_size",
    "is_terminal",
    "iso",
    "job_fields",
    "relative_time",
    "style",
    "style_status",
    "visible_len",
    "wait_with_progress",
    "when",
]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STATUS_COLOURS = {
    JobStatus.INITIALIZING: "cyan",
    JobStatus.QUEUED: "cyan",
    JobStatus.RUNNING: "blue",
    JobStatus.DONE: "green",
    JobStatus.ERROR: "red",
    JobStatus.CANCELLED: "yellow",
    JobStatus.DELETED: "magenta",
}
_SPINNER = "|/-\\"


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether *stream* (default stdout) is an interactive terminal."""
    stream = stream if stream is not None else sys.stdout
    try:
        return bool(stream.isatty()) and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


def color_enabled(stream: TextIO | None = None) -> bool:
    """Whether to colour output for *stream*: a terminal, and ``NO_COLOR`` unset."""
    return not os.environ.get("NO_COLOR") and is_terminal(stream)


def style(text: str, colour: str, *, stream: TextIO | None = None, bold: bool = False) -> str:
    """*text* in *colour* when colours are enabled for *stream*, else unchanged."""
    if not color_enabled(stream):
        return text
    return click.style(text, fg=colour, bold=bold)


def style_status(status: JobStatus, *, stream: TextIO | None = None) -> str:
    """The QLMaaS name of *status*, coloured when colours are enabled."""
    return style(status.qlmaas_name, _STATUS_COLOURS[status], stream=stream)


def visible_len(text: str) -> int:
    """The printed width of *text* (escape sequences do not count)."""
    return len(_ANSI.sub("", text))


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An aligned table: one header line, then one line per row."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], visible_len(cell))

    def line(cells: Sequence[str]) -> str:
        padded = [c + " " * (widths[i] - visible_len(c)) for i, c in enumerate(cells)]
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])


def echo_json(value: Any) -> None:
    """Print *value* as indented JSON on stdout."""
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# -- times and sizes -------------------------------------------------------------------


def iso(value: datetime | None) -> str | None:
    """*value* as an ISO 8601 UTC string (``None`` stays ``None``)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


def relative_time(value: datetime, now: datetime | None = None) -> str:
    """*value* relative to *now*: ``"just now"``, ``"3 min ago"``, ``"in 2 h"``."""
    now = now or datetime.now(UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    seconds = (now - value).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 5:
        return "just now"
    if seconds < 60:
        amount = f"{int(seconds)} s"
    elif seconds < 3600:
        amount = f"{int(seconds // 60)} min"
    elif seconds < 86400:
        amount = f"{int(seconds // 3600)} h"
    elif seconds < 86400 * 60:
        days = int(seconds // 86400)
        amount = f"{days} day{'s' if days != 1 else ''}"
    elif seconds < 86400 * 730:
        amount = f"{int(seconds // (86400 * 30))} months"
    else:
        amount = f"{int(seconds // (86400 * 365))} years"
    return f"in {amount}" if future else f"{amount} ago"


def absolute_time(value: datetime) -> str:
    """*value* in the local time zone, to the second, with the zone's name."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def when(value: datetime | None) -> str:
    """Absolute and relative time, e.g. ``"2026-01-31 12:00:03 CET (3 min ago)"``."""
    if value is None:
        return "-"
    return f"{absolute_time(value)} ({relative_time(value)})"


def duration(seconds: float) -> str:
    """A duration such as ``"4.2 s"``, ``"3 min 12 s"`` or ``"2 h 5 min"``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def human_size(size: int | None) -> str:
    """A byte count such as ``"512 B"``, ``"1.5 KiB"`` or ``"3.2 GiB"``."""
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


# -- jobs ------------------------------------------------------------------------------


def job_fields(
    *,
    job_id: str,
    alias: str | None,
    status: JobStatus,
    backend: str,
    submitted_at: datetime | None,
    started_at: datetime | None,
    ended_at: datetime | None,
    tags: Sequence[str],
    result_stored: bool,
    message: str | None = None,
    session_id: str | None = None,
) -> dict[str, Any]:
    """The documented JSON object of a job (see ``docs/cli.md``)."""
    return {
        "id": job_id,
        "alias": alias,
        "status": status.qlmaas_name,
        "status_code": status.value,
        "backend": backend,
        "submitted_at": iso(submitted_at),
        "started_at": iso(started_at),
        "ended_at": iso(ended_at),
        "tags": list(tags),
        "session_id": session_id,
        "message": message,
        "result_stored": result_stored,
    }


# -- progress ----------------------------------------------------------------------------


class Progress:
    """A one-line progress display on stderr: a spinner with a message, or a bar.

    Does nothing unless stderr is a terminal, so piped output never holds it.
    Thread-safe: callbacks from background threads may update it.
    """

    def __init__(self, *, enabled: bool | None = None, min_interval: float = 0.1) -> None:
        if enabled is None:
            # NO_COLOR and dumb terminals get no escape sequences at all, spinner included.
            plain = os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb"
            enabled = is_terminal(sys.stderr) and not plain
        self.enabled = enabled
        self._min_interval = min_interval
        self._last = 0.0
        self._frame = 0
        self._shown = False
        self._lock = threading.Lock()

    def spin(self, message: str) -> None:
        """Show the spinner's next frame with *message*."""
        if not self.enabled:
            return
        self._frame = (self._frame + 1) % len(_SPINNER)
        self._draw(f"{_SPINNER[self._frame]} {message}", force=True)

    def bar(self, done: int, total: int | None, label: str = "") -> None:
        """Show a bar for *done* of *total* bytes (a byte count when *total* is unknown)."""
        if not self.enabled:
            return
        if total:
            width = 30
            filled = int(width * min(done, total) / total)
            text = (
                f"{label}[{'#' * filled}{'.' * (width - filled)}] "
                f"{human_size(done)} / {human_size(total)} ({100 * done // total}%)"
            )
        else:
            text = f"{label}{human_size(done)}"
        self._draw(text, force=total is not None and done >= total)

    def _draw(self, text: str, *, force: bool = False) -> None:
        with self._lock:
            now = time.monotonic()
            if not force and now - self._last < self._min_interval:
                return
            self._last = now
            sys.stderr.write("\r\x1b[2K" + text)
            sys.stderr.flush()
            self._shown = True

    def clear(self) -> None:
        """Erase the progress line (before printing something else)."""
        with self._lock:
            if self._shown:
                sys.stderr.write("\r\x1b[2K")
                sys.stderr.flush()
                self._shown = False


def wait_with_progress(
    job: Job,
    *,
    timeout: float | None,
    on_interim: Callable[[Any], None] | None = None,
    progress: Progress | None = None,
) -> JobStatus:
    """Wait until *job* is final, showing a spinner with its status and the time since
    submission on a terminal; returns the final status.

    :param on_interim: called (in order, never concurrently) with each interim result
        as it arrives; those published after the stream stopped are read from the
        job's record, so none is missed.
    :raises JobTimeoutError: when *timeout* seconds pass first.
    """
    from jobledger.errors import ResultNotReadyError

    progress = progress or Progress()
    delivered = 0
    lock = threading.Lock()

    def deliver(_job_id: str, value: Any) -> None:
        nonlocal delivered
        assert on_interim is not None
        with lock:
            progress.clear()
            on_interim(value)
            delivered += 1

    streaming = False
    if on_interim is not None:
        try:
            job.stream_results(deliver)
            streaming = True
        except ResultNotReadyError:
            pass  # already final: the recorded interim results are delivered below
    deadline = None if timeout is None else time.monotonic() + timeout
    name = job.alias or str(job.job_id)
    try:
        if not progress.enabled:
            job.wait_for_final_state(timeout=timeout)
        else:
            _spin_until_final(job, name, deadline, progress)
    except KeyboardInterrupt:
        progress.clear()
        sys.stderr.write(
            f"stopped waiting: job {name} keeps running on the service; "
            f"`jobledger wait {name}` waits again, `jobledger cancel {name}` stops it\n"
        )
        raise
    finally:
        if streaming:
            job.cancel_result_streaming()
        progress.clear()
    if on_interim is not None:
        with lock:
            for value in job.interim_results()[delivered:]:
                on_interim(value)
                delivered += 1
    return job.status()


def _spin_until_final(job: Job, name: str, deadline: float | None, progress: Progress) -> None:
    from jobledger.errors import JobTimeoutError

    status = job.status()
    checked = time.monotonic()
    while not status.is_final:
        step = 0.25
        if deadline is not None:
            step = min(step, max(0.0, deadline - time.monotonic()))
        try:
            job.wait_for_final_state(timeout=step)
            break
        except JobTimeoutError:
            if deadline is not None and time.monotonic() >= deadline:
                raise
        if time.monotonic() - checked >= 1.0:
            status = job.status()
            checked = time.monotonic()
        since = (datetime.now(UTC) - job.submission_date).total_seconds()
        progress.spin(f"{name} {status.qlmaas_name} ({duration(since)} since submission)")
