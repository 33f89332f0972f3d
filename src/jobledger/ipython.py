"""Tab completion of every recorded job in IPython: ``%load_ext jobledger.ipython``.

IPython completes ``from jobledger.jobs import <Tab>`` and ``jobledger.jobs.<Tab>``
from ``dir(jobledger.jobs)``, which lists every alias but only the 1,000 most recently
recorded job ids, so that completing costs the same for a million jobs. A module's
``__dir__`` is not told what was typed, so IPython cannot ask for more; this extension
adds a completion matcher that is: ``from jobledger.jobs import J01HK<Tab>`` (or
``jobledger.jobs.J01HK<Tab>``) then offers the ids and aliases starting with
``J01HK``, found through the registry's index however old they are (at most 1,000).
To load it in every session, add ``"jobledger.ipython"`` to
``c.InteractiveShellApp.extensions`` in an IPython profile. IPython itself is imported
only by IPython's call to :func:`load_ipython_extension`.
"""

from __future__ import annotations

import re
import sys
import types
from typing import Any

from jobledger.errors import JobledgerError

__all__ = ["job_name_completions", "load_ipython_extension", "unload_ipython_extension"]

# The last statement before the cursor: "from jobledger.jobs import a, (b, J01H".
_FROM_IMPORT = re.compile(r"^\s*from\s+jobledger\.jobs\s+import\s+[\w\s,(]*?(\w*)$")
# A dotted name before the cursor: "x = jobledger.jobs.J01H" -> ("jobledger.jobs", "J01H").
_ATTRIBUTE = re.compile(r"(?<![\w.])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\.(\w*)$")
_matchers: dict[int, Any] = {}


def job_name_completions(
    text_until_cursor: str, namespace: dict[str, Any]
) -> tuple[str, list[str]] | None:
    """The job ids and aliases completing what precedes the cursor, with the prefix
    they complete; ``None`` when the text is not a name of :mod:`jobledger.jobs`.

    :param namespace: the user's variables, in which ``jobledger.jobs`` (or a name
        bound to it) is looked up; only modules are looked into, so no user code runs.
    """
    statement = text_until_cursor.rsplit(";", 1)[-1]
    found = _FROM_IMPORT.match(statement)
    if found is not None:
        prefix = found.group(1)
    else:
        found = _ATTRIBUTE.search(statement)
        if found is None or not _names_jobs_module(found.group(1), namespace):
            return None
        prefix = found.group(2)
    if not prefix:
        return None  # dir() lists the recent ones already
    import jobledger.jobs

    try:
        return prefix, jobledger.jobs.names(prefix)
    except JobledgerError:
        return None  # a damaged registry: completion offers nothing, the import will say why


def _names_jobs_module(dotted: str, namespace: dict[str, Any]) -> bool:
    first, *rest = dotted.split(".")
    target: Any = namespace.get(first)
    for part in rest:
        if not isinstance(target, types.ModuleType):
            return False
        target = getattr(target, part, None)
    jobs = sys.modules.get("jobledger.jobs")
    return jobs is not None and target is jobs


def load_ipython_extension(ipython: Any) -> None:
    """Add the job name matcher to *ipython*'s completer (called by ``%load_ext``)."""
    from IPython.core.completer import SimpleCompletion, context_matcher

    namespace = ipython.user_ns

    @context_matcher()  # type: ignore[untyped-decorator]
    def jobledger_job_names(context: Any) -> dict[str, Any]:
        found = job_name_completions(context.text_until_cursor, namespace)
        if found is None:
            return {"completions": [], "suppress": False}
        prefix, names = found
        return {
            "completions": [SimpleCompletion(name, type="job") for name in names],
            "matched_fragment": prefix,
            "suppress": False,
        }

    unload_ipython_extension(ipython)
    ipython.Completer.custom_matchers.append(jobledger_job_names)
    _matchers[id(ipython)] = jobledger_job_names


def unload_ipython_extension(ipython: Any) -> None:
    """Remove the matcher again (``%unload_ext jobledger.ipython``)."""
    matcher = _matchers.pop(id(ipython), None)
    if matcher is not None and matcher in ipython.Completer.custom_matchers:
        ipython.Completer.custom_matchers.remove(matcher)
