"""The records a cold read builds behave as the frozen dataclasses they replace."""

from __future__ import annotations

import copy
import dataclasses
import inspect
from datetime import UTC, datetime
from pathlib import Path

import pytest

from jobledger.frozen import Frozen, replace
from jobledger.paths import Paths
from jobledger.registry import BlobRef, JobRecord, ServiceRecord
from jobledger.status import JobStatus
from jobledger.store import PartialFile, StoreEntry, StoreStats

BLOB = BlobRef("a" * 64, 2, "application/json")


def _record(**changes: object) -> JobRecord:
    fields: dict[str, object] = {
        "pk": 1,
        "job_id": "J01JD7K3V8Q0B6TWXYZ",
        "service": "svc",
        "alias": None,
        "backend": "echo",
        "backend_version": None,
        "status": JobStatus.DONE,
        "created_at": datetime(2026, 1, 2, tzinfo=UTC),
        "started_at": None,
        "ended_at": None,
        "queue_position": None,
        "message": None,
        "tags": ("a",),
        "session_id": None,
        "params": {"shots": 10},
        "batch": BLOB,
        "result": None,
        "provenance": None,
        "idempotency_key": "k" * 32,
        "submit_state": "synced",
        "last_seen_at": None,
    }
    fields.update(changes)
    return JobRecord(**fields)  # type: ignore[arg-type]


def _as_dataclass(record: Frozen) -> object:
    """The same values in a frozen dataclass of the same name and fields."""
    names = list(type(record).__annotations__)
    twin = dataclasses.make_dataclass(type(record).__name__, names, frozen=True)
    return twin(**{name: getattr(record, name) for name in names})


@pytest.mark.parametrize(
    "record",
    [
        BLOB,
        ServiceRecord("svc", "http://127.0.0.1:8765", "local", None),
        _record(),
        StoreStats(1, 2),
        StoreEntry("b" * 64, 3, 4.5),
        PartialFile(Path("/x/partial/h-pid1-a.partial"), 5, 6.0),
        Paths(Path("/d"), Path("/c"), Path("/f"), Path("/r")),
    ],
    ids=lambda r: type(r).__name__,
)
def test_a_record_reads_and_compares_like_a_frozen_dataclass(record: Frozen) -> None:
    twin = _as_dataclass(record)
    assert repr(record) == repr(twin)
    assert record == copy.copy(record) == copy.deepcopy(record)
    assert record != twin  # another class, even with the same fields
    name = next(iter(type(record).__annotations__))
    with pytest.raises(AttributeError, match=f"cannot assign to field '{name}'"):
        setattr(record, name, "other")
    with pytest.raises(AttributeError, match=f"cannot delete field '{name}'"):
        delattr(record, name)
    changed = replace(record, **{name: "other"})
    assert getattr(changed, name) == "other" and changed != record
    assert getattr(record, name) != "other"


@pytest.mark.parametrize(
    "kind", [BlobRef, ServiceRecord, JobRecord, StoreStats, StoreEntry, PartialFile, Paths]
)
def test_a_records_init_takes_its_fields_in_order(kind: type[Frozen]) -> None:
    # As a dataclass's generated __init__: positional arguments fill the fields in order.
    assert tuple(inspect.signature(kind).parameters) == tuple(kind.__annotations__)


def test_records_hash_by_value_unless_they_hold_a_dict() -> None:
    assert {BLOB, BlobRef("a" * 64, 2, "application/json")} == {BLOB}
    assert hash(StoreStats(1, 2)) == hash(StoreStats(1, 2))
    with pytest.raises(TypeError, match="unhashable"):
        hash(_record())  # params is a dict, as with the dataclass


def test_a_job_record_defaults_usage_and_extras_to_new_dicts() -> None:
    first, second = _record(), _record()
    assert first.usage == first.extras == {}
    assert first.usage is not second.usage
    assert first == second
    assert first != _record(params={"shots": 11})
    assert replace(first, extras={"x": 1}).extras == {"x": 1}


def test_replace_refuses_an_unknown_field() -> None:
    with pytest.raises(TypeError, match="BlobRef has no field digest"):
        replace(BLOB, digest="c" * 64)
