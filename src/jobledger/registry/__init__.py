"""The local registry: one SQLite file recording every job, its events and provenance.

:mod:`.file` opens the file (per-thread connections, retried ``BEGIN IMMEDIATE``
writes), :mod:`.schema` and :mod:`.schema5` create and migrate it, :mod:`.records` holds
the frozen records a query returns and the date helpers, :mod:`.codec` and :mod:`.keys`
the compact values schema 5 stores (BLOB digests, integer keys and dates) and their
text forms, :mod:`.writes` the statements shared by write transactions, :mod:`.core`
the :class:`Registry` that records and :mod:`.reads` its queries (:mod:`.audit_reads`
the text-form reads of an audit). This is the one SQL boundary: nothing outside this
folder writes SQL against the registry. Modules here import :mod:`jobledger.errors` and
:mod:`jobledger.status` only (provider records are named for typing), so the offline
read path stays light.
"""

from __future__ import annotations

from jobledger.registry.core import Registry
from jobledger.registry.records import (
    BlobRef,
    JobRecord,
    ServiceRecord,
    from_micros,
    now_iso,
    parse_date,
    to_iso,
    to_micros,
)
from jobledger.registry.schema import SCHEMA_VERSION

__all__ = [
    "SCHEMA_VERSION",
    "BlobRef",
    "JobRecord",
    "Registry",
    "ServiceRecord",
    "from_micros",
    "now_iso",
    "parse_date",
    "to_iso",
    "to_micros",
]
