"""``jobledger export``: jobs, their bytes, events and provenance as an RO-Crate.

:func:`export` writes a folder, or a ``.zip`` when the path ends with ``.zip``, whose
``ro-crate-metadata.json`` conforms to RO-Crate 1.1 and the Process Run Crate profile
0.5: each job is a ``CreateAction`` whose ``instrument`` is the backend (a
``SoftwareApplication`` with its version and the service as provider), ``object`` the
batch file and the params (``PropertyValue``), ``result`` the result file, with
``startTime``, ``endTime``, ``actionStatus`` and ``error``; its provenance record is a
file that is ``subjectOf`` the action and names the program (digest, git commit, dirty
flag), Python and the packages. Every file carries ``sha256`` (a term of the Workflow
Run context, added to the crate's context) and ``contentSize``. ``jobledger/jobs.json``
keeps the jobs' registry rows, events and services, so that :mod:`.bundle` can import
them without losing anything. Blobs are streamed from the store, checked on the way.
Tokens are never in the registry, so never here; the user's home folder is written
``~`` in provenance records, params, messages and events, and URL passwords are masked.
The graph is built with the ``rocrate`` library (imported only here).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from jobledger.errors import ConfigError, JobNotFoundError
from jobledger.paths import Paths, get_paths
from jobledger.provenance import mask_argv, provenance_digest
from jobledger.registry import JobRecord, Registry
from jobledger.registry.audit_reads import AuditReads
from jobledger.status import JobStatus

if TYPE_CHECKING:
    from jobledger.store import Store

__all__ = ["BUNDLE_FORMAT", "ExportReport", "export"]

BUNDLE_FORMAT = "jobledger-bundle/1"
JOBS_FILE = "jobledger/jobs.json"
WFRUN_CONTEXT = "https://w3id.org/ro/terms/workflow-run/context"
PROCESS_PROFILE = "https://w3id.org/ro/wfrun/process/0.5"
_EXTENSIONS = {"application/json": ".json", "application/x-npy": ".npy"}
_ACTION_STATUS = {
    JobStatus.DONE: "http://schema.org/CompletedActionStatus",
    JobStatus.ERROR: "http://schema.org/FailedActionStatus",
    JobStatus.CANCELLED: "http://schema.org/FailedActionStatus",
}

_NO_LICENSE = {
    "@type": "CreativeWork",
    "name": "No license stated",
    "description": "The exporter stated no license: ask the owner of these jobs before reuse.",
}


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export` wrote: the bundle, the jobs in it, files and bytes."""

    path: Path
    jobs: tuple[str, ...]
    files: int
    bytes: int
    skipped: tuple[str, ...]  # recorded but never acknowledged: no id to export


@dataclass(frozen=True)
class _Entry:
    """One file of the bundle: where it goes and where its bytes come from."""

    path: str
    sha256: str
    size: int
    media_type: str
    blob: str | None = None  # a digest in the store
    data: bytes | None = None  # or bytes written here (metadata files)


def export(
    path: str | os.PathLike[str],
    jobs: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    *,
    license: str | None = None,
    paths: Paths | None = None,
) -> ExportReport:
    """Write the chosen jobs as an RO-Crate at *path* (a ``.zip`` when it ends so).

    :param jobs: ids or aliases; with *tags*, the jobs having any of the tags are
        added. Neither: every job in the registry.
    :param license: the URL of the license the bundle is shared under (e.g.
        ``https://spdx.org/licenses/CC-BY-4.0``); without it the crate says that no
        license was stated.
    :raises JobNotFoundError: when a name matches no recorded job.
    :raises FileExistsError: when *path* exists and is not an empty folder.
    """
    paths = paths or get_paths()
    target = Path(path)
    if target.exists() and not (target.is_dir() and not any(target.iterdir())):
        raise FileExistsError(f"{target} already exists; choose a new path for the bundle")
    registry = Registry(paths.registry, readonly=True)
    try:
        chosen = _choose(registry, jobs, tags)
        from jobledger.store import Store

        with Store(paths.store) as store:
            return _write(target, registry, store, chosen, license)
    finally:
        registry.close()


def _choose(
    registry: Registry, names: Sequence[str] | None, tags: Sequence[str] | None
) -> list[JobRecord]:
    if not names and not tags:
        return registry.query(limit=None, descending=False)
    found: dict[int, JobRecord] = {}
    for name in names or ():
        matches = registry.find(name)
        if not matches:
            from jobledger.names import describe_unknown

            raise JobNotFoundError(describe_unknown(name, registry))
        found.update((r.pk, r) for r in matches)
    for tag in tags or ():
        found.update((r.pk, r) for r in registry.query(limit=None, tags=[tag]))
    return sorted(found.values(), key=lambda r: (r.created_at, r.pk))


# -- cleaning -------------------------------------------------------------------------


def _home() -> str:
    return str(Path.home())


def clean(value: Any, home: str | None = None) -> Any:
    """*value* with the user's home folder written ``~`` in every string, and URL
    passwords masked; dict keys are cleaned too."""
    home = _home() if home is None else home
    if isinstance(value, str):
        text = mask_argv([value])[0] if "://" in value else value
        if home and home != "/":
            # Only the folder itself: "/work" must not turn "/workflow" into "~flow".
            text = re.sub(re.escape(home) + r"(?![\w.-])", "~", text)
        return text
    if isinstance(value, dict):
        return {clean(k, home): clean(v, home) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v, home) for v in value]
    return value


# -- building -------------------------------------------------------------------------


def _write(
    target: Path,
    registry: Registry,
    store: Store,
    records: list[JobRecord],
    license: str | None,
) -> ExportReport:
    try:
        from rocrate.model.contextentity import ContextEntity  # type: ignore[import-untyped]
        from rocrate.rocrate import ROCrate  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ConfigError(
            f"exporting an RO-Crate needs the rocrate library ({exc}); install it with "
            "`pip install 'jobledger[audit]'`"
        ) from None

    reads = AuditReads(registry)
    crate = ROCrate(version="1.1")
    crate.metadata.extra_contexts.append(WFRUN_CONTEXT)
    crate.name = "jobledger jobs"
    crate.description = (
        "Jobs recorded by jobledger: their batches, results, events and the environment "
        "that submitted them. jobledger/jobs.json holds the registry rows for "
        "`jobledger import`."
    )
    crate.root_dataset["datePublished"] = datetime.now(UTC).isoformat()
    crate.root_dataset["conformsTo"] = [{"@id": PROCESS_PROFILE}]
    if license is None:
        license = "#license-not-stated"
        crate.add(ContextEntity(crate, license, properties=_NO_LICENSE))
    crate.root_dataset["license"] = {"@id": license}
    crate.add(
        ContextEntity(
            crate,
            PROCESS_PROFILE,
            properties={"@type": "CreativeWork", "name": "Process Run Crate", "version": "0.5"},
        )
    )
    entries: list[_Entry] = []
    exported: list[dict[str, Any]] = []
    provenance: dict[str, dict[str, Any]] = {}
    skipped: list[str] = []
    builder = _Builder(crate, ContextEntity)
    for record in records:
        if record.job_id is None:
            skipped.append(record.name)
            continue
        job_entries = _job_files(record, store)
        entries.extend(job_entries.values())
        prov_file = None
        if record.provenance:
            text = reads.provenance_text(record.provenance)
            if text is not None:
                cleaned = clean(json.loads(text))
                digest = provenance_digest(cleaned)
                if digest not in provenance:
                    provenance[digest] = cleaned
                    data = _json_bytes(cleaned)
                    entries.append(_data_entry(f"provenance/{digest}.json", data))
                prov_file = (f"provenance/{digest}.json", digest)
        service = reads.service_row(record.service) if record.service else None
        builder.action(record, job_entries, prov_file, provenance, service)
        exported.append(_job_json(record, reads, service, job_entries, prov_file))
    jobs_data = _json_bytes(
        {
            "format": BUNDLE_FORMAT,
            "exported_at": datetime.now(UTC).isoformat(),
            "jobs": exported,
            "provenance": provenance,
        }
    )
    entries.append(_data_entry(JOBS_FILE, jobs_data))
    for entry in entries:
        builder.file(entry)
    builder.file_about(JOBS_FILE, "The registry rows, events and services of the jobs")
    metadata = _json_bytes(crate.metadata.generate(), indent=2)
    size = _emit(target, metadata, entries, store)
    return ExportReport(
        path=target,
        jobs=tuple(str(r.job_id) for r in records if r.job_id),
        files=len(entries),
        bytes=size,
        skipped=tuple(skipped),
    )


def _json_bytes(value: Any, indent: int | None = None) -> bytes:
    return json.dumps(value, indent=indent, ensure_ascii=False, sort_keys=True).encode("utf-8")


def _data_entry(path: str, data: bytes) -> _Entry:
    media = "application/json"
    return _Entry(path, hashlib.sha256(data).hexdigest(), len(data), media, data=data)


def _job_files(record: JobRecord, store: Store) -> dict[str, _Entry]:
    """The job's stored blobs: batch, result and cached extras (what is not stored is
    left out; jobs.json still has its digest)."""
    files: dict[str, _Entry] = {}
    folder = f"jobs/{record.job_id}"
    for part, ref in (("batch", record.batch), ("result", record.result)):
        if ref is not None and store.has(ref.sha256):
            name = f"{folder}/{part}{_EXTENSIONS.get(ref.media_type, '.bin')}"
            files[part] = _Entry(name, ref.sha256, ref.size, ref.media_type, blob=ref.sha256)
    for key, digest in sorted(record.extras.items()):
        if store.has(str(digest)):
            size = _stored_size(store, str(digest))
            name = f"{folder}/{key}.json"
            files[key] = _Entry(name, str(digest), size, "application/json", blob=str(digest))
    return files


def _stored_size(store: Store, digest: str) -> int:
    with open(os.devnull, "wb") as sink:
        return store.copy_to(digest, sink)


def _job_json(
    record: JobRecord,
    reads: AuditReads,
    service: dict[str, Any] | None,
    files: dict[str, _Entry],
    prov_file: tuple[str, str] | None,
) -> dict[str, Any]:
    row = reads.job_row(record.pk)
    row.pop("pk", None)
    if prov_file is not None:
        row["provenance"] = prov_file[1]  # the digest of the cleaned record
    events = [
        {"id": e.id, "at": e.at, "kind": e.kind, "detail": e.detail, "sha256": e.sha256}
        for e in reads.job_events(record.pk)
    ]
    cleaned: dict[str, Any] = clean(
        {
            "row": row,
            "source_provenance": record.provenance,
            "service": service,
            "events": events,
            "files": {part: entry.path for part, entry in files.items()},
        }
    )
    return cleaned


class _Builder:
    """Adds the entities of jobs and files to the crate."""

    def __init__(self, crate: Any, context_entity: Any) -> None:
        self.crate = crate
        self.entity = context_entity
        self.known: set[str] = set()
        self.files: dict[str, Any] = {}
        self.actions: list[dict[str, str]] = []
        self.about: dict[str, list[dict[str, str]]] = {}
        self.mains: dict[str, dict[str, str]] = {}

    def _add(self, identifier: str, properties: dict[str, Any]) -> dict[str, str]:
        if identifier not in self.known:
            self.known.add(identifier)
            self.crate.add(self.entity(self.crate, identifier, properties=properties))
        return {"@id": identifier}

    def file(self, entry: _Entry) -> None:
        properties: dict[str, Any] = {
            "name": entry.path.rsplit("/", 1)[-1],
            "encodingFormat": entry.media_type,
            "contentSize": str(entry.size),
            "sha256": entry.sha256,
        }
        if entry.path in self.about:
            properties["about"] = self.about[entry.path]
            properties["mainEntity"] = self.mains[entry.path]
        self.files[entry.path] = self.crate.add_file(dest_path=entry.path, properties=properties)

    def file_about(self, path: str, description: str) -> None:
        self.files[path]["description"] = description

    def _service(self, service: dict[str, Any] | None, record: JobRecord) -> dict[str, str]:
        service_id = record.service or "unknown"
        url = clean(service.get("url")) if service else None
        return self._add(
            f"#service-{service_id}",
            {
                "@type": "Organization",
                "name": f"job service {service_id}",
                "identifier": service_id,
                **({"url": url} if url else {}),
            },
        )

    def _backend(self, record: JobRecord, service: dict[str, Any] | None) -> dict[str, str]:
        version = record.backend_version or "unknown"
        provider = self._service(service, record)
        return self._add(
            f"#backend-{record.service}-{record.backend}-{version}",
            {
                "@type": "SoftwareApplication",
                "name": record.backend,
                "softwareVersion": version,
                "provider": provider,
            },
        )

    def _program(self, digest: str, environment: dict[str, Any]) -> dict[str, str]:
        program = environment.get("program") or {}
        git = environment.get("git") or {}
        python = environment.get("python") or {}
        packages = environment.get("packages") or {}
        requirements = [
            self._add(
                f"#package-{name}-{version}",
                {"@type": "SoftwareApplication", "name": name, "softwareVersion": version},
            )
            for name, version in sorted(packages.items())
        ]
        extra = [
            ("program kind", program.get("kind")),
            ("argv", json.dumps(program.get("argv"))),
            ("git commit", git.get("commit")),
            ("git dirty", json.dumps(git.get("dirty"))),
            ("jobledger version", environment.get("jobledger")),
        ]
        properties: dict[str, Any] = {
            "@type": "SoftwareSourceCode",
            "name": program.get("path") or program.get("kind") or "program",
            "runtimePlatform": (
                f"{python.get('implementation', 'Python')} {python.get('version', '?')}"
            ),
            "softwareRequirements": requirements,
            "additionalProperty": [
                self._add(
                    f"#program-{digest[:16]}-{label.replace(' ', '-')}",
                    {"@type": "PropertyValue", "name": label, "value": str(value)},
                )
                for label, value in extra
                if value is not None
            ],
        }
        if program.get("sha256"):
            properties["sha256"] = program["sha256"]
        if git.get("commit"):
            properties["version"] = git["commit"]
        return self._add(f"#program-{digest[:16]}", properties)

    def action(
        self,
        record: JobRecord,
        files: dict[str, _Entry],
        prov_file: tuple[str, str] | None,
        provenance: dict[str, dict[str, Any]],
        service: dict[str, Any] | None,
    ) -> None:
        params = [
            self._add(
                f"#job-{record.job_id}-param-{name}",
                {"@type": "PropertyValue", "name": name, "value": json.dumps(clean(value))},
            )
            for name, value in sorted(record.params.items())
        ]
        properties: dict[str, Any] = {
            "@type": "CreateAction",
            "name": f"jobledger job {record.job_id}"
            + (f" ({record.alias})" if record.alias else ""),
            "identifier": record.job_id,
            "instrument": self._backend(record, service),
            "object": ([{"@id": files["batch"].path}] if "batch" in files else []) + params,
            "result": [{"@id": files["result"].path}] if "result" in files else [],
            "actionStatus": {
                "@id": _ACTION_STATUS.get(record.status, "http://schema.org/ActiveActionStatus")
            },
            "description": f"status {record.status.value} on backend {record.backend}",
        }
        if record.started_at or record.created_at:
            properties["startTime"] = (record.started_at or record.created_at).isoformat()
        if record.ended_at:
            properties["endTime"] = record.ended_at.isoformat()
        if record.status in (JobStatus.ERROR, JobStatus.CANCELLED):
            properties["error"] = clean(record.message or record.status.value.lower())
        if prov_file is not None:
            path, digest = prov_file
            identifier = f"#job-{record.job_id}"
            properties["subjectOf"] = {"@id": path}
            self.about.setdefault(path, []).append({"@id": identifier})
            self.mains.setdefault(path, self._program(digest, provenance[digest]))
        identifier = f"#job-{record.job_id}"
        self._add(identifier, properties)
        self.actions.append({"@id": identifier})
        self.crate.root_dataset["mentions"] = list(self.actions)


# -- writing ----------------------------------------------------------------------------


def _emit(target: Path, metadata: bytes, entries: list[_Entry], store: Store) -> int:
    if target.suffix.lower() == ".zip":
        return _emit_zip(target, metadata, entries, store)
    target.mkdir(parents=True, exist_ok=True)
    total = 0
    for entry in entries:
        dest = target / entry.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(dest, "wb") as out:
            total += _copy(entry, store, out)
    (target / "ro-crate-metadata.json").write_bytes(metadata)
    return total


def _emit_zip(target: Path, metadata: bytes, entries: list[_Entry], store: Store) -> int:
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=".export-", suffix=".zip", dir=target.parent)
    os.close(handle)
    total = 0
    try:
        with zipfile.ZipFile(staging, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
            bundle.writestr("ro-crate-metadata.json", metadata)
            for entry in entries:
                with bundle.open(entry.path, "w", force_zip64=True) as out:
                    total += _copy(entry, store, out)
        os.replace(staging, target)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
    return total


def _copy(entry: _Entry, store: Store, out: BinaryIO | Any) -> int:
    if entry.data is not None:
        out.write(entry.data)
        return len(entry.data)
    assert entry.blob is not None
    return store.copy_to(entry.blob, out, what=f"blob {entry.path}")
