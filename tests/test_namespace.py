"""``jobledger.jobs`` in fresh processes: import by id and alias, online and with the
network refused, live listings, unknown names, probes and completion."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import jobledger
from jobledger.client.connection import Connection

NO_NETWORK = """
import socket, sys
def refuse(*args, **kwargs):
    raise OSError("the network was used")
socket.socket.connect = refuse
socket.create_connection = refuse
"""


def python(
    code: str, home: Path, *, no_network: bool = False, **env: str
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("JOBLEDGER_")}
    source = (NO_NETWORK if no_network else "") + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", source],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, "JOBLEDGER_HOME": str(home), **env},
        check=False,
    )


@pytest.fixture(scope="module")
def recorded(
    tmp_path_factory: pytest.TempPathFactory, _module_service: Any
) -> Iterator[tuple[Path, str, Any]]:
    """A home with one finished echo job (alias ``calibration_run``)."""
    home = tmp_path_factory.mktemp("namespace-home")
    old = os.environ.get("JOBLEDGER_HOME")
    os.environ["JOBLEDGER_HOME"] = str(home)
    try:
        with jobledger.connect(url=_module_service.url, token=_module_service.token) as conn:
            job = conn.submit({"calibrated": True}, "echo", alias="calibration_run")
            job.result(timeout=30)
            job_id = str(job.job_id)
    finally:
        if old is None:
            del os.environ["JOBLEDGER_HOME"]
        else:
            os.environ["JOBLEDGER_HOME"] = old
    yield home, job_id, _module_service


def test_import_by_id_and_alias_without_network(recorded: tuple[Path, str, Any]) -> None:
    home, job_id, _ = recorded
    out = python(
        f"""
        from jobledger.jobs import {job_id}, calibration_run
        assert {job_id} == calibration_run
        print(calibration_run.result(), {job_id}.get_status(), repr(calibration_run))
        assert "requests" not in sys.modules, sorted(sys.modules)
        """,
        home,
        no_network=True,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("{'calibrated': True} done <Job " + job_id)


def test_import_with_the_service_running(recorded: tuple[Path, str, Any]) -> None:
    home, _, service = recorded
    out = python(
        f"""
        import os
        os.environ["JOBLEDGER_URL"] = {service.url!r}
        os.environ["JOBLEDGER_TOKEN"] = {service.token!r}
        from jobledger.jobs import calibration_run
        print(calibration_run.refresh().status, calibration_run.logs() == "")
        """,
        home,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["DONE", "True"]


def test_listing_is_live_across_processes(recorded: tuple[Path, str, Any], tmp_path: Path) -> None:
    home, job_id, service = recorded
    watcher = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import sys, jobledger.jobs as jobs
                print(sorted(dir(jobs)), flush=True)
                sys.stdin.readline()
                print(sorted(dir(jobs)), flush=True)
                print(sorted(jobs.__all__), flush=True)
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "JOBLEDGER_HOME": str(home)},
    )
    assert watcher.stdout is not None and watcher.stdin is not None
    before = watcher.stdout.readline()
    assert "calibration_run" in before and "late_arrival" not in before
    os.environ["JOBLEDGER_HOME"] = str(home)
    try:
        with Connection.open(url=service.url, token=service.token) as conn:
            conn.submit(1, "echo", alias="late_arrival")
    finally:
        del os.environ["JOBLEDGER_HOME"]
    watcher.stdin.write("\n")
    watcher.stdin.flush()
    after, listed = watcher.stdout.readline(), watcher.stdout.readline()
    watcher.communicate(timeout=30)
    assert "late_arrival" in after and "late_arrival" in listed and job_id in listed


def test_unknown_names_and_probes(recorded: tuple[Path, str, Any]) -> None:
    home, _, _ = recorded
    out = python(
        """
        import time
        import jobledger.jobs as jobs
        try:
            from jobledger.jobs import calibration_rnu
        except ImportError as exc:
            print("import:", exc)
        try:
            jobs.calibration_rnu
        except AttributeError as exc:
            print("attr:", exc)
        start = time.perf_counter()
        probes = [hasattr(jobs, name) for name in
                  ("__wrapped__", "_ipython_display_", "__test__", "_fields", "__call__")]
        print("probes:", probes, time.perf_counter() - start < 0.05)
        """,
        home,
        no_network=True,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("import: no job or alias named 'calibration_rnu'")
    assert "did you mean calibration_run" in lines[0] and "registry.db" in lines[0]
    assert lines[1].startswith("attr: no job or alias named 'calibration_rnu'")
    assert lines[2] == "probes: [False, False, False, False, False] True"


def test_get_for_any_name_and_ambiguous_ids(recorded: tuple[Path, str, Any]) -> None:
    home, job_id, _ = recorded
    out = python(
        f"""
        import jobledger.jobs as jobs
        from jobledger.registry import Registry, BlobRef
        from jobledger.paths import get_paths
        from jobledger.providers import RemoteJob
        from jobledger.status import JobStatus
        print(jobs.get("calibration_run").job_id == {job_id!r})
        registry = Registry(get_paths().registry)
        registry.apply_infos("other-service", [RemoteJob({job_id!r}, JobStatus.DONE, "echo")])
        try:
            jobs.get({job_id!r})
        except KeyError as exc:
            print("ambiguous:", exc)
        service = registry.find({job_id!r})[0].service
        print(jobs.get({job_id!r}, service=service).job_id == {job_id!r})
        """,
        home,
    )
    assert out.returncode == 0, out.stderr
    first, ambiguous, chosen = out.stdout.splitlines()
    assert first == "True" and chosen == "True"
    assert "2 services" in ambiguous and "jobledger.jobs.get(" in ambiguous


def test_empty_module_without_a_registry(tmp_path: Path) -> None:
    out = python(
        """
        import jobledger.jobs as jobs
        print(dir(jobs), jobs.__all__)
        """,
        tmp_path / "nothing-here",
        no_network=True,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['get', 'names'] []"
    assert not (tmp_path / "nothing-here").exists()


def test_ipython_completes_job_names(recorded: tuple[Path, str, Any]) -> None:
    pytest.importorskip("IPython")
    home, job_id, _ = recorded
    out = python(
        """
        from IPython.core.completerlib import module_completion
        from IPython.core.completer import Completer
        import jobledger, jobledger.jobs
        print(sorted(module_completion("from jobledger.jobs import ")))
        completer = Completer(namespace={"jobledger": jobledger})
        print([completer.complete("jobledger.jobs.cal", i) for i in range(1)])
        """,
        home,
    )
    assert out.returncode == 0, out.stderr
    from_import, attribute = out.stdout.splitlines()
    assert "calibration_run" in from_import and job_id in from_import
    assert "jobledger.jobs.calibration_run" in attribute


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], dict[str, str]]:
    """A home whose registry holds 1,200 jobs (more than dir() lists), recorded as a
    sync records a service's jobs, one minute apart, and three aliases (one of them on
    the oldest job). Returns the home, the ids oldest first, and alias -> id."""
    from datetime import UTC, datetime, timedelta

    from jobledger.ids import new_job_id
    from jobledger.providers import RemoteJob
    from jobledger.registry import Registry
    from jobledger.status import JobStatus

    home = tmp_path_factory.mktemp("crowded-home")
    start = datetime(2025, 1, 1, tzinfo=UTC)
    infos = []
    for n in range(1200):
        created = start + timedelta(minutes=n)
        job_id = new_job_id(int(created.timestamp() * 1000))
        infos.append(RemoteJob(job_id, JobStatus.DONE, "echo", created_at=created))
    registry = Registry(home / "data" / "registry.db")
    assert registry.apply_infos("svc-crowded", infos) == 1200
    ids = [info.id for info in infos]
    aliases = {"calibration_a": ids[0], "calibration_b": ids[600], "sweep_last": ids[-1]}
    for alias, job_id in aliases.items():
        (record,) = registry.find(job_id)
        registry.set_alias(record.pk, alias)
    registry.close()
    return home, ids, aliases


def test_listing_is_bounded_and_older_ids_still_import(
    crowded: tuple[Path, list[str], dict[str, str]],
) -> None:
    home, ids, aliases = crowded
    oldest = ids[0]
    typo = oldest[:-1] + ("0" if oldest[-1] != "0" else "1")
    out = python(
        f"""
        import json
        import jobledger.jobs as jobs
        from jobledger.jobs import {oldest} as oldest
        try:
            from jobledger.jobs import {typo}
        except ImportError as exc:
            unknown = str(exc)
        print(json.dumps({{
            "dir": dir(jobs),
            "all": jobs.__all__,
            "oldest": str(oldest.job_id),
            "unknown": unknown,
            "prefix": jobs.names({oldest[:12]!r}),
            "aliases": jobs.names("calibration"),
            "first_five": jobs.names("J", limit=5),
            "everything": len(jobs.names(limit=None)),
            "none": jobs.names("nothing_like_this"),
        }}))
        """,
        home,
        no_network=True,
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    newest = set(ids[-1000:])
    listed = set(seen["all"])
    # Every alias and the 1,000 most recent ids; the 200 oldest are left out.
    assert listed == newest | set(aliases)
    assert seen["all"] == sorted(seen["all"])
    assert set(seen["dir"]) == listed | {"get", "names"}
    assert oldest not in listed and ids[199] not in listed and ids[200] in listed
    # ... but they import, and a prefix finds them through the index.
    assert seen["oldest"] == oldest
    assert oldest in seen["prefix"] and all(n.startswith(oldest[:12]) for n in seen["prefix"])
    assert seen["aliases"] == ["calibration_a", "calibration_b"]
    assert seen["first_five"] == sorted(ids)[:5]
    assert seen["everything"] == 1200 + len(aliases) and seen["none"] == []
    assert f"did you mean {oldest}" in seen["unknown"]


def test_ipython_extension_completes_old_ids_by_prefix(
    crowded: tuple[Path, list[str], dict[str, str]],
) -> None:
    pytest.importorskip("IPython")
    home, ids, _ = crowded
    prefix = ids[0][:12]
    out = python(
        f"""
        import json
        from IPython.core.completer import provisionalcompleter
        from IPython.testing.globalipapp import start_ipython

        ip = start_ipython()
        ip.run_cell("import jobledger.jobs as jobs")

        def complete(line):
            with provisionalcompleter():
                found = ip.Completer.completions(line, len(line))
                return sorted({{c.text.lstrip(".") for c in found}})

        lines = ["from jobledger.jobs import {prefix}", "jobs.{prefix}", "x = (jobs.calibration_"]
        before = [complete(line) for line in lines]
        ip.run_line_magic("load_ext", "jobledger.ipython")
        after = [complete(line) for line in lines]
        ip.run_line_magic("unload_ext", "jobledger.ipython")
        print(json.dumps({{"before": before, "after": after, "unloaded": complete(lines[0])}}))
        """,
        home,
        no_network=True,
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    expected = sorted(n for n in ids if n.startswith(prefix))
    assert ids[0] in expected
    # dir() lists only the newest 1,000 ids: without the extension nothing old completes.
    assert seen["before"][0] == [] and seen["before"][1] == []
    assert seen["after"][0] == expected and seen["after"][1] == expected
    assert seen["after"][2] == ["calibration_a", "calibration_b"]
    assert seen["unloaded"] == []


def test_names_the_module_defines_cannot_be_aliases() -> None:
    import jobledger.jobs
    from jobledger.names import RESERVED_NAMES, check_alias

    # Module attributes win over __getattr__: an alias with such a name could never be
    # imported, so every public name of the module is reserved.
    public = {name for name in vars(jobledger.jobs) if not name.startswith("_")}
    assert public <= RESERVED_NAMES
    for name in sorted(public):
        with pytest.raises(ValueError, match="already defines"):
            check_alias(name)
