"""Configuration: which service to talk to, with which token, and how.

A setting comes from the first of: an explicit argument, the environment
(``JOBLEDGER_URL``, ``JOBLEDGER_TOKEN``, ``JOBLEDGER_OFFLINE``, ``JOBLEDGER_PROFILE``),
the selected profile of the TOML config file, and finally the built-in default (the
embedded local service). :func:`resolve` returns a :class:`ResolvedConfig` that also
says where each value came from. Tokens live in token files (mode 0600) under the
config folder; a token written inline in ``config.toml`` is accepted only when that
file is private (0600). No token ever appears in a repr or an error message.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jobledger.errors import ConfigError
from jobledger.paths import Paths, ensure_private_dir, get_paths

__all__ = [
    "Profile",
    "ResolvedConfig",
    "load_profiles",
    "read_token",
    "resolve",
    "save_profile",
    "set_default_profile",
    "write_token",
]

ENV_URL = "JOBLEDGER_URL"
ENV_TOKEN = "JOBLEDGER_TOKEN"
ENV_OFFLINE = "JOBLEDGER_OFFLINE"
ENV_PROFILE = "JOBLEDGER_PROFILE"
ENV_TIMEOUT = "JOBLEDGER_TIMEOUT"
ENV_CONNECT_TIMEOUT = "JOBLEDGER_CONNECT_TIMEOUT"

_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
# The type each profile key must have; the order is the order the writer uses.
_PROFILE_KEYS: dict[str, type] = {
    "url": str,
    "verify": bool,
    "offline": bool,
    "token": str,
    "provider": str,
    "channel": str,
    "instance": str,
    "timeout": float,
    "connect_timeout": float,
    "options": dict,
}
#: Seconds a status or metadata call may wait for its answer, unless configured.
DEFAULT_TIMEOUT = 10.0
#: Seconds to wait for a connection to a service, unless configured.
DEFAULT_CONNECT_TIMEOUT = 3.0
#: Profile keys holding seconds: their environment variable and default.
_TIMEOUT_KEYS = {
    "connect_timeout": (ENV_CONNECT_TIMEOUT, DEFAULT_CONNECT_TIMEOUT),
    "timeout": (ENV_TIMEOUT, DEFAULT_TIMEOUT),
}
#: The job services a profile may name; keys only some providers read.
PROVIDERS = ("jobledger", "ibm-quantum", "braket", "qlmaas")
#: The URL recorded for a provider's profile that names none (``None``: one is needed).
PROVIDER_URLS: dict[str, str | None] = {
    "ibm-quantum": "https://cloud.ibm.com",
    "braket": "https://braket.amazonaws.com",
    "qlmaas": None,
}
_OPTION_TYPES = (str, int, float, bool)
IBM_CHANNELS = ("ibm_quantum_platform", "ibm_cloud")
IBM_DEFAULT_URL = "https://cloud.ibm.com"
_IBM_ONLY_KEYS = ("channel", "instance")
_TOP_KEYS = ("default", "profiles")


@dataclass(frozen=True)
class Profile:
    """One ``[profiles.<name>]`` table of the config file.

    ``url`` is ``None`` when the profile does not name a service (the embedded local
    service is used). ``token`` is the profile's token, from its token file or, if
    the config file is private, from the file itself.
    """

    name: str
    url: str | None = None
    verify: bool = True
    offline: bool = False
    token: str | None = field(default=None, repr=False)
    provider: str = "jobledger"
    channel: str | None = None
    instance: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    timeout: float | None = None
    connect_timeout: float | None = None


@dataclass(frozen=True)
class ResolvedConfig:
    """The settings a connection uses, and where each one came from.

    ``url`` is ``None`` for the embedded local service. ``sources`` maps each of
    ``"url"``, ``"token"``, ``"offline"``, ``"verify"`` and ``"profile"`` to a
    human-readable origin such as ``"environment (JOBLEDGER_URL)"``. ``provider``,
    ``channel`` and ``instance`` come from the selected profile only (``channel`` and
    ``instance`` are set for ``"ibm-quantum"``, whose ``url`` is IBM's cloud URL);
    ``options`` holds the provider-specific keys of the profile's ``options`` table
    (e.g. a Braket region and S3 bucket), which the provider checks. ``timeout`` and
    ``connect_timeout`` come from ``JOBLEDGER_TIMEOUT`` and
    ``JOBLEDGER_CONNECT_TIMEOUT``, else from the profile that owns the URL, else
    :data:`DEFAULT_TIMEOUT` and :data:`DEFAULT_CONNECT_TIMEOUT`; ``sources`` names
    their origin too.
    """

    url: str | None
    token: str | None = field(repr=False)
    offline: bool
    verify: bool
    profile: str | None
    sources: dict[str, str]
    provider: str = "jobledger"
    channel: str | None = None
    instance: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    #: seconds a status or metadata call may wait for its answer
    timeout: float = DEFAULT_TIMEOUT
    #: seconds to wait for a connection to the service
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT


@dataclass(frozen=True)
class _ConfigFile:
    """The parsed config file; a profile's ``token`` here is its inline token only."""

    path: Path
    default: str | None
    profiles: dict[str, Profile]

    def where(self, profile: str) -> str:
        return f"config file {self.path}, profile {profile!r}"


def resolve(
    *,
    url: str | None = None,
    token: str | None = None,
    profile: str | None = None,
    offline: bool | None = None,
    verify: bool | None = None,
    paths: Paths | None = None,
) -> ResolvedConfig:
    """Resolve the settings of a connection.

    Order: explicit arguments, then the environment, then the selected profile of
    the config file (the *profile* argument, else ``JOBLEDGER_PROFILE``, else the
    file's ``default``), then the embedded local service. When the URL comes from an
    argument or the environment without a token, the token (and ``verify``) of a
    profile with the same URL is used.

    :raises ConfigError: for a malformed config file, an unknown profile, an invalid
        URL or an unreadable ``JOBLEDGER_OFFLINE``.
    """
    paths = paths or get_paths()
    sources: dict[str, str] = {}
    env = os.environ

    profile_name, sources["profile"] = _pick(
        (profile, "argument"), (env.get(ENV_PROFILE) or None, f"environment ({ENV_PROFILE})")
    )
    if profile_name is not None:
        _check_name(profile_name)
    file = _read_config(paths)
    if profile_name is None and file.default is not None:
        profile_name, sources["profile"] = file.default, f"config file {file.path} (default)"
    selected: Profile | None = None
    if profile_name is not None:
        selected = file.profiles.get(profile_name)
        if selected is None:
            raise ConfigError(_unknown_profile(profile_name, file))
    else:
        sources["profile"] = "default (no profile)"

    chosen_url, sources["url"] = _pick(
        (url, "argument"), (env.get(ENV_URL) or None, f"environment ({ENV_URL})")
    )
    if selected is not None and selected.provider != "jobledger" and chosen_url is not None:
        if profile_name == file.default and sources["profile"].endswith("(default)"):
            # A URL given now names a jobledger service: it outranks the file's default
            # profile, even when that one is of another provider.
            selected, profile_name = None, None
            sources["profile"] = "default (a URL was given, the file's default is not used)"
        elif url is not None and _normalise_url(url, source="argument") != (
            selected.url or PROVIDER_URLS.get(selected.provider)
        ):
            raise ConfigError(
                f"url={url!r} names a jobledger service, but profile {profile_name!r} "
                f"({sources['profile']}) is a {selected.provider!r} profile; pass one of them"
            )
    ibm = selected is not None and selected.provider == "ibm-quantum"
    foreign = selected is not None and selected.provider != "jobledger"
    if foreign and selected is not None:
        # A profile of another provider, chosen by name, is a whole: JOBLEDGER_URL does
        # not override its URL.
        fallback = PROVIDER_URLS.get(selected.provider)
        if selected.url is None and fallback is None:
            raise ConfigError(
                f"profile {selected.name!r} (provider {selected.provider!r}) needs a 'url': "
                f"add it with `jobledger config add-profile {selected.name} --url URL "
                f"--provider {selected.provider}`"
            )
        chosen_url, sources["url"] = selected.url or fallback, file.where(selected.name)
    if chosen_url is None and selected is not None and selected.url is not None:
        chosen_url, sources["url"] = selected.url, file.where(selected.name)
    if chosen_url is None:
        sources["url"] = "default (embedded local service)"
    else:
        chosen_url = _normalise_url(chosen_url, source=sources["url"])

    # Token and TLS settings belong to a service: take them from the profile that
    # names this URL, never from a profile of another host.
    owner = selected if foreign else _profile_for_url(chosen_url, selected, file)

    chosen_token, sources["token"] = _pick(
        (token, "argument"), (env.get(ENV_TOKEN) or None, f"environment ({ENV_TOKEN})")
    )
    if chosen_token is None and owner is not None:
        chosen_token, sources["token"] = _token_of(owner, file, paths)
    if chosen_token is None:
        sources["token"] = "default (none)"

    env_offline = env.get(ENV_OFFLINE)
    if offline is not None:
        chosen_offline, sources["offline"] = bool(offline), "argument"
    elif env_offline is not None and env_offline.strip() != "":
        chosen_offline = _parse_bool_env(ENV_OFFLINE, env_offline)
        sources["offline"] = f"environment ({ENV_OFFLINE})"
    elif selected is not None:
        chosen_offline, sources["offline"] = selected.offline, file.where(selected.name)
    else:
        chosen_offline, sources["offline"] = False, "default (false)"

    if verify is not None:
        chosen_verify, sources["verify"] = bool(verify), "argument"
    elif owner is not None:
        chosen_verify, sources["verify"] = owner.verify, file.where(owner.name)
    else:
        chosen_verify, sources["verify"] = True, "default (true)"

    timeouts: dict[str, float] = {}
    for key, (variable, default) in _TIMEOUT_KEYS.items():
        raw = env.get(variable)
        if raw is not None and raw.strip() != "":
            timeouts[key], sources[key] = _seconds(variable, raw), f"environment ({variable})"
        elif owner is not None and getattr(owner, key) is not None:
            timeouts[key], sources[key] = getattr(owner, key), file.where(owner.name)
        else:
            timeouts[key], sources[key] = default, f"default ({default:g} s)"

    return ResolvedConfig(
        url=chosen_url,
        token=chosen_token,
        offline=chosen_offline,
        verify=chosen_verify,
        profile=profile_name,
        sources=sources,
        provider=selected.provider if selected is not None else "jobledger",
        channel=selected.channel if ibm and selected is not None else None,
        instance=selected.instance if ibm and selected is not None else None,
        options=dict(selected.options) if foreign and selected is not None else {},
        timeout=timeouts["timeout"],
        connect_timeout=timeouts["connect_timeout"],
    )


def load_profiles(paths: Paths | None = None) -> tuple[str | None, dict[str, Profile]]:
    """Return the config file's default profile name and its profiles by name.

    Each profile's ``token`` comes from its token file, else from the config file.

    :raises ConfigError: when the config file or a token file is invalid.
    """
    paths = paths or get_paths()
    file = _read_config(paths)
    profiles = {
        name: replace(entry, token=_token_of(entry, file, paths)[0])
        for name, entry in file.profiles.items()
    }
    return file.default, profiles


def save_profile(
    name: str,
    *,
    url: str,
    token: str | None = None,
    verify: bool = True,
    make_default: bool = False,
    paths: Paths | None = None,
    provider: str = "jobledger",
    channel: str | None = None,
    instance: str | None = None,
    options: dict[str, Any] | None = None,
    timeout: float | None = None,
    connect_timeout: float | None = None,
) -> Path:
    """Create or replace the profile *name* and return the config file's path.

    *provider* names the job service (one of :data:`PROVIDERS`); an
    ``"ibm-quantum"`` profile also needs *instance* (the IBM Cloud instance CRN or
    name) and may name *channel* (``"ibm_quantum_platform"`` by default); its *url*
    is IBM's cloud URL and its token the IBM API key. *options* are the
    provider-specific settings of other providers (written to the profile's
    ``options`` table). *timeout* and *connect_timeout* are the profile's network
    timeouts in seconds (``None`` keeps what the profile had, else the defaults).

    Other profiles are kept. The token goes to the profile's token file, never into
    ``config.toml``; tokens found inline in the file are moved to token files. The
    file is rewritten atomically (comments are not preserved).

    :raises ConfigError: for an invalid name or URL, or a malformed config file.
    """
    paths = paths or get_paths()
    _check_name(name)
    url = _normalise_url(url, source="argument")
    for key, value in (("timeout", timeout), ("connect_timeout", connect_timeout)):
        if value is not None and not 0 < value < float("inf"):
            raise ConfigError(f"{key} must be a number of seconds > 0, not {value!r}")
    file = _read_config(paths, check_mode=False)
    profiles = dict(file.profiles)
    old = profiles.get(name)
    where = f"profile {name!r}"
    profiles[name] = _check_provider(
        Profile(
            name=name,
            url=url,
            verify=verify,
            offline=old.offline if old else False,
            timeout=timeout if timeout is not None else (old.timeout if old else None),
            connect_timeout=(
                connect_timeout
                if connect_timeout is not None
                else (old.connect_timeout if old else None)
            ),
            provider=provider,
            channel=channel,
            instance=instance,
            options=dict(options or {}),
        ),
        where,
    )
    if token is not None:
        write_token(name, token, paths=paths)
    default = name if make_default or file.default is None else file.default
    _write_config(paths, default, profiles, inline_tokens=file.profiles)
    return paths.config_file


def set_default_profile(name: str, paths: Paths | None = None) -> None:
    """Make *name* the default profile of the config file.

    :raises ConfigError: when no profile has that name.
    """
    paths = paths or get_paths()
    _check_name(name)
    file = _read_config(paths, check_mode=False)
    if name not in file.profiles:
        raise ConfigError(_unknown_profile(name, file))
    _write_config(paths, name, dict(file.profiles), inline_tokens=file.profiles)


def write_token(name: str, token: str, paths: Paths | None = None) -> Path:
    """Write *token* to the token file of profile *name* (mode 0600) and return it.

    The folder is created with mode 0700; the write is atomic.

    :raises ConfigError: for an invalid profile name or an empty token.
    """
    paths = paths or get_paths()
    _check_name(name)
    token = token.strip()
    if not token or any(ch.isspace() for ch in token):
        raise ConfigError(
            f"refusing to write the token of profile {name!r}: a token must be "
            "non-empty and contain no whitespace"
        )
    _private_dir(paths.config)
    _private_dir(paths.tokens)
    target = paths.tokens / name
    _atomic_write(target, token + "\n")
    return target


def read_token(name: str, paths: Paths | None = None) -> str | None:
    """Return the token stored for profile *name*, or ``None`` when there is none.

    :raises ConfigError: when the token file is readable by other users.
    """
    paths = paths or get_paths()
    _check_name(name)
    return _token_file_token(paths.tokens / name)


# -- reading -----------------------------------------------------------------------


def _read_config(paths: Paths, *, check_mode: bool = True) -> _ConfigFile:
    path = paths.config_file
    try:
        raw = path.read_bytes()
        mode = path.stat().st_mode
    except FileNotFoundError:
        return _ConfigFile(path, None, {})
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"the config file {path} is not UTF-8 text; fix or remove it") from None
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(_syntax_error(path, text, str(exc))) from None

    for key in data:
        if key not in _TOP_KEYS:
            raise _file_error(path, text, key, None, f"unknown key {key!r}", _TOP_KEYS)
    default = data.get("default")
    if default is not None and not isinstance(default, str):
        raise _file_error(path, text, "default", None, "'default' must be a string", ())
    tables = data.get("profiles", {})
    if not isinstance(tables, dict):
        raise _file_error(path, text, "profiles", None, "'profiles' must be a table", ())

    profiles: dict[str, Profile] = {}
    for name, table in tables.items():
        if not _NAME.fullmatch(name):
            raise _file_error(
                path,
                text,
                name,
                None,
                f"invalid profile name {name!r} (use A-Z a-z 0-9 _ . -)",
                (),
            )
        if not isinstance(table, dict):
            raise _file_error(path, text, name, None, f"profile {name!r} must be a table", ())
        for key, value in table.items():
            expected = _PROFILE_KEYS.get(key)
            if expected is None:
                raise _file_error(
                    path,
                    text,
                    key,
                    name,
                    f"unknown key {key!r} in profile {name!r}",
                    _PROFILE_KEYS,
                )
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            positive = not isinstance(value, float) or 0 < value < float("inf")
            if not isinstance(value, expected) or not positive:
                raise _file_error(
                    path,
                    text,
                    key,
                    name,
                    f"{key!r} in profile {name!r} must be a {_type_name(expected)}",
                    (),
                )
        inline = table.get("token")
        if inline is not None and check_mode and mode & 0o077:
            raise ConfigError(
                f"the config file {path} holds a token (profile {name!r}) but other users "
                f"can read it (mode {stat.S_IMODE(mode):04o}); run `chmod 600 {path}` or "
                f"move the token to {paths.tokens / name}"
            )
        url = table.get("url")
        if url is not None:
            url = _normalise_url(url, source=f"config file {path}, profile {name!r}")
        profiles[name] = _check_provider(
            Profile(
                name=name,
                url=url,
                verify=table.get("verify", True),
                offline=table.get("offline", False),
                timeout=_optional_float(table.get("timeout")),
                connect_timeout=_optional_float(table.get("connect_timeout")),
                token=(inline.strip() or None) if inline is not None else None,
                provider=table.get("provider", "jobledger"),
                channel=table.get("channel"),
                instance=table.get("instance"),
                options=dict(table.get("options", {})),
            ),
            f"{path}, line {_line_of(text, 'provider', name) or '?'}, profile {name!r}",
        )
    if default is not None and default not in profiles:
        known = ", ".join(sorted(profiles)) or "none"
        raise ConfigError(
            f"the config file {path} sets default = {default!r}, but no [profiles.{default}] "
            f"table exists (known profiles: {known}); fix the 'default' key"
        )
    return _ConfigFile(path, default, profiles)


def _token_of(entry: Profile, file: _ConfigFile, paths: Paths) -> tuple[str | None, str]:
    """The token of a profile and its source: its token file, else the config file."""
    token_file = paths.tokens / entry.name
    stored = _token_file_token(token_file)
    if stored is not None:
        return stored, f"token file {token_file}"
    if entry.token is not None:
        return entry.token, file.where(entry.name)
    return None, "default (none)"


def _token_file_token(path: Path) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            text = handle.read()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the token file {path}: {exc}") from None
    if mode & 0o077:
        raise ConfigError(
            f"the token file {path} can be read by other users (mode "
            f"{stat.S_IMODE(mode):04o}); run `chmod 600 {path}`"
        )
    return text.strip() or None


def _file_error(
    path: Path, text: str, key: str, profile: str | None, problem: str, known: Any
) -> ConfigError:
    line = _line_of(text, key, profile)
    where = f"{path}, line {line}" if line else str(path)
    hint = f"; known keys: {', '.join(known)}" if known else ""
    return ConfigError(f"malformed config file {where}: {problem}{hint}")


def _syntax_error(path: Path, text: str, message: str) -> str:
    """A TOML syntax error message naming the file, the line and its key."""
    found = re.search(r"at line (\d+)", message)
    if found is None:
        return f"malformed config file {path}: {message}; fix the TOML syntax there"
    number = int(found.group(1))
    lines = text.splitlines()
    source = lines[number - 1] if 0 < number <= len(lines) else ""
    key = re.match(r"\s*([\w.\"'-]+)\s*=", source)
    about = f" (key {key.group(1)!r})" if key else ""
    return (
        f"malformed config file {path}, line {number}{about}: {message}; fix the TOML syntax there"
    )


def _line_of(text: str, key: str, profile: str | None) -> int | None:
    """Find the line defining *key* (inside the table of *profile*, if given)."""
    key_re = re.escape(key)
    quoted = rf"(?:{key_re}|\"{key_re}\"|'{key_re}')"
    assignment = re.compile(rf"^\s*(?:[\w.\"'-]+\.)?{quoted}\s*=")
    in_profile = profile is None
    table_re = None
    if profile is not None:
        name_re = re.escape(profile)
        table_re = re.compile(
            rf"^\s*\[\s*profiles\s*\.\s*(?:{name_re}|\"{name_re}\"|'{name_re}')\s*\]"
        )
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if table_re is not None and stripped.startswith("["):
            in_profile = bool(table_re.match(stripped))
            continue
        if in_profile and assignment.match(line):
            return number
    # Inline tables and dotted keys: fall back to the first mention of the key.
    for number, line in enumerate(text.splitlines(), start=1):
        if re.search(rf"(?:^|[\s{{,.\[]){quoted}\s*[=\]]", line):
            return number
    return None


# -- writing -----------------------------------------------------------------------


def _write_config(
    paths: Paths,
    default: str | None,
    profiles: dict[str, Profile],
    *,
    inline_tokens: dict[str, Profile],
) -> None:
    # Tokens never go back into config.toml: move inline ones to their token files.
    for name, old in inline_tokens.items():
        if old.token is not None and name in profiles and read_token(name, paths) is None:
            write_token(name, old.token, paths=paths)
    lines = ["# jobledger configuration (see docs/configuration.md)."]
    lines.append("# Tokens are kept in the tokens/ folder next to this file, not here.")
    if default is not None:
        lines.append(f"default = {_toml_str(default)}")
    for name in sorted(profiles):
        entry = profiles[name]
        lines.append("")
        lines.append(f"[profiles.{_toml_key(name)}]")
        if entry.url is not None:
            lines.append(f"url = {_toml_str(entry.url)}")
        lines.append(f"verify = {'true' if entry.verify else 'false'}")
        lines.append(f"offline = {'true' if entry.offline else 'false'}")
        for key in _TIMEOUT_KEYS:
            if getattr(entry, key) is not None:
                lines.append(f"{key} = {getattr(entry, key)!r}")
        if entry.provider != "jobledger":
            lines.append(f"provider = {_toml_str(entry.provider)}")
        if entry.channel is not None:
            lines.append(f"channel = {_toml_str(entry.channel)}")
        if entry.instance is not None:
            lines.append(f"instance = {_toml_str(entry.instance)}")
        if entry.options:
            lines.append("")
            lines.append(f"[profiles.{_toml_key(name)}.options]")
            for key in sorted(entry.options):
                lines.append(f"{_toml_key(key)} = {_toml_value(entry.options[key])}")
    _private_dir(paths.config)
    _atomic_write(paths.config_file, "\n".join(lines) + "\n")


def _atomic_write(target: Path, text: str) -> None:
    import tempfile  # only writers need it, and it pulls in shutil, bz2, lzma

    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o600)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _private_dir(folder: Path) -> None:
    ensure_private_dir(folder)


def _toml_str(value: str) -> str:
    import json

    # JSON string escapes (\" \\ \n \uXXXX) are valid TOML basic-string escapes.
    return json.dumps(value, ensure_ascii=False)


def _toml_key(name: str) -> str:
    return name if _BARE_KEY.fullmatch(name) else _toml_str(name)


# -- helpers -----------------------------------------------------------------------


def _pick(*candidates: tuple[str | None, str]) -> tuple[str | None, str]:
    for value, source in candidates:
        if value is not None:
            return value, source
    return None, ""


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            f"invalid profile name {name!r}: use letters, digits, '_', '.' and '-' only"
        )


def _unknown_profile(name: str, file: _ConfigFile) -> str:
    known = ", ".join(sorted(file.profiles)) or "none"
    return (
        f"unknown profile {name!r} (known profiles in {file.path}: {known}); "
        "create it with `jobledger config` or pick one of the known ones"
    )


def _profile_for_url(
    url: str | None, selected: Profile | None, file: _ConfigFile
) -> Profile | None:
    if url is None:
        return selected if selected is not None and selected.url is None else None
    if selected is not None and selected.url == url:
        return selected
    for name in sorted(file.profiles):
        if file.profiles[name].url == url:
            return file.profiles[name]
    return None


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return _toml_str(str(value))


def _check_provider(entry: Profile, where: str) -> Profile:
    """*entry* with its provider's defaults filled in, or a ConfigError naming the
    profile and the key at fault."""
    if entry.provider not in PROVIDERS:
        raise ConfigError(
            f"invalid config ({where}): key 'provider' is {entry.provider!r}; use one of "
            f"{', '.join(PROVIDERS)}"
        )
    if entry.options and entry.provider == "jobledger":
        raise ConfigError(
            f"invalid config ({where}): an 'options' table is only read by other providers "
            f"({', '.join(PROVIDERS[1:])}); remove it or set the provider"
        )
    for key, value in entry.options.items():
        if not isinstance(value, _OPTION_TYPES):
            raise ConfigError(
                f"invalid config ({where}): option {key!r} must be a string, number or "
                f"boolean, not {type(value).__name__}"
            )
    if entry.provider != "ibm-quantum":
        for key in _IBM_ONLY_KEYS:
            if getattr(entry, key) is not None:
                raise ConfigError(
                    f"invalid config ({where}): key {key!r} is only read by "
                    'provider = "ibm-quantum"; remove it or set that provider'
                )
        return entry
    channel = entry.channel or IBM_CHANNELS[0]
    if channel not in IBM_CHANNELS:
        raise ConfigError(
            f"invalid config ({where}): key 'channel' is {channel!r}; use one of "
            f"{', '.join(IBM_CHANNELS)}"
        )
    if not entry.instance or not entry.instance.strip():
        raise ConfigError(
            f"invalid config ({where}): provider \"ibm-quantum\" needs the key 'instance' "
            "(your IBM Cloud instance CRN or name, as shown on quantum.cloud.ibm.com)"
        )
    return replace(entry, channel=channel, instance=entry.instance.strip())


def _parse_bool_env(variable: str, value: str) -> bool:
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ConfigError(
        f"{variable}={value!r} is not a boolean; use 1/true/yes/on or 0/false/no/off"
    )


def _normalise_url(url: str, *, source: str) -> str:
    """Return *url* without trailing slashes, or raise naming the value and source."""
    if not isinstance(url, str):
        raise ConfigError(f"the service URL from {source} must be a string")
    text = url.strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"invalid service URL {_safe_url(text)!r} from {source}: use "
            "http://host[:port] or https://host[:port]"
        )
    return text.rstrip("/")


def _safe_url(url: str) -> str:
    """*url* with any password in it replaced by ``***`` (for messages)."""
    return re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", url)


def _type_name(kind: type) -> str:
    names = {str: "string", bool: "boolean (true or false)", float: "number of seconds > 0"}
    return names.get(kind, kind.__name__)


def _optional_float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _seconds(variable: str, raw: str) -> float:
    """*raw* as a positive number of seconds, or a ConfigError naming *variable*."""
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"{variable} must be a number of seconds > 0, not {raw!r}")
    return value
