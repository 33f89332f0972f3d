"""Audits: verify the ledger, export jobs as an RO-Crate, import such a bundle, explain
what produced a result.

:func:`verify` (:mod:`.verify`) re-checks blobs, the event hash chain and provenance
references; :func:`export` (:mod:`.crate`) writes jobs with their bytes, events and
provenance as an RO-Crate (folder or ``.zip``); :func:`import_bundle` (:mod:`.bundle`)
records such a bundle in this registry after checking every file; :func:`explain` and
:func:`compare` (:mod:`.lineage`) answer "what produced this result" and how two jobs
differ. Everything here reads the registry and the store and never a provider: audits
run offline. The ``rocrate`` library is imported only while an export runs.
"""

from __future__ import annotations

from jobledger.audit.bundle import ImportReport, import_bundle
from jobledger.audit.crate import ExportReport, export
from jobledger.audit.lineage import Difference, compare, explain
from jobledger.audit.verify import Finding, VerifyReport, verify

__all__ = [
    "Difference",
    "ExportReport",
    "Finding",
    "ImportReport",
    "VerifyReport",
    "compare",
    "explain",
    "export",
    "import_bundle",
    "verify",
]
