"""The ``jobledger`` commands about configuration: ``config`` (and its profiles) and ``paths``.

``config`` shows the resolved settings and where each comes from, never a token's
value; ``config add-profile`` and ``config use`` edit the config file, with tokens in
their own private files. ``paths`` shows where the registry, store, config and runtime
files live. None of them needs the service.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from jobledger.cli.output import echo_json

__all__ = ["config", "paths"]


# -- config ----------------------------------------------------------------------------------


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@click.pass_context
def config(ctx: click.Context, as_json: bool) -> None:
    """Show the resolved configuration and where each value comes from.

    Tokens are never printed: only whether one is set, and from where.
    """
    if ctx.invoked_subcommand is not None:
        return
    from jobledger.config import load_profiles, resolve
    from jobledger.paths import get_paths

    found = get_paths()
    resolved = resolve(paths=found)
    default, profiles = load_profiles(found)
    token_source = resolved.sources.get("token", "")
    token_set = resolved.token is not None
    if resolved.url is None:
        from jobledger.service.local import token_file

        path = token_file(found)
        where = str(path) if path.exists() else f"{path}, made when the service first starts"
        token_source = f"the embedded local service's own ({where})"
        if resolved.token is not None:
            token_source += (
                f"; {resolved.sources.get('token')} is set but not used: it is only sent "
                "to a service named by a URL"
            )
        token_set = path.exists()
    body: dict[str, Any] = {
        "url": {"value": resolved.url, "source": resolved.sources.get("url")},
        "token": {"set": token_set, "source": token_source},
        "offline": {"value": resolved.offline, "source": resolved.sources.get("offline")},
        "verify": {"value": resolved.verify, "source": resolved.sources.get("verify")},
        "profile": {"value": resolved.profile, "source": resolved.sources.get("profile")},
        "timeout": {"value": resolved.timeout, "source": resolved.sources.get("timeout")},
        "connect_timeout": {
            "value": resolved.connect_timeout,
            "source": resolved.sources.get("connect_timeout"),
        },
        "config_file": str(found.config_file),
        "profiles": [
            {
                "name": p.name,
                "url": p.url,
                "verify": p.verify,
                "offline": p.offline,
                "token_set": p.token is not None,
                "default": p.name == default,
            }
            for p in sorted(profiles.values(), key=lambda p: p.name)
        ],
    }
    if as_json:
        echo_json(body)
        return
    shown_source = token_source if resolved.url is None else f"from {token_source}"
    token_value = f"set ({shown_source})" if token_set else f"not set ({shown_source})"
    lines = [
        ("url", resolved.url or "embedded local service", body["url"]["source"]),
        ("token", token_value, None),
        ("offline", str(resolved.offline).lower(), body["offline"]["source"]),
        ("verify", str(resolved.verify).lower(), body["verify"]["source"]),
        ("profile", resolved.profile or "-", body["profile"]["source"]),
        ("timeout", f"{resolved.timeout:g} s", body["timeout"]["source"]),
        ("connect timeout", f"{resolved.connect_timeout:g} s", body["connect_timeout"]["source"]),
    ]
    for key, value, source in lines:
        click.echo(f"{key + ':':<16} {value}" + (f" (from {source})" if source else ""))
    exists = "" if found.config_file.exists() else " (not created yet)"
    click.echo(f"\nconfig file: {found.config_file}{exists}")
    if profiles:
        click.echo("profiles:")
        for entry in body["profiles"]:
            mark = "*" if entry["default"] else " "
            token = "token set" if entry["token_set"] else "no token"
            click.echo(f" {mark} {entry['name']}  {entry['url'] or 'embedded'}  ({token})")


@config.command("add-profile")
@click.argument("name")
@click.option("--url", required=True, help="The service's URL, e.g. https://host:8765.")
@click.option("--token-stdin", is_flag=True, help="Read the token from standard input.")
@click.option("--default", "make_default", is_flag=True, help="Make it the default profile.")
@click.option("--no-verify", is_flag=True, help="Do not verify TLS certificates (unsafe).")
@click.option(
    "--provider",
    type=click.Choice(["jobledger", "ibm-quantum", "braket", "qlmaas"]),
    default="jobledger",
    show_default=True,
    help="The kind of job service the profile names.",
)
@click.option("--channel", help="ibm-quantum: the SDK's channel (default ibm_quantum_platform).")
@click.option("--instance", help="ibm-quantum: the IBM Cloud instance (CRN or name).")
@click.option(
    "--option",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="braket, qlmaas: a provider setting for the profile's options table (repeat).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds a status or metadata call may wait for its answer (default 10).",
)
@click.option(
    "--connect-timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds to wait for a connection to the service (default 3).",
)
def config_add_profile(
    name: str,
    url: str,
    token_stdin: bool,
    make_default: bool,
    no_verify: bool,
    provider: str,
    channel: str | None,
    instance: str | None,
    options: tuple[str, ...],
    timeout: float | None,
    connect_timeout: float | None,
) -> None:
    """Create or replace the profile NAME; the token goes to a private token file."""
    from jobledger.config import save_profile

    settings: dict[str, Any] = {}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(
                f"{item!r} is not KEY=VALUE (e.g. --option region=us-east-1)",
                param_hint="--option",
            )
        settings[key.strip()] = _option_value(value)

    token = None
    if token_stdin:
        token = sys.stdin.read().strip()
        if not token:
            raise click.UsageError("--token-stdin was given but standard input is empty")
    path = save_profile(
        name,
        url=url,
        token=token,
        verify=not no_verify,
        make_default=make_default,
        provider=provider,
        channel=channel,
        instance=instance,
        options=settings,
        timeout=timeout,
        connect_timeout=connect_timeout,
    )
    stored = " (token stored in its own file, mode 0600)" if token else ""
    click.echo(f"saved profile {name!r} for {url} in {path}{stored}")


@config.command("use")
@click.argument("name")
def config_use(name: str) -> None:
    """Make the profile NAME the default."""
    from jobledger.config import set_default_profile

    set_default_profile(name)
    click.echo(f"default profile is now {name!r}")


# -- paths ---------------------------------------------------------------------------------


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def paths(as_json: bool) -> None:
    """Show where jobledger keeps the registry, store, config and runtime files."""
    from jobledger.paths import get_paths

    found = get_paths().as_dict()
    if as_json:
        echo_json(found)
        return
    width = max(len(k) for k in found)
    for key, value in found.items():
        click.echo(f"{key:<{width}}  {value}")


def _option_value(text: str) -> str | int | float | bool:
    """A provider option as TOML would read it: a boolean, a number, else the text."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text
