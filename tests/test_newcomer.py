"""What a new user trips over: hanging services, messages, aliases, the Qiskit dialect,
notebook display. Against the real service on loopback and the real CLI."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import jobledger
from conftest import jobledger_cli
from jobledger.errors import OfflineError


@pytest.fixture
def conn(service: Any, jobledger_home: Path) -> Iterator[Any]:
    token = service.create_token("newcomer")
    with jobledger.connect(url=service.url, token=token) as connection:
        yield connection


@pytest.fixture
def silent_service() -> Iterator[str]:
    """A loopback server that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for sock in accepted:
        sock.close()
    listener.close()


@pytest.mark.parametrize("alias", ["class", "None", "import", "match", "case"])
def test_python_keywords_are_refused_as_aliases(conn: Any, alias: str) -> None:
    with pytest.raises(ValueError, match="Python keyword"):
        conn.submit({"n": 1}, "echo", alias=alias)
    assert conn.registry.count() == 0


def test_a_service_that_never_answers_gives_a_plain_error(
    silent_service: str, jobledger_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBLEDGER_TIMEOUT", "0.5")
    with pytest.raises(OfflineError) as info, jobledger.connect(url=silent_service) as conn:
        conn.backends()
    message = str(info.value)
    assert "no answer in time" in message
    assert "HTTPConnectionPool" not in message and "Max retries" not in message


def test_a_profile_sets_the_timeouts_made_with_the_cli(
    silent_service: str, jobledger_home: Path
) -> None:
    made = jobledger_cli(
        "config", "add-profile", "slow", "--url", silent_service, "--timeout", "0.5",
        home=jobledger_home,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    shown = jobledger_cli("config", "--json", home=jobledger_home)
    assert json.loads(shown.stdout)["profiles"][0]["name"] == "slow"
    with pytest.raises(OfflineError) as info, jobledger.connect(profile="slow") as conn:
        conn.backends()
    assert "no answer in time" in str(info.value)
    assert jobledger_cli("config", "use", "slow", home=jobledger_home).returncode == 0
    settings = json.loads(jobledger_cli("config", "--json", home=jobledger_home).stdout)
    assert (
        settings["timeout"]["value"] == 0.5 and "profile 'slow'" in settings["timeout"]["source"]
    )


def test_a_braket_profile_is_made_with_its_options_from_the_cli(jobledger_home: Path) -> None:
    made = jobledger_cli(
        "config", "add-profile", "aws", "--url", "https://braket.us-east-1.amazonaws.com",
        "--provider", "braket", "--option", "region=us-east-1", "--option", "shots=100",
        home=jobledger_home,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    from jobledger.config import load_profiles

    _default, profiles = load_profiles()
    assert profiles["aws"].provider == "braket"
    assert profiles["aws"].options == {"region": "us-east-1", "shots": 100}
    bad = jobledger_cli(
        "config", "add-profile", "aws", "--url", "https://x.example", "--provider", "braket",
        "--option", "region", home=jobledger_home,
    )  # fmt: skip
    assert bad.returncode == 2 and "KEY=VALUE" in bad.stderr


def test_a_refused_connection_is_named_plainly(jobledger_home: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(OfflineError) as info, jobledger.connect(url=url) as unreachable:
        unreachable.backends()
    assert "connection refused" in str(info.value)
    assert "NewConnectionError" not in str(info.value)


def test_bad_timeout_setting_names_the_variable(
    jobledger_home: Path, monkeypatch: pytest.MonkeyPatch, service: Any
) -> None:
    monkeypatch.setenv("JOBLEDGER_TIMEOUT", "soon")
    with pytest.raises(jobledger.ConfigError, match="JOBLEDGER_TIMEOUT"):
        jobledger.connect(url=service.url, token=service.token).backends()


def test_qiskit_dialect_extras(conn: Any) -> None:
    job = conn.submit({"n": 2}, "sleep", params={"seconds": 0.3, "interval": 0.1})
    assert job.backend() == "sleep" and job.backend().name == "sleep"
    assert job.primitive_id == job.program_id == "sleep"
    assert job.private is True and job.properties() is None and job.usage_estimation == {}
    assert job.instance == conn.service_id

    class Raw:
        @classmethod
        def decode(cls, raw: str) -> Any:
            return ("raw", json.loads(raw))

    job.wait_for_final_state(timeout=30)
    assert job.queue_position() is None and job.queue_info() is None
    assert job.result(decoder=Raw)[0] == "raw"
    assert job.result(timeout=5, decoder=lambda text: len(text)) > 0
    interim = job.interim_results(decoder=Raw)
    assert interim and all(item[0] == "raw" for item in interim)


def test_notebook_display_of_jobs_and_long_failures(conn: Any) -> None:
    long = "x" * 130_000
    failed = conn.submit({}, "fail", params={"message": long})
    failed.wait_for_final_state(timeout=30)
    page = failed._repr_html_()
    assert "more characters" in page and len(page) < 5_000
    assert "ended" in page and "started" in page
    done = conn.submit({"n": 1}, "echo")
    done.result(timeout=30)
    assert "stored locally" in done._repr_html_()
    table = conn.jobs()._repr_html_()
    assert table.count("<tr>") == 3 and str(done.job_id) in table


def test_ls_never_starts_the_embedded_service(jobledger_home: Path) -> None:
    started = jobledger_cli("submit", "sleep", "--param", "seconds=30", home=jobledger_home)
    assert started.returncode == 0, started.stderr
    refused = jobledger_cli("service", "stop", home=jobledger_home)
    assert refused.returncode == 1 and "1 job is queued or running" in refused.stderr
    assert "--force" in refused.stderr
    assert jobledger_cli("service", "stop", "--force", home=jobledger_home).returncode == 0
    listed = jobledger_cli("ls", home=jobledger_home)
    assert listed.returncode == 0, listed.stderr
    assert "not running" in listed.stderr
    status = jobledger_cli("service", "status", home=jobledger_home)
    assert "not running" in (status.stdout + status.stderr)


def _run_on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, bytes]:
    """Run ``python -m jobledger *args`` with stdout and stderr on a pseudo-terminal."""
    import os
    import pty
    import subprocess
    import sys

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobledger", *args], stdout=slave, stderr=slave, env=env
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return proc.wait(timeout=60), b"".join(chunks)


def test_no_color_turns_the_spinner_off(service: Any, jobledger_home: Path) -> None:
    import os

    token = service.create_token("nocolor")
    env = {**os.environ, "JOBLEDGER_HOME": str(jobledger_home)}
    env.update(JOBLEDGER_URL=service.url, JOBLEDGER_TOKEN=token, TERM="xterm")
    env.pop("NO_COLOR", None)
    outputs = {}
    for no_color in (False, True):
        with jobledger.connect(url=service.url, token=token) as conn:
            job = conn.submit({}, "sleep", params={"seconds": 1.2, "interval": 0.5})
        run_env = {**env, "NO_COLOR": "1"} if no_color else env
        code, output = _run_on_a_terminal(["wait", str(job.job_id)], run_env)
        assert code == 0, output
        outputs[no_color] = output
    assert b"\x1b[2K" in outputs[False]  # the spinner draws on a terminal...
    assert b"\x1b" not in outputs[True]  # ...and not at all with NO_COLOR


def test_ctrl_c_in_wait_says_the_job_keeps_running(service: Any, jobledger_home: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    token = service.create_token("ctrlc")
    with jobledger.connect(url=service.url, token=token) as conn:
        job = conn.submit({}, "sleep", params={"seconds": 30, "interval": 1})
        env = {**os.environ, "JOBLEDGER_HOME": str(jobledger_home)}
        env.update(JOBLEDGER_URL=service.url, JOBLEDGER_TOKEN=token)
        proc = subprocess.Popen(
            [sys.executable, "-m", "jobledger", "wait", str(job.job_id)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        deadline = time.monotonic() + 20
        while job.status().value != "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # let the command reach its wait
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        assert "keeps running" in err and "Aborted" not in err and "Traceback" not in err
        assert not job.status().is_final
        job.cancel()


def test_a_piped_batch_is_read_without_dash_and_follow_keeps_stdout_json(
    service: Any, jobledger_home: Path
) -> None:
    import os
    import subprocess
    import sys

    token = service.create_token("pipes")
    env = {**os.environ, "JOBLEDGER_HOME": str(jobledger_home)}
    env.update(JOBLEDGER_URL=service.url, JOBLEDGER_TOKEN=token)

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "jobledger", *args],
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=False,
        )

    piped = run("submit", "echo", stdin='{"from": "a pipe"}')
    assert piped.returncode == 0, piped.stderr
    job_id = piped.stdout.strip()
    shown = run("result", job_id, "--json")
    assert json.loads(shown.stdout) == {"from": "a pipe"}
    nothing = run("submit", "echo")
    assert nothing.returncode == 0, nothing.stderr

    streamed = run("submit", "sleep", "--param", "seconds=0.6", "--param", "interval=0.2")
    followed = run("wait", streamed.stdout.strip(), "--follow")
    assert followed.returncode == 0, followed.stderr
    lines = followed.stdout.splitlines()
    assert lines and all(isinstance(json.loads(line), dict | list | int) for line in lines)
    assert streamed.stdout.strip() in followed.stderr  # the summary went to stderr


def test_config_tells_the_truth_about_the_embedded_service_token(
    jobledger_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBLEDGER_TOKEN", "not-for-the-embedded-service")
    import os
    import subprocess
    import sys

    env = {**os.environ, "JOBLEDGER_HOME": str(jobledger_home)}
    env.pop("JOBLEDGER_URL", None)
    shown = subprocess.run(
        [sys.executable, "-m", "jobledger", "config", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    body = json.loads(shown.stdout)
    assert body["token"]["set"] is False  # no embedded service has run here yet
    assert "made when the service first starts" in body["token"]["source"]
    assert "JOBLEDGER_TOKEN" in body["token"]["source"] and "not used" in body["token"]["source"]
    assert "not-for-the-embedded-service" not in shown.stdout


def test_a_huge_failure_message_is_cut_in_the_cli_but_kept_whole(
    service: Any, jobledger_home: Path
) -> None:
    import os
    import subprocess
    import sys

    token = service.create_token("huge")
    long = "y" * 130_000
    with jobledger.connect(url=service.url, token=token) as conn:
        job = conn.submit({}, "fail", params={"message": long})
        job.wait_for_final_state(timeout=30)
    env = {**os.environ, "JOBLEDGER_HOME": str(jobledger_home)}
    env.update(JOBLEDGER_URL=service.url, JOBLEDGER_TOKEN=token)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "jobledger", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    waited = run("wait", str(job.job_id))
    assert waited.returncode == 1 and len(waited.stderr) < 2_000
    assert "more characters" in waited.stderr and "show" in waited.stderr
    shown = run("show", str(job.job_id))
    assert len(shown.stdout) < 5_000 and "more characters" in shown.stdout
    whole = json.loads(run("show", str(job.job_id), "--json").stdout)
    assert long in json.dumps(whole)


def test_a_bad_jobledger_home_is_named_with_the_way_out(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    not_a_folder = tmp_path / "home-is-a-file"
    not_a_folder.write_text("oops")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBLEDGER_")}
    env["JOBLEDGER_HOME"] = str(not_a_folder)
    done = subprocess.run(
        [sys.executable, "-m", "jobledger", "submit", "echo"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1
    assert f"JOBLEDGER_HOME={not_a_folder}" in done.stderr
    assert "point JOBLEDGER_HOME at a folder you can write" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.filterwarnings("ignore::ImportWarning")  # myQLM's loader on Python 3.11
def test_a_stored_quantum_result_shows_a_counts_histogram(conn: Any) -> None:
    from qiskit import QuantumCircuit

    bell = QuantumCircuit(2)
    bell.h(0)
    bell.cx(0, 1)
    bell.measure_all()
    job = conn.submit([bell], "qiskit-sampler", params={"shots": 64, "seed": 3})
    job.result(timeout=60)
    page = job._repr_html_()
    assert "jobledger-counts" in page and ">00<" in page and ">11<" in page
    echo = conn.submit({"n": 1}, "echo")
    echo.result(timeout=30)
    assert "jobledger-counts" not in echo._repr_html_()


def test_a_notebook_session_path_is_recorded_in_provenance(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    notebook = tmp_path / "figure3.ipynb"
    notebook.write_text('{"cells": []}')
    code = (
        "from IPython.testing.globalipapp import start_ipython\n"
        "shell = start_ipython()\n"
        "from jobledger.provenance import capture_environment\n"
        "import json\n"
        "print(json.dumps(capture_environment()['program']))\n"
    )
    env = {**os.environ, "JPY_SESSION_NAME": str(notebook), "JOBLEDGER_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    program = json.loads(done.stdout.strip().splitlines()[-1])
    assert program["path"] == str(notebook)
    import hashlib

    assert program["sha256"] == hashlib.sha256(notebook.read_bytes()).hexdigest()


@pytest.mark.parametrize("running_job", [False, True])
def test_ctrl_c_in_serve_is_a_normal_stop(tmp_path: Path, running_job: bool) -> None:
    import os
    import re
    import signal
    import subprocess
    import sys
    import time

    data = tmp_path / "svc"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBLEDGER_")}
    env["JOBLEDGER_HOME"] = str(tmp_path / "home")
    # A terminal's Ctrl-C reaches the whole process group: the service and its workers.
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jobledger",
            "serve",
            "--port",
            "0",
            "--data",
            str(data),
            "--workers",
            "2",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        assert proc.stderr is not None
        url = re.search(r"http://\S+", proc.stderr.readline())
        assert url is not None
        if running_job:
            made = jobledger_cli("token", "create", "ctrlc", "--data", str(data), home=tmp_path)
            with jobledger.connect(url=url.group(0), token=made.stdout.strip()) as conn:
                # One job per worker, each past its first interim result: both workers
                # run a job (a worker still starting up when the signal comes, in the
                # service's first second, can print its own traceback: not covered).
                jobs = [
                    conn.submit({}, "sleep", params={"seconds": 30, "interval": 0.2})
                    for _ in range(2)
                ]
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and not all(
                    job.interim_results() for job in jobs
                ):
                    time.sleep(0.1)
                assert all(job.status().value == "RUNNING" for job in jobs)
        os.killpg(proc.pid, signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert "stopped" in err
    assert "Traceback" not in err and "Aborted" not in err
