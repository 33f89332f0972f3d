"""Tests of the safe codecs: JSON, raw bytes and NumPy ``.npy`` without pickle."""

from __future__ import annotations

import io
import math
from typing import Any

import pytest

from jobledger.codecs import BYTES, JSON, NPY, decode, encode


@pytest.mark.parametrize(
    "value",
    [
        {"shots": 100, "circuit": ["h 0", "cx 0 1"], "nested": {"a": [1.5, None, True]}},
        [],
        "ünïcode ✓",
        42,
        -1.25,
        None,
        False,
    ],
)
def test_json_round_trip(value: Any) -> None:
    data, media_type = encode(value)
    assert media_type == JSON
    assert decode(data, media_type) == value


def test_json_decode_returns_a_fresh_object() -> None:
    data, media_type = encode({"a": [1]})
    first = decode(data, media_type)
    first["a"].append(2)
    assert decode(data, media_type) == {"a": [1]}


@pytest.mark.parametrize("value", [b"\x00\xffraw", bytearray(b"abc"), memoryview(b"xyz")])
def test_bytes_round_trip(value: bytes | bytearray | memoryview) -> None:
    data, media_type = encode(value)
    assert media_type == BYTES
    assert decode(data, media_type) == bytes(value)
    assert type(decode(data, media_type)) is bytes


def test_media_type_parameters_are_ignored() -> None:
    assert decode(b'{"a": 1}', "application/json; charset=utf-8") == {"a": 1}


@pytest.mark.parametrize("bad", [math.nan, math.inf, {"x": [-math.inf]}])
def test_nan_and_infinity_are_refused(bad: Any) -> None:
    with pytest.raises(TypeError, match="float"):
        encode(bad)


def test_unsupported_type_names_it() -> None:
    class Circuit:
        pass

    with pytest.raises(TypeError, match="Circuit"):
        encode(Circuit())
    with pytest.raises(TypeError, match="set"):
        encode({1, 2})


@pytest.mark.parametrize("payload", [b"{not json", b'{"a": 1', b"\xff\xfe"])
def test_malformed_json_is_a_value_error(payload: bytes) -> None:
    with pytest.raises(ValueError, match="malformed JSON"):
        decode(payload, JSON)


def test_unknown_media_type() -> None:
    with pytest.raises(ValueError, match="unsupported media type 'text/x-pickle'"):
        decode(b"x", "text/x-pickle")


# -- NumPy -------------------------------------------------------------------------


@pytest.fixture
def np() -> Any:
    return pytest.importorskip("numpy")


@pytest.mark.parametrize(
    ("dtype", "shape"),
    [("float64", (3, 4)), ("complex128", (2, 2, 2)), ("int8", (5,)), ("bool", ()), ("<U5", (2,))],
)
def test_numpy_round_trip_keeps_dtype_and_shape(
    np: Any, dtype: str, shape: tuple[int, ...]
) -> None:
    array = np.arange(max(1, math.prod(shape))).reshape(shape).astype(dtype)
    data, media_type = encode(array)
    assert media_type == NPY
    back = decode(data, media_type)
    assert back.dtype == array.dtype
    assert back.shape == array.shape
    assert np.array_equal(back, array)


def test_numpy_fortran_order_and_structured_dtype(np: Any) -> None:
    fortran = np.asfortranarray(np.arange(6.0).reshape(2, 3))
    assert np.array_equal(decode(*encode(fortran)), fortran)
    structured = np.array([(1, 2.5)], dtype=[("count", "i4"), ("value", "f8")])
    back = decode(*encode(structured))
    assert back.dtype == structured.dtype and back[0]["value"] == 2.5


def test_object_arrays_are_refused(np: Any) -> None:
    with pytest.raises(TypeError, match="object"):
        encode(np.array([{"a": 1}, None], dtype=object))


def test_pickled_npy_is_refused_on_decode(np: Any) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"evil": 1}, [2]], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="unsafe"):
        decode(buffer.getvalue(), NPY)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not an npy file",
        b"\x93NUMPY\x01\x00garbage",
        b"\x93NUMPY",
    ],
)
def test_malformed_npy_is_a_value_error(np: Any, payload: bytes) -> None:
    with pytest.raises(ValueError):
        decode(payload, NPY)


def test_truncated_npy_is_a_value_error(np: Any) -> None:
    data, media_type = encode(np.arange(1000.0))
    with pytest.raises(ValueError):
        decode(data[:-10], media_type)
