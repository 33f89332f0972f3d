"""Printing the results and rewriting the tables in ``docs/performance.md``.

The results table and the scale table each live between two HTML comment markers;
everything outside them is hand-written and left alone. A run of some figures only
(``--only``) replaces those rows and keeps the others from the previous run; the scale
table is replaced only by a run that measured it.
"""

from __future__ import annotations

import re
from pathlib import Path

from benchmarks.common import Figure, ScaleRow

__all__ = [
    "BEGIN",
    "END",
    "SCALE_BEGIN",
    "SCALE_END",
    "print_scale",
    "print_table",
    "write_table",
]

BEGIN = "<!-- benchmarks:results:begin (written by `python -m benchmarks`) -->"
END = "<!-- benchmarks:results:end -->"
SCALE_BEGIN = "<!-- benchmarks:scale:begin (written by `python -m benchmarks`) -->"
SCALE_END = "<!-- benchmarks:scale:end -->"
_HEADER = (
    "| # | figure | jobledger | baseline (same run) | ratio | spread | target | result |",
    "|---|---|---|---|---|---|---|---|",
)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _row(figure: Figure) -> str:
    cells = (
        figure.id,
        figure.title,
        figure.value,
        figure.baseline,
        figure.ratio,
        figure.spread or "-",
        figure.target,
        f"**{figure.verdict}**",
    )
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _with_spread(line: str) -> str:
    """A row kept from a table written before the spread column, with an empty one."""
    cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
    if len(cells) == len(_HEADER[1].split("|")) - 3:
        cells.insert(5, " - ")
        return "|" + "|".join(cells) + "|"
    return line


def _entry(figure_id: str) -> str:
    """The benchmark a figure or note belongs to: ``B5`` for ``B5a``, ``S`` for ``S``."""
    match = re.match(r"[A-Z]+\d*", figure_id)
    return match.group(0) if match else figure_id


def _order(figure_id: str) -> tuple[str, int, str]:
    """B2 before B10, B5a before B5b; S (the scale table) last."""
    match = re.match(r"([A-Z]+)(\d*)(.*)", figure_id)
    if not match:
        return (figure_id, 0, "")
    letters, number, rest = match.groups()
    return ("~" if letters == "S" else letters, int(number or 0), rest)


def print_table(figures: list[Figure]) -> None:
    """Print one line per figure, then the notes."""
    for figure in figures:
        spread = f"  [{figure.spread}]" if figure.spread else ""
        print(
            f"{figure.id:<4} {figure.verdict:<4}  {figure.title}: {figure.value}  vs  "
            f"{figure.baseline}  ->  {figure.ratio}  (target {figure.target}){spread}"
        )
    for figure in figures:
        for note in figure.notes:
            print(f"     note: {note}")


def _scale_lines(rows: list[ScaleRow]) -> list[str]:
    sizes = list(rows[0].cells) if rows else []
    lines = [
        "| operation | " + " | ".join(f"{s} jobs" for s in sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    for row in rows:
        cells = [row.cells.get(s, "-") for s in sizes]
        lines.append("| " + " | ".join(_cell(c) for c in [row.title, *cells]) + " |")
    return lines


def print_scale(rows: list[ScaleRow]) -> None:
    """Print the scale table (median time per call · peak memory)."""
    if not rows:
        return
    print("\nscale table (median time per call · peak memory growth, or peak RSS of a process)")
    for line in _scale_lines(rows):
        print(line)


def _block(text: str, begin: str, end: str) -> tuple[str, str, str]:
    if begin not in text or end not in text:
        text = text.rstrip("\n") + f"\n\n{begin}\n{end}\n"
    head, rest = text.split(begin, 1)
    old, tail = rest.split(end, 1)
    return head, old, tail


def write_table(
    doc: Path,
    figures: list[Figure],
    machine: str,
    runtime: float,
    scope: str = "all",
    scale: list[ScaleRow] | None = None,
) -> None:
    """Replace the results block of *doc* with these figures (keeping other rows), and
    the scale block with *scale* when given."""
    text = doc.read_text(encoding="utf-8") if doc.exists() else f"{BEGIN}\n{END}\n"
    head, old, tail = _block(text, BEGIN, END)
    rows = {
        line.split("|")[1].strip(): _with_spread(line)
        for line in old.splitlines()
        if re.match(r"\| [A-Z]+\d*[a-z]? \|", line)
    }
    notes = {
        line.split(":", 1)[0].removeprefix("- ").strip() + f"#{n:04d}": line
        for n, line in enumerate(old.splitlines())
        if re.match(r"- [A-Z]+\d*", line)
    }
    ran = {_entry(f.id) for f in figures}
    for key in [k for k in notes if _entry(k) in ran]:
        del notes[key]
    for figure in figures:
        rows[figure.id] = _row(figure)
        for note in figure.notes:
            notes[note.split(":", 1)[0] + f"#{len(notes) + 10000:05d}"] = f"- {note}"
    ordered = [rows[k] for k in sorted(rows, key=_order)]
    block = [
        "",
        f"Machine: {machine}. Last run ({scope}) took {runtime:.0f} s.",
        "",
        *_HEADER,
        *ordered,
        "",
        *[notes[k] for k in sorted(notes, key=lambda k: (_order(_entry(k)), k.split("#")[1]))],
        "",
    ]
    text = head + BEGIN + "\n".join(block) + END + tail
    if scale:
        head, _, tail = _block(text, SCALE_BEGIN, SCALE_END)
        lines = ["", f"Machine: {machine}.", "", *_scale_lines(scale), ""]
        text = head + SCALE_BEGIN + "\n".join(lines) + SCALE_END + tail
    doc.write_text(text, encoding="utf-8")
