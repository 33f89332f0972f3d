"""Tests of the ``jobledger`` command through click's CliRunner, against the real service.

Each test has its own ``JOBLEDGER_HOME`` (an empty registry and store) and points the
CLI at the module's shared service with ``JOBLEDGER_URL`` / ``JOBLEDGER_TOKEN``.
"""

from __future__ import annotations

import io
import json
import re
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

import jobledger
from jobledger.cli import cli
from jobledger.cli.output import color_enabled, format_table, relative_time, style_status
from jobledger.paths import get_paths
from jobledger.status import JobStatus

JOB_FIELDS = {
    "id",
    "alias",
    "status",
    "status_code",
    "backend",
    "submitted_at",
    "started_at",
    "ended_at",
    "tags",
    "session_id",
    "message",
    "result_stored",
}
DOCS = Path(__file__).resolve().parents[1] / "docs" / "cli.md"

Run = Callable[..., Result]


@pytest.fixture
def run(jobledger_home: Path, service: Any, monkeypatch: pytest.MonkeyPatch) -> Run:
    """``run(*args, input=None, code=0)``: invoke the CLI, check its exit code."""
    monkeypatch.setenv("JOBLEDGER_URL", service.url)
    monkeypatch.setenv("JOBLEDGER_TOKEN", service.token)
    monkeypatch.delenv("NO_COLOR", raising=False)
    runner = CliRunner()

    def invoke(*args: str, input: str | bytes | None = None, code: int = 0) -> Result:
        result = runner.invoke(cli, list(args), input=input)
        assert result.exit_code == code, (
            f"jobledger {' '.join(args)} exited {result.exit_code}, expected {code}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}\nexception: {result.exception!r}"
        )
        return result

    return invoke


def submit(run: Run, *args: str, input: str | bytes | None = None) -> str:
    """Submit and return the new job's id."""
    job_id = run("submit", *args, input=input).stdout.strip()
    assert re.fullmatch(r"J[0-9A-Z]{18}", job_id), job_id
    return job_id


def as_json(result: Result) -> Any:
    return json.loads(result.stdout)


def assert_one_line_error(result: Result, *fragments: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# -- the main path ---------------------------------------------------------------------------


def test_submit_wait_show_and_result(run: Run, tmp_path: Path) -> None:
    batch = {"circuit": "bell", "shots": [1, 2, 3]}
    path = tmp_path / "batch.json"
    path.write_text(json.dumps(batch))
    out = run(
        "submit",
        "echo",
        str(path),
        "--alias",
        "bell",
        "--tag",
        "fig3",
        "--tag",
        "x",
        "--param",
        "delay=0.1",
        "--session",
        "s1",
        "--wait",
        "--json",
    )
    job = as_json(out)
    assert set(job) == JOB_FIELDS
    assert job["alias"] == "bell" and job["backend"] == "echo"
    assert (job["status"], job["status_code"]) == ("done", "DONE")
    assert job["tags"] == ["fig3", "x"] and job["session_id"] == "s1"
    assert datetime.fromisoformat(job["ended_at"]) >= datetime.fromisoformat(job["submitted_at"])
    assert "submitted job" in out.stderr

    assert as_json(run("result", "bell", "--json")) == batch
    assert json.loads(run("result", job["id"]).stdout) == batch

    details = as_json(run("show", "bell", "--json"))
    assert details["id"] == job["id"] and details["result_stored"] is True
    assert details["params"] == {"delay": 0.1}
    assert details["result"]["stored"] and details["batch"]["stored"]
    assert isinstance(details["provenance"]["packages"], int)
    assert details["provenance"]["python"]
    assert details["events"][0]["event"] == "submitted"

    human = run("show", "bell").stdout
    for label in ("id:", "status:", "submitted:", "ended:", "result:", "events:"):
        assert label in human
    assert re.search(r"\((just now|\d+ \w+ ago)\)", human) and "stored locally" in human
    assert "\x1b[" not in human


def test_submit_reads_stdin_and_media_types(run: Run, tmp_path: Path) -> None:
    job_id = submit(run, "echo", "-", "--media-type", "bytes", input=b"\x00\x01raw")
    run("wait", job_id)
    err = run("result", job_id, "--json", code=1)
    assert_one_line_error(err, job_id, "--out")
    target = tmp_path / "out.bin"
    run("result", job_id, "--out", str(target))
    assert target.read_bytes() == b"\x00\x01raw"
    assert run("result", job_id).stdout_bytes == b"\x00\x01raw"  # piped: raw bytes

    json_id = submit(run, "echo", "-", input='{"a": [1, 2]}')
    run("wait", json_id)
    assert as_json(run("result", json_id, "--json")) == {"a": [1, 2]}

    bad = run("submit", "echo", "-", input="not json", code=1)
    assert_one_line_error(bad, "not valid JSON", "--media-type bytes")
    assert run("submit", "echo", "-", "--media-type", "xml", input="x", code=2).exit_code == 2


def test_params_are_json_when_they_parse(run: Run) -> None:
    failing = submit(run, "fail", "--param", "message=boom here")
    result = run("wait", failing, code=1)
    assert_one_line_error(result, failing, "failed", "boom here")
    assert as_json(run("show", failing, "--json"))["params"] == {"message": "boom here"}
    err = run("result", failing, "--json", code=1)
    assert_one_line_error(err, "boom here")

    quick = submit(run, "echo", "--param", "delay=0")
    assert as_json(run("show", quick, "--json"))["params"] == {"delay": 0}
    rejected = run("submit", "echo", "--param", "delay=[1]", code=1)
    assert_one_line_error(rejected, "delay")


def test_bad_param_and_usage_errors_exit_2(run: Run) -> None:
    bad = run("submit", "echo", "--param", "novalue", code=2)
    assert "--param" in bad.stderr and "KEY=VALUE" in bad.stderr
    assert "Traceback" not in bad.output
    assert run("ls", "--no-such-option", code=2).exit_code == 2
    assert run("ls", "--status", "sleeping", code=2).exit_code == 2
    assert run("show", code=2).exit_code == 2
    assert "give either NAME or --remove" in run("alias", "J0", code=2).stderr
    assert "exactly one" in run("cache", "prune", code=2).stderr


def test_ls_filters_table_and_json(run: Run) -> None:
    first = submit(run, "echo", "--tag", "alpha", "--alias", "first")
    second = submit(run, "fail", "--tag", "beta")
    run("wait", second, code=1)
    run("wait", first)

    listed = as_json(run("ls", "--json"))
    assert [j["id"] for j in listed] == [second, first]
    assert all(set(j) == JOB_FIELDS | {"provider"} for j in listed)
    assert {j["provider"] for j in listed} == {"jobledger"}
    assert [j["id"] for j in as_json(run("ls", "--tag", "alpha", "--json"))] == [first]
    assert [j["id"] for j in as_json(run("ls", "--status", "failed", "--json"))] == [second]
    assert [j["id"] for j in as_json(run("ls", "--status", "DONE", "--json"))] == [first]
    assert [j["id"] for j in as_json(run("ls", "--backend", "echo", "--json"))] == [first]
    assert [j["id"] for j in as_json(run("ls", "--limit", "1", "--json"))] == [second]
    assert len(as_json(run("ls", "--all", "--json"))) == 2
    remote = as_json(run("ls", "--remote", "--json", "--limit", "500"))
    assert {first, second} <= {j["id"] for j in remote}

    table = run("ls").stdout.splitlines()
    assert table[0].split() == [
        "ID", "ALIAS", "BACKEND", "PROVIDER", "STATUS", "SUBMITTED", "RAN", "TAGS"
    ]  # fmt: skip
    assert "jobledger" in table[1]
    assert table[1].startswith(second) and "failed" in table[1]
    assert table[2].index("done") == table[1].index("failed")  # aligned columns
    assert "\x1b[" not in "\n".join(table)


def test_wait_follow_prints_interim_results(run: Run) -> None:
    job_id = submit(run, "sleep", "--param", "seconds=1", "--param", "interval=0.25")
    waited = run("wait", job_id, "--follow")
    # stdout holds the JSON lines only (jq can read it); the summary is on stderr.
    interim = [json.loads(line) for line in waited.stdout.splitlines()]
    assert len(interim) >= 2 and all("elapsed" in v for v in interim)
    with jobledger.connect() as conn:
        assert interim == conn.job(job_id).interim_results()  # none missed, none twice
    assert f"{job_id} done" in waited.stderr
    assert as_json(run("wait", job_id, "--json"))["status"] == "done"


def test_wait_timeout_and_cancel(run: Run) -> None:
    job_id = submit(run, "sleep", "--param", "seconds=20", "--param", "interval=0.2")
    timed_out = run("wait", job_id, "--timeout", "0.3", code=1)
    assert_one_line_error(timed_out, job_id, "final state")
    assert as_json(run("cancel", job_id, "--json"))["cancelled"] is True
    status = run("wait", job_id, "--timeout", "15", code=1)
    assert_one_line_error(status, job_id, "cancelled")
    again = run("cancel", job_id, code=1)
    assert_one_line_error(again, "already cancelled")


def test_delete_keeps_the_local_result(run: Run) -> None:
    job_id = submit(run, "echo", "-", "--alias", "keepme", input='{"v": 1}')
    run("wait", job_id)
    deleted = as_json(run("delete", "keepme", "--json"))
    assert deleted["status"] == "deleted" and deleted["result_stored"] is True
    assert as_json(run("result", "keepme", "--json")) == {"v": 1}
    assert "already deleted" in run("delete", "keepme").stdout


def test_sync_records_jobs_from_the_service(
    run: Run, service: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBLEDGER_TOKEN", service.create_token("syncer"))
    job_id = submit(run, "echo", "-", input="[1]")
    run("wait", job_id)
    monkeypatch.setenv("JOBLEDGER_HOME", str(tmp_path / "elsewhere"))
    report = as_json(run("sync", "--fetch-results", "--json"))
    assert report == {
        "new": 1, "updated": 0, "resolved": 0, "fetched": 1, "refused": 0, "listed": 1,
        "errors": [],
    }  # fmt: skip
    assert as_json(run("show", job_id, "--json"))["result_stored"] is True
    again = run("sync").stdout
    assert "0 jobs listed" in again and "0 new" in again  # only what changed since


def test_paths_json(run: Run, jobledger_home: Path) -> None:
    found = as_json(run("paths", "--json"))
    assert {"registry", "store", "config", "runtime"} <= set(found)
    assert found["registry"] == str(get_paths().registry)
    assert Path(found["registry"]).is_relative_to(jobledger_home)
    assert "registry" in run("paths").stdout


def test_alias_set_and_remove(run: Run) -> None:
    job_id = submit(run, "echo")
    assert "importable as calib" in run("alias", job_id, "calib").stdout
    assert as_json(run("show", "calib", "--json"))["id"] == job_id
    run("alias", "calib", "--remove")
    assert as_json(run("show", job_id, "--json"))["alias"] is None
    bad = run("alias", job_id, "1bad", code=1)
    assert_one_line_error(bad, "invalid alias")


def test_config_profiles_never_print_the_token(
    run: Run, service: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = service.token
    saved = run(
        "config",
        "add-profile",
        "lab",
        "--url",
        service.url,
        "--token-stdin",
        "--default",
        input=token + "\n",
    )
    assert "lab" in saved.stdout and token not in saved.output
    monkeypatch.delenv("JOBLEDGER_URL")
    monkeypatch.delenv("JOBLEDGER_TOKEN")
    shown = run("config")
    assert token not in shown.output
    assert re.search(r"token:\s+set \(from token file", shown.stdout), shown.stdout
    assert service.url in shown.stdout
    body = as_json(run("config", "--json"))
    assert token not in json.dumps(body)
    assert body["token"]["set"] is True and body["url"]["value"] == service.url
    assert body["profiles"] == [
        {
            "name": "lab",
            "url": service.url,
            "verify": True,
            "offline": False,
            "token_set": True,
            "default": True,
        }
    ]
    run("ls", "--remote", "--json")  # the profile's URL and token work
    run("config", "add-profile", "other", "--url", "https://example.invalid", "--no-verify")
    assert "'other'" in run("config", "use", "other").stdout
    assert as_json(run("config", "--json"))["profile"]["value"] == "other"
    unknown = run("config", "use", "nope", code=1)
    assert_one_line_error(unknown, "nope")


def test_token_create_prints_the_token_alone(run: Run, service: Any) -> None:
    out = run("token", "create", "carol", "--data", str(service.data))
    assert re.fullmatch(r"\S+\n", out.stdout)
    assert "carol" in out.stderr


# -- the cache ------------------------------------------------------------------------------


def test_cache_info_verify_and_corruption(run: Run, tmp_path: Path) -> None:
    from jobledger.store import Store

    job_id = submit(run, "blob", "--param", "size=200000", "--param", "seed=3")
    run("wait", job_id)
    first = tmp_path / "first.bin"
    run("result", job_id, "--out", str(first))
    assert len(first.read_bytes()) == 200000
    info = as_json(run("cache", "--json"))
    assert info["count"] >= 2 and info["size"] >= 200000 and info["jobs"] == 1
    assert as_json(run("cache", "info", "--json")) == info
    assert as_json(run("cache", "verify", "--json"))["ok"] is True
    assert "all match" in run("cache", "verify").stdout

    digest = as_json(run("show", job_id, "--json"))["result"]["sha256"]
    store = Store(get_paths().store)
    path = store.path_of(digest)
    store.close()
    assert path is not None
    path.write_bytes(b"tampered" + path.read_bytes()[8:])
    bad = run("cache", "verify", code=1)
    assert job_id in bad.stderr and "corrupt" in bad.stdout and "dropped" in bad.stdout
    again = tmp_path / "again.bin"
    run("result", job_id, "--out", str(again))  # downloaded again, verified
    assert again.read_bytes() == first.read_bytes()


def test_cache_prune_is_safe(run: Run) -> None:
    from jobledger.store import Store

    # sleep's results differ from its batch (null), so no digest is shared with a batch.
    kept = submit(run, "sleep", "--param", "seconds=0")
    gone = submit(run, "sleep", "--param", "seconds=0.01")
    for job_id in (kept, gone):
        run("wait", job_id)
        run("result", job_id, "--json")
    run("delete", kept)  # the service no longer has it: its result must stay
    store = Store(get_paths().store)
    orphan = store.put_bytes(b"nobody refers to me")
    store.close()

    dry = as_json(run("cache", "prune", "--unreferenced", "--min-age", "0", "--dry-run", "--json"))
    assert dry["sha256"] == [orphan] and dry["dry_run"] is True
    done = as_json(run("cache", "prune", "--unreferenced", "--min-age", "0", "--yes", "--json"))
    assert done["sha256"] == [orphan] and done["count"] == 1
    assert run("cache", "prune", "--unreferenced", "--yes").stdout.startswith("removed 0")

    assert "Aborted" in run("cache", "prune", "--older-than", "0", input="n\n", code=1).output
    old = as_json(run("cache", "prune", "--older-than", "0", "--yes", "--json"))
    assert old["jobs"] == [gone] and old["count"] == 1
    assert not as_json(run("show", gone, "--json"))["result_stored"]
    assert as_json(run("show", kept, "--json"))["result_stored"]
    assert as_json(run("result", gone, "--json")) == {"slept": 0.01}  # fetched again
    assert as_json(run("result", kept, "--json")) == {"slept": 0}


# -- errors -----------------------------------------------------------------------------------


def test_unknown_id_suggests_close_matches(run: Run, service: Any) -> None:
    submit(run, "echo", "--alias", "hello")
    result = run("show", "helo", code=1)
    assert_one_line_error(result, "'helo'", "did you mean hello")
    unknown = run("result", "J" + "0" * 18, code=1)
    assert_one_line_error(unknown, "J" + "0" * 18, service.url)
    debug = CliRunner().invoke(cli, ["--debug", "show", "helo"])
    assert debug.exit_code == 1 and isinstance(debug.exception, KeyError)


def test_unreachable_service_names_the_url(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("JOBLEDGER_URL", url)
    result = run("ls", "--remote", code=1)
    assert_one_line_error(result, url, "cannot reach")
    assert run("submit", "echo", code=1).exit_code == 1


def test_wrong_token_is_explained(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBLEDGER_TOKEN", "wrong-token")
    result = run("submit", "echo", code=1)
    assert_one_line_error(result, "refused the token")
    assert "wrong-token" not in result.output


def test_offline_listing_and_cached_result(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    job_id = submit(run, "echo", "-", input="42")
    run("wait", job_id)
    run("result", job_id)
    monkeypatch.setenv("JOBLEDGER_OFFLINE", "1")
    assert as_json(run("result", job_id, "--json")) == 42
    assert [j["id"] for j in as_json(run("ls", "--json"))] == [job_id]
    assert_one_line_error(run("sync", code=1), "offline")


# -- output helpers ----------------------------------------------------------------------------


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colours_only_on_a_terminal_without_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert color_enabled(_Tty())
    assert "\x1b[" in style_status(JobStatus.DONE, stream=_Tty())
    assert not color_enabled(io.StringIO())
    assert style_status(JobStatus.DONE, stream=io.StringIO()) == "done"
    monkeypatch.setenv("NO_COLOR", "1")
    assert not color_enabled(_Tty())
    assert style_status(JobStatus.ERROR, stream=_Tty()) == "failed"


def test_no_ansi_when_piped_or_no_color(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    job_id = submit(run, "echo", "--tag", "t")
    run("wait", job_id)
    monkeypatch.setenv("NO_COLOR", "1")
    for args in (("ls",), ("show", job_id), ("wait", job_id), ("paths",), ("config",)):
        assert "\x1b" not in run(*args).output


def test_relative_time_and_table() -> None:
    now = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
    assert relative_time(now - timedelta(seconds=2), now) == "just now"
    assert relative_time(now - timedelta(seconds=30), now) == "30 s ago"
    assert relative_time(now - timedelta(minutes=3, seconds=10), now) == "3 min ago"
    assert relative_time(now - timedelta(hours=5), now) == "5 h ago"
    assert relative_time(now - timedelta(days=1), now) == "1 day ago"
    assert relative_time(now + timedelta(minutes=2), now) == "in 2 min"
    table = format_table(["A", "LONG"], [["xyz", "1"], ["q", "22"]]).splitlines()
    assert table == ["A    LONG", "xyz  1", "q    22"]


# -- help and docs ------------------------------------------------------------------------------


def _commands(group: click.Group, prefix: str) -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []
    for name, command in sorted(group.commands.items()):
        path = f"{prefix} {name}"
        found.append((path, command))
        if isinstance(command, click.Group):
            found += _commands(command, path)
    return found


def test_every_command_has_help_and_a_docs_section() -> None:
    commands = _commands(cli, "jobledger")
    names = {path for path, _ in commands}
    assert {
        "jobledger submit",
        "jobledger ls",
        "jobledger show",
        "jobledger result",
        "jobledger wait",
        "jobledger cancel",
        "jobledger delete",
        "jobledger sync",
        "jobledger paths",
        "jobledger alias",
        "jobledger config",
        "jobledger config use",
        "jobledger config add-profile",
        "jobledger cache",
        "jobledger cache verify",
        "jobledger cache prune",
        "jobledger demo",
        "jobledger serve",
        "jobledger service start",
        "jobledger token create",
    } <= names
    docs = DOCS.read_text(encoding="utf-8")
    headings = set(re.findall(r"^## (jobledger[\w -]*?)\s*$", docs, re.MULTILINE))
    runner = CliRunner()
    for path, command in commands:
        assert (command.help or command.short_help or "").strip(), f"{path} has no help"
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert param.help, f"{path} {param.opts} has no help"
        shown = runner.invoke(cli, [*path.split()[1:], "--help"])
        assert shown.exit_code == 0 and "Usage:" in shown.output
        assert path in headings, f"docs/cli.md has no section '## {path}'"
    assert runner.invoke(cli, ["--version"]).output.startswith("jobledger, version")


# -- the local store's safety -----------------------------------------------------------------


def _stored_result_file(job_id: str) -> Path:
    from jobledger.jobs import get
    from jobledger.store import Store

    digest = get(job_id).provenance["result_sha256"]
    with Store(get_paths().store) as store:
        path = store.path_of(digest)
    assert path is not None and path.is_file()
    return path


def test_result_with_corrupt_bytes_writes_nothing_anywhere(run: Run, tmp_path: Path) -> None:
    job_id = submit(run, "blob", "--param", "size=300000")
    run("wait", job_id)
    good = tmp_path / "good.bin"
    run("result", job_id, "--out", str(good))
    stored = _stored_result_file(job_id)
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF  # the first half would stream before the flip
    stored.write_bytes(bytes(data))

    piped = run("result", job_id, "--out", "-", code=1)
    assert piped.stdout_bytes == b""
    assert_one_line_error(piped, "corrupt", job_id)

    target = tmp_path / "out" / "r.bin"
    target.parent.mkdir()
    failed = run("result", job_id, "--out", str(target), code=1)
    assert_one_line_error(failed, "corrupt", job_id)
    assert list(target.parent.iterdir()) == []  # neither the file nor a partial one


def test_prune_keeps_young_unreferenced_blobs(run: Run) -> None:
    from jobledger.store import Store

    with Store(get_paths().store) as store:
        young = store.put_bytes(b"a batch whose job is not recorded yet")
    kept = run("cache", "prune", "--unreferenced", "--yes")
    assert kept.stdout.startswith("removed 0")
    assert "kept 1 unreferenced blobs stored less than 1 h 0 min ago" in kept.stdout
    with Store(get_paths().store) as store:
        assert store.has(young)
        store.put_bytes(b"a batch whose job is not recorded yet")  # stored again: young again
        assert [e.stored_at > 0 for e in store.entries()] == [True]
    body = as_json(run("cache", "prune", "--unreferenced", "--min-age", "0", "--yes", "--json"))
    assert body["sha256"] == [young] and body["kept_young"] == 0


def test_prune_racing_submissions_never_removes_a_recorded_batch(
    jobledger_home: Path, service: Any
) -> None:
    """Submitters and a pruner share one store: every recorded batch must survive.

    The pruner uses a grace period of one second instead of an hour, so that blobs
    of this test become prunable while it runs; a submission stores its batch and
    records its job within milliseconds of each other.
    """
    import threading
    import time

    from jobledger.cli.cache import remove_unreferenced, unreferenced_candidates

    stop = threading.Event()
    errors: list[BaseException] = []
    removed: list[str] = []

    def submitter(number: int) -> None:
        try:
            with jobledger.connect(service.url, service.token) as conn:
                count = 0
                while not stop.is_set():
                    conn.submit({"submitter": number, "n": count}, "echo")
                    count += 1
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    def pruner() -> None:
        try:
            with jobledger.connect(service.url, service.token) as conn:
                while not stop.is_set():
                    digests, _ = unreferenced_candidates(conn, min_age=1.0)
                    removed.extend(remove_unreferenced(conn, digests, min_age=1.0))
        except BaseException as exc:
            errors.append(exc)

    with jobledger.connect(service.url, service.token) as conn:
        for n in range(3):  # unreferenced and old enough: the pruner must remove them
            conn.store.put_bytes(b"orphan %d" % n)
    time.sleep(1.1)
    threads = [threading.Thread(target=submitter, args=(n,)) for n in range(3)]
    threads.append(threading.Thread(target=pruner))
    for thread in threads:
        thread.start()
    time.sleep(2.5)
    stop.set()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert len(removed) >= 3  # the pruner really ran and removed what it may
    with jobledger.connect(service.url, service.token, offline=True) as conn:
        rows = conn.registry.read("SELECT batch_sha256 FROM jobs_view")
        assert len(rows) > 20
        missing = [r[0] for r in rows if not conn.store.has(r[0])]
    assert missing == [], f"{len(missing)} of {len(rows)} recorded batches were pruned"


def test_a_damaged_store_index_is_one_line_and_cache_repair_recovers(run: Run) -> None:
    big = submit(run, "blob", "--param", "size=200000")
    small = submit(run, "echo", "-", input='{"small": true}')
    for job_id in (big, small):
        run("wait", job_id)
        run("result", job_id, "--out", "-")  # stored locally
    expected = run("result", big, "--out", "-").stdout_bytes
    store = get_paths().store
    for extra in ("cache.db-wal", "cache.db-shm"):
        (store / extra).unlink(missing_ok=True)
    (store / "cache.db").write_bytes(b"not a database " * 1000)

    for args in (("cache", "info"), ("cache", "verify"), ("result", big, "--out", "-")):
        failed = run(*args, code=1)
        assert_one_line_error(failed, str(store / "cache.db"), "jobledger cache repair")

    report = as_json(run("cache", "repair", "--json"))
    assert report["files"] >= 1 and report["damaged_index"]
    assert report["not_recovered"] >= 2  # the small result and the batches lived inline
    assert run("result", big, "--out", "-").stdout_bytes == expected
    assert as_json(run("result", small, "--json")) == {"small": True}  # downloaded again
    assert run("cache", "verify").stdout.startswith("checked")


def test_cache_info_reports_partial_downloads(run: Run) -> None:
    import os
    import socket

    partial = get_paths().store / "partial"
    partial.mkdir(parents=True)
    (partial / f"{socket.gethostname()}-pid{os.getpid()}-x.partial").write_bytes(b"x" * 5000)
    body = as_json(run("cache", "info", "--json"))
    assert (body["partial"], body["partial_size"]) == (1, 5000)
    assert "partial downloads: 1 (4.9 KiB)" in run("cache", "info").stdout


def test_submit_on_a_full_disk_is_one_line_and_records_nothing(
    run: Run, jobledger_home: Path
) -> None:
    import os
    import sqlite3
    import subprocess

    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(jobledger_home)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill: {mounted.stderr.decode().strip()}")
    try:
        first = submit(run, "echo", "-", input='{"n": 1}')
        run("wait", first)
        run("result", first, "--json")
        fd = os.open(jobledger_home / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        for batch in ('{"n": 2}', json.dumps({"big": "x" * 300_000})):
            failed = run("submit", "echo", "-", input=batch, code=1)
            assert_one_line_error(
                failed, "no space left on device while storing the", "nothing was recorded"
            )
        uri = f"{get_paths().registry.as_uri()}?mode=ro&immutable=1"
        with sqlite3.connect(uri, uri=True) as db:
            assert db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 1
        db.close()
    finally:
        subprocess.run(["umount", "-l", str(jobledger_home)], check=False)
