"""The bulk readers: JSON Lines, CSV and EPCIS documents read as streams, with line numbers, reasons
for unreadable records, stable ids, resume points, and memory that does not grow with the file."""

from __future__ import annotations

import io
import json
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from batterytrace.interop import bulk, epcis
from batterytrace.interop.reference import epcis_schema
from tests import factories as f
from tests.interop import support as s

NOW = datetime(2026, 11, 20, tzinfo=UTC)


def line(kind: str = "manufactured", **extra: Any) -> dict[str, Any]:
    out = {
        "type": kind,
        "battery": f.code(),
        "time": f.at(0),
        "region": "310115",
        "data": dict(f.MANUFACTURED),
    }
    out.update(extra)
    return out


def test_jsonl_records_and_reasons() -> None:
    good, with_id = line(), line(id=f.eid(), actor=f.uscc())
    text = "\n".join(
        [
            json.dumps(good),
            "",
            "{not json",
            "[1, 2]",
            json.dumps(with_id),
            json.dumps({**line(), "actor": 12}),
            json.dumps({**line(), "recorded_at": "2026-01-01T00:00:00+00:00", "log_index": 7}),
        ]
    )
    records = list(bulk.read_jsonl(io.BytesIO(text.encode())))
    assert [r.line for r in records] == [1, 3, 4, 5, 6, 7]
    assert records[0].event is not None
    assert records[0].event["id"] == bulk.derive_id({**good, "actor": None})
    assert records[1].error.code == "import.unreadable"
    assert "not valid JSON" in records[1].error.message
    assert "one event" in records[2].error.message
    assert records[3].event["id"] == with_id["id"]
    assert records[3].actor == with_id["actor"]
    assert "actor" not in records[3].event
    assert records[4].error.field == "actor"
    assert "recorded_at" not in records[5].event
    assert "log_index" not in records[5].event
    assert records[0].text == json.dumps(good)
    # each record knows where the next one starts
    data = text.encode()
    for r in records:
        assert r.end <= len(data)
    resumed = list(bulk.read_jsonl(io.BytesIO(data), offset=records[2].end, line=records[2].line))
    assert [r.line for r in resumed] == [5, 6, 7]


def test_derived_ids_depend_only_on_the_record() -> None:
    a, b = line(), line()
    first = [
        r.event["id"] for r in bulk.read_jsonl(io.BytesIO(f"{json.dumps(a)}\n{json.dumps(b)}\n".encode()))
    ]
    shifted = f"{json.dumps(line())}\n{json.dumps(b)}\n\n{json.dumps(a)}\n".encode()
    second = [r.event["id"] for r in bulk.read_jsonl(io.BytesIO(shifted))]
    assert first[0] == second[2]
    assert first[1] == second[1]
    assert first[0] != first[1]
    # the recorder is part of the content
    assert bulk.derive_id({**a, "actor": None}) != bulk.derive_id({**a, "actor": f.uscc()})


def test_csv_records_and_reasons() -> None:
    a = line()
    rows = [
        "id,type,battery,time,region,actor,data",
        f',manufactured,{a["battery"]},{a["time"]},310115,,"{json.dumps(a["data"]).replace(chr(34), chr(34) * 2)}"',
        f",shipped,{f.code()},{f.at(1)},310115,,{{not json",
        f",received,{f.code()},{f.at(2)},310115",
        "",
        f'{f.eid()},shipped,{f.code()},{f.at(3)},310115,{f.uscc()},"{{""to"": ""{f.uscc()}""}}"',
        f',maintained,{f.code()},{f.at(4)},310115,,"[1]"',
    ]
    records = list(bulk.read_csv(io.BytesIO("\n".join(rows).encode("utf-8-sig"))))
    assert [r.line for r in records] == [2, 3, 4, 6, 7]
    assert records[0].event["data"] == a["data"]
    assert records[0].event["id"] == bulk.derive_id({**a, "actor": None})
    assert records[1].error.field == "data"
    assert "fields" in records[2].error.message
    assert records[3].actor is not None
    assert records[3].event["data"]["to"]
    assert "JSON object" in records[4].error.message
    resumed = list(
        bulk.read_csv(io.BytesIO("\n".join(rows).encode()), offset=records[1].end, line=records[1].line)
    )
    assert [r.line for r in resumed] == [4, 6, 7]


def test_csv_header_is_checked() -> None:
    with pytest.raises(Exception, match="unknown CSV column 'colour'") as caught:
        list(bulk.read_csv(io.BytesIO(b"type,time,region,colour\n")))
    assert caught.value.code == "import.unreadable"
    with pytest.raises(Exception, match="no 'region' column"):
        list(bulk.read_csv(io.BytesIO(b"type,time\n")))
    with pytest.raises(Exception, match="empty"):
        list(bulk.read_csv(io.BytesIO(b"")))


def test_csv_and_jsonl_writers_read_back() -> None:
    event = {
        "id": f.eid(),
        "type": "shipped",
        "battery": f.code(),
        "time": f.at(0),
        "region": "310115",
        "actor": f.uscc(),
        "data": {"to": f.uscc()},
        "recorded_at": "2026-11-20T12:00:00+00:00",
        "log_index": 3,
        "province": "31",
        "retracted": False,
    }
    buf = io.StringIO()
    writer = bulk.write_csv_header(buf)
    writer.writerow(bulk.csv_row(event))
    (from_csv,) = bulk.read_csv(io.BytesIO(buf.getvalue().encode()))
    (from_jsonl,) = bulk.read_jsonl(io.BytesIO((bulk.jsonl_line(event) + "\n").encode()))
    expected = {k: event[k] for k in ("id", "type", "battery", "time", "region", "data")}
    assert from_csv.event == expected
    assert from_jsonl.event == expected
    assert from_csv.actor == from_jsonl.actor == event["actor"]


def epcis_text(events: list[dict[str, Any]]) -> bytes:
    buf = io.StringIO()
    epcis.write_document(buf, events, created=NOW)
    return buf.getvalue().encode()


def written(kind: str, code: str, minutes: int, data: dict[str, Any]) -> dict[str, Any]:
    return epcis.to_epcis(
        {
            "id": f.eid(),
            "type": kind,
            "battery": code,
            "time": f.at(minutes),
            "region": "310115",
            "actor": f.uscc(),
            "data": data,
        }
    )


def test_epcis_documents_stream_event_by_event() -> None:
    code = f.code()
    events = [
        written("manufactured", code, 0, dict(f.MANUFACTURED)),
        {
            "type": "ObjectEvent",
            "eventTime": "2026-03-02T10:00:00+08:00",
            "eventTimeZoneOffset": "+08:00",
            "action": "OBSERVE",
            "bizStep": "packing",
            "epcList": [],
        },
        {
            "type": "ObjectEvent",
            "eventTime": "not a time",
            "eventTimeZoneOffset": "+08:00",
            "action": "OBSERVE",
        },
        written("shipped", code, 1, {"to": f.uscc()}),
    ]
    schema = epcis_schema(s.REFERENCE)
    envelope = bulk.EpcisEnvelope()
    records = list(bulk.read_epcis(io.BytesIO(epcis_text(events)), schema, envelope=envelope))
    assert [r.extra["event"] for r in records] == [0, 1, 2, 3]
    assert records[0].event["type"] == "manufactured"
    assert records[0].line == 2
    assert records[1].error.code == "epcis.unmappable"
    assert records[2].error.code == "epcis.invalid"
    assert records[2].error.extra["errors"][0]["path"].startswith("/epcisBody/eventList/2/")
    assert records[3].event["data"]["to"]
    assert envelope.events == 4
    assert bulk.envelope_issues(schema, envelope) == []
    # resuming skips the events already done
    again = list(bulk.read_epcis(io.BytesIO(epcis_text(events)), schema, skip=3))
    assert [r.extra["event"] for r in again] == [3]


def test_epcis_query_documents_and_key_order() -> None:
    """The event list may sit in a query document, and the envelope's keys may come in any order
    (after ``type``)."""
    code = f.code()
    doc = {
        "type": "EPCISQueryDocument",
        "@context": epcis.context(),
        "epcisBody": {
            "queryResults": {
                "resultsBody": {"eventList": [written("retired", code, 0, {})]},
                "queryName": "SimpleEventQuery",
            }
        },
        "schemaVersion": "2.0",
        "creationDate": "2026-11-20T00:00:00Z",
    }
    envelope = bulk.EpcisEnvelope()
    schema = epcis_schema(s.REFERENCE)
    (record,) = bulk.read_epcis(io.BytesIO(json.dumps(doc, indent=1).encode()), schema, envelope=envelope)
    assert record.event["type"] == "retired"
    assert bulk.envelope_issues(schema, envelope) == []


@pytest.mark.parametrize(
    ("text", "line_no"),
    [
        (b'{"type": "EPCISDocument", "epcisBody": {"eventList": [{"type": "ObjectEvent"},\n\n {oops}]}}', 3),
        (b'{"epcisBody": {"eventList": []}, "type": "EPCISDocument"}', 1),
        (b'{"type": "EPCISDocument", "epcisBody": {"eventList": [\n{"type": "ObjectEvent"}\n', 3),
        (b'{"type": "EPCISDocument"} trailing', 1),
    ],
)
def test_epcis_syntax_errors_name_the_line(text: bytes, line_no: int) -> None:
    with pytest.raises(bulk.EpcisSyntaxError) as caught:
        for _ in bulk.iter_epcis_events(io.BytesIO(text), bulk.EpcisEnvelope()):
            pass
    assert caught.value.line == line_no


class Generated(io.RawIOBase):
    """A large file that is never held in memory: its lines are made as they are read."""

    def __init__(self, head: bytes, lines: Iterator[bytes], tail: bytes) -> None:
        self.lines, self.tail = lines, tail
        self.pending = head
        self.done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.pending and not self.done:
            try:
                self.pending = next(self.lines)
            except StopIteration:
                self.pending, self.done = self.tail, True
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n


def peak_while(run: Any) -> int:
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "epcis"])
def test_memory_stays_flat(fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading ten times as many records takes no more memory (records are dropped as read; an
    EPCIS document is held one read-ahead chunk at a time, made small here to show it)."""
    monkeypatch.setattr(bulk._JsonStream, "CHUNK", 16 * 1024)
    sample = line()

    def make(n: int) -> io.BufferedReader:
        if fmt == "jsonl":
            body = (json.dumps({**sample, "battery": f"{i:024d}"}).encode() + b"\n" for i in range(n))
            return io.BufferedReader(Generated(b"", body, b""))
        if fmt == "csv":
            data = json.dumps(sample["data"]).replace('"', '""')
            body = (f'manufactured,{i:024d},{sample["time"]},310115,"{data}"\n'.encode() for i in range(n))
            return io.BufferedReader(Generated(b"type,battery,time,region,data\n", body, b""))
        event = written("manufactured", f.code(), 0, dict(f.MANUFACTURED))
        text = epcis_text([event]).decode()
        head, tail = text.split(json.dumps(event, ensure_ascii=False))
        body = ((b",\n" if i else b"") + json.dumps(event).encode() for i in range(n))
        return io.BufferedReader(Generated(head.encode(), body, tail.encode()))

    def consume(n: int) -> Any:
        def run() -> None:
            count = 0
            if fmt == "epcis":
                for _ in bulk.iter_epcis_events(make(n), bulk.EpcisEnvelope()):
                    count += 1
            else:
                reader = bulk.read_jsonl if fmt == "jsonl" else bulk.read_csv
                for record in reader(make(n)):
                    assert record.event is not None
                    count += 1
            assert count == n

        return run

    small, large = peak_while(consume(150)), peak_while(consume(1_500))
    assert large < small * 1.3 + 128 * 1024, (small, large)
    assert large < 4 * 1024 * 1024
