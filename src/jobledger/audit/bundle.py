"""``jobledger import``: record the jobs of an exported bundle, after checking every byte.

:func:`import_bundle` opens a bundle (a folder or a ``.zip``) written by
:func:`jobledger.audit.export`, checks every file listed in ``ro-crate-metadata.json``
against its ``sha256`` and size, checks that each job's files are the bytes its
registry row names and that each provenance record has its digest, and only then
stores the blobs and records the jobs in one transaction
(:func:`jobledger.registry.imports.record_imports`). A damaged or tampered bundle is
refused with :class:`~jobledger.errors.CacheCorruptionError` naming the file, and
nothing is recorded. Imported jobs keep their ids, aliases, tags, events and
provenance; their service is recorded with kind ``imported`` when this registry does
not know it, so nothing contacts it unless asked: their results read from the store.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from jobledger.audit.crate import BUNDLE_FORMAT, JOBS_FILE
from jobledger.errors import CacheCorruptionError
from jobledger.paths import Paths, get_paths
from jobledger.provenance import provenance_digest
from jobledger.registry import Registry
from jobledger.registry.imports import ImportedJob, record_imports

__all__ = ["ImportReport", "import_bundle"]

_CHUNK = 1 << 20


@dataclass(frozen=True)
class ImportReport:
    """What :func:`import_bundle` did: jobs recorded, jobs already here, renamed aliases."""

    source: str
    imported: tuple[str, ...]
    present: tuple[str, ...]
    renamed: tuple[tuple[str, str], ...]

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-able data (the shape of ``import --json``)."""
        return {
            "source": self.source,
            "imported": list(self.imported),
            "present": list(self.present),
            "renamed": [{"alias": a, "now": b} for a, b in self.renamed],
        }


class _Bundle:
    """The files of a bundle folder or ``.zip``, read by their paths inside it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.zip = zipfile.ZipFile(path) if path.is_file() else None

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()

    @contextmanager
    def open(self, name: str) -> Iterator[IO[bytes]]:
        parts = PurePosixPath(name).parts
        if not parts or PurePosixPath(name).is_absolute() or ".." in parts:
            raise self.damaged(name, "its path leaves the bundle")
        try:
            if self.zip is not None:
                with self.zip.open(name) as reader:
                    yield reader
            else:
                with open(self.path / name, "rb") as reader:
                    yield reader
        except (KeyError, FileNotFoundError):
            raise self.damaged(name, "it is missing") from None

    def read(self, name: str) -> bytes:
        with self.open(name) as reader:
            return reader.read()

    def digest(self, name: str) -> tuple[str, int]:
        hasher, size = hashlib.sha256(), 0
        with self.open(name) as reader:
            while chunk := reader.read(_CHUNK):
                hasher.update(chunk)
                size += len(chunk)
        return hasher.hexdigest(), size

    def damaged(self, name: str, problem: str) -> CacheCorruptionError:
        return CacheCorruptionError(
            f"the bundle {self.path} is refused: {name}: {problem}; nothing was imported. "
            "Export it again from its source"
        )


def import_bundle(
    path: str | os.PathLike[str], *, rename_aliases: bool = False, paths: Paths | None = None
) -> ImportReport:
    """Record the jobs of the bundle at *path* in this registry (all or nothing).

    :param rename_aliases: give a job whose alias is taken here a suffixed alias
        (``fig3_imported``) instead of refusing the import.
    :raises CacheCorruptionError: when a file is missing or does not match its digest
        (the message names it); nothing is recorded then.
    :raises ValueError: when an alias is taken here (and *rename_aliases* is false),
        or the folder is not a jobledger bundle.
    """
    paths = paths or get_paths()
    source = Path(path).absolute()
    bundle = _Bundle(source)
    try:
        files = _check_files(bundle)
        listing = json.loads(bundle.read(JOBS_FILE))
        if listing.get("format") != BUNDLE_FORMAT:
            raise ValueError(
                f"{source} is not a jobledger bundle ({JOBS_FILE} has format "
                f"{listing.get('format')!r}, expected {BUNDLE_FORMAT!r})"
            )
        jobs, blobs = _check_jobs(bundle, listing, files)
        from jobledger.store import Store

        with Store(paths.store) as store:
            for name, digest in sorted(blobs.items()):
                if not store.has(digest):
                    with bundle.open(name) as reader:
                        store.put_stream(_chunks(reader), expected_sha256=digest)
        registry = Registry(paths.registry)
        try:
            outcome = record_imports(
                registry, jobs, source=str(source), rename_aliases=rename_aliases
            )
        finally:
            registry.close()
    finally:
        bundle.close()
    return ImportReport(str(source), outcome.imported, outcome.present, outcome.renamed)


def _chunks(reader: IO[bytes]) -> Iterator[bytes]:
    while chunk := reader.read(_CHUNK):
        yield chunk


def _check_files(bundle: _Bundle) -> dict[str, str]:
    """Every file the crate lists, checked against its sha256 and size: ``{path: sha256}``."""
    try:
        metadata = json.loads(bundle.read("ro-crate-metadata.json"))
    except ValueError:
        raise bundle.damaged("ro-crate-metadata.json", "it is not JSON") from None
    files: dict[str, str] = {}
    for entity in metadata.get("@graph", []):
        types = entity.get("@type")
        if "File" not in (types if isinstance(types, list) else [types]):
            continue
        name, expected = str(entity.get("@id")), entity.get("sha256")
        if not expected:
            raise bundle.damaged(name, "it has no sha256 in ro-crate-metadata.json")
        digest, size = bundle.digest(name)
        if digest != expected:
            raise bundle.damaged(name, f"its sha256 is {digest}, the crate says {expected}")
        if "contentSize" in entity and str(entity["contentSize"]) != str(size):
            raise bundle.damaged(
                name, f"it is {size} bytes, the crate says {entity['contentSize']}"
            )
        files[name] = digest
    if JOBS_FILE not in files:
        raise bundle.damaged(
            JOBS_FILE, "the crate does not list it: this is not a jobledger bundle"
        )
    return files


def _check_jobs(
    bundle: _Bundle, listing: dict[str, Any], files: dict[str, str]
) -> tuple[list[ImportedJob], dict[str, str]]:
    """The jobs to record, and the blobs to store (``{path: sha256}``), all checked."""
    records = {str(k): v for k, v in listing.get("provenance", {}).items()}
    for digest, record in records.items():
        if provenance_digest(record) != digest:
            raise bundle.damaged(JOBS_FILE, f"the provenance record {digest} does not match it")
    jobs: list[ImportedJob] = []
    blobs: dict[str, str] = {}
    for entry in listing.get("jobs", []):
        row = dict(entry["row"])
        extras = json.loads(row.get("extras") or "{}")
        for part, name in entry.get("files", {}).items():
            if name not in files:
                raise bundle.damaged(name, "the crate does not list it")
            expected = (
                row.get(f"{part}_sha256") if part in ("batch", "result") else extras.get(part)
            )
            if files[name] != expected:
                raise bundle.damaged(
                    name,
                    f"its sha256 is {files[name]}, job {row.get('job_id')} recorded {expected}",
                )
            blobs[name] = files[name]
        reference = row.get("provenance")
        provenance = None
        if reference:
            if reference not in records:
                raise bundle.damaged(JOBS_FILE, f"the provenance record {reference} is missing")
            text = json.dumps(records[reference], separators=(",", ":"), sort_keys=True)
            provenance = (str(reference), text)
        events = tuple((e["at"], e["kind"], e["detail"]) for e in entry.get("events", []))
        jobs.append(ImportedJob(row, events, entry.get("service"), provenance))
    return jobs, blobs
