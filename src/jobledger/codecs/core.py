"""The core codecs: JSON, raw bytes and NumPy ``.npy``.

Nothing is ever unpickled: JSON is parsed by :mod:`json`, ``.npy`` files are read with
``allow_pickle=False`` (object arrays are refused), and raw bytes stay bytes. NumPy is
optional and imported only when an array is encoded or an ``.npy`` payload decoded.
"""

from __future__ import annotations

import io
import json

from jobledger.errors import CodecError

TYPE_CHECKING = False  # typing's flag without importing typing (see docs/architecture.md)
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "BYTES",
    "JSON",
    "MEDIA_TYPES",
    "NPY",
    "decode",
    "encode",
]

JSON = "application/json"
BYTES = "application/octet-stream"
NPY = "application/x-npy"
MEDIA_TYPES = (JSON, BYTES, NPY)


def encode(value: Any) -> tuple[bytes, str]:
    """Encode *value* to ``(data, media_type)``.

    ``bytes``/``bytearray``/``memoryview`` travel raw, NumPy arrays as ``.npy``,
    everything else as JSON (dicts, lists, str, numbers, bools, None).

    :raises TypeError: naming the type when the value cannot be encoded safely.
    """
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value), BYTES
    if type(value).__module__ == "numpy" and type(value).__name__ == "ndarray":
        return _encode_npy(value), NPY
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"cannot encode a value of type {type(value).__qualname__}: jobledger sends "
            "JSON values (dict, list, str, int, float, bool, None), bytes, or NumPy "
            f"arrays ({exc})"
        ) from None
    return text.encode("utf-8"), JSON


def decode(data: bytes, media_type: str) -> Any:
    """Decode *data* of *media_type* into a fresh Python value.

    :raises CodecError: when the media type is not a core one or the bytes are malformed.
    """
    base = media_type.split(";", 1)[0].strip().lower()
    if base == JSON:
        try:
            return json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CodecError(f"malformed JSON payload: {exc}") from None
    if base == BYTES:
        return bytes(data)
    if base == NPY:
        return _decode_npy(data)
    known = ", ".join(MEDIA_TYPES)
    raise CodecError(f"unsupported media type {media_type!r}; jobledger reads {known}")


def _encode_npy(array: Any) -> bytes:
    import numpy as np

    if array.dtype.hasobject:
        raise TypeError(
            "cannot encode a NumPy array of dtype object: it would need pickle; "
            "convert it to a numeric or string dtype first"
        )
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _decode_npy(data: bytes) -> Any:
    try:
        import numpy as np
    except ImportError:
        raise CodecError(
            "this payload is a NumPy array (.npy); install numpy to read it"
        ) from None
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:
        raise CodecError(f"malformed or unsafe .npy payload: {exc}") from None
