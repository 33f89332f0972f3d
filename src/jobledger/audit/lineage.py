"""``jobledger provenance``: what produced a job's result, and how two jobs differ.

:func:`explain` gathers, from the registry and the store only (offline), the job's
code (program, its digest, argv, git commit and dirty flag), inputs (batch digest,
size, media type), params, environment (jobledger, Python, platform, packages),
backend with its version and service, and the result's digest. :func:`compare` flattens
two such answers and lists the fields whose values differ, leaving out what always
differs (ids, aliases, dates).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobledger.errors import JobNotFoundError
from jobledger.paths import Paths, get_paths
from jobledger.registry import BlobRef, JobRecord, Registry

__all__ = ["Difference", "compare", "explain"]

_IDENTITY = ("job", "alias", "submitted_at", "started_at", "ended_at", "provenance_digest")


@dataclass(frozen=True)
class Difference:
    """One field (dotted path) whose value differs between two jobs."""

    field: str
    a: Any
    b: Any


def explain(name: str, *, paths: Paths | None = None) -> dict[str, Any]:
    """What produced the result of job *name* (an id or alias), as JSON-able data.

    :raises JobNotFoundError: when no recorded job has this id or alias.
    """
    paths = paths or get_paths()
    registry = Registry(paths.registry, readonly=True)
    try:
        record = _find(registry, name)
        environment = registry.provenance(record.provenance) if record.provenance else None
        service = registry.service(record.service) if record.service else None
        stored = _stored(paths, [r for r in (record.batch, record.result) if r])
    finally:
        registry.close()
    env = environment or {}
    program = env.get("program") or {}
    return {
        "job": record.job_id or record.name,
        "alias": record.alias,
        "status": record.status.value,
        "submitted_at": record.created_at.isoformat(),
        "started_at": record.started_at.isoformat() if record.started_at else None,
        "ended_at": record.ended_at.isoformat() if record.ended_at else None,
        "backend": {
            "name": record.backend,
            "version": record.backend_version,
            "service": record.service,
            "service_url": service.url if service else None,
            "service_kind": service.kind if service else None,
        },
        "inputs": {"batch": _blob(record.batch, stored)},
        "params": dict(record.params),
        "result": _blob(record.result, stored),
        "code": {
            "program": program.get("path") or program.get("kind"),
            "sha256": program.get("sha256"),
            "argv": program.get("argv"),
            "git": env.get("git"),
        },
        "environment": {
            "jobledger": env.get("jobledger"),
            "python": env.get("python"),
            "platform": env.get("platform"),
            "host": env.get("host"),
            "packages": env.get("packages"),
        },
        "provenance_digest": record.provenance,
    }


def compare(a: str, b: str, *, paths: Paths | None = None) -> list[Difference]:
    """The fields in which what produced job *a* differs from what produced job *b*."""
    left = _flatten({k: v for k, v in explain(a, paths=paths).items() if k not in _IDENTITY})
    right = _flatten({k: v for k, v in explain(b, paths=paths).items() if k not in _IDENTITY})
    return [
        Difference(key, left.get(key), right.get(key))
        for key in sorted(set(left) | set(right))
        if left.get(key) != right.get(key)
    ]


def _find(registry: Registry, name: str) -> JobRecord:
    found = registry.find(name)
    if not found:
        from jobledger.names import describe_unknown

        raise JobNotFoundError(describe_unknown(name, registry))
    return found[0]


def _stored(paths: Paths, refs: list[BlobRef]) -> set[str]:
    if not refs or not paths.store.exists():
        return set()
    from jobledger.store import Store

    with Store(paths.store) as store:
        return {r.sha256 for r in refs if store.has(r.sha256)}


def _blob(ref: BlobRef | None, stored: set[str]) -> dict[str, Any] | None:
    if ref is None:
        return None
    return {
        "sha256": ref.sha256,
        "size": ref.size,
        "media_type": ref.media_type,
        "stored": ref.sha256 in stored,
    }


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}
