"""Codecs: the one place where values become bytes and bytes become values.

:mod:`.core` handles JSON, raw bytes and NumPy ``.npy``; one module per quantum SDK
handles that SDK's objects with the SDK's own safe serializer. Decoding goes through
:data:`DECODERS`, a fixed table from media type to the module that decodes it: nothing
inside a payload chooses its decoder, and nothing is ever unpickled. An SDK module is
imported only when a value of that SDK is encoded or a payload of its media type is
decoded, so ``import jobledger`` and reading a JSON result load no SDK. Modules here
import only :mod:`jobledger.errors` and the SDK they serve.
"""

from __future__ import annotations

import importlib

from jobledger.codecs.core import BYTES, JSON, NPY
from jobledger.codecs.core import decode as _core_decode
from jobledger.codecs.core import encode as _core_encode
from jobledger.errors import CodecError

TYPE_CHECKING = False  # typing's flag without importing typing (see docs/architecture.md)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["BYTES", "DECODERS", "JSON", "MEDIA_TYPES", "NPY", "SDK_EXTRAS", "decode", "encode"]

#: media type -> (module that decodes it, the extra that installs its SDK)
DECODERS: dict[str, tuple[str, str | None]] = {
    JSON: ("jobledger.codecs.core", None),
    BYTES: ("jobledger.codecs.core", None),
    NPY: ("jobledger.codecs.core", None),
    # The SDK modules' own MEDIA_TYPES constants name the same strings; they are
    # spelled out here so that reading this table imports no SDK.
    "application/vnd.qiskit.runtime+json": ("jobledger.codecs.qiskit", "qiskit"),
    "application/vnd.braket.ir.openqasm+json": ("jobledger.codecs.braket", "braket"),
    "application/vnd.braket.task-result+json": ("jobledger.codecs.braket", "braket"),
    "application/vnd.qat.job+thrift": ("jobledger.codecs.qlm", "qlm"),
    "application/vnd.qat.batch+thrift": ("jobledger.codecs.qlm", "qlm"),
    "application/vnd.qat.result+thrift": ("jobledger.codecs.qlm", "qlm"),
    "application/vnd.qat.batchresult+thrift": ("jobledger.codecs.qlm", "qlm"),
}

#: top-level package of an SDK's objects -> (codec module, extra)
SDK_EXTRAS: dict[str, tuple[str, str]] = {
    "qiskit": ("jobledger.codecs.qiskit", "qiskit"),
    "braket": ("jobledger.codecs.braket", "braket"),
    "qat": ("jobledger.codecs.qlm", "qlm"),
}

MEDIA_TYPES = tuple(DECODERS)


def encode(value: Any) -> tuple[bytes, str]:
    """Encode *value* to ``(data, media_type)``.

    SDK objects (and lists of them) go through their SDK's codec; ``bytes`` travel
    raw, NumPy arrays as ``.npy``, everything else as JSON.

    :raises TypeError: naming the type when the value cannot be encoded safely.
    """
    sdk = _sdk_of(value)
    if sdk is not None:
        module_name, _extra = SDK_EXTRAS[sdk]
        encoded: tuple[bytes, str] = importlib.import_module(module_name).encode(value)
        return encoded
    return _core_encode(value)


def decode(data: bytes, media_type: str) -> Any:
    """Decode *data* of *media_type* into a fresh value, by the fixed table.

    :raises CodecError: for an unknown media type, malformed bytes, or an SDK that
        is not installed (naming the extra that installs it).
    """
    base = media_type.split(";", 1)[0].strip().lower()
    entry = DECODERS.get(base)
    if entry is None:
        known = ", ".join(DECODERS)
        raise CodecError(f"unsupported media type {media_type!r}; jobledger reads {known}")
    module_name, extra = entry
    if extra is None:
        return _core_decode(data, base)
    try:
        # SDK codec modules import their SDK when they first decode, so a missing
        # SDK surfaces from decode() as well as from the import.
        return importlib.import_module(module_name).decode(data, base)
    except ImportError as exc:
        raise CodecError(
            f"this payload ({base}) needs the {extra} SDK, which is not installed here "
            f"({exc}); install it with `pip install 'jobledger[{extra}]'`, or save the raw "
            "bytes with `jobledger result ID --out FILE`"
        ) from None


def _sdk_of(value: Any, depth: int = 0) -> str | None:
    """The SDK a value (or the first item of a list or tuple of them) belongs to,
    judged by its type's module without importing any SDK."""
    root = type(value).__module__.split(".", 1)[0]
    if root in SDK_EXTRAS:
        return root
    if depth < 2 and isinstance(value, list | tuple) and value:
        return _sdk_of(value[0], depth + 1)
    return None
