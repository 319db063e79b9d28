"""Log entries: the exact bytes that become leaves of the Merkle log.

An entry is a JSON object serialized with the JSON Canonicalization Scheme (RFC 8785): keys
sorted by their UTF-16 code units, no insignificant whitespace, numbers in their shortest
ECMAScript form. The same object therefore always yields the same bytes, in any language,
and ``verify`` can recompute a leaf from a database row.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import rfc8785

from batterytrace.ledger.merkle import leaf_hash

__all__ = ["EntryError", "canonical_entry", "entry_leaf_hash"]


class EntryError(ValueError):
    """A value cannot be written as a canonical JSON log entry."""


_SAFE_INTEGER = 2**53 - 1


def _plain(value: Any, path: str) -> Any:
    """Copy ``value`` into the dicts and lists the canonicalizer accepts."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise EntryError(f"entry number at {path} is {value}; JSON has no NaN or infinity")
        # Beyond ±(2^53 − 1) a JSON number (an IEEE 754 double) is no longer exact, and a
        # large float written in canonical form reads back as a different integer.
        if not -_SAFE_INTEGER <= value <= _SAFE_INTEGER:
            raise EntryError(
                f"entry number {value} at {path} is beyond ±(2^53 − 1), where JSON numbers stop "
                "being exact; send it as a string"
            )
        return value
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise EntryError(f"entry object key {key!r} at {path} is not a string")
            out[key] = _plain(item, f"{path}.{key}")
        return out
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray, memoryview)):
        return [_plain(item, f"{path}[{i}]") for i, item in enumerate(value)]
    raise EntryError(
        f"entry value at {path} has type {type(value).__name__}, which JSON cannot hold; "
        "convert it to a string or a number first"
    )


#: Non-integral floats in this range print the same in Python's shortest repr and in
#: ECMAScript's Number::toString: plain decimal notation with the shortest round-trip digits.
_PLAIN_FLOAT_MIN = 1e-4
_PLAIN_FLOAT_MAX = 1e16


def _fast_form(value: Any, path: str) -> Any:
    """``value`` checked as ``_plain`` does and ready for ``json.dumps``; raises ``_SlowPathError`` where
    Python's JSON output could differ from RFC 8785 (exponent-form floats, keys that sort
    differently in UTF-16)."""
    if value is None or value is True or value is False or type(value) is str:
        return value
    if type(value) is float:
        if value.is_integer() and -_SAFE_INTEGER <= value <= _SAFE_INTEGER:
            return int(value)
        if not _PLAIN_FLOAT_MIN <= abs(value) < _PLAIN_FLOAT_MAX:
            raise _SlowPathError
        return value
    if type(value) is int:
        if not -_SAFE_INTEGER <= value <= _SAFE_INTEGER:
            raise _SlowPathError
        return value
    if type(value) is dict:
        out = {}
        for key, item in value.items():
            if type(key) is not str or (not key.isascii() and any(ord(ch) > 0xFFFF for ch in key)):
                raise _SlowPathError
            out[key] = _fast_form(item, path)
        return out
    if type(value) is list:
        return [_fast_form(item, path) for item in value]
    raise _SlowPathError


class _SlowPathError(Exception):
    pass


_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)


def canonical_entry(obj: Mapping[str, Any]) -> bytes:
    """The RFC 8785 canonical JSON bytes of the entry object ``obj``.

    Raises :class:`EntryError` for values JSON cannot represent exactly: non-string keys,
    bytes, dates and other objects, NaN and infinities, and numbers beyond ±(2^53 − 1) (the
    I-JSON range in which every integer is exact). Within these limits the canonical bytes
    read back with any JSON parser to a value that canonicalizes to the same bytes.
    """
    if not isinstance(obj, Mapping):
        raise EntryError(f"a log entry must be a JSON object, got {type(obj).__name__}")
    # Fast path: plain dicts, lists and scalars through the standard library's encoder, which
    # for these values writes exactly the RFC 8785 form (a property test compares the two).
    # Anything else (mappings of other types, unusual floats, errors) takes the full path.
    try:
        return _ENCODER.encode(_fast_form(obj, "$")).encode("utf-8")
    except (_SlowPathError, UnicodeEncodeError):
        pass
    plain = _plain(obj, "$")
    try:
        return rfc8785.dumps(plain)
    except rfc8785.CanonicalizationError as exc:
        raise EntryError(f"entry cannot be canonicalized: {exc}") from exc


def entry_leaf_hash(obj: Mapping[str, Any]) -> bytes:
    """The Merkle leaf hash of the entry object ``obj``: ``SHA-256(0x00 ‖ canonical JSON)``."""
    return leaf_hash(canonical_entry(obj))
