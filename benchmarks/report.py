"""Printing the results and rewriting the table in ``docs/performance.md``.

The table lives between two HTML comment markers; everything outside them is
hand-written and left alone. A run of some figures only (``--only``) replaces those
rows and keeps the others from the previous run.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.common import Figure

__all__ = ["BEGIN", "END", "print_table", "write_table"]

BEGIN = "<!-- benchmarks:results:begin (written by `python -m benchmarks`) -->"
END = "<!-- benchmarks:results:end -->"
_HEADER = (
    "| # | figure | jobledger | baseline (same run) | ratio | target | result |",
    "|---|---|---|---|---|---|---|",
)


def _row(figure: Figure) -> str:
    cells = (
        figure.id,
        figure.title,
        figure.value,
        figure.baseline,
        figure.ratio,
        figure.target,
        f"**{figure.verdict}**",
    )
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def print_table(figures: list[Figure]) -> None:
    """Print one line per figure, then the notes."""
    for figure in figures:
        print(
            f"{figure.id:<4} {figure.verdict:<4}  {figure.title}: {figure.value}  vs  "
            f"{figure.baseline}  ->  {figure.ratio}  (target {figure.target})"
        )
    for figure in figures:
        for note in figure.notes:
            print(f"     note: {note}")


def write_table(
    doc: Path, figures: list[Figure], machine: str, runtime: float, scope: str = "all"
) -> None:
    """Replace the results block of *doc* with these figures (keeping other rows)."""
    text = doc.read_text(encoding="utf-8") if doc.exists() else f"{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text = text.rstrip("\n") + f"\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    old, tail = rest.split(END, 1)
    rows = {
        line.split("|")[1].strip(): line for line in old.splitlines() if line.startswith("| B")
    }
    notes = {
        line.split(":", 1)[0].removeprefix("- ").strip(): line
        for line in old.splitlines()
        if line.startswith("- B")
    }
    ran = {f.id for f in figures}
    for key in [k for k in notes if any(k.startswith(i[:2]) for i in ran)]:
        del notes[key]
    for figure in figures:
        rows[figure.id] = _row(figure)
        for note in figure.notes:
            notes[note.split(":", 1)[0] + str(len(notes))] = f"- {note}"
    ordered = [rows[k] for k in sorted(rows)]
    block = [
        "",
        f"Machine: {machine}. Last run ({scope}) took {runtime:.0f} s.",
        "",
        *_HEADER,
        *ordered,
        "",
        *sorted(notes.values()),
        "",
    ]
    doc.write_text(head + BEGIN + "\n".join(block) + END + tail, encoding="utf-8")
