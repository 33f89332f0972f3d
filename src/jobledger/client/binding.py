"""The binding of a connection to its service, and the shared connections of handles.

:class:`Binding` pairs the :class:`~jobledger.providers.base.Provider` a connection talks
through with the :class:`~jobledger.registry.ServiceRecord` it records jobs under. A
handle imported from :mod:`jobledger.jobs` knows only the service its job was recorded
for; :func:`connection_for` gives it one
:class:`~jobledger.client.connection.Connection` per service, shared by every such
handle and built on first use: the embedded service is found (or started) again, a
remote one is reached at its recorded URL.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from jobledger.paths import get_paths
from jobledger.registry import Registry, ServiceRecord

if TYPE_CHECKING:
    from jobledger.client.connection import Connection
    from jobledger.providers.base import Provider

__all__ = ["Binding", "connection_for"]


@dataclass(frozen=True)
class Binding:
    """A connection's provider and the service record its jobs are recorded under."""

    provider: Provider
    service: ServiceRecord


_connections: dict[str | None, Connection] = {}
_connections_lock = threading.Lock()


def connection_for(service_id: str | None, registry: Registry | None = None) -> Connection:
    """A shared connection to the service a recorded job belongs to.

    Used by handles imported from :mod:`jobledger.jobs`: the embedded service is
    found (or started) again; a remote one is reached at its recorded URL with the
    token configured for that URL.
    """
    with _connections_lock:
        existing = _connections.get(service_id)
        if existing is not None and not existing.closed:
            return existing
        from jobledger.client.connection import Connection
        from jobledger.config import resolve

        paths = get_paths()
        record = (registry or Registry(paths.registry, readonly=True)).service(service_id or "")
        if record is None or record.kind == "local":
            config = replace(resolve(paths=paths), url=None, token=None, profile=None)
        else:
            config = resolve(url=record.url, profile=record.profile, paths=paths)
        conn = Connection(config, paths)
        _connections[service_id] = conn
        return conn
