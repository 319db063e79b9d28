"""Hypothesis on every parser of outside input: identifiers (battery codes, VINs, credit codes,
regions, times), the event envelope, and the bulk formats (JSON Lines, CSV, EPCIS documents).

For any input a parser either returns a result or refuses it with a ``DomainError`` whose code is
in the catalog (and whose position, when it names one, lies inside the input); the bulk readers
turn every bad record into a record carrying its error and go on, and a reader resumed from a
record's saved offset reads exactly what a reader that never stopped reads next.
"""

from __future__ import annotations

import csv
import io
import json
import string
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from batterytrace.domain.codes import (
    identify,
    make_battery_code,
    parse_battery_code,
    parse_province,
    parse_region,
    parse_uscc,
    parse_vin,
)
from batterytrace.domain.errors import DomainError, catalog
from batterytrace.domain.events import parse_event, parse_event_time
from batterytrace.interop import bulk
from batterytrace.interop.reference import epcis_schema
from batterytrace.services.registry import body_hash
from tests import factories as f

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: Characters identifiers are made of, and characters that break them.
CODE_CHARS = string.ascii_uppercase + string.digits
AWKWARD = " \t\n\r\x00\u00a0\u3000\ufeff\u200bIOQioqÅØ０１Ａ-_/\\\"'{}[]:,"
near_text = st.text(alphabet=st.sampled_from(CODE_CHARS + AWKWARD), max_size=30)
any_text = st.one_of(near_text, st.text(max_size=40))


def refused_well(exc: DomainError, text: str | None = None) -> None:
    assert exc.code in catalog(), exc.code
    assert exc.message
    if text is not None and exc.position is not None:
        assert 1 <= exc.position <= max(len(text), 1), (exc.position, text)


# --- identifiers -----------------------------------------------------------------------------------


@st.composite
def mutated_code(draw: Any) -> str:
    """A valid battery code with a few characters replaced, inserted or removed."""
    code = list(f.code(serial=draw(st.integers(1, 9_999_999))))
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(code) - 1))
        op = draw(st.sampled_from(("replace", "insert", "delete")))
        ch = draw(st.sampled_from(CODE_CHARS + AWKWARD))
        if op == "replace":
            code[i] = ch
        elif op == "insert":
            code.insert(i, ch)
        elif len(code) > 1:
            del code[i]
    return "".join(code)


PARSERS = {
    "battery code": parse_battery_code,
    "vin": parse_vin,
    "uscc": parse_uscc,
    "region": parse_region,
    "province": parse_province,
    "identify": identify,
    "time": parse_event_time,
}


@pytest.mark.parametrize("name", sorted(PARSERS))
@FUZZ
@given(text=st.one_of(any_text, mutated_code()))
@example(text="")
@example(text="\x00" * 24)
@example(text="0ABPE01A1B2C3DG310000001\n")
def test_identifier_parsers_return_or_refuse_cleanly(name: str, text: str) -> None:
    try:
        PARSERS[name](text)
    except DomainError as exc:
        refused_well(exc, text)


@FUZZ
@given(
    manufacturer=st.text(alphabet=CODE_CHARS, min_size=3, max_size=3),
    level=st.sampled_from("PMC"),
    chemistry=st.sampled_from("ABCDEFGZ"),
    spec=st.text(alphabet=string.digits, min_size=2, max_size=2),
    serial=st.integers(1, 9_999_999),
    day=st.dates(min_value=datetime(2011, 1, 1).date(), max_value=datetime(2027, 12, 31).date()),
)
def test_a_made_code_parses_back_to_its_fields(
    manufacturer: str, level: str, chemistry: str, spec: str, serial: int, day: Any
) -> None:
    raw = make_battery_code(manufacturer, level, chemistry, spec, "A1B2C3D", day, serial)
    code = parse_battery_code(raw)
    assert (code.raw, code.manufacturer, code.production_date, code.serial) == (
        raw,
        manufacturer,
        day,
        serial,
    )
    kind, _fields = identify(raw)
    assert kind == "battery code"


# --- the event envelope ------------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def event_like(draw: Any) -> dict[str, Any]:
    """Something close to an event: valid fields, with some of them replaced by junk."""
    good = f.event(
        draw(st.sampled_from(["manufactured", "shipped", "installed", "vehicle_sold", "retracted", "x"])),
        f.code(),
        draw(st.integers(0, 1000)),
        {"to": f.uscc(), "vin": f.vin(), "capacity_kwh": 60},
    )
    for key in draw(st.lists(st.sampled_from([*good, "vin", "extra"]), max_size=3, unique=True)):
        good[key] = draw(json_values)
    return good


@FUZZ
@given(obj=st.one_of(json_values, event_like()))
def test_the_event_envelope_is_read_or_refused_cleanly(obj: Any) -> None:
    try:
        event = parse_event(obj, now=NOW)
        body_hash(obj)
    except DomainError as exc:
        refused_well(exc)
        return
    assert event.id and event.type and event.region
    assert (event.battery is None) != (event.vin is None)


# --- JSON Lines ----------------------------------------------------------------------------------------


def _check_records(records: list[bulk.Record], size: int) -> None:
    ends = [r.end for r in records]
    assert ends == sorted(ends)
    assert all(0 < e <= size for e in ends)
    lines = [r.line for r in records]
    assert lines == sorted(lines)
    assert len(set(lines)) == len(lines)
    for r in records:
        assert (r.event is None) != (r.error is None), r
        if r.error is not None:
            refused_well(r.error)
        else:
            assert r.event is not None
            assert r.event.get("id") is not None  # given, or derived from the content


jsonl_lines = st.lists(
    st.one_of(
        event_like().map(json.dumps),
        json_values.map(json.dumps),
        st.text(max_size=30),
        st.just(""),
        st.just("["),
        st.just('{"id": null, "type": "manufactured"}'),
    ),
    max_size=8,
)


@FUZZ
@given(lines=jsonl_lines, newline=st.sampled_from(["\n", "\r\n"]), junk=st.binary(max_size=20))
@example(lines=["[" * 5000], newline="\n", junk=b"")
def test_json_lines_every_line_is_a_record_or_a_reason(lines: list[str], newline: str, junk: bytes) -> None:
    data = newline.join(lines).encode("utf-8") + junk
    records = list(bulk.read_jsonl(io.BytesIO(data)))
    _check_records(records, len(data))
    # resuming after any record reads what follows it, as if the reader had not stopped
    for i, r in enumerate(records):
        again = list(bulk.read_jsonl(io.BytesIO(data), offset=r.end, line=r.line))
        assert [(x.line, x.end, x.text) for x in again] == [(x.line, x.end, x.text) for x in records[i + 1 :]]


@FUZZ
@given(data=st.binary(max_size=300))
def test_json_lines_from_arbitrary_bytes(data: bytes) -> None:
    _check_records(list(bulk.read_jsonl(io.BytesIO(data))), len(data))


# --- CSV -----------------------------------------------------------------------------------------------

csv_cell = st.one_of(
    st.text(max_size=15), json_values.map(json.dumps), st.sampled_from(['"', '""', ",", "\n", "\r"])
)


#: A CSV header: the required columns and any others, in any order.
csv_columns = st.lists(
    st.sampled_from([c for c in bulk.CSV_COLUMNS if c not in ("type", "time", "region")]), unique=True
).flatmap(lambda extra: st.permutations(["type", "time", "region", *extra]))


@FUZZ
@given(
    columns=csv_columns,
    rows=st.lists(st.lists(csv_cell, max_size=9), max_size=6),
    events=st.lists(event_like(), max_size=3),
)
def test_csv_every_row_is_a_record_or_a_reason(
    columns: list[str], rows: list[list[str]], events: list[dict[str, Any]]
) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(row)
    for event in events:
        writer.writerow(
            [json.dumps(event.get(c)) if c == "data" else str(event.get(c) or "") for c in columns]
        )
    data = buf.getvalue().encode("utf-8")
    records = list(bulk.read_csv(io.BytesIO(data)))
    _check_records(records, len(data))
    for i, r in enumerate(records):
        again = list(bulk.read_csv(io.BytesIO(data), offset=r.end, line=r.line))
        assert [(x.line, x.end) for x in again] == [(x.line, x.end) for x in records[i + 1 :]]


@FUZZ
@given(data=st.binary(max_size=300))
def test_csv_from_arbitrary_bytes(data: bytes) -> None:
    try:
        records = list(bulk.read_csv(io.BytesIO(data)))
    except DomainError as exc:
        refused_well(exc)
        return
    _check_records(records, len(data))


# --- EPCIS documents ---------------------------------------------------------------------------------

EPCIS_CONTEXT = ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"]


@st.composite
def epcis_event(draw: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": draw(st.sampled_from(["ObjectEvent", "AggregationEvent", "TransformationEvent", "Junk"])),
        "eventTime": draw(st.sampled_from(["2026-05-01T09:30:00+08:00", "yesterday", "2026-05-01T09:30:00"])),
        "eventTimeZoneOffset": "+08:00",
        "action": draw(st.sampled_from(["ADD", "OBSERVE", "DELETE", "MAYBE"])),
        "bizStep": draw(st.sampled_from(["commissioning", "shipping", "receiving", "installing", "x", None])),
        "epcList": [f"https://id.batterytrace.example/b/{f.code()}"],
    }
    for key in draw(st.lists(st.sampled_from([*event, "readPoint", "bizLocation"]), max_size=3, unique=True)):
        event[key] = draw(json_values)
    return event


@st.composite
def epcis_document(draw: Any) -> bytes:
    doc = {
        "@context": EPCIS_CONTEXT,
        "type": draw(st.sampled_from(["EPCISDocument", "EPCISQueryDocument", "Nope"])),
        "schemaVersion": "2.0",
        "creationDate": "2026-05-01T10:00:00Z",
        "epcisBody": {"eventList": draw(st.lists(st.one_of(epcis_event(), json_values), max_size=4))},
    }
    text = json.dumps(doc)
    cut = draw(st.one_of(st.none(), st.integers(0, len(text))))
    return (text if cut is None else text[:cut]).encode("utf-8") + draw(st.binary(max_size=4))


@pytest.fixture(scope="module")
def schema() -> Any:
    return epcis_schema()


def read_epcis_document(data: bytes, schema: Any) -> list[bulk.Record]:
    records: list[bulk.Record] = []
    stopped: bulk.EpcisSyntaxError | None = None
    try:
        records.extend(bulk.read_epcis(io.BytesIO(data), schema))
    except bulk.EpcisSyntaxError as exc:  # the documented end of an unreadable document
        stopped = exc
    if stopped is not None:
        assert stopped.line >= 1
        assert stopped.message
    for r in records:
        assert (r.event is None) != (r.error is None), r
        if r.error is not None:
            refused_well(r.error)
    return records


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.one_of(epcis_document(), st.binary(max_size=200)))
@example(data=b'{"type": "EPCISDocument", "epcisBody": {"eventList": [' + b"[" * 5000)
def test_epcis_documents_are_read_or_stop_with_a_syntax_error(schema: Any, data: bytes) -> None:
    read_epcis_document(data, schema)
