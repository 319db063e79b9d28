"""The EPCIS mapping as pure functions: every registry event type written as EPCIS validates against
both official schemas and reads back as the same event; what cannot be read says why."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batterytrace.domain.errors import DomainError
from batterytrace.domain.model import EventType
from batterytrace.interop import epcis
from batterytrace.interop.reference import epcis_schema
from tests import factories as f
from tests.interop import support as s

NOW = datetime(2026, 11, 20, tzinfo=UTC)
PACK, MODULE, CELL = f.code(), f.code(level="M"), f.code(level="C")
PRODUCT = f.second_life_code()
VIN = f.vin()
ACTOR, OTHER = f.uscc(), f.uscc()

SAMPLES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # type: (subject, data)
    "manufactured": ({"battery": PACK}, {**f.MANUFACTURED, "cathode": "NCM811"}),
    "assembled": ({"battery": PACK}, {"children": [MODULE]}),
    "shipped": ({"battery": PACK}, {"to": OTHER}),
    "received": ({"battery": PACK}, {}),
    "installed": ({"battery": PACK}, {"vin": VIN}),
    "vehicle_sold": ({"vin": VIN}, {}),
    "vehicle_scrapped": ({"vin": VIN}, {}),
    "maintained": ({"battery": PACK}, {"soh_percent": 91.5, "readings": {"numberOfFullCycles": 10}}),
    "removed": ({"battery": PACK}, {"reason": "retirement"}),
    "retired": ({"battery": PACK}, {}),
    "graded": ({"battery": PACK}, {"soh_percent": 80, "decision": "repurpose"}),
    "repurposed": ({"battery": PACK}, {"into": PRODUCT, "capacity_kwh": 40.0}),
    "dismantled": ({"battery": PACK}, {}),
    "recycled": ({"battery": PACK}, {"mass_kg": 300.0, "recovered": {"li_kg": 5.5, "co_kg": 4.9}}),
    "reported_missing": ({"battery": PACK}, {}),
    "found": ({"battery": PACK}, {}),
    "exported": ({"battery": PACK}, {"country": "DE"}),
    "retracted": ({"battery": PACK}, {"event": f.eid(), "reason": "wrong battery"}),
}


def stored(kind: str, minutes: int = 0) -> dict[str, Any]:
    """A registry event as the authority tier sees it."""
    subject, data = SAMPLES[kind]
    return {
        "id": f.eid(),
        "type": kind,
        **subject,
        "time": f.at(minutes),
        "recorded_at": "2026-11-20T12:00:00+00:00",
        "actor": ACTOR,
        "region": "310115",
        "data": copy.deepcopy(data),
        "log_index": minutes,
        "province": "31",
        "retracted": False,
    }


def context_for(kind: str) -> dict[str, Any]:
    if kind == "removed":
        return {"installed_in": epcis.vin_uri(VIN)}
    if kind == "dismantled":
        return {"components": [MODULE, CELL]}
    return {}


def test_every_event_type_has_a_mapping() -> None:
    assert {m.registry for m in epcis.MAPPINGS} == {t.value for t in EventType}
    assert set(SAMPLES) == {t.value for t in EventType}
    steps = [m.biz_step for m in epcis.MAPPINGS]
    assert len(steps) == len(set(steps)), "each registry step has its own business step"
    for step in (
        "commissioning",
        "assembling",
        "shipping",
        "receiving",
        "installing",
        "repairing",
        "removing",
        "collecting",
        "disassembling",
    ):
        assert step in steps
    assert epcis.BIZSTEP + "repurposing" in steps
    assert epcis.BIZSTEP + "recycling" in steps


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_written_validates_and_reads_back(kind: str) -> None:
    event = stored(kind)
    written = epcis.to_epcis(event, **context_for(kind))
    doc = epcis.document([written], created=NOW)
    assert s.epcis_errors(doc) == []
    assert written["eventTimeZoneOffset"] == "+08:00"
    assert written["eventTime"] == event["time"]
    (back,) = epcis.from_epcis(written, bindings=epcis.prefixes(doc["@context"]))
    expected = {k: event[k] for k in ("id", "type", "battery", "vin", "time", "region", "data") if k in event}
    assert back.event == expected
    assert back.recorded_by == ACTOR
    # a JSON round trip changes nothing either
    (again,) = epcis.from_epcis(json.loads(json.dumps(written)))
    assert again.event == expected


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_lower_tiers_validate(kind: str) -> None:
    event = stored(kind)
    public = {
        k: event[k]
        for k in ("id", "type", "battery", "time", "province", "retracted", "log_index")
        if k in event
    }
    legit = {k: v for k, v in event.items() if k != "vin"}
    legit["data"] = {k: v for k, v in event["data"].items() if k != "vin"}
    for view in (public, legit):
        written = epcis.to_epcis(view)
        assert s.epcis_errors(epcis.document([written], created=NOW)) == []
    assert "readPoint" in epcis.to_epcis(public)
    assert epcis.to_epcis(public)["readPoint"]["id"] == "urn:batterytrace:region:310000"


def test_identifiers() -> None:
    assert epcis.parse_battery_uri(epcis.battery_uri(PACK)) == PACK
    assert epcis.parse_battery_uri(f"https://passport.example/b/{PACK}", "https://passport.example") == PACK
    assert epcis.parse_battery_uri(f"https://elsewhere.example/b/{PACK}", "https://passport.example") is None
    assert epcis.parse_battery_uri("urn:epc:id:sgtin:0614141.107346.2018") is None
    assert epcis.parse_system_uri(epcis.system_uri("Grid store #7 / west")) == "Grid store #7 / west"
    assert epcis.parse_enterprise_uri(epcis.enterprise_uri(ACTOR)) == ACTOR
    assert epcis.normalise_biz_step("https://ref.gs1.org/cbv/BizStep-shipping") == "shipping"
    assert epcis.registry_types_for_step("https://ref.gs1.org/cbv/BizStep-collecting") == {"retired"}
    assert epcis.registry_types_for_step("urn:batterytrace:bizstep:recycling") == {"recycled"}
    assert epcis.registry_types_for_step("packing") == frozenset()


def shipping(**changes: Any) -> dict[str, Any]:
    event = {
        "type": "ObjectEvent",
        "eventTime": "2026-03-02T01:00:00Z",
        "eventTimeZoneOffset": "+08:00",
        "action": "OBSERVE",
        "bizStep": "https://ref.gs1.org/cbv/BizStep-shipping",
        "epcList": [epcis.battery_uri(PACK), epcis.battery_uri(MODULE)],
        "bizLocation": {"id": "urn:batterytrace:region:310115"},
        "destinationList": [
            {"type": "owning_party", "destination": epcis.enterprise_uri(ACTOR)},
            {"type": "possessing_party", "destination": epcis.enterprise_uri(OTHER)},
        ],
    }
    event.update(changes)
    return event


def test_reading_third_party_forms() -> None:
    """GS1 Web URI business steps, several batteries in one event, the receiver among several
    parties, a time in UTC with its local offset, no event id: all read."""
    mapped = epcis.from_epcis(shipping())
    assert [m.event["battery"] for m in mapped] == [PACK, MODULE]
    assert {m.event["data"]["to"] for m in mapped} == {OTHER}
    assert {m.event["time"] for m in mapped} == {"2026-03-02T09:00:00+08:00"}
    assert len({m.event["id"] for m in mapped}) == 2
    # the ids come from the content: the same event gives the same ids
    assert [m.event["id"] for m in epcis.from_epcis(shipping())] == [m.event["id"] for m in mapped]
    assert [m.event["id"] for m in epcis.from_epcis(shipping(eventTime="2026-03-02T01:00:01Z"))] != [
        m.event["id"] for m in mapped
    ]
    # an extension prefix of the sender's choosing, bound to the registry's namespace
    event = shipping(epcList=[epcis.battery_uri(PACK)])
    event["@context"] = [{"reg": epcis.EXT}]
    event["reg:note"] = {"reg:kind": "sample"}
    event["example:ignored"] = 1
    (one,) = epcis.from_epcis(event)
    assert one.event["data"] == {"to": OTHER, "note": {"kind": "sample"}}


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (
            {"epcList": ["urn:epc:id:sgtin:0614141.107346.2018"]},
            "epcList[0]",
            "not a battery of this registry",
        ),
        (
            {
                "epcList": [],
                "quantityList": [{"epcClass": "urn:epc:class:lgtin:4012345.012345.998877", "quantity": 200}],
            },
            "quantityList",
            "serialised batteries",
        ),
        ({"destinationList": []}, "destinationList", "receiver"),
        ({"bizLocation": {"id": "urn:epc:id:sgln:0614141.00777.0"}}, "bizLocation", "region"),
        ({"bizStep": "packing"}, "bizStep", "no counterpart"),
        ({"bizStep": None}, "bizStep", "required"),
        (
            {"type": "TransactionEvent", "bizTransactionList": [{"type": "po", "bizTransaction": "urn:x:1"}]},
            "type",
            "TransactionEvents",
        ),
        ({"errorDeclaration": {"declarationTime": "2026-03-03T00:00:00Z"}}, "errorDeclaration", "retract"),
        ({"bizStep": "installing"}, "parentID", "vehicle or storage system"),
        ({"bizStep": "commissioning"}, "action", "ADD"),
        ({"bizStep": "repairing"}, "sensorElementList", "state-of-health"),
        ({"bizStep": "removing"}, "bt:reason", "bt:reason"),
        ({"bt:recordedBy": "ACME"}, "bt:recordedBy", "urn:batterytrace:enterprise"),
    ],
)
def test_unmappable_events_say_why(change: dict[str, Any], field: str, words: str) -> None:
    event = {k: v for k, v in {**shipping(), **change}.items() if v is not None}
    with pytest.raises(DomainError) as caught:
        epcis.from_epcis(event)
    assert caught.value.code == "epcis.unmappable"
    assert caught.value.field == field
    assert words in caught.value.message


def test_two_step_validation_agrees_with_the_official_schema() -> None:
    """The product checks a document's envelope and then each event; on the official examples and on
    broken documents this finds exactly what checking the whole document finds."""
    schema = epcis_schema(s.REFERENCE)
    documents = [json.loads(p.read_text()) for p in sorted((s.EPCIS_DIR / "examples").rglob("*.jsonld"))]
    assert len(documents) == 47
    base = documents[0]
    broken = []
    for mutate in (
        lambda d: d["epcisBody"]["eventList"][0].pop("eventTime"),
        lambda d: d["epcisBody"]["eventList"][0].update(bizStep="urn:epcglobal:cbv:bizstep:shipping"),
        lambda d: d["epcisBody"]["eventList"][0].update(batteryHealth=90),
        lambda d: d.pop("@context"),
        lambda d: d["epcisBody"]["eventList"][0].update(eventTimeZoneOffset="+8:00"),
        lambda d: d.update(schemaVersion="two"),
    ):
        doc = copy.deepcopy(base)
        mutate(doc)
        broken.append(doc)
    for doc in documents + broken:
        events = epcis.event_list(doc) or []
        body = doc["epcisBody"]
        prefix = (
            "/epcisBody/eventList" if "eventList" in body else "/epcisBody/queryResults/resultsBody/eventList"
        )
        two_step = schema.envelope_issues(doc) + [
            issue for i, ev in enumerate(events) for issue in schema.event_issues(ev, prefix=f"{prefix}/{i}")
        ]
        official = s.epcis_errors(doc, both=False)
        assert bool(two_step) == bool(official), (doc.get("type"), two_step[:2], official[:2])
    assert all(s.epcis_errors(doc, both=False) for doc in broken)


def test_streamed_document_matches_the_document() -> None:
    import io

    events = [epcis.to_epcis(stored(kind, i), **context_for(kind)) for i, kind in enumerate(sorted(SAMPLES))]
    buf = io.StringIO()
    assert epcis.write_document(buf, events, created=NOW) == len(events)
    assert json.loads(buf.getvalue()) == epcis.document(events, created=NOW)
    empty = io.StringIO()
    epcis.write_document(empty, [], created=NOW)
    assert json.loads(empty.getvalue()) == epcis.document([], created=NOW)


def _corpus() -> list[dict[str, Any]]:
    events = []
    for path in sorted((s.EPCIS_DIR / "examples").rglob("*.jsonld")):
        events += epcis.event_list(json.loads(path.read_text())) or []
    return events + [epcis.to_epcis(stored(kind), **context_for(kind)) for kind in sorted(SAMPLES)]


CORPUS = _corpus()
FIELDS = [
    "type",
    "action",
    "bizStep",
    "epcList",
    "childEPCs",
    "parentID",
    "inputEPCList",
    "outputEPCList",
    "outputQuantityList",
    "bizLocation",
    "readPoint",
    "destinationList",
    "sensorElementList",
    "ilmd",
    "eventTime",
    "eventTimeZoneOffset",
    "eventID",
    "bt:recordedBy",
    "bt:reason",
    "bt:decision",
    "quantityList",
    "@context",
    "errorDeclaration",
    "sourceList",
]
ODD = [
    None,
    1,
    -1.5,
    True,
    "",
    "x",
    [],
    {},
    [1],
    [[1]],
    {"id": 3},
    "+25:00",
    "+ab:cd",
    "bt:x",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "urn:batterytrace:battery:X",
    [epcis.battery_uri(PACK)],
    [{"type": "possessing_party", "destination": 5}],
    [{"sensorReport": 3}],
    {"bt:x": {"bt:y": [1, {"bt:z": None}]}},
    {"id": "urn:batterytrace:region:310115"},
]


@settings(max_examples=120, deadline=None)
@given(
    st.sampled_from(CORPUS),
    st.lists(st.tuples(st.sampled_from(FIELDS), st.one_of(st.none(), st.sampled_from(ODD))), max_size=5),
)
def test_reading_never_fails_but_with_a_reason(event: dict[str, Any], changes: list[tuple[str, Any]]) -> None:
    """Whatever an event holds (the schema check aside), reading it gives registry events or
    ``epcis.unmappable`` with a reason, never another error."""
    broken = copy.deepcopy(event)
    for field, value in changes:
        if value is None:
            broken.pop(field, None)
        else:
            broken[field] = copy.deepcopy(value)
    error: DomainError | None = None
    mapped: list[epcis.Mapped] = []
    try:
        mapped = epcis.from_epcis(broken)
    except DomainError as exc:
        error = exc
    if error is not None:
        assert error.code == "epcis.unmappable"
        assert error.message
    for m in mapped:
        assert set(m.event) <= {"id", "type", "battery", "vin", "time", "region", "data"}


def test_the_documented_mapping_is_the_one_used() -> None:
    """docs/interop.md shows the CBV mapping table the code follows, row for row."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "interop.md").read_text(encoding="utf-8")
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0].startswith("`") and cells[1].endswith("Event"):
            rows[cells[0].strip("`")] = (
                cells[1],
                cells[2] or None,
                cells[3].strip("`"),
                cells[4].strip("`") or None,
            )
    assert rows == {m.registry: (m.epcis_type, m.action, m.biz_step, m.disposition) for m in epcis.MAPPINGS}
