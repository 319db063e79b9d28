"""A JSON Schema (draft-07) turned into plain Python checks, for the hot path of bulk imports.

``jsonschema`` takes milliseconds per EPCIS event; a bulk import of millions of events needs a
check a hundred times faster. This compiles the keywords the EPCIS 2.0 schema uses (``$ref`` to
``#/definitions``, ``type``, ``enum``, ``properties``, ``required``, ``additionalProperties``,
``propertyNames``, ``items``, ``minItems``, ``uniqueItems``, ``anyOf``, ``allOf``, ``oneOf``,
``not``, ``if``/``then``/``else``, ``pattern`` and ``format``) into closures that answer only
*valid or not*. It is used as a fast path: when it says *not valid*, ``jsonschema`` checks again
and gives the reasons, and its verdict stands. A schema using any other keyword is refused, so
nothing is silently skipped.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote

Check = Callable[[Any], bool]

IGNORED = frozenset(
    {"$id", "$schema", "$comment", "definitions", "description", "title", "examples", "default"}
)
SUPPORTED = frozenset(
    {
        "$ref", "type", "enum", "const", "properties", "required", "additionalProperties", "propertyNames",
        "items", "minItems", "maxItems", "uniqueItems", "anyOf", "allOf", "oneOf", "not", "if", "then", "else",
        "pattern", "format", "minLength", "maxLength",
    }
)  # fmt: skip


class UnsupportedSchemaError(ValueError):
    """The schema uses a keyword this compiler does not know."""


def _is_type(value: Any, name: str) -> bool:
    if name == "string":
        return isinstance(value, str)
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "null":
        return value is None
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if name == "integer":
        if isinstance(value, bool):
            return False
        return isinstance(value, int) or (
            isinstance(value, float) and math.isfinite(value) and value.is_integer()
        )
    raise UnsupportedSchemaError(f"unknown type {name!r}")


def _normal(value: Any) -> Any:
    """A value in a form where JSON-equal values are equal (1 and 1.0 are; 1 and true are not)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return (type(value).__name__, value)
    if isinstance(value, int | float):
        return (
            ("number", float(value))
            if isinstance(value, float) and not value.is_integer()
            else ("number", int(value))
        )
    if isinstance(value, list):
        return ("array", tuple(_normal(v) for v in value))
    if isinstance(value, dict):
        return ("object", tuple(sorted((k, _normal(v)) for k, v in value.items())))
    return ("other", json.dumps(value, default=str))


class Compiler:
    def __init__(self, root: Mapping[str, Any], formats: Mapping[str, Callable[[Any], bool]]) -> None:
        self.root = root
        self.formats = formats
        self._refs: dict[str, Check] = {}

    def compile(self, schema: Any) -> Check:
        if schema is True or schema == {}:
            return lambda _v: True
        if schema is False:
            return lambda _v: False
        if not isinstance(schema, Mapping):
            raise UnsupportedSchemaError(f"a schema must be an object or a boolean, got {schema!r}")
        if "$ref" in schema:  # draft-07: the reference replaces its siblings
            return self._ref(schema["$ref"])
        unknown = set(schema) - SUPPORTED - IGNORED
        if unknown:
            raise UnsupportedSchemaError(f"unsupported keyword(s): {', '.join(sorted(unknown))}")
        checks: list[Check] = []
        for key in schema:
            made = self._keyword(key, schema)
            if made is not None:
                checks.append(made)
        return _all(checks)

    def _ref(self, ref: str) -> Check:
        if not ref.startswith("#/definitions/"):
            raise UnsupportedSchemaError(f"only #/definitions references are supported, got {ref!r}")
        if ref not in self._refs:
            target = self.root["definitions"][unquote(ref.rsplit("/", 1)[1])]
            slot: list[Check] = []
            self._refs[ref] = lambda v: slot[0](v)  # allows recursive definitions
            slot.append(self.compile(target))
            self._refs[ref] = slot[0]
        return self._refs[ref]

    def _keyword(self, key: str, s: Mapping[str, Any]) -> Check | None:
        value = s[key]
        if key in IGNORED or key in ("then", "else"):
            return None
        if key == "type":
            names = value if isinstance(value, list) else [value]
            for name in names:
                _is_type(None, name)  # refuses unknown names now
            if len(names) == 1:
                return _TYPE_CHECKS.get(names[0]) or (lambda v: _is_type(v, names[0]))
            return lambda v: any(_is_type(v, n) for n in names)
        if key == "enum":
            allowed = {_normal(x) for x in value}
            return lambda v: _normal(v) in allowed
        if key == "const":
            want = _normal(value)
            return lambda v: _normal(v) == want
        if key == "properties":
            props = {name: self.compile(sub) for name, sub in value.items()}

            def properties(v: Any) -> bool:
                if not isinstance(v, dict):
                    return True
                for name, item in v.items():
                    check = props.get(name)
                    if check is not None and not check(item):
                        return False
                return True

            return properties
        if key == "required":
            names = list(value)
            return lambda v: not isinstance(v, dict) or all(n in v for n in names)
        if key == "additionalProperties":
            known = set(s.get("properties", {}))
            extra = self.compile(value)
            return lambda v: not isinstance(v, dict) or all(extra(x) for k, x in v.items() if k not in known)
        if key == "propertyNames":
            names_ok = self.compile(value)
            return lambda v: not isinstance(v, dict) or all(names_ok(k) for k in v)
        if key == "items":
            if isinstance(value, list):
                each = [self.compile(sub) for sub in value]
                return lambda v: not isinstance(v, list) or all(c(x) for c, x in zip(each, v, strict=False))
            item = self.compile(value)
            return lambda v: not isinstance(v, list) or all(item(x) for x in v)
        if key == "minItems":
            return lambda v: not isinstance(v, list) or len(v) >= value
        if key == "maxItems":
            return lambda v: not isinstance(v, list) or len(v) <= value
        if key == "minLength":
            return lambda v: not isinstance(v, str) or len(v) >= value
        if key == "maxLength":
            return lambda v: not isinstance(v, str) or len(v) <= value
        if key == "uniqueItems":
            if not value:
                return None
            return lambda v: not isinstance(v, list) or len({_normal(x) for x in v}) == len(v)
        if key == "anyOf":
            return _any([self.compile(sub) for sub in value])
        if key == "allOf":
            return _all([self.compile(sub) for sub in value])
        if key == "oneOf":
            subs = [self.compile(sub) for sub in value]
            return lambda v: sum(1 for c in subs if c(v)) == 1
        if key == "not":
            sub = self.compile(value)
            return lambda v: not sub(v)
        if key == "if":
            cond = self.compile(value)
            then = self.compile(s.get("then", True))
            otherwise = self.compile(s.get("else", True))
            return lambda v: then(v) if cond(v) else otherwise(v)
        if key == "pattern":
            rx = re.compile(value)
            return lambda v: not isinstance(v, str) or rx.search(v) is not None
        if key == "format":
            check = self.formats.get(value)
            if check is None:
                return None  # as jsonschema does for formats its checker does not know
            return lambda v: check(v)
        raise UnsupportedSchemaError(f"unsupported keyword {key!r}")


_TYPE_CHECKS: dict[str, Check] = {
    "string": lambda v: isinstance(v, str),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
}


def _all(checks: list[Check]) -> Check:
    if not checks:
        return lambda _v: True
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        a, b = checks
        return lambda v: a(v) and b(v)
    head, rest = checks[0], _all(checks[1:])
    return lambda v: head(v) and rest(v)


def _any(checks: list[Check]) -> Check:
    if not checks:
        return lambda _v: False
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        a, b = checks
        return lambda v: a(v) or b(v)
    head, rest = checks[0], _any(checks[1:])
    return lambda v: head(v) or rest(v)


def compile_schema(
    schema: Mapping[str, Any],
    formats: Mapping[str, Callable[[Any], bool]],
    root: Mapping[str, Any] | None = None,
) -> Check:
    """A function telling whether an instance is valid against ``schema`` (whose ``$ref`` point
    into ``root``'s definitions, by default its own)."""
    return Compiler(root if root is not None else schema, formats).compile(schema)
