"""The service's commands: ``serve``, ``service start|stop|status``, ``token create``."""

from __future__ import annotations

import click


def register(cli: click.Group) -> None:
    """Add the service's commands to the ``jobledger`` command group."""
