"""What is recorded at submission: the program, its environment and its code version.

:func:`capture_environment` answers "which code, inputs and environment produced this
job?" with a JSON-able dict: jobledger's and Python's versions, the distributions that
matter (scientific stacks and whatever the program imported), the platform, host and
user, the program (script path, masked ``argv`` and the script's sha256, or a notebook
or interactive session) and the git commit of the working directory. It never records
environment variables; secrets are masked by flag and by value (every token jobledger
can find in its configuration and ``JOBLEDGER_TOKEN``, bearer headers, token-shaped
and other random-looking strings, credentials in URLs: see :mod:`jobledger.redact`).
Because git runs as a subprocess, results are cached per process for a short time,
so that a loop of submissions does not pay for it each time. :func:`provenance_digest`
gives the stable digest the registry uses to store each distinct record once;
:func:`captured_environment` gives the cached record itself with its digest, shared
rather than copied, for the submit path.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import json
import os
import re
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobledger.redact import MASK, is_secret_name, redact_text, redact_url

__all__ = [
    "Captured",
    "capture_environment",
    "captured_environment",
    "clear_cache",
    "known_secrets",
    "mask_argv",
    "provenance_digest",
    "redact_url",
]

CACHE_TTL = 30.0
GIT_TIMEOUT = 2.0
MAX_PACKAGES = 100
MAX_HASHED_SIZE = 10 << 20

_INTERESTING = re.compile(r"^(numpy|scipy|qiskit.*|qat.*|myqlm.*|cirq.*|pennylane.*)$")
_SECRET_FLAG = re.compile(r"^--?[A-Za-z][\w.-]*$")
# An item after which the next one is a credential: `-H Authorization: Bearer T` split
# by the shell into several items.
_AUTH_SCHEME = re.compile(r"(?i)^(?:.*\bauthorization:?|bearer|basic|digest)$")
_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")

_lock = threading.Lock()


@dataclass(frozen=True)
class Captured:
    """A provenance record and its digest, shared by the submissions that use it."""

    record: Mapping[str, Any]  # never mutated: take capture_environment() for a copy
    digest: str


_cache: dict[tuple[str, tuple[str, ...] | None, tuple[str, ...]], tuple[float, Captured]] = {}


def capture_environment(
    *,
    cwd: Path | None = None,
    argv: list[str] | None = None,
    secrets: Iterable[str] = (),
) -> dict[str, Any]:
    """Return the provenance record of a submission made now from *cwd* with *argv*.

    :param cwd: the working directory whose git state is recorded (default: the
        current one).
    :param argv: the program's arguments (default: ``sys.argv``); secret-looking
        items are replaced by ``"***"``.
    :param secrets: values to mask wherever they occur (e.g. the connection's token),
        besides those :func:`known_secrets` finds.
    :returns: a fresh JSON-able dict with the keys ``jobledger``, ``python``,
        ``packages``, ``platform``, ``host``, ``user``, ``cwd``, ``program`` and
        ``git`` (``None`` outside a git repository or without git).
    """
    return copy.deepcopy(dict(captured_environment(cwd=cwd, argv=argv, secrets=secrets).record))


def captured_environment(
    *,
    cwd: Path | None = None,
    argv: list[str] | None = None,
    secrets: Iterable[str] = (),
) -> Captured:
    """The record :func:`capture_environment` returns, with its digest, without a copy.

    Within :data:`CACHE_TTL` seconds the same object is returned again, its digest
    computed once: a loop of submissions neither copies nor re-encodes it. The record
    must not be changed.
    """
    folder = str(Path(cwd if cwd is not None else os.getcwd()).absolute())
    given = tuple(sorted({s for s in secrets if s}))
    key = (folder, None if argv is None else tuple(argv), given)
    now = time.monotonic()
    with _lock:
        hit = _cache.get(key)
    if hit is not None and now - hit[0] < CACHE_TTL:
        return hit[1]
    record = _capture(Path(folder), argv, known_secrets() | set(given))
    found = Captured(record, provenance_digest(record))
    with _lock:
        if len(_cache) > 64:
            _cache.clear()
        _cache[key] = (now, found)
    return found


def provenance_digest(record: dict[str, Any]) -> str:
    """The sha256 (hex) of *record* as canonical JSON (sorted keys, compact)."""
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def clear_cache() -> None:
    """Forget cached records, so that the next capture runs git again."""
    with _lock:
        _cache.clear()


def known_secrets() -> set[str]:
    """Every token jobledger can read: ``JOBLEDGER_TOKEN``, the token files of the
    config folder (whatever their mode) and tokens written inline in ``config.toml``."""
    from jobledger.config import ENV_TOKEN, load_profiles
    from jobledger.errors import ConfigError
    from jobledger.paths import get_paths

    found = {os.environ.get(ENV_TOKEN, "").strip()}
    paths = get_paths()
    try:
        names = os.listdir(paths.tokens)
    except OSError:
        names = []
    for name in names:
        try:
            found.add((paths.tokens / name).read_text(encoding="utf-8").strip())
        except (OSError, UnicodeDecodeError):
            continue
    # A malformed config file hides its inline tokens; the others are still known.
    with contextlib.suppress(ConfigError):
        found.update(p.token or "" for p in load_profiles(paths)[1].values())
    found.discard("")
    return found


def _capture(cwd: Path, argv: list[str] | None, secrets: set[str]) -> dict[str, Any]:
    import platform

    from jobledger import __version__

    record = {
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
        "program": _program(cwd, argv, secrets),
        "git": _git(cwd),
    }
    # Nothing else should hold a secret, but a token pasted into a folder name would.
    scrubbed: dict[str, Any] = _scrub(record, secrets)
    return scrubbed


def _scrub(value: Any, secrets: set[str]) -> Any:
    if isinstance(value, str):
        return redact_url(_replace_known(value, secrets))
    if isinstance(value, dict):
        return {key: _scrub(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [_scrub(item, secrets) for item in value]
    return value


def _replace_known(text: str, secrets: set[str]) -> str:
    for secret in secrets:
        if secret in text and (text == secret or len(secret) >= 6):
            text = text.replace(secret, MASK)
    return text


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


def _program(cwd: Path, argv: list[str] | None, secrets: set[str]) -> dict[str, Any]:
    args = list(sys.argv if argv is None else argv)
    masked = mask_argv(args, secrets)
    main = sys.modules.get("__main__")
    shell = _ipython_shell()
    if shell is not None:
        notebook = "ipykernel" in type(shell).__module__ or "google.colab" in sys.modules
        # Jupyter names the notebook in __session__ (and, for jupyter-server >= 2, in
        # JPY_SESSION_NAME); VS Code in __vsc_ipynb_file__.
        session = (
            getattr(main, "__session__", None)
            or getattr(main, "__vsc_ipynb_file__", None)
            or os.environ.get("JPY_SESSION_NAME")
        )
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


def mask_argv(argv: list[str], secrets: Iterable[str] = ()) -> list[str]:
    """Return *argv* with every secret in it replaced by ``"***"``.

    Masked: the item after a flag named like a secret (``--token``, ``--key``,
    ``--bearer``, ``--api-key``...) and after ``Bearer`` or ``Authorization:``; the
    values of ``--token=...``, ``TOKEN=...`` and JSON ``"token": ...``; bearer
    headers; credentials in URLs; the given *secrets* (configured tokens) wherever they
    occur; and anything shaped like a token or random-looking (see
    :func:`jobledger.redact.redact_text`).
    """
    known = [s for s in secrets if s]
    masked: list[str] = []
    hide_next = False
    for item in argv:
        if hide_next and not item.startswith("--"):
            masked.append(MASK)
            hide_next = False
            continue
        hide_next = bool(
            (_SECRET_FLAG.match(item) and is_secret_name(item)) or _AUTH_SCHEME.match(item)
        )
        masked.append(redact_text(item, known))
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
