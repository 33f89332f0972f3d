"""Shared connections for job handles that were not made by a connection.

A handle imported from :mod:`jobledger.jobs` knows only the service its job was
recorded for; :func:`connection_for` gives it one :class:`~jobledger.connection.Connection`
per service, shared by every such handle and built on first use: the embedded
service is found (or started) again, a remote one is reached at its recorded URL.
Re-exported by :mod:`jobledger.connection`.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import TYPE_CHECKING

from jobledger.paths import get_paths
from jobledger.registry import Registry

if TYPE_CHECKING:
    from jobledger.connection import Connection

__all__ = ["connection_for"]


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
        if existing is not None and not existing._closed:
            return existing
        from jobledger.config import resolve
        from jobledger.connection import Connection  # lazily: it re-exports this module

        paths = get_paths()
        record = (registry or Registry(paths.registry, readonly=True)).service(service_id or "")
        if record is None or record.kind == "local":
            config = replace(resolve(paths=paths), url=None, token=None, profile=None)
        else:
            config = resolve(url=record.url, profile=record.profile, paths=paths)
        conn = Connection(config, paths)
        _connections[service_id] = conn
        return conn
