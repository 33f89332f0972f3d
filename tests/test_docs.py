"""The documentation runs: every ```python block of README.md and docs/*.md is executed.

Each file's blocks run in order in one fresh subprocess, sharing one namespace, with
``JOBLEDGER_HOME`` set to an empty folder and no service configured, so the examples
talk to the real embedded local service (started on demand). That service is stopped
with ``python -m jobledger service stop`` when the file is done, and the test checks
that its process is gone. Blocks fenced ```bash, ```console, ```text or ```toml are not
executed; the ``jobledger`` commands in them are checked against the command line.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from jobledger.service.local import _pid_alive

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
_FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_PARALLEL_FILES = 3
_LEAKY_ENV = ("JOBLEDGER_URL", "JOBLEDGER_TOKEN", "JOBLEDGER_OFFLINE", "JOBLEDGER_PROFILE")
# The commands of the public contract (docs may name them before the CLI has them all).
_CONTRACT_COMMANDS = frozenset(
    [
        "serve",
        "service",
        "token",
        "submit",
        "ls",
        "show",
        "result",
        "wait",
        "cancel",
        "delete",
        "sync",
        "paths",
        "demo",
    ]
)

_RUNNER = textwrap.dedent(
    """
    import json, os, sys, traceback
    blocks = json.load(open(sys.argv[1], encoding="utf-8"))
    name = sys.argv[2]
    namespace = {"__name__": "__main__"}

    def end_leftovers():
        # A failed block may leave a process it started (a rehearsal server, say);
        # the embedded local service is left to `jobledger service stop`.
        import psutil
        runtime = os.path.join(os.environ["JOBLEDGER_HOME"], "runtime", "local-service.json")
        try:
            local = json.load(open(runtime, encoding="utf-8")).get("pid")
        except (OSError, ValueError):
            local = None
        for child in psutil.Process().children(recursive=True):
            if child.pid != local and local not in [p.pid for p in child.parents()]:
                child.kill()

    for number, source in enumerate(blocks, start=1):
        try:
            exec(compile(source, f"{name} (python block {number})", "exec"), namespace)
        except BaseException:
            traceback.print_exc()
            print(f"DOCS-FAILURE {name} python block {number}", file=sys.stderr)
            end_leftovers()
            sys.exit(1)
    """
)


def _doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def _blocks(path: Path, *languages: str) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return [m.group(2) for m in _FENCE.finditer(text) if m.group(1) in languages]


def _files_with_python() -> list[Path]:
    return [p for p in _doc_files() if _blocks(p, "python")]


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _LEAKY_ENV}
    env["JOBLEDGER_HOME"] = str(home)
    return env


@dataclass
class _Run:
    """The outcome of one documentation file's run."""

    name: str
    done: subprocess.CompletedProcess[str] | None = None
    stopped: subprocess.CompletedProcess[str] | None = None
    service_pid: int | None = None
    error: str | None = None


def _run_file(path: Path, root: Path) -> _Run:
    """Run *path*'s python blocks in a fresh process, then stop its local service."""
    run = _Run(str(path.relative_to(ROOT)))
    home, work = root / "home", root / "work"
    home.mkdir(parents=True)
    work.mkdir()
    blocks_file = root / "blocks.json"
    blocks_file.write_text(json.dumps(_blocks(path, "python")), encoding="utf-8")
    env = _env(home)
    runtime_file = home / "runtime" / "local-service.json"
    try:
        run.done = subprocess.run(
            [sys.executable, "-c", _RUNNER, str(blocks_file), run.name],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        run.error = f"timed out after {exc.timeout} s"
    finally:
        if runtime_file.exists():
            run.service_pid = json.loads(runtime_file.read_text(encoding="utf-8")).get("pid")
        run.stopped = subprocess.run(
            [sys.executable, "-m", "jobledger", "service", "stop", "--force"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    return run


@pytest.fixture(scope="module")
def doc_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[Path, Future[_Run]]]:
    """Every file's run, started at once, a few at a time: most of a run is waiting
    (for a service to start or stop, for a job), so overlapping them saves time."""
    with ThreadPoolExecutor(max_workers=_PARALLEL_FILES) as pool:
        yield {
            path: pool.submit(_run_file, path, tmp_path_factory.mktemp("doc"))
            for path in _files_with_python()
        }


@pytest.mark.parametrize("path", _files_with_python(), ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run(path: Path, doc_runs: dict[Path, Future[_Run]]) -> None:
    run = doc_runs[path].result()
    assert run.error is None, f"{run.name}: {run.error}"
    assert run.done is not None and run.stopped is not None
    done = run.done
    assert done.returncode == 0, f"{run.name} failed:\n{done.stdout}\n{done.stderr}"
    assert run.stopped.returncode == 0, run.stopped.stderr
    pid = run.service_pid
    if pid is not None:
        deadline = time.monotonic() + 10
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _pid_alive(pid), f"the local service of {run.name} (pid {pid}) still runs"


def test_every_doc_is_linked_from_the_index() -> None:
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\(([\w./-]+\.md)(?:#[\w-]*)?\)", index))
    missing = [p.name for p in sorted(DOCS.glob("*.md")) if p.name != "index.md"]
    missing = [name for name in missing if name not in linked]
    assert not missing, f"docs/index.md does not link to: {', '.join(missing)}"


def test_readme_quickstart_has_exactly_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## Quickstart\n(.*?)(?=^## )", text, re.MULTILINE | re.DOTALL)
    assert section is not None, "README.md has no '## Quickstart' section"
    commands = [m.group(2).strip() for m in _FENCE.finditer(section.group(1))]
    assert commands == [
        'python -m pip install ".[server]" && jobledger demo',
        'python -m pip install -e ".[dev]" && python -m pytest',
    ]
    fences = [m.group(1) for m in _FENCE.finditer(section.group(1))]
    assert fences == ["bash", "bash"]


def _jobledger_invocations(source: str, console: bool) -> list[list[str]]:
    """The argument lists of every ``jobledger ...`` command in a shell block (in a
    console block, only the lines starting with ``$``: the others are output)."""
    found = []
    for line in source.replace("\\\n", " ").splitlines():
        line = line.strip()
        if console and not line.startswith("$ "):
            continue
        line = line.removeprefix("$ ")
        if not line or line.startswith("#"):
            continue
        for part in re.split(r"&&|\|\||[|;]|\$\(|\)", line):
            try:
                words = shlex.split(part, comments=True)
            except ValueError:
                words = part.split()
            while words and "=" in words[0] and not words[0].startswith("-"):
                words = words[1:]  # VAR=value prefixes
            if words[:3] == ["python", "-m", "jobledger"]:
                found.append(words[3:])
            elif words[:1] == ["jobledger"]:
                found.append(words[1:])
    return found


def test_shell_examples_use_real_commands_and_options() -> None:
    from jobledger.cli import cli

    problems = []
    for path in _doc_files():
        for language in ("bash", "sh", "shell", "console"):
            for source in _blocks(path, language):
                for args in _jobledger_invocations(source, language == "console"):
                    _check_invocation(cli, path, args, problems)
    assert not problems, "\n".join(problems)


def _check_invocation(cli: Any, path: Path, args: list[str], problems: list[str]) -> None:
    import click

    if not args or args[0].startswith("-"):
        return
    where = f"{path.relative_to(ROOT)}: jobledger {' '.join(args)}"
    if args[0] not in _CONTRACT_COMMANDS | set(cli.commands):
        problems.append(f"{where}: unknown command {args[0]!r}")
        return
    command: click.Command | None = cli.commands.get(args[0])
    rest = args[1:]
    while isinstance(command, click.Group) and rest and rest[0] in command.commands:
        command = command.commands[rest[0]]
        rest = rest[1:]
    if command is None:
        return  # a contract command the CLI does not register yet
    if isinstance(command, click.Group):
        if rest and not rest[0].startswith("-"):
            problems.append(f"{where}: no subcommand {rest[0]!r}")
        return
    options = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
    options |= {"--help", "-h"}
    for word in rest:
        option = word.split("=")[0]
        if word.startswith("-") and word != "-" and option not in options:
            problems.append(f"{where}: no option {option!r}")
