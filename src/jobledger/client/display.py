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

__all__ = ["JobList", "counts_of", "histogram", "job_html", "short"]

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
    counts = _stored_counts(job) if job.result_state() == "stored" else None
    if counts:
        body += f"<tr><th style='text-align:left'>counts</th><td>{histogram(counts)}</td></tr>"
    return f"<table class='jobledger-job'>{body}</table>"


#: media types whose results carry measurement counts
_QUANTUM = ("application/vnd.qiskit", "application/vnd.braket", "application/vnd.qat")


def _stored_counts(job: Job) -> dict[str, int] | None:
    """Measurement counts of a quantum result already in the local store, or ``None``.

    Decoding reads only the local store; any failure just leaves the histogram out.
    """
    if not job.result_media_type().startswith(_QUANTUM):
        return None
    try:
        return counts_of(job.get_result())
    except Exception:  # display must never fail: a damaged or odd result shows no histogram
        return None


def counts_of(value: Any) -> dict[str, int] | None:
    """Counts of the first experiment of a Qiskit, Braket or myQLM result."""
    braket = getattr(value, "measurement_counts", None)
    if braket:
        return {str(k): int(v) for k, v in dict(braket).items()}
    first = value[0] if isinstance(value, list | tuple) or hasattr(value, "__getitem__") else None
    data = getattr(first, "data", None)
    for name in dir(data) if data is not None else ():
        counts = getattr(getattr(data, name, None), "get_counts", None)
        if callable(counts) and not name.startswith("_"):
            return {str(k): int(v) for k, v in counts().items()}
    raw = getattr(value, "raw_data", None) or getattr(value, "results", None)
    if raw:  # myQLM: probabilities per state, shown per thousand
        out = {}
        for sample in list(raw)[:64]:
            probability = getattr(sample, "probability", None)
            if probability is not None:
                out[str(sample.state)] = round(1000 * float(probability))
        return out or None
    return None


def histogram(counts: dict[str, int], top: int = 8) -> str:
    """A small inline bar chart of the *top* outcomes (plain HTML, no script)."""
    chosen = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    largest = max((v for _, v in chosen), default=0) or 1
    bars = "".join(
        f"<div style='display:flex;align-items:center;gap:4px;font-family:monospace'>"
        f"<span style='min-width:5em'>{html.escape(k)}</span>"
        f"<span style='display:inline-block;height:0.8em;width:{int(120 * v / largest)}px;"
        f"background:#4a78b0'></span><span>{v}</span></div>"
        for k, v in chosen
    )
    more = f"<div>… {len(counts) - top} more outcomes</div>" if len(counts) > top else ""
    return f"<div class='jobledger-counts'>{bars}{more}</div>"


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
