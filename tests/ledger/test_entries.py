"""Canonical JSON log entries (RFC 8785) and their leaf hashes."""

from __future__ import annotations

import datetime
import decimal
import hashlib
import json
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batterytrace.ledger import EntryError, canonical_entry, entry_leaf_hash


def test_keys_are_sorted_and_whitespace_removed() -> None:
    entry = {
        "type": "shipped",
        "battery": "0ABPB01ABCDEFG4A10000001",
        "data": {"to": "91310000X", "b": [1, 2]},
    }
    assert canonical_entry(entry) == (
        b'{"battery":"0ABPB01ABCDEFG4A10000001","data":{"b":[1,2],"to":"91310000X"},"type":"shipped"}'
    )


def test_rfc8785_rules_for_numbers_strings_and_key_order() -> None:
    assert canonical_entry({"n": [1.0, 0.5, -0.0, 1e-7, 123456789012.0, 10**15, 4.5e15, 1 / 3]}) == (
        b'{"n":[1,0.5,0,1e-7,123456789012,1000000000000000,4500000000000000,0.3333333333333333]}'
    )
    assert canonical_entry({"s": 'Li\u2014Co \u00e9\n"\\'}) == '{"s":"Li\u2014Co \u00e9\\n\\"\\\\"}'.encode()
    # keys sort by UTF-16 code units: U+1F600 (a surrogate pair, D83D) sorts before U+FB33
    assert canonical_entry({"\ufb33": 1, "\U0001f600": 2, "a": 3}) == (
        '{"a":3,"\U0001f600":2,"\ufb33":1}'.encode()
    )
    assert canonical_entry({"t": True, "f": False, "z": None}) == b'{"f":false,"t":true,"z":null}'


def test_leaf_hash_of_an_entry() -> None:
    entry = {"id": "7f9c", "type": "manufactured"}
    assert entry_leaf_hash(entry) == hashlib.sha256(b"\x00" + b'{"id":"7f9c","type":"manufactured"}').digest()


def test_any_mapping_and_sequence_is_accepted() -> None:
    plain = {"a": [1, {"b": 2}], "c": {"d": "e"}}
    proxied = MappingProxyType({"c": MappingProxyType({"d": "e"}), "a": (1, MappingProxyType({"b": 2}))})
    assert canonical_entry(proxied) == canonical_entry(plain)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"x": b"bytes"}, r"\$\.x has type bytes"),
        ({"x": [datetime.date(2026, 4, 1)]}, r"\$\.x\[0\] has type date"),
        ({"x": decimal.Decimal("1.5")}, "Decimal"),
        ({"x": {1: "a"}}, "key 1 at \\$\\.x is not a string"),
        ({"x": float("nan")}, r"\$\.x is nan; JSON has no NaN"),
        ({"x": {"y": float("-inf")}}, r"\$\.x\.y is -inf"),
        ({"x": 2**53}, "beyond"),
        ({"x": -(2**53)}, "beyond"),
        ({"x": 10**400}, "beyond"),
        ({"x": 1e16}, "beyond"),
        ({"x": -1e300}, "beyond"),
        ({"x": "\ud800"}, "non-UTF-8"),
    ],
)
def test_values_json_cannot_hold_exactly_are_refused(value: dict[str, Any], message: str) -> None:
    with pytest.raises(EntryError, match=message):
        canonical_entry(value)


def test_the_exact_integer_range_is_accepted() -> None:
    assert canonical_entry({"x": [2**53 - 1, -(2**53) + 1]}) == b'{"x":[9007199254740991,-9007199254740991]}'
    assert canonical_entry({"x": 9007199254740991.0}) == b'{"x":9007199254740991}'


def test_an_entry_must_be_an_object() -> None:
    with pytest.raises(EntryError, match="JSON object"):
        canonical_entry([1, 2])  # type: ignore[arg-type]


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(-(2.0**53) + 1, 2.0**53 - 1)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=5), _json, max_size=6))
def test_canonical_form_is_valid_json_with_the_same_value(entry: dict[str, Any]) -> None:
    encoded = canonical_entry(entry)
    assert json.loads(encoded) == entry
    assert canonical_entry(json.loads(encoded)) == encoded  # stable under a round trip


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-(2**53 - 1), max_value=2**53 - 1),
    st.text(),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_fast_canonical_form_equals_rfc8785(obj):
    """The standard-library fast path writes exactly what the reference canonicalizer writes."""
    import rfc8785

    assert canonical_entry(obj) == rfc8785.dumps(obj)
