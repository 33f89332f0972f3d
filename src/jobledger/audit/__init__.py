"""Audits: verify the ledger, export jobs as an RO-Crate, import such a bundle, explain
what produced a result.

:func:`verify` (:mod:`.verify`) re-checks blobs, the event hash chain and provenance
references; :func:`export` (:mod:`.crate`) writes jobs with their bytes, events and
provenance as an RO-Crate (folder or ``.zip``); :func:`import_bundle` (:mod:`.bundle`)
records such a bundle in this registry after checking every file; :func:`explain` and
:func:`compare` (:mod:`.lineage`) answer "what produced this result" and how two jobs
differ. Everything here reads the registry and the store and never a provider: audits
run offline. The ``rocrate`` library is imported only by an export.
"""

from __future__ import annotations

from jobledger.audit.verify import Finding, VerifyReport, verify

__all__ = ["Finding", "VerifyReport", "verify"]
