"""Request bodies: spooled to disk under the size limit, then read as strict JSON.

A body never sits whole in memory. :func:`spool` copies it to an anonymous
temporary file, refusing it with ``413`` as soon as the declared ``Content-Length``
or the bytes counted so far exceed the limit. :func:`split_envelope` then reads the
file once: every byte goes to a small in-memory copy of the envelope, except the
string at ``batch.data`` (base64, the bulk of a submit), which is decoded on the fly
into a sink (a blob writer) and left as ``""`` in the copy. The copy is parsed by
:func:`loads`, which refuses what Python's :mod:`json` would accept but no other
parser, or the service itself, can round-trip: ``NaN``, ``Infinity``, numbers too
large for a float, integers beyond Python's digit limit. Nesting is counted while
scanning, so a 100,000-deep body is a ``422`` rather than a ``RecursionError``.
"""

from __future__ import annotations

import binascii
import json
import math
import re
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import IO, Any

from jobledger import codecs
from jobledger.service.blobs import BlobInfo, BlobStore, BlobWriter
from jobledger.service.plugin import Backend
from jobledger.service.wire import ApiError, SubmitRequest, invalid, parse_submit

__all__ = [
    "INLINE_MAX",
    "MAX_DEPTH",
    "MAX_ENVELOPE",
    "Base64Sink",
    "check_json_file",
    "loads",
    "read_submit",
    "split_envelope",
    "spool",
]

MAX_DEPTH = 64
"""Deepest nesting of arrays and objects accepted in a request body."""
MAX_ENVELOPE = 16 * 1024 * 1024
"""Largest submit body once ``batch.data`` is taken out (params, tags, ...)."""
MAX_JSON_CHECK = 16 * 1024 * 1024
"""JSON batches up to this size are parsed at submission; larger ones only scanned."""
INLINE_MAX = 256 * 1024
"""Batches up to this size are also kept in the database (see :func:`read_submit`)."""

_CHUNK = 1 << 20
_IN_OBJECT = re.compile(rb'[\[\]{}:,"]')
# Commas do not matter inside arrays, so arrays of numbers are skipped in one search.
_IN_ARRAY = re.compile(rb'[\[\]{}"]')
_STRING_END = re.compile(rb'["\\]')


def too_large(limit: int, what: str = "the request body") -> ApiError:
    """A ``413 too_large`` error naming *limit*."""
    return ApiError(
        413,
        "too_large",
        f"{what} exceeds this service's limit of {limit} bytes (jobledger serve --max-body)",
    )


async def spool(
    chunks: AsyncIterator[bytes], declared: str | None, limit: int, folder: Path
) -> IO[bytes]:
    """Copy a request body into an anonymous temporary file in *folder*; rewind it.

    Small bodies stay in memory; from 1 MiB on they go to disk.

    :param declared: the ``Content-Length`` header, checked before anything is read.
    :raises ApiError: 413 when the body is, or says it is, larger than *limit*.
    """
    text = (declared or "").strip()
    if text.isascii() and text.isdigit() and int(text) > limit:
        raise too_large(limit)
    folder.mkdir(parents=True, exist_ok=True)
    # In memory up to one chunk (most bodies), then on disk. Never fsynced: the body
    # is transient, only the blob made from it is durable.
    out = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - returned open
        max_size=_CHUNK, dir=str(folder), prefix="body-"
    )
    size = 0
    try:
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            out.write(chunk)
        out.seek(0)
    except BaseException:
        out.close()
        raise
    return out


def _reject_constant(name: str) -> Any:
    raise invalid(f"malformed JSON body: {name} is not a number that JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise invalid(f"malformed JSON body: the number {text[:40]} is too large")
    return value


def loads(data: bytes | bytearray | str) -> Any:
    """Parse JSON strictly: no ``NaN``/``Infinity``, no overflowing numbers.

    :raises ApiError: 422 naming the problem.
    """
    try:
        return json.loads(data, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise invalid(f"malformed JSON body: nested more than {MAX_DEPTH} levels") from None
    except (UnicodeDecodeError, ValueError) as exc:
        # JSONDecodeError is a ValueError, and so is an integer beyond the digit limit.
        raise invalid(f"malformed JSON body: {exc}") from None


class Base64Sink:
    """Decodes base64 text fed in pieces, writing the bytes to *write*."""

    def __init__(self, write: Callable[[bytes], Any]) -> None:
        self._write = write
        self._carry = b""
        self._padded = False
        self.error: str | None = None

    def feed(self, text: bytes) -> None:
        """Decode as much of *text* as forms whole 4-character groups."""
        if self.error is not None or not text:
            return
        data = self._carry + text
        whole = len(data) - len(data) % 4
        if self._padded:
            self.error = "data after the '=' padding"
            return
        try:
            self._write(binascii.a2b_base64(data[:whole], strict_mode=True))
        except binascii.Error as exc:
            self.error = str(exc)
            return
        self._padded = b"=" in data[:whole]
        self._carry = data[whole:]

    def close(self) -> None:
        """Check that the text ended on a whole group."""
        if self.error is None and self._carry:
            self.error = "Incorrect padding"


class _Frame:
    __slots__ = ("expect_key", "is_object", "key", "parent_key")

    def __init__(self, is_object: bool, parent_key: str | None) -> None:
        self.is_object = is_object
        self.parent_key = parent_key
        self.key: str | None = None
        self.expect_key = is_object


class _Splitter:
    """One pass over a JSON body: the envelope copy, nesting, the diverted string."""

    def __init__(
        self,
        source: IO[bytes],
        sink: Base64Sink | None,
        max_envelope: int,
        max_depth: int,
    ) -> None:
        self._source = source
        self._sink = sink
        self._max_envelope = max_envelope
        self._max_depth = max_depth
        self._buf = b""
        self._pos = 0
        self.envelope = bytearray()
        self.diverted = 0

    def _more(self) -> bool:
        if self._pos < len(self._buf):
            return True
        self._buf = self._source.read(_CHUNK)
        self._pos = 0
        return bool(self._buf)

    def _keep(self, end: int) -> None:
        self.envelope += self._buf[self._pos : end]
        self._pos = end
        if len(self.envelope) > self._max_envelope:
            raise too_large(self._max_envelope, "the body without batch.data")

    def _string(self, capture: bool, divert: bool) -> bytes:
        """Consume a string whose opening quote is at the current position."""
        captured = bytearray()
        self._keep(self._pos + 1)
        if divert:
            self.diverted += 1
        while True:
            if not self._more():
                raise invalid("malformed JSON body: unterminated string")
            match = _STRING_END.search(self._buf, self._pos)
            end = match.start() if match else len(self._buf)
            if divert:
                assert self._sink is not None
                self._sink.feed(self._buf[self._pos : end])
                self._pos = end
            else:
                if capture:
                    captured += self._buf[self._pos : end]
                self._keep(end)
            if match is None:
                continue
            if self._buf[end : end + 1] == b'"':
                self._keep(end + 1)
                return bytes(captured)
            escape = self._escape(divert)
            if capture:
                captured += escape

    def _escape(self, divert: bool) -> bytes:
        # At a backslash: a JSON escape is two bytes (\u's hex digits are plain text).
        self._pos += 1
        if not self._more():
            raise invalid("malformed JSON body: unterminated string")
        escape = b"\\" + self._buf[self._pos : self._pos + 1]
        self._pos += 1
        if divert:
            assert self._sink is not None
            if escape == b"\\/":
                self._sink.feed(b"/")
            elif self._sink.error is None:
                self._sink.error = "only base64 characters may appear"
        else:
            self.envelope += escape
        return escape

    def run(self) -> None:
        stack: list[_Frame] = []
        while self._more():
            pattern = _IN_ARRAY if stack and not stack[-1].is_object else _IN_OBJECT
            match = pattern.search(self._buf, self._pos)
            if match is None:
                self._keep(len(self._buf))
                continue
            self._keep(match.start())
            char = self._buf[self._pos : self._pos + 1]
            frame = stack[-1] if stack else None
            if char == b'"':
                if frame is not None and frame.is_object and frame.expect_key:
                    raw = self._string(capture=True, divert=False)
                    frame.key = _key(raw)
                    frame.expect_key = False
                else:
                    self._string(capture=False, divert=self._at_batch_data(stack))
            elif char in b"[{":
                self._keep(self._pos + 1)
                if len(stack) >= self._max_depth:
                    raise invalid(
                        f"malformed JSON body: nested more than {self._max_depth} levels"
                    )
                parent_key = frame.key if frame is not None and frame.is_object else None
                stack.append(_Frame(char == b"{", parent_key))
            elif char in b"]}":
                self._keep(self._pos + 1)
                if stack:
                    stack.pop()
            elif char == b",":
                self._keep(self._pos + 1)
                if frame is not None and frame.is_object:
                    frame.expect_key = True
            else:  # ":"
                self._keep(self._pos + 1)

    def _at_batch_data(self, stack: list[_Frame]) -> bool:
        if self._sink is None or len(stack) != 2:
            return False
        top, batch = stack
        return (
            top.is_object
            and batch.is_object
            and batch.parent_key == "batch"
            and batch.key == "data"
            and not batch.expect_key
        )


def _key(raw: bytes) -> str:
    try:
        key = json.loads(b'"' + raw + b'"')
    except ValueError:
        return ""  # the envelope's own parse reports the bad string
    return key if isinstance(key, str) else ""


def split_envelope(
    source: IO[bytes],
    sink: Base64Sink | None = None,
    *,
    max_envelope: int = MAX_ENVELOPE,
    max_depth: int = MAX_DEPTH,
) -> tuple[Any, int]:
    """Parse the JSON body in *source*, decoding ``batch.data`` into *sink*.

    :returns: the parsed body (with ``batch.data`` replaced by ``""`` when it was
        diverted) and how many strings were diverted (0 or 1; more is refused).
    :raises ApiError: 422 for malformed or too deeply nested JSON, 413 when the body
        without ``batch.data`` exceeds *max_envelope*.
    """
    splitter = _Splitter(source, sink, max_envelope, max_depth)
    splitter.run()
    if splitter.diverted > 1:
        raise invalid("the body has more than one 'batch.data' field")
    return loads(bytes(splitter.envelope)), splitter.diverted


def check_json_file(source: IO[bytes]) -> None:
    """Check that *source* holds balanced JSON, without building it in memory.

    Brackets must balance and strings end; the values themselves are left to the
    backend that reads the batch. Used for batches too large to parse whole.

    :raises ApiError: 422 saying what is wrong.
    """
    buf = b""
    pos = 0
    depth = 0
    in_string = False
    while True:
        if pos >= len(buf):
            pos -= len(buf)
            buf = source.read(_CHUNK)
            if not buf:
                break
            continue
        if in_string:
            match = _STRING_END.search(buf, pos)
            if match is None:
                pos = len(buf)
            elif match.group() == b'"':
                in_string = False
                pos = match.end()
            else:
                pos = match.end() + 1  # skip the escaped byte, perhaps in the next chunk
            continue
        match = _IN_ARRAY.search(buf, pos)
        if match is None:
            pos = len(buf)
            continue
        pos = match.end()
        char = match.group()
        if char == b'"':
            in_string = True
        elif char in b"[{":
            depth += 1
        else:
            depth -= 1
            if depth < 0:
                break
    if in_string or depth != 0:
        raise invalid("the batch is declared JSON but is not: unbalanced brackets or quotes")


def read_submit(
    source: IO[bytes], backends: dict[str, Backend], blobs: BlobStore
) -> tuple[SubmitRequest, BlobInfo, bytes | None]:
    """Read a ``POST /v1/jobs`` body from *source*; store its batch as a blob.

    The batch is decoded from base64 straight into a blob writer, hashed on the
    way, and committed only once everything else was validated. A batch of at most
    :data:`INLINE_MAX` bytes is returned too, to be kept in the database with its job
    (one ``fsync`` for both), and its file is not forced to disk; a larger one is
    (``fsync`` of the file and its folder) before this returns.

    :returns: the request, the batch's :class:`BlobInfo`, and the small batch's bytes
        (``None`` for a large one).
    :raises ApiError: 422 naming the first problem, 413 for an oversized envelope.
    """
    writer = blobs.writer(codecs.JSON)
    try:
        sink = Base64Sink(writer.write)
        body, diverted = split_envelope(source, sink)
        request = parse_submit(body, backends)
        if not diverted:
            # batch.data was a string, but not where the scan looks (say, a
            # duplicate "batch" key): decode the copy the parser kept.
            sink.feed(str(body["batch"]["data"]).encode("ascii", "replace"))
        sink.close()
        if sink.error is not None:
            raise invalid(f"batch 'data' is not valid base64: {sink.error}")
        actual = writer.hexdigest()
        expected = request.sha256
        if expected is not None and expected.lower() != actual:
            raise invalid(
                f"batch sha256 mismatch: the body says {expected!r}, the bytes hash to {actual!r}"
            )
        if request.media_type == codecs.JSON:
            _check_json_batch(writer)
        writer.media_type = request.media_type
        inline = None
        if writer.size <= INLINE_MAX:
            with writer.read_back() as written:
                inline = written.read()
        if blobs.path(actual).exists():
            # Same bytes already stored: skip the second write and rename.
            writer.discard()
            return request, BlobInfo(actual, writer.size, request.media_type), inline
        return request, writer.commit(durable=inline is None), inline
    except BaseException:
        writer.discard()
        raise


def _check_json_batch(writer: BlobWriter) -> None:
    with writer.read_back() as data:
        if writer.size > MAX_JSON_CHECK:
            check_json_file(data)
            return
        try:
            json.loads(data.read())
        except RecursionError:
            raise invalid("the batch is declared JSON but is nested too deeply") from None
        except (UnicodeDecodeError, ValueError) as exc:
            raise invalid(f"the batch is declared JSON but is not: {exc}") from None
