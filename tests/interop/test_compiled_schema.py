"""The compiled schema check agrees with ``jsonschema``: on the official examples, on every event
the registry writes, and on those events broken in many small ways; and on each keyword."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

from batterytrace.interop import epcis
from batterytrace.interop.compiled_schema import UnsupportedSchemaError, compile_schema
from batterytrace.interop.reference import FORMATS, epcis_schema
from tests.interop import support as s
from tests.interop.test_epcis_mapping import SAMPLES, context_for, stored


def corpus() -> list[Any]:
    events = []
    for path in sorted((s.EPCIS_DIR / "examples").rglob("*.jsonld")):
        events += epcis.event_list(json.loads(path.read_text())) or []
    events += [epcis.to_epcis(stored(kind), **context_for(kind)) for kind in sorted(SAMPLES)]
    return events


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value[:2]):
            yield (*prefix, i)
            yield from paths(item, (*prefix, i))


def mutated(event: Any, path: tuple[Any, ...], how: str) -> Any:
    out = copy.deepcopy(event)
    node = out
    for key in path[:-1]:
        node = node[key]
    last = path[-1]
    if how == "delete":
        del node[last]
    elif how == "number":
        node[last] = 7
    elif how == "text":
        node[last] = "no uri here"
    elif how == "list":
        node[last] = []
    if how == "extra" and isinstance(node, dict):
        node["unqualified"] = 1
    return out


def test_agrees_with_jsonschema_on_events_and_their_breakages() -> None:
    schema = epcis_schema(s.REFERENCE)
    events = corpus()
    for event in events:
        assert schema.event_is_valid(event) == schema.event.is_valid(event)
    # every official event type and each registry step, broken one field at a time
    picked = [events[i] for i in (0, 8, 27, 29)] + events[-18::5]
    checked = disagreements = 0
    for event in picked:
        for path in paths(event):
            for how in ("delete", "number", "text", "list", "extra"):
                broken = mutated(event, path, how)
                checked += 1
                if schema.event_is_valid(broken) != schema.event.is_valid(broken):
                    disagreements += 1
                    pytest.fail(f"disagree on {path} {how}: {json.dumps(broken)[:300]}")
    assert checked > 400
    assert disagreements == 0


def check(schema: dict[str, Any], value: Any) -> bool:
    fast = compile_schema(schema, FORMATS)(value)
    slow = jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker(formats=())).is_valid(
        value
    )
    formats = jsonschema.FormatChecker(formats=())
    for name, fn in FORMATS.items():
        formats.checks(name)(fn)
    slow = jsonschema.Draft7Validator(schema, format_checker=formats).is_valid(value)
    assert fast == slow, (schema, value)
    return fast


@pytest.mark.parametrize(
    ("schema", "good", "bad"),
    [
        ({"type": "integer"}, [1, 2.0], [1.5, True, "1"]),
        ({"type": ["string", "null"]}, ["a", None], [1]),
        ({"enum": [1, "a"]}, [1, 1.0, "a"], [True, "b"]),
        ({"const": {"a": [1]}}, [{"a": [1.0]}], [{"a": [2]}]),
        ({"uniqueItems": True}, [[1, "1", True]], [[1, 1.0], [{"a": 1}, {"a": 1}]]),
        (
            {"required": ["a"], "additionalProperties": False, "properties": {"a": {"type": "string"}}},
            [{"a": "x"}, 3],
            [{}, {"a": 1}, {"a": "x", "b": 1}],
        ),
        (
            {"additionalProperties": {"type": "number"}, "properties": {"a": {}}},
            [{"a": "x", "b": 1}],
            [{"b": "x"}],
        ),
        ({"propertyNames": {"pattern": "^x"}}, [{"xa": 1}], [{"ya": 1}]),
        (
            {"items": {"type": "string"}, "minItems": 1, "maxItems": 2},
            [["a"], "notalist"],
            [[], [1], ["a", "b", "c"]],
        ),
        ({"items": [{"type": "string"}, {"type": "number"}]}, [["a", 1], ["a"]], [[1, "a"]]),
        ({"oneOf": [{"type": "number"}, {"type": "integer"}]}, [1.5], [2]),
        ({"not": {"type": "string"}}, [1], ["a"]),
        ({"if": {"type": "number"}, "then": {"enum": [1]}, "else": {"type": "string"}}, [1, "a"], [2, None]),
        (
            {"allOf": [{"type": "string"}, {"pattern": "b"}], "anyOf": [{"minLength": 3}, {"maxLength": 1}]},
            ["abc", "b"],
            ["ab", 1],
        ),
        ({"format": "uri"}, ["urn:a:b", 5], ["no uri", "a b:c"]),
        ({"format": "date-time"}, ["2026-01-01T00:00:00+08:00"], ["2026-13-01T00:00:00Z", "2026-01-01"]),
        (
            {
                "$ref": "#/definitions/node",
                "definitions": {
                    "node": {"type": "object", "properties": {"next": {"$ref": "#/definitions/node"}}}
                },
            },
            [{"next": {"next": {}}}],
            [{"next": {"next": 1}}],
        ),
    ],
)
def test_keywords(schema: dict[str, Any], good: list[Any], bad: list[Any]) -> None:
    for value in good:
        assert check(schema, value), value
    for value in bad:
        assert not check(schema, value), value


def test_unknown_keywords_are_refused() -> None:
    with pytest.raises(UnsupportedSchemaError, match="patternProperties"):
        compile_schema({"patternProperties": {"^a": {}}}, FORMATS)
    with pytest.raises(UnsupportedSchemaError, match="only #/definitions"):
        compile_schema({"$ref": "https://example.org/schema.json"}, FORMATS)
