"""The Qiskit codec: PUB lists and primitive results as Qiskit Runtime's JSON.

Values travel as the JSON that ``qiskit_ibm_runtime``'s ``RuntimeEncoder`` writes: the
same dialect IBM's service answers for a job's result, so an IBM result's bytes decode
here too. ``RuntimeDecoder`` builds objects by a ``__type__`` tag, and some of its
branches are not safe on untrusted bytes: ``settings`` and ``_json`` import the module
and call the class named in the payload, and arrays and circuits arrive as compressed
binary. So every payload is first parsed as plain JSON and screened against an
explicit allowlist (types, and module/class pairs for ``settings`` and ``_json``;
``.npy`` headers must not declare object arrays); only a payload that passes reaches
``RuntimeDecoder``. Encoding applies the same screen, so jobledger never writes what it
would refuse to read.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import zlib
from typing import Any

from jobledger.errors import CodecError

__all__ = ["MEDIA_TYPES", "RUNTIME_JSON", "decode", "encode"]

RUNTIME_JSON = "application/vnd.qiskit.runtime+json"
MEDIA_TYPES = (RUNTIME_JSON,)

#: ``__type__`` values RuntimeDecoder may build; anything else is refused.
_TYPES = frozenset(
    {
        "datetime",
        "complex",
        "ndarray",
        "set",
        "QuantumCircuit",
        "Parameter",
        "Instruction",
        "settings",
        "_json",
        "Result",
        "ObservablesArray",
        "BindingsArray",
        "BitArray",
        "DataBin",
        "EstimatorPubResult",
        "SamplerPubResult",
        "PubResult",
        "PrimitiveResult",
        "NoiseLearnerResult",
        "DoubleSliceSpan",
        "TwirledSliceSpanV2",
        "TwirledSliceSpan",
        "ExecutionSpan",
        "ExecutionSpanCollection",
        "ExecutionSpans",
        "PauliLindbladMap",
        "to_json",
    }
)

# ``settings`` and ``_json`` name a module to import and a class to call with the
# payload's keywords; only these pairs are ever allowed through.
_SETTINGS_CLASSES = frozenset(
    {
        ("qiskit.quantum_info.operators.symplectic.sparse_pauli_op", "SparsePauliOp"),
        ("qiskit.quantum_info.operators.symplectic.pauli_list", "PauliList"),
        ("qiskit.quantum_info.operators.symplectic.pauli", "Pauli"),
        ("qiskit.quantum_info.operators.operator", "Operator"),
    }
)
_JSON_CLASSES = frozenset(
    {
        (module, name)
        for module in (
            "qiskit_ibm_runtime.utils.noise_learner_result",
            "qiskit_ibm_runtime.results.noise_learner",
        )
        for name in ("LayerError", "PauliLindbladError")
    }
)


class _Refused(Exception):
    """A payload element outside the allowlist (internal; becomes CodecError/TypeError)."""


def encode(value: Any) -> tuple[bytes, str]:
    """Encode PUBs (a list of circuits or PUB tuples) or a ``PrimitiveResult``.

    :raises TypeError: naming what Qiskit's JSON encoder cannot write, or what
        jobledger would refuse to decode.
    """
    import warnings

    from qiskit_ibm_runtime import RuntimeEncoder

    try:
        with warnings.catch_warnings():
            # RuntimeEncoder only warns when it silently drops a callable; make that loud.
            warnings.simplefilter("error")
            text = json.dumps(value, cls=RuntimeEncoder, separators=(",", ":"), allow_nan=True)
    except (TypeError, ValueError, UserWarning) as exc:
        raise TypeError(
            f"cannot encode a value of type {type(value).__qualname__} as Qiskit Runtime "
            f"JSON: {exc}"
        ) from None
    try:
        _screen(json.loads(text))
    except _Refused as exc:
        raise TypeError(f"cannot encode {type(value).__qualname__}: {exc}") from None
    return text.encode("utf-8"), RUNTIME_JSON


def decode(data: bytes, media_type: str) -> Any:
    """Decode Qiskit Runtime JSON after screening it against the allowlist.

    :raises CodecError: for malformed bytes or a refused element (named).
    """
    if media_type != RUNTIME_JSON:
        raise CodecError(f"the Qiskit codec does not read {media_type!r}")
    try:
        text = data.decode("utf-8")
        tree = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CodecError(f"malformed Qiskit Runtime JSON: {exc}") from None
    try:
        _screen(tree)
    except _Refused as exc:
        raise CodecError(f"refused Qiskit Runtime JSON payload: {exc}") from None
    from qiskit_ibm_runtime import RuntimeDecoder

    try:
        return json.loads(text, cls=RuntimeDecoder)
    except Exception as exc:  # Qiskit raises many types for bad data; all mean malformed
        raise CodecError(
            f"malformed Qiskit Runtime JSON payload ({type(exc).__name__}: {exc})"
        ) from None


def _screen(tree: Any) -> None:
    """Walk the parsed JSON and refuse anything RuntimeDecoder should not build."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            if "__type__" in node:
                _check_tagged(node)
            stack.extend(node.values())


def _check_tagged(node: dict[str, Any]) -> None:
    kind = node["__type__"]
    if not isinstance(kind, str) or kind not in _TYPES:
        raise _Refused(f"__type__ {kind!r} is not on jobledger's allowlist")
    if kind in ("settings", "_json"):
        pair = (node.get("__module__"), node.get("__class__"))
        allowed = _SETTINGS_CLASSES if kind == "settings" else _JSON_CLASSES
        if pair not in allowed:
            raise _Refused(f"{kind} object {pair[0]}.{pair[1]} is not on jobledger's allowlist")
    elif kind == "ndarray" and isinstance(node.get("__value__"), str):
        _check_npy(node["__value__"])
    elif kind in ("QuantumCircuit", "Instruction", "Parameter") and not isinstance(
        node.get("__value__"), str
    ):
        raise _Refused(f"{kind} must carry base64 text")


def _check_npy(text: str) -> None:
    """Refuse an embedded ``.npy`` that declares an object (pickled) array."""
    import numpy as np

    try:
        raw = zlib.decompress(base64.standard_b64decode(text))
    except (binascii.Error, ValueError, zlib.error) as exc:
        raise _Refused(f"ndarray is not base64 zlib data: {exc}") from None
    stream = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            _shape, _order, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            _shape, _order, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise _Refused(f"ndarray uses .npy format {version}, which jobledger does not read")
    except ValueError as exc:
        raise _Refused(f"ndarray is not a valid .npy: {exc}") from None
    if dtype.hasobject:
        raise _Refused("ndarray declares an object dtype, which would need pickle")
