"""Hiding secrets in text that jobledger stores or prints: URLs, arguments, headers.

:func:`redact_url` strips the credentials of a URL (``http://user:pass@host`` becomes
``http://***@host``) and masks query parameters named like secrets. :func:`redact_text`
masks, inside any text, the secrets it is given by value (configured tokens), bearer and
basic authorization headers, ``name=value`` and JSON ``"name": "value"`` pairs whose
name says secret, URL credentials, strings shaped like a jobledger token, and other
high-entropy strings (long runs of the base64 or hex alphabet whose characters are
spread like random ones; file paths and words are left alone). Every mask is ``***``.
Only the standard library is used, so any module may call these.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from urllib.parse import SplitResult, urlsplit, urlunsplit

__all__ = ["MASK", "is_high_entropy", "looks_like_token", "redact_text", "redact_url"]

MASK = "***"

# A name (flag, key, header, query parameter) is secret when one of its parts, split at
# "-", "_" and ".", is one of these words, or when it contains one of the stems below.
SECRET_PARTS = frozenset(
    {
        "auth",
        "authorization",
        "bearer",
        "credential",
        "credentials",
        "key",
        "pass",
        "passphrase",
        "passwd",
        "password",
        "pat",
        "pwd",
        "secret",
        "token",
    }
)
SECRET_STEMS = (
    "token",
    "password",
    "passwd",
    "secret",
    "apikey",
    "accesskey",
    "privatekey",
    "credential",
)
# The shortest known secret replaced inside longer text; shorter ones only as whole items.
MIN_EMBEDDED_SECRET = 6
# Random-looking runs shorter than this are not masked (job ids are 19 characters).
MIN_RANDOM_LENGTH = 20
MIN_HEX_LENGTH = 32
# Bits per character: random base64 of 20+ characters is near 4.0 and above, English
# identifiers of that length stay below 3.8; random hex is near 3.8, hex words below 3.
ENTROPY_BITS = 3.6
HEX_ENTROPY_BITS = 3.0

_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")
_USERINFO = re.compile(r"(?<=://)[^/?#@\s]*@")
_QUERY_PAIR = re.compile(r"[?&;](?P<name>[\w.-]+)=(?P<value>[^&;#\s]*)")
_AUTH_HEADER = re.compile(r"(?i)\b(bearer|basic|digest)(\s+|\s*:\s*)[^\s\"',}]+")
_HEADER = re.compile(
    r"(?<![\w-])(?P<name>[A-Za-z][\w-]*)\s*:\s*(?!(?i:bearer|basic|digest)\b)(?P<value>[^\s\"',}]+)"
)
_JSON_PAIR = re.compile(r"\"(?P<name>[^\"]*)\"\s*:\s*(?P<value>\"(?:[^\"\\]|\\.)*\"|[^\s,}\]]+)")
_ASSIGNMENT = re.compile(r"(?<![\w.-])-*(?P<name>[\w.-]+)=(?P<value>[^\s&;\"',}]+)")
_RUN = re.compile(rf"[A-Za-z0-9+=_-]{{{MIN_RANDOM_LENGTH},}}")
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")
_HEX = re.compile(r"[0-9a-fA-F]+")
_VOWEL = re.compile(r"[aeiouyAEIOUY]")
_PIECE = re.compile(r"[A-Z][a-z]+|[a-z]+|[A-Z]+|[0-9]+")
# Words average this many letters or more; random strings break into pieces of about 2.
WORD_PIECE_LENGTH = 3.0


def redact_url(url: str) -> str:
    """Return *url* without credentials: user and password become ``***``, as do the
    values of query parameters named like secrets (``?token=...``, ``api_key=...``).

    Text that is not a URL is returned unchanged; the result is safe to store and print.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return _USERINFO.sub(MASK + "@", url)
    if not parts.scheme or not parts.netloc:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        netloc = MASK + "@" + netloc.rpartition("@")[2]
    query = _QUERY_PAIR.sub(_mask_pair, "?" + parts.query)[1:] if parts.query else ""
    return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Return *text* with every secret in it replaced by ``***``.

    :param secrets: values known to be secret (configured tokens): masked wherever they
        occur; values shorter than ``MIN_EMBEDDED_SECRET`` only when they are the whole
        text.
    """
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        if text == secret:
            return MASK
        if len(secret) >= MIN_EMBEDDED_SECRET and secret in text:
            text = text.replace(secret, MASK)
    text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    text = _AUTH_HEADER.sub(rf"\g<1>\g<2>{MASK}", text)
    text = _HEADER.sub(_mask_pair, text)
    text = _JSON_PAIR.sub(_mask_pair, text)
    text = _ASSIGNMENT.sub(_mask_pair, text)
    return _RUN.sub(lambda m: MASK if _is_secret_run(m.group(0)) else m.group(0), text)


def is_secret_name(name: str) -> bool:
    """Whether a flag, key, header or parameter called *name* holds a secret
    (``--token``, ``api_key``, ``X-Api-Key``, ``DB_PASSWORD``; not ``--keyboard``)."""
    lowered = name.lower().lstrip("-")
    if any(stem in lowered for stem in SECRET_STEMS):
        return True
    parts = set(re.split(r"[-_.]+", lowered))
    return bool(parts & SECRET_PARTS)


def looks_like_token(text: str) -> bool:
    """Whether *text* has the shape of a jobledger token (43 URL-safe base64
    characters, as made by ``secrets.token_urlsafe(32)``) and is not a word."""
    return bool(_TOKEN_SHAPE.fullmatch(text)) and not _wordish(text)


def is_high_entropy(text: str) -> bool:
    """Whether *text* looks random: at least ``MIN_RANDOM_LENGTH`` characters of the
    base64 alphabet (``MIN_HEX_LENGTH`` of hex), letters mixed with digits or both
    cases, not made of words, and with characters spread like random ones."""
    if _HEX.fullmatch(text):
        return (
            len(text) >= MIN_HEX_LENGTH
            and not text.isdigit()
            and _entropy(text) >= HEX_ENTROPY_BITS
        )
    if len(text) < MIN_RANDOM_LENGTH or _wordish(text):
        return False
    classes = sum(
        (
            any(c.islower() for c in text),
            any(c.isupper() for c in text),
            any(c.isdigit() for c in text),
        )
    )
    return classes >= 2 and _entropy(text) >= ENTROPY_BITS


def _is_secret_run(run: str) -> bool:
    # A leading dash belongs to a glued short flag (-tTOKEN): judge what follows it.
    core = run.lstrip("-")
    return looks_like_token(run) or looks_like_token(core) or is_high_entropy(core)


def _wordish(text: str) -> bool:
    """Whether *text* reads as words and numbers (``aer_simulator_v2``,
    ``SomeLongIdentifierName``): split at separators, case changes and digits, its
    pieces are as long as words on average, every longer piece has a vowel, and
    capitals run long only where the whole text is in capitals."""
    pieces = _PIECE.findall(text)
    if not pieces or sum(map(len, pieces)) / len(pieces) < WORD_PIECE_LENGTH:
        return False
    shouting = not any(c.islower() for c in text)
    for piece in pieces:
        if piece.isdigit():
            continue
        if len(piece) >= 3 and not _VOWEL.search(piece):
            return False
        if piece.isupper() and len(piece) > 4 and not shouting:
            return False
    return True


def _entropy(text: str) -> float:
    counts = Counter(text)
    total = len(text)
    return -sum(n / total * math.log2(n / total) for n in counts.values())


def _mask_pair(match: re.Match[str]) -> str:
    """Mask the ``value`` group of *match* when its ``name`` group is a secret name."""
    value = match.group("value")
    if not value or not is_secret_name(match.group("name")):
        return match.group(0)
    masked = f'"{MASK}"' if value.startswith('"') else MASK
    return match.group(0)[: match.start("value") - match.start(0)] + masked
