"""Tests of the provenance record captured at submission."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jobledger import __version__, provenance
from jobledger.provenance import capture_environment, mask_argv, provenance_digest

# Shaped like a jobledger token: secrets.token_urlsafe(32).
TOKEN = "q3J8vN2kXw0LbZr5TgYh7mPcD4sAeF1uKo9iWn6xRt0"
# A configured token that looks like nothing in particular: only known by value.
PLAIN = "lab-bench-seven"

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBLEDGER_HOME", str(tmp_path / "home"))
    provenance.clear_cache()


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True, timeout=30
    )
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    git(root, "config", "user.email", "test@example.org")
    git(root, "config", "user.name", "Test")
    git(root, "config", "commit.gpgsign", "false")
    (root / "analysis.py").write_text("print('figure 3')\n")
    git(root, "add", "analysis.py")
    git(root, "commit", "-q", "-m", "first")
    return root


def test_fields_present_and_json_able(tmp_path: Path) -> None:
    record = capture_environment(cwd=tmp_path, argv=["prog"])
    assert set(record) == {
        "jobledger",
        "python",
        "packages",
        "platform",
        "host",
        "user",
        "cwd",
        "program",
        "git",
    }
    assert record["jobledger"] == __version__
    assert record["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert record["python"]["executable"] == sys.executable
    assert set(record["platform"]) == {"system", "release", "machine"}
    assert record["packages"]["jobledger"] == __version__
    assert "diskcache" in record["packages"]
    assert len(record["packages"]) <= provenance.MAX_PACKAGES
    assert record["cwd"] == str(tmp_path)
    json.dumps(record, allow_nan=False)


def test_imported_scientific_packages_are_listed(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    record = capture_environment(cwd=tmp_path, argv=["prog"])
    assert record["packages"]["numpy"] == np.__version__


def test_script_path_and_digest(tmp_path: Path) -> None:
    script = tmp_path / "run.py"
    script.write_text("print('hello')\n")
    record = capture_environment(cwd=tmp_path, argv=["run.py", "--shots", "100"])
    assert record["program"] == {
        "kind": "script",
        "path": str(script),
        "sha256": hashlib.sha256(script.read_bytes()).hexdigest(),
        "argv": ["run.py", "--shots", "100"],
    }


def test_interactive_without_script(tmp_path: Path) -> None:
    record = capture_environment(cwd=tmp_path, argv=[])
    assert record["program"]["kind"] == "interactive"
    assert record["program"]["path"] is None


@needs_git
def test_git_commit_and_dirty_state(repo: Path) -> None:
    record = capture_environment(cwd=repo, argv=["analysis.py"])
    head = git(repo, "rev-parse", "HEAD")
    assert record["git"] == {"commit": head, "dirty": False, "root": str(repo.resolve())}
    (repo / "analysis.py").write_text("print('figure 4')\n")
    provenance.clear_cache()
    assert capture_environment(cwd=repo, argv=["analysis.py"])["git"]["dirty"] is True


@needs_git
def test_untracked_files_do_not_make_it_dirty(repo: Path) -> None:
    (repo / "notes.txt").write_text("scratch\n")
    assert capture_environment(cwd=repo, argv=[])["git"]["dirty"] is False


@needs_git
def test_git_skipped_outside_a_repository(tmp_path: Path) -> None:
    outside = tmp_path / "plain"
    outside.mkdir()
    if subprocess.run(["git", "rev-parse"], cwd=outside, capture_output=True).returncode == 0:
        pytest.skip("the temporary folder is inside a git repository")
    assert capture_environment(cwd=outside, argv=[])["git"] is None


def test_git_missing_is_tolerated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert capture_environment(cwd=tmp_path, argv=[])["git"] is None


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["p", "--token", "abc123"], ["p", "--token", "***"]),
        (["p", "--password", "pw", "x"], ["p", "--password", "***", "x"]),
        (["p", "--api-key", "k"], ["p", "--api-key", "***"]),
        (["p", "--token=abc123"], ["p", "--token=***"]),
        (["p", "url?token=abc123"], ["p", "url?token=***"]),
        (["p", "PASSWORD=hunter2"], ["p", "PASSWORD=***"]),
        (["p", "secret=x"], ["p", "secret=***"]),
        (["p", "https://user:hunter2@host/x"], ["p", "https://***@host/x"]),
        (["p", "--shots", "100"], ["p", "--shots", "100"]),
    ],
)
def test_secret_arguments_are_masked(argv: list[str], expected: list[str]) -> None:
    assert mask_argv(argv) == expected


def test_no_secrets_or_environment_values_captured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBLEDGER_TOKEN", "env-token-value-42")
    monkeypatch.setenv("SOME_API_SECRET", "env-secret-value-43")
    record = capture_environment(cwd=tmp_path, argv=["p", "--token", "argv-token-value-44"])
    text = json.dumps(record)
    for secret in ("env-token-value-42", "env-secret-value-43", "argv-token-value-44"):
        assert secret not in text
    assert "JOBLEDGER_TOKEN" not in text


@needs_git
def test_cache_reuses_record_without_running_git(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = capture_environment(cwd=repo, argv=["analysis.py"])
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(provenance, "_run_git", lambda *a: calls.append(a))
    second = capture_environment(cwd=repo, argv=["analysis.py"])
    assert second == first
    assert calls == []
    second["git"]["commit"] = "mutated"
    assert capture_environment(cwd=repo, argv=["analysis.py"]) == first
    # A different argv is a different key; an expired entry is captured again.
    capture_environment(cwd=repo, argv=["other.py"])
    assert len(calls) == 1
    monkeypatch.setattr(provenance, "CACHE_TTL", 0.0)
    capture_environment(cwd=repo, argv=["analysis.py"])
    assert len(calls) == 2


def test_digest_is_stable_and_canonical(tmp_path: Path) -> None:
    record = capture_environment(cwd=tmp_path, argv=["p"])
    again = json.loads(json.dumps(record))
    assert provenance_digest(record) == provenance_digest(again)
    reordered = dict(reversed(list(record.items())))
    assert provenance_digest(reordered) == provenance_digest(record)
    canonical = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert provenance_digest(record) == hashlib.sha256(canonical.encode()).hexdigest()
    assert provenance_digest({**record, "cwd": "/elsewhere"}) != provenance_digest(record)


def test_capture_imports_nothing_heavy(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path\n"
        "from jobledger.provenance import capture_environment\n"
        f"capture_environment(cwd=Path({str(tmp_path)!r}), argv=['x'])\n"
        "print(sorted(m for m in ('requests', 'sqlite_utils', 'click') if m in sys.modules))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# Fourteen ways a token reaches a program's argv; each must leave no trace of it.
SHAPES = [
    ["prog", "--token", TOKEN],
    ["prog", f"--token={TOKEN}"],
    ["prog", "-t", TOKEN],
    ["prog", f"-t{TOKEN}"],
    ["prog", "--bearer", TOKEN],
    ["prog", "--key", TOKEN],
    ["prog", "--api-key", TOKEN],
    ["prog", TOKEN],
    ["curl", "-H", f"Authorization: Bearer {TOKEN}", "http://127.0.0.1/v1/jobs"],
    ["curl", "-H", "Authorization:", "Bearer", TOKEN],
    ["prog", json.dumps({"token": TOKEN, "shots": 100})],
    ["env", f"JOBLEDGER_TOKEN={TOKEN}", "python", "run.py"],
    ["prog", f"http://127.0.0.1:8765/v1/jobs?access_token={TOKEN}&shots=100"],
    ["prog", f"https://alice:{TOKEN}@jobs.lab.example/v1"],
]


@pytest.mark.parametrize("argv", SHAPES, ids=[" ".join(a)[:40] for a in SHAPES])
def test_every_shape_of_token_in_argv_is_masked(argv: list[str]) -> None:
    masked = mask_argv(argv)
    assert TOKEN not in json.dumps(masked)
    assert provenance.MASK in " ".join(masked)
    assert masked[0] == argv[0]


@pytest.mark.parametrize("argv", SHAPES, ids=[" ".join(a)[:40] for a in SHAPES])
def test_a_configured_token_is_masked_by_value_in_every_shape(argv: list[str]) -> None:
    plain = [item.replace(TOKEN, PLAIN) for item in argv]
    masked = mask_argv(plain, [PLAIN])
    assert PLAIN not in json.dumps(masked)


def test_what_masking_keeps() -> None:
    argv = [
        "/home/alice/experiments/2024/run_grover_search.py",
        "--backend",
        "aer_simulator_statevector",
        "--shots=100",
        "J01JD7K3V8Q0B6TWXYZ",
        "SomeLongIdentifierName2024",
        "--keyboard=us",
        "https://jobs.lab.example:8765/v1/jobs?shots=100",
        '{"shots": 100, "backend": "qasm_simulator"}',
    ]
    assert mask_argv(argv) == argv
    masked = mask_argv(["prog", "--password", "hunter2", "--out", "r.json"])
    assert masked == ["prog", "--password", "***", "--out", "r.json"]


def test_urls_lose_their_credentials() -> None:
    assert provenance.redact_url("http://user:pw@host:8765/v1") == "http://***@host:8765/v1"
    assert provenance.redact_url("https://tok@host/") == "https://***@host/"
    assert provenance.redact_url("https://host/x?token=abc&n=1") == "https://host/x?token=***&n=1"
    assert provenance.redact_url("http://127.0.0.1:8765") == "http://127.0.0.1:8765"
    assert provenance.redact_url("not a url") == "not a url"


def test_tokens_known_to_the_configuration_are_masked_by_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobledger.config import write_token

    write_token("lab", PLAIN)
    monkeypatch.setenv("JOBLEDGER_TOKEN", "env-only-secret")
    assert provenance.known_secrets() == {PLAIN, "env-only-secret"}
    record = capture_environment(
        cwd=tmp_path, argv=["run.py", PLAIN, "--note", "env-only-secret"], secrets=["given-1"]
    )
    text = json.dumps(record)
    assert PLAIN not in text
    assert "env-only-secret" not in text
    assert record["program"]["argv"] == ["run.py", "***", "--note", "***"]
    again = capture_environment(cwd=tmp_path, argv=["run.py", "x-given-1-y"], secrets=["given-1"])
    assert "given-1" not in json.dumps(again)


def test_submissions_share_one_record_and_its_digest(tmp_path: Path) -> None:
    from jobledger.provenance import captured_environment

    first = captured_environment(cwd=tmp_path, argv=["prog"])
    again = captured_environment(cwd=tmp_path, argv=["prog"])
    assert again is first  # within the cache's lifetime: neither copied nor re-encoded
    assert first.digest == provenance_digest(dict(first.record))
    copy = capture_environment(cwd=tmp_path, argv=["prog"])
    assert copy == first.record and copy is not first.record
    copy["host"] = "changed"
    copy["python"]["version"] = "0"
    assert captured_environment(cwd=tmp_path, argv=["prog"]).record["host"] != "changed"
    assert provenance_digest(dict(first.record)) == first.digest
