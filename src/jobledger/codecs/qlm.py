"""The myQLM codec: ``qat.core`` Job, Batch, Result and BatchResult as thrift binary.

These classes are built on thrift structs (``qat.comm.shared.ttypes``), so they travel
as those structs in thrift's binary protocol. Thrift itself only fills in fields, but
myQLM hides pickles in some of them and unpickles them when a wrapper is built
(``Job.from_thrift`` unpickles the circuit's gate set, ``Result.from_thrift`` its
``ResData``, and a typed register's metadata names a class to import). So bytes are
always read into the plain thrift structs first and scrubbed before any ``qat.core``
wrapper sees them: the circuit's pickled gate set and typed-register metadata are
dropped (myQLM rebuilds its default gate set; registers read as plain qubits), a
result's opaque ``data`` is withheld (``meta_data["jobledger.withheld"]`` says so; the
raw bytes stay in the store), and anything else that carries a pickle (an initial state
``psi_0``, serialized parameters, a schedule's extras, fields jobledger does not know)
is refused. Encoding applies the same scrub, so the stored bytes hold no pickle.
"""

from __future__ import annotations

import warnings
from typing import Any

from jobledger.errors import CodecError

__all__ = [
    "BATCH",
    "BATCH_RESULT",
    "JOB",
    "MEDIA_TYPES",
    "RESULT",
    "WITHHELD_KEY",
    "decode",
    "encode",
]

JOB = "application/vnd.qat.job+thrift"
BATCH = "application/vnd.qat.batch+thrift"
RESULT = "application/vnd.qat.result+thrift"
BATCH_RESULT = "application/vnd.qat.batchresult+thrift"
MEDIA_TYPES = (JOB, BATCH, RESULT, BATCH_RESULT)

# media type -> name of the class in both qat.comm.shared.ttypes and qat.core
_CLASSES = {JOB: "Job", BATCH: "Batch", RESULT: "Result", BATCH_RESULT: "BatchResult"}

#: meta_data key naming a result field that was withheld because it holds a pickle
WITHHELD_KEY = "jobledger.withheld"
# binary fields whose bytes are plain data, not pickles
_PLAIN_BINARY = frozenset({("Sample", "_state")})
# binary fields holding a pickle that myQLM can do without
_DROPPED_BINARY = frozenset({("Circuit", "_serialized_gate_set")})
_T_STRUCT, _T_STRING, _T_MAP, _T_SET, _T_LIST = 12, 11, 13, 14, 15


class _Refused(Exception):
    """A field that would need unpickling (internal; becomes CodecError/TypeError)."""


def _qat() -> tuple[Any, Any]:
    """``qat.core`` and ``qat.comm.shared.ttypes``, imported quietly.

    myQLM's module loader emits an ImportWarning on Python 3.11+; it is harmless.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImportWarning)
        import qat.comm.shared.ttypes as ttypes
        import qat.core as core
    return core, ttypes


def encode(value: Any) -> tuple[bytes, str]:
    """Encode a ``qat.core`` Job, Batch, Result or BatchResult as scrubbed thrift binary.

    :raises TypeError: for other types, or for a value that only travels pickled.
    """
    _core, ttypes = _qat()
    for media_type, name in _CLASSES.items():  # noqa: B007 - both are used after the loop
        if isinstance(value, getattr(ttypes, name)):
            break
    else:
        hint = " (use circuit.to_job())" if type(value).__name__ == "Circuit" else ""
        raise TypeError(
            f"cannot encode a value of type {type(value).__qualname__} with the myQLM codec: "
            f"jobledger sends qat.core.Job or Batch and reads Result or BatchResult{hint}"
        )
    try:
        raw = _read(getattr(ttypes, name), _write(value))
        _scrub(raw, name)
    except _Refused as exc:
        raise TypeError(
            f"cannot encode this {name}: {exc}, which would travel as a pickle"
        ) from None
    return _write(raw), media_type


def decode(data: bytes, media_type: str) -> Any:
    """Decode thrift binary into a scrubbed ``qat.core`` object.

    :raises CodecError: for malformed bytes, or a field that would need unpickling.
    """
    name = _CLASSES.get(media_type)
    if name is None:
        raise CodecError(f"the myQLM codec does not read {media_type!r}")
    core, ttypes = _qat()
    try:
        raw = _read(getattr(ttypes, name), data)
    except Exception as exc:  # thrift raises EOFError, TProtocolException, struct.error...
        raise CodecError(f"malformed myQLM {name} thrift payload: {exc}") from None
    try:
        _scrub(raw, name)
    except _Refused as exc:
        raise CodecError(
            f"refused myQLM {name} payload: {exc}, which jobledger never loads"
        ) from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImportWarning)
        return getattr(core, name).from_thrift(raw)


def _protocol_factory(limit: int) -> Any:
    from thrift.protocol.TBinaryProtocol import TBinaryProtocolFactory

    # No string or container can be longer than the payload itself.
    return TBinaryProtocolFactory(string_length_limit=limit, container_length_limit=limit)


def _write(value: Any) -> bytes:
    from thrift.protocol.TBinaryProtocol import TBinaryProtocolFactory
    from thrift.TSerialization import serialize

    data: bytes = serialize(value, TBinaryProtocolFactory())
    return data


def _read(cls: Any, data: bytes) -> Any:
    from thrift.TSerialization import deserialize

    return deserialize(cls(), data, _protocol_factory(max(len(data), 1)))


def _scrub(struct: Any, path: str) -> None:
    """Clear or refuse every field of *struct* (recursively) that holds a pickle."""
    owner = type(struct).__name__
    for entry in struct.thrift_spec:
        if entry is None:
            continue
        _fid, ttype, field, type_args, _default = entry
        value = getattr(struct, field, None)
        if value is None:
            continue
        where = f"{path}.{field}"
        if ttype == _T_STRING and type_args == "BINARY":
            if (owner, field) in _DROPPED_BINARY:
                setattr(struct, field, None)
            elif (owner, field) not in _PLAIN_BINARY:
                raise _Refused(f"{where} carries serialized Python objects")
        elif ttype == _T_STRUCT:
            _scrub_struct_field(struct, owner, field, type_args[0].__name__, where)
        elif owner == "Job" and field == "psi_0_str":
            raise _Refused(f"{where} names an initial state to load")
        else:
            _scrub_container(ttype, type_args, value, where)


def _scrub_struct_field(struct: Any, owner: str, field: str, kind: str, where: str) -> None:
    if kind == "ResData":
        if owner != "Result":
            raise _Refused(f"{where} is a pickled initial state")
        setattr(struct, field, None)
        struct.meta_data = {**(struct.meta_data or {}), WITHHELD_KEY: field}
    elif kind == "QRegisterMetadata":
        # It names a class to import and carries that class's pickled attributes.
        setattr(struct, field, None)
    else:
        _scrub(getattr(struct, field), where)


def _scrub_container(ttype: int, type_args: Any, value: Any, where: str) -> None:
    if ttype in (_T_LIST, _T_SET):
        items: list[tuple[str, Any]] = [(f"{where}[{i}]", item) for i, item in enumerate(value)]
        elem_type, elem_args = type_args[0], type_args[1]
    elif ttype == _T_MAP:
        if type_args[0] == _T_STRING and type_args[1] == "BINARY":
            raise _Refused(f"{where} carries serialized Python objects")
        items = [(f"{where}[{key!r}]", item) for key, item in value.items()]
        elem_type, elem_args = type_args[2], type_args[3]
    else:
        return
    for item_where, item in items:
        if elem_type == _T_STRUCT:
            _scrub(item, item_where)
        elif elem_type in (_T_LIST, _T_SET, _T_MAP):
            _scrub_container(elem_type, elem_args, item, item_where)
        elif elem_type == _T_STRING and elem_args == "BINARY":
            raise _Refused(f"{item_where} carries serialized Python objects")
