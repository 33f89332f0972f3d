"""Tests of configuration resolution, profiles and token files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from jobledger.config import (
    Profile,
    load_profiles,
    read_token,
    resolve,
    save_profile,
    set_default_profile,
    write_token,
)
from jobledger.errors import ConfigError
from jobledger.paths import Paths, get_paths

SECRET = "s3cr3t-token-value"


@pytest.fixture
def paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    monkeypatch.setenv("JOBLEDGER_HOME", str(tmp_path / "home"))
    for name in ("JOBLEDGER_URL", "JOBLEDGER_TOKEN", "JOBLEDGER_OFFLINE", "JOBLEDGER_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    return get_paths()


def write_config(paths: Paths, text: str, mode: int = 0o644) -> Path:
    paths.config.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text(text)
    paths.config_file.chmod(mode)
    return paths.config_file


LAB = """\
default = "lab"

[profiles.lab]
url = "https://lab.example.org:8765/"
verify = false

[profiles.home]
url = "http://127.0.0.1:9000"
offline = true
"""


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- resolution ----------------------------------------------------------------------


def test_nothing_configured_means_embedded_local_service(paths: Paths) -> None:
    config = resolve()
    assert (config.url, config.token, config.offline, config.verify) == (None, None, False, True)
    assert config.profile is None
    assert config.sources == {
        "profile": "default (no profile)",
        "url": "default (embedded local service)",
        "token": "default (none)",
        "offline": "default (false)",
        "verify": "default (true)",
        "timeout": "default (10 s)",
        "connect_timeout": "default (3 s)",
    }


def test_default_profile_from_file(paths: Paths) -> None:
    file = write_config(paths, LAB)
    write_token("lab", SECRET)
    config = resolve()
    assert config.profile == "lab"
    assert config.url == "https://lab.example.org:8765"  # trailing slash normalised
    assert config.token == SECRET
    assert config.verify is False
    assert config.offline is False
    assert config.sources["profile"] == f"config file {file} (default)"
    assert config.sources["url"] == f"config file {file}, profile 'lab'"
    assert config.sources["token"] == f"token file {paths.tokens / 'lab'}"
    assert config.sources["offline"] == f"config file {file}, profile 'lab'"


def test_environment_overrides_file(paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(paths, LAB)
    monkeypatch.setenv("JOBLEDGER_URL", "http://other:1/")
    monkeypatch.setenv("JOBLEDGER_TOKEN", SECRET)
    monkeypatch.setenv("JOBLEDGER_OFFLINE", "yes")
    monkeypatch.setenv("JOBLEDGER_PROFILE", "home")
    config = resolve()
    assert (config.url, config.token, config.offline, config.profile) == (
        "http://other:1",
        SECRET,
        True,
        "home",
    )
    assert config.sources["url"] == "environment (JOBLEDGER_URL)"
    assert config.sources["token"] == "environment (JOBLEDGER_TOKEN)"
    assert config.sources["offline"] == "environment (JOBLEDGER_OFFLINE)"
    assert config.sources["profile"] == "environment (JOBLEDGER_PROFILE)"
    # verify belongs to a service: no profile has this URL, so the default applies.
    assert config.verify is True


def test_arguments_override_environment(paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(paths, LAB)
    monkeypatch.setenv("JOBLEDGER_URL", "http://other:1")
    monkeypatch.setenv("JOBLEDGER_TOKEN", "env-token")
    monkeypatch.setenv("JOBLEDGER_OFFLINE", "1")
    monkeypatch.setenv("JOBLEDGER_PROFILE", "nonexistent")
    config = resolve(
        url="https://arg.example", token=SECRET, offline=False, verify=False, profile="home"
    )
    assert (config.url, config.token, config.offline, config.verify, config.profile) == (
        "https://arg.example",
        SECRET,
        False,
        False,
        "home",
    )
    chosen = {k: v for k, v in config.sources.items() if "timeout" not in k}
    assert set(chosen.values()) == {"argument"}


def test_profile_argument_selects_profile(paths: Paths) -> None:
    file = write_config(paths, LAB)
    config = resolve(profile="home")
    assert (config.url, config.offline, config.token) == ("http://127.0.0.1:9000", True, None)
    assert config.sources["offline"] == f"config file {file}, profile 'home'"


def test_url_without_token_borrows_token_of_matching_profile(
    paths: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(paths, LAB)
    write_token("lab", SECRET)
    write_token("home", "home-token")
    config = resolve(url="https://lab.example.org:8765/", profile="home")
    assert config.token == SECRET
    assert config.verify is False
    assert config.sources["token"] == f"token file {paths.tokens / 'lab'}"
    monkeypatch.setenv("JOBLEDGER_URL", "http://127.0.0.1:9000/")
    assert resolve().token == "home-token"
    # A URL that no profile names gets no token: never another host's one.
    assert resolve(url="http://stranger:80").token is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), ("YES", True), ("on", True), ("0", False), ("off", False)],
)
def test_offline_environment_values(
    paths: Paths, monkeypatch: pytest.MonkeyPatch, value: str, expected: bool
) -> None:
    monkeypatch.setenv("JOBLEDGER_OFFLINE", value)
    assert resolve().offline is expected


def test_bad_offline_environment_value(paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBLEDGER_OFFLINE", "maybe")
    with pytest.raises(ConfigError, match=r"JOBLEDGER_OFFLINE='maybe'"):
        resolve()


@pytest.mark.parametrize("url", ["ftp://host", "localhost:8765", "http://", "https:///x", "x"])
def test_invalid_url(paths: Paths, url: str) -> None:
    with pytest.raises(ConfigError, match="invalid service URL") as info:
        resolve(url=url)
    assert repr(url) in str(info.value)


def test_invalid_url_in_file_names_file(paths: Paths) -> None:
    file = write_config(paths, '[profiles.x]\nurl = "gopher://x"\n')
    with pytest.raises(ConfigError, match="gopher") as info:
        resolve(profile="x")
    assert str(file) in str(info.value)


def test_unknown_profile_lists_known_ones(paths: Paths) -> None:
    write_config(paths, LAB)
    with pytest.raises(ConfigError, match=r"unknown profile 'nope'.*home, lab"):
        resolve(profile="nope")


def test_unknown_profile_without_config_file(paths: Paths) -> None:
    with pytest.raises(ConfigError, match=r"unknown profile 'lab'.*none"):
        resolve(profile="lab")


def test_default_naming_missing_profile(paths: Paths) -> None:
    write_config(paths, 'default = "ghost"\n')
    with pytest.raises(ConfigError, match="ghost"):
        resolve()


@pytest.mark.parametrize("name", ["bad name", "a/b", "", "ü"])
def test_invalid_profile_names(paths: Paths, name: str) -> None:
    with pytest.raises(ConfigError, match="invalid profile name"):
        resolve(profile=name)
    with pytest.raises(ConfigError, match="invalid profile name"):
        write_token(name, SECRET)


# -- malformed files ---------------------------------------------------------------------


def test_toml_syntax_error_names_file_and_line(paths: Paths) -> None:
    file = write_config(paths, '[profiles.lab]\nurl = "http://x"\nverify = maybe\n')
    with pytest.raises(ConfigError) as info:
        resolve()
    assert str(file) in str(info.value)
    assert "line 3 (key 'verify')" in str(info.value)


def test_unknown_key_names_file_line_and_key(paths: Paths) -> None:
    file = write_config(paths, LAB + '\n[profiles.extra]\nurl = "http://x"\ntimout = 5\n')
    with pytest.raises(ConfigError) as info:
        resolve()
    message = str(info.value)
    assert f"{file}, line 13" in message
    assert "'timout'" in message
    assert "url" in message  # the known keys are listed


def test_unknown_top_level_key(paths: Paths) -> None:
    file = write_config(paths, 'defualt = "lab"\n')
    with pytest.raises(ConfigError, match=rf"{file}, line 1.*'defualt'"):
        resolve()


def test_wrong_type_names_key_and_line(paths: Paths) -> None:
    file = write_config(paths, '[profiles.a]\nurl = "http://a"\n\n[profiles.b]\nverify = "no"\n')
    with pytest.raises(ConfigError) as info:
        resolve()
    message = str(info.value)
    assert f"{file}, line 5" in message
    assert "'verify'" in message and "boolean" in message


def test_wrong_type_for_token_does_not_echo_it(paths: Paths) -> None:
    write_config(paths, "[profiles.a]\ntoken = 12345678\n", mode=0o600)
    with pytest.raises(ConfigError, match="'token'") as info:
        resolve()
    assert "12345678" not in str(info.value)


# -- tokens ------------------------------------------------------------------------------


def test_token_file_modes(paths: Paths) -> None:
    path = write_token("lab", SECRET)
    assert path == paths.tokens / "lab"
    assert mode_of(path) == 0o600
    assert mode_of(paths.tokens) == 0o700
    assert read_token("lab") == SECRET
    assert read_token("other") is None


def test_token_file_readable_by_others_is_refused(paths: Paths) -> None:
    path = write_token("lab", SECRET)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match=rf"chmod 600 {path}") as info:
        read_token("lab")
    assert SECRET not in str(info.value)


def test_inline_token_accepted_in_private_config(paths: Paths) -> None:
    file = write_config(paths, f'[profiles.lab]\nurl = "http://x"\ntoken = "{SECRET}"\n', 0o600)
    config = resolve(profile="lab")
    assert config.token == SECRET
    assert config.sources["token"] == f"config file {file}, profile 'lab'"


def test_inline_token_refused_in_readable_config(paths: Paths) -> None:
    file = write_config(paths, f'[profiles.lab]\nurl = "http://x"\ntoken = "{SECRET}"\n', 0o644)
    with pytest.raises(ConfigError) as info:
        resolve()
    message = str(info.value)
    assert f"chmod 600 {file}" in message
    assert str(paths.tokens / "lab") in message
    assert SECRET not in message


def test_token_never_in_repr(paths: Paths) -> None:
    write_config(paths, LAB)
    write_token("lab", SECRET)
    assert SECRET not in repr(resolve())
    assert SECRET not in repr(resolve(token=SECRET))
    _, profiles = load_profiles()
    assert profiles["lab"].token == SECRET
    assert SECRET not in repr(profiles)


# -- writers -----------------------------------------------------------------------------


def test_save_profile_round_trip(paths: Paths) -> None:
    path = save_profile("lab", url="https://lab.example/", token=SECRET, verify=False)
    assert path == paths.config_file
    assert SECRET not in path.read_text()
    assert read_token("lab") == SECRET
    default, profiles = load_profiles()
    assert default == "lab"  # the first profile becomes the default
    assert profiles == {
        "lab": Profile(name="lab", url="https://lab.example", verify=False, token=SECRET)
    }
    save_profile("my.home", url="http://127.0.0.1:8765")
    default, profiles = load_profiles()
    assert default == "lab"
    assert sorted(profiles) == ["lab", "my.home"]
    save_profile("my.home", url="http://127.0.0.1:8766", make_default=True)
    config = resolve()
    assert (config.profile, config.url) == ("my.home", "http://127.0.0.1:8766")
    leftovers = [p.name for p in paths.config.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_save_profile_keeps_other_profiles_and_moves_inline_tokens(paths: Paths) -> None:
    write_config(paths, f'[profiles.old]\nurl = "http://old"\ntoken = "{SECRET}"\n', 0o600)
    save_profile("new", url="http://new")
    assert SECRET not in paths.config_file.read_text()
    assert read_token("old") == SECRET
    _, profiles = load_profiles()
    assert profiles["old"].url == "http://old"
    assert profiles["old"].token == SECRET


def test_set_default_profile(paths: Paths) -> None:
    save_profile("a", url="http://a")
    save_profile("b", url="http://b")
    set_default_profile("b")
    assert load_profiles()[0] == "b"
    with pytest.raises(ConfigError, match=r"unknown profile 'c'.*a, b"):
        set_default_profile("c")


def test_save_profile_rejects_bad_url_without_writing(paths: Paths) -> None:
    with pytest.raises(ConfigError, match="invalid service URL"):
        save_profile("lab", url="lab.example", token=SECRET)
    assert not paths.config_file.exists()
    assert read_token("lab") is None


def test_written_file_is_valid_toml_with_quoted_names(paths: Paths) -> None:
    import tomllib

    save_profile("dotted.name", url='http://x/"quoted"')
    data = tomllib.loads(paths.config_file.read_text())
    assert data["profiles"]["dotted.name"]["url"] == 'http://x/"quoted"'
    assert os.stat(paths.config_file).st_mode & 0o077 == 0


def test_provider_options_round_trip_and_are_checked(paths: Paths) -> None:
    from jobledger.config import resolve, save_profile

    save_profile(
        "aws",
        url="https://braket.amazonaws.com",
        provider="braket",
        options={"region": "eu-west-2", "s3_bucket": "amazon-braket-lab", "shots": 100},
    )
    config = resolve(profile="aws", paths=paths)
    assert config.provider == "braket"
    assert config.options == {
        "region": "eu-west-2",
        "s3_bucket": "amazon-braket-lab",
        "shots": 100,
    }
    text = paths.config_file.read_text()
    assert "[profiles.aws.options]" in text and 'region = "eu-west-2"' in text
    with pytest.raises(ConfigError, match="only read by other providers"):
        save_profile("lab", url="http://127.0.0.1:8765", options={"region": "x"})
    paths.config_file.write_text('[profiles.q]\nprovider = "qlmaas"\n')
    with pytest.raises(ConfigError, match="needs a 'url'"):
        resolve(profile="q", paths=paths)


def test_a_url_given_now_outranks_a_default_profile_of_another_provider(
    paths: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_profile("aws", url="https://braket.amazonaws.com", provider="braket")
    assert resolve().provider == "braket"  # the file's default
    given = resolve(url="http://127.0.0.1:8765")
    assert (given.provider, given.url, given.profile) == (
        "jobledger",
        "http://127.0.0.1:8765",
        None,
    )
    monkeypatch.setenv("JOBLEDGER_URL", "http://127.0.0.1:9000")
    assert resolve().url == "http://127.0.0.1:9000" and resolve().provider == "jobledger"
    # A profile chosen by name keeps its own URL over JOBLEDGER_URL...
    assert resolve(profile="aws").provider == "braket"
    # ...and contradicting it with a URL argument is an error, not a silent choice.
    with pytest.raises(ConfigError, match=r"url=.*profile 'aws'.*'braket'"):
        resolve(profile="aws", url="http://127.0.0.1:8765")
    assert resolve(profile="aws", url="https://braket.amazonaws.com/").provider == "braket"


# -- network timeouts ----------------------------------------------------------------


def test_timeouts_come_from_the_profile_and_the_environment_overrides_them(
    paths: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(
        paths,
        'default = "lab"\n\n[profiles.lab]\nurl = "https://lab.example.org"\n'
        "timeout = 30\nconnect_timeout = 1.5\n",
    )
    config = resolve()
    assert (config.timeout, config.connect_timeout) == (30.0, 1.5)
    assert config.sources["timeout"] == f"config file {paths.config_file}, profile 'lab'"
    monkeypatch.setenv("JOBLEDGER_TIMEOUT", "2")
    config = resolve()
    assert (config.timeout, config.connect_timeout) == (2.0, 1.5)
    assert config.sources["timeout"] == "environment (JOBLEDGER_TIMEOUT)"
    monkeypatch.delenv("JOBLEDGER_TIMEOUT")
    bare = resolve(url="http://127.0.0.1:9")  # no profile owns this URL: the defaults
    assert (bare.timeout, bare.connect_timeout) == (10.0, 3.0)
    assert bare.sources["timeout"] == "default (10 s)"


@pytest.mark.parametrize("value", ["0", "-1", '"soon"', "true", "inf"])
def test_a_bad_timeout_in_a_profile_names_the_key_and_the_file(paths: Paths, value: str) -> None:
    write_config(paths, f'[profiles.lab]\nurl = "https://lab.example.org"\ntimeout = {value}\n')
    with pytest.raises(ConfigError) as info:
        resolve(profile="lab")
    assert "'timeout'" in str(info.value) and str(paths.config_file) in str(info.value)


def test_save_profile_keeps_timeouts_and_refuses_bad_ones(paths: Paths) -> None:
    save_profile("lab", url="https://lab.example.org", timeout=45, connect_timeout=2)
    save_profile("lab", url="https://lab2.example.org")  # timeouts kept
    _default, profiles = load_profiles()
    assert (profiles["lab"].timeout, profiles["lab"].connect_timeout) == (45.0, 2.0)
    with pytest.raises(ConfigError, match="timeout"):
        save_profile("lab", url="https://lab.example.org", timeout=0)
