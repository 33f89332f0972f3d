"""What is recorded at submission: the program, its environment and its code version.

:func:`capture_environment` answers "which code, inputs and environment produced this
job?" with a JSON-able dict: jobledger's and Python's versions, the distributions that
matter (scientific stacks and whatever the program imported), the platform, host and
user, the program (script path, masked ``argv`` and the script's sha256, or a notebook
or interactive session) and the git commit of the working directory. It never records
environment variables, tokens or secret-looking arguments. Because git runs as a
subprocess, results are cached per process for a short time, so that a loop of
submissions does not pay for it each time. :func:`provenance_digest` gives the stable
digest the registry uses to store each distinct record once.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["capture_environment", "clear_cache", "mask_argv", "provenance_digest"]

CACHE_TTL = 30.0
GIT_TIMEOUT = 2.0
MAX_PACKAGES = 100
MAX_HASHED_SIZE = 10 << 20
MASK = "***"

_INTERESTING = re.compile(r"^(numpy|scipy|qiskit.*|qat.*|myqlm.*|cirq.*|pennylane.*)$")
_SECRET_WORD = r"(token|password|passwd|secret|api[-_]?key|credential|auth)"
_SECRET_FLAG = re.compile(rf"^--?[\w-]*{_SECRET_WORD}[\w-]*$", re.IGNORECASE)
_SECRET_FLAG_VALUE = re.compile(rf"^(--?[\w-]*{_SECRET_WORD}[\w-]*=)", re.IGNORECASE)
_SECRET_ASSIGNMENT = re.compile(rf"{_SECRET_WORD}=", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(://[^/@:\s]*:)[^/@\s]+@")
_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")

_lock = threading.Lock()
_cache: dict[tuple[str, tuple[str, ...] | None], tuple[float, dict[str, Any]]] = {}


def capture_environment(
    *, cwd: Path | None = None, argv: list[str] | None = None
) -> dict[str, Any]:
    """Return the provenance record of a submission made now from *cwd* with *argv*.

    :param cwd: the working directory whose git state is recorded (default: the
        current one).
    :param argv: the program's arguments (default: ``sys.argv``); secret-looking
        items are replaced by ``"***"``.
    :returns: a fresh JSON-able dict with the keys ``jobledger``, ``python``,
        ``packages``, ``platform``, ``host``, ``user``, ``cwd``, ``program`` and
        ``git`` (``None`` outside a git repository or without git).
    """
    folder = str(Path(cwd if cwd is not None else os.getcwd()).absolute())
    key = (folder, None if argv is None else tuple(argv))
    now = time.monotonic()
    with _lock:
        hit = _cache.get(key)
    if hit is not None and now - hit[0] < CACHE_TTL:
        return copy.deepcopy(hit[1])
    record = _capture(Path(folder), argv)
    with _lock:
        if len(_cache) > 64:
            _cache.clear()
        _cache[key] = (now, record)
    return copy.deepcopy(record)


def provenance_digest(record: dict[str, Any]) -> str:
    """The sha256 (hex) of *record* as canonical JSON (sorted keys, compact)."""
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def clear_cache() -> None:
    """Forget cached records, so that the next capture runs git again."""
    with _lock:
        _cache.clear()


def _capture(cwd: Path, argv: list[str] | None) -> dict[str, Any]:
    import platform

    from jobledger import __version__

    return {
        "jobledger": __version__,
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "packages": _packages(),
        "platform": {
            "system": platform.system(),
            "release": platform.release(),
            "machine": platform.machine(),
        },
        "host": _host(),
        "user": _user(),
        "cwd": str(cwd),
        "program": _program(cwd, argv),
        "git": _git(cwd),
    }


# -- packages ----------------------------------------------------------------------


def _packages() -> dict[str, str]:
    """Versions of jobledger, its dependencies, known stacks and imported modules."""
    from importlib import metadata

    versions = _installed()
    wanted: list[str] = ["jobledger"]
    try:
        for requirement in metadata.requires("jobledger") or []:
            found = _REQUIREMENT_NAME.match(requirement)
            if found and "extra" not in requirement.partition(";")[2]:
                wanted.append(found.group(1))
    except metadata.PackageNotFoundError:
        pass
    wanted.extend(sorted(name for name in versions if _INTERESTING.match(name)))
    imported: set[str] = set()
    unresolved: list[str] = []
    for module in list(sys.modules):
        if "." in module or module.startswith("_") or module in sys.stdlib_module_names:
            continue
        if _normalise(module) in versions:
            imported.add(_normalise(module))
        else:
            unresolved.append(module)
    if unresolved:
        owners = _module_owners()
        for module in unresolved:
            imported.update(owners.get(module, ()))
    wanted.extend(sorted(imported))

    packages: dict[str, str] = {}
    for name in wanted:
        entry = versions.get(_normalise(name))
        if entry is not None and entry[0] not in packages:
            packages[entry[0]] = entry[1]
            if len(packages) >= MAX_PACKAGES:
                break
    return packages


@functools.cache
def _installed() -> dict[str, tuple[str, str]]:
    """Installed distributions, ``{normalised name: (name, version)}``, once per process.

    Versions are those of the process's start: a module imported before an upgrade
    keeps running the old code, so the old version is the truthful one.
    """
    from importlib import metadata

    versions: dict[str, tuple[str, str]] = {}
    for dist in metadata.distributions():
        # Only the two header fields are needed: parsing whole METADATA files with
        # the email parser would cost ten times more.
        text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
        fields = {}
        for line in text.split("\n\n", 1)[0].splitlines():
            label, _, value = line.partition(":")
            if label in ("Name", "Version"):
                fields[label] = value.strip()
        name, version = fields.get("Name"), fields.get("Version")
        if name and version:
            versions.setdefault(_normalise(name), (name, version))
    return versions


@functools.cache
def _module_owners() -> dict[str, list[str]]:
    """The distributions of each top-level module, once per process: this reads
    every RECORD file (a tenth of a second), so it runs only when a module's name
    is not its distribution's name."""
    from importlib import metadata

    return {
        module: [_normalise(d) for d in dists]
        for module, dists in metadata.packages_distributions().items()
    }


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# -- host, user, program -------------------------------------------------------------


def _host() -> str:
    import socket

    return socket.gethostname()


def _user() -> str | None:
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError, ImportError):
        return None


def _program(cwd: Path, argv: list[str] | None) -> dict[str, Any]:
    args = list(sys.argv if argv is None else argv)
    masked = mask_argv(args)
    main = sys.modules.get("__main__")
    shell = _ipython_shell()
    if shell is not None:
        notebook = "ipykernel" in type(shell).__module__ or "google.colab" in sys.modules
        session = getattr(main, "__session__", None) or getattr(main, "__vsc_ipynb_file__", None)
        path = _absolute(cwd, session) if isinstance(session, str) and session else None
        return {
            "kind": "notebook" if notebook else "interactive",
            "path": str(path) if path else None,
            "sha256": _file_sha256(path),
            "argv": masked,
        }
    if argv is not None:
        candidate = args[0] if args else None
    else:
        candidate = getattr(main, "__file__", None)
    if candidate and candidate not in ("-c", "-m", "-"):
        path = _absolute(cwd, candidate)
        if path.is_file():
            return {
                "kind": "script",
                "path": str(path),
                "sha256": _file_sha256(path),
                "argv": masked,
            }
    kind = "command" if args[:1] == ["-c"] else "interactive"
    return {"kind": kind, "path": None, "sha256": None, "argv": masked}


def _ipython_shell() -> Any:
    module = sys.modules.get("IPython")
    get_ipython = getattr(module, "get_ipython", None)
    return get_ipython() if callable(get_ipython) else None


def _absolute(cwd: Path, name: str) -> Path:
    path = Path(name).expanduser()
    return path if path.is_absolute() else cwd / path


def _file_sha256(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        with open(path, "rb") as handle:
            if os.fstat(handle.fileno()).st_size >= MAX_HASHED_SIZE:
                return None
            return hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return None


def mask_argv(argv: list[str]) -> list[str]:
    """Return *argv* with secret-looking items replaced by ``"***"``.

    Masked: the item after a flag such as ``--token`` or ``--password``, the value of
    ``--token=...``, any item containing ``token=``, ``password=`` or ``secret=``, and
    passwords inside URLs.
    """
    masked: list[str] = []
    hide_next = False
    for item in argv:
        if hide_next:
            masked.append(MASK)
            hide_next = False
            continue
        flag_value = _SECRET_FLAG_VALUE.match(item)
        if flag_value:
            masked.append(flag_value.group(1) + MASK)
        elif _SECRET_FLAG.match(item):
            masked.append(item)
            hide_next = True
        elif _SECRET_ASSIGNMENT.search(item):
            masked.append(MASK)
        else:
            masked.append(_URL_PASSWORD.sub(rf"\g<1>{MASK}@", item))
    return masked


# -- git ---------------------------------------------------------------------------


def _git(cwd: Path) -> dict[str, Any] | None:
    """``{"commit", "dirty", "root"}`` of the repository holding *cwd*, or ``None``."""
    deadline = time.monotonic() + GIT_TIMEOUT
    head = _run_git(cwd, deadline, "rev-parse", "--show-toplevel", "--verify", "-q", "HEAD")
    if head is None:
        return None
    returncode, lines = head
    # rev-parse exits 1 in a repository without commits, still printing the root.
    if returncode not in (0, 1) or not lines:
        return None
    commit = lines[1] if returncode == 0 and len(lines) > 1 else None
    status = _run_git(cwd, deadline, "status", "--porcelain", "--untracked-files=no")
    dirty = bool(status[1]) if status is not None and status[0] == 0 else None
    return {"commit": commit, "dirty": dirty, "root": lines[0]}


def _run_git(cwd: Path, deadline: float, *args: str) -> tuple[int, list[str]] | None:
    import subprocess

    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return None
    # Optional locks off: a concurrent `git commit` must never fail because of us.
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=remaining,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired, UnicodeDecodeError):
        return None
    return done.returncode, [line for line in done.stdout.splitlines() if line.strip()]
