"""How jobs look in a notebook: the HTML of one handle and of a list of them.

Built only from what is recorded (the registry row and whether the result's bytes are
in the local store): rendering never touches the network and never blocks. Long
messages are cut, with a pointer to where the whole text is.
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobledger.client.job import Job

__all__ = ["JobList", "job_html", "short"]

#: how much of a failure message a table or an error line shows
MESSAGE_LIMIT = 300


def short(text: str | None, limit: int = MESSAGE_LIMIT, *, where: str = "") -> str:
    """*text* cut to *limit* characters, saying how much was left out and where."""
    if not text or len(text) <= limit:
        return text or ""
    hint = f"; the whole text: {where}" if where else ""
    return f"{text[:limit]}… ({len(text) - limit:,} more characters{hint})"


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else ""


def job_html(job: Job) -> str:
    """One job as a two-column table."""
    info = job.get_info(refresh=False)
    name = str(info.job_id)
    rows = [
        ("id", name),
        ("alias", job.alias or ""),
        ("backend", info.backend + (f" {info.backend_version}" if info.backend_version else "")),
        ("status", info.status.value),
        ("submitted", _when(info.submission_date)),
        ("started", _when(info.starting_date)),
        ("ended", _when(info.ending_date)),
        ("result", _stored(job)),
        ("tags", ", ".join(info.tags)),
    ]
    if info.message:
        where = f"`jobledger show {name} --json`"
        rows.append(("message", short(info.message, where=where)))
    body = "".join(
        f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
        for k, v in rows
        if v
    )
    return f"<table class='jobledger-job'>{body}</table>"


def _stored(job: Job) -> str:
    state = job.result_state()
    return {"stored": "stored locally", "remote": "on the service, not downloaded yet"}.get(
        state, ""
    )


class JobList(list["Job"]):
    """A list of jobs that renders as one table in a notebook."""

    def _repr_html_(self) -> str:
        head = "".join(
            f"<th>{h}</th>" for h in ("id", "alias", "backend", "status", "submitted", "ended")
        )
        rows = []
        for job in self:
            info = job.get_info(refresh=False)
            cells: list[Any] = [
                info.job_id,
                job.alias or "",
                info.backend,
                info.status.value,
                _when(info.submission_date),
                _when(info.ending_date),
            ]
            rows.append("".join(f"<td>{html.escape(str(c))}</td>" for c in cells))
        body = "".join(f"<tr>{r}</tr>" for r in rows)
        return f"<table class='jobledger-jobs'><tr>{head}</tr>{body}</table>"
