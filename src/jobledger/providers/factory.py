"""Which provider a configuration names, and how its batches are encoded.

The one place that maps a profile's ``provider`` to its module: :func:`open_remote`
builds the provider of another job service (IBM Quantum, Amazon Braket, QLMaaS) with
the stable id and URL its jobs are recorded under, and :func:`encode_batch` encodes a
batch the way that service takes it. Each provider module, and its SDK, is imported
only when a profile names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jobledger import codecs

if TYPE_CHECKING:
    from jobledger.config import ResolvedConfig
    from jobledger.providers.base import Provider

__all__ = ["Remote", "encode_batch", "open_remote"]


@dataclass(frozen=True)
class Remote:
    """Another job service's provider, and the id and URL its jobs are recorded under."""

    provider: Provider
    service_id: str
    url: str


def open_remote(config: ResolvedConfig) -> Remote:
    """The provider the profile of *config* names (not ``"jobledger"``).

    :raises ConfigError: for a profile the provider cannot use.
    :raises AuthenticationError: when the provider checks credentials at once (QLMaaS).
    """
    if config.provider == "ibm-quantum":
        from jobledger.providers.ibm import IBMProvider, service_id

        assert config.url is not None and config.channel and config.instance
        return Remote(
            IBMProvider.from_config(config),
            service_id(config.channel, config.instance),
            config.url,
        )
    if config.provider == "qlmaas":
        from jobledger.providers import qlmaas

        provider = qlmaas.QLMaaSProvider.from_config(config)
        provider.health()  # logs in: refused credentials are known before anything is recorded
        return Remote(provider, qlmaas.service_id(provider.hostname, provider.port), provider.url)
    if config.provider == "braket":
        from jobledger.providers.braket import BraketProvider

        braket = BraketProvider.from_config(config)
        return Remote(braket, braket.service_id, braket.url)
    raise ValueError(f"no remote provider named {config.provider!r}")


def encode_batch(provider: str, batch: Any) -> tuple[bytes, str]:
    """Encode *batch* for *provider*; TypeError names what that service takes."""
    if provider == "ibm-quantum":
        from jobledger.providers.ibm import encode_pubs

        return encode_pubs(batch)
    if provider == "qlmaas":
        from jobledger.providers.qlmaas import encode_batch as encode_qlm

        return encode_qlm(batch)
    if provider == "braket":
        from jobledger.providers.braket import encode_program

        return encode_program(batch)
    return codecs.encode(batch)
