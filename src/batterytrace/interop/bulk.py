"""Bulk transfer formats: JSON Lines, CSV and EPCIS documents, read and written as streams.

Readers take a binary file and yield one :class:`Record` per registry event, with the line it
starts on and the byte offset just after it (to resume from). Nothing is held beyond the record
being read, so memory stays flat however large the file. A record that cannot be read carries
its error instead of an event; the caller writes it to the reject file and goes on.

Events without an ``id`` get one derived from their content (UUIDv5 over the canonical JSON of the
record without its id), so importing the same file twice, or a file with lines added or removed,
never records an event twice.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, TextIO

from batterytrace.domain import errors as E
from batterytrace.domain.errors import DomainError
from batterytrace.interop import epcis
from batterytrace.interop.reference import EpcisSchema

FORMATS = ("jsonl", "csv", "epcis")
#: Space of the ids given to records that carry none.
ID_SPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:batterytrace:import")
#: Columns of the CSV format (``data`` holds a JSON object); the last two are written on export
#: and ignored on import.
CSV_COLUMNS = ("id", "type", "battery", "vin", "time", "region", "actor", "data", "recorded_at", "log_index")
#: Fields written on export that an import ignores (the registry sets them).
READ_ONLY = frozenset({"recorded_at", "log_index", "province", "retracted"})
MAX_EVENT_CHARS = 16 * 1024 * 1024
TOO_DEEP = "the JSON is nested too deeply to read"


def detect_format(name: str) -> str | None:
    lower = name.lower()
    if lower.endswith((".jsonl", ".ndjson", ".jsonl.txt")):
        return "jsonl"
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith((".json", ".jsonld", ".epcis")):
        return "epcis"
    return None


@dataclass
class Record:
    """One registry event read from a file, or why it could not be read."""

    line: int  # 1-based line where the record starts
    end: int  # byte offset just after the record (resume point); -1 when not resumable by seeking
    text: str  # the record as written in the file, for the reject file
    event: dict[str, Any] | None = None
    actor: str | None = None  # the recorder named in the record (USCC), if any
    error: DomainError | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def unreadable(message: str, field_name: str | None = None) -> DomainError:
    return DomainError(E.IMPORT_UNREADABLE, message, field=field_name)


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def derive_id(record: Mapping[str, Any]) -> str:
    """The id of a record that has none: the same content always gets the same id."""
    return str(uuid.uuid5(ID_SPACE, canonical({k: v for k, v in record.items() if k != "id"})))


def prepare(obj: Any) -> tuple[dict[str, Any], str | None]:
    """An event as read (JSON Lines object or CSV row): read-only fields dropped, the optional
    ``actor`` taken out, and an id derived when missing. Raises ``import.unreadable``."""
    if not isinstance(obj, Mapping):
        raise unreadable("the record must be a JSON object: one event")
    body = {k: v for k, v in obj.items() if k not in READ_ONLY}
    actor = body.pop("actor", None)
    if actor is not None and not isinstance(actor, str):
        raise unreadable("'actor' must be the recording enterprise's unified social credit code", "actor")
    if body.get("id") is None:
        body.pop("id", None)
        body = {"id": derive_id({**body, "actor": actor}), **body}
    return body, actor


# --- JSON Lines -----------------------------------------------------------------------------------


def read_jsonl(fp: BinaryIO, *, offset: int = 0, line: int = 0) -> Iterator[Record]:
    """Records of a JSON Lines file (one event object per line; blank lines are skipped), from the
    byte ``offset`` of line number ``line`` + 1 on."""
    if offset:
        fp.seek(offset)
    position, number = offset, line
    for raw in fp:
        number += 1
        position += len(raw)
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            yield Record(number, position, raw.decode("utf-8", "replace").rstrip("\r\n"),
                         error=unreadable(f"the line is not UTF-8 text (byte {exc.start + 1})"))  # fmt: skip
            continue
        if number == 1:
            text = text.removeprefix("\ufeff")
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            yield Record(
                number, position, text, error=unreadable(f"not valid JSON: {exc.msg} at column {exc.colno}")
            )
            continue
        except RecursionError:
            yield Record(number, position, text, error=unreadable(TOO_DEEP))
            continue
        try:
            event, actor = prepare(obj)
        except DomainError as exc:
            yield Record(number, position, text, error=exc)
            continue
        yield Record(number, position, text, event=event, actor=actor)


def jsonl_line(event: Mapping[str, Any]) -> str:
    """An event as one JSON Lines line (without the newline)."""
    return json.dumps(export_fields(event), ensure_ascii=False, separators=(",", ":"))


def export_fields(event: Mapping[str, Any]) -> dict[str, Any]:
    """The fields an export writes, in a stable order (those the caller may see)."""
    order = ("id", "type", "battery", "vin", "time", "region", "actor", "data", "recorded_at", "log_index")
    return {k: event[k] for k in order if event.get(k) is not None}


# --- CSV ------------------------------------------------------------------------------------------


class _Lines:
    """Lines of a binary file as text, counting lines and bytes as the CSV reader pulls them."""

    def __init__(self, fp: BinaryIO, offset: int, line: int) -> None:
        self.fp = fp
        self.offset = offset
        self.line = line

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        raw = self.fp.readline()
        if not raw:
            raise StopIteration
        self.offset += len(raw)
        self.line += 1
        return raw.decode("utf-8", "replace")


def csv_header(fp: BinaryIO) -> tuple[list[str], int]:
    """The CSV file's columns (read from its first line, where ``fp`` must be) and the byte offset
    after them. Raises ``import.unreadable`` for an unknown or missing column."""
    lines = _Lines(fp, 0, 0)
    try:
        row = next(csv.reader(lines), None)
    except csv.Error as exc:
        raise unreadable(f"the CSV file's first line cannot be read: {exc}") from None
    if row is None:
        raise unreadable("the CSV file is empty: its first line must name the columns")
    columns = [c.strip().removeprefix("\ufeff") for c in row]
    unknown = [c for c in columns if c not in CSV_COLUMNS]
    if unknown:
        raise unreadable(
            f"unknown CSV column {unknown[0]!r}; the columns are {', '.join(CSV_COLUMNS)}", unknown[0]
        )
    for needed in ("type", "time", "region"):
        if needed not in columns:
            raise unreadable(f"the CSV file has no {needed!r} column", needed)
    return columns, lines.offset


def read_csv(fp: BinaryIO, *, offset: int = 0, line: int = 0) -> Iterator[Record]:
    """Records of a CSV file with a header line (columns of ``CSV_COLUMNS``; ``data`` is a JSON
    object), from byte ``offset`` (after the header when 0). Resuming at an offset, the line
    numbers are counted from the file itself (``line`` is not needed)."""
    if offset:
        fp.seek(0)
    columns, body_start = csv_header(fp)
    if offset < body_start:
        offset, line = body_start, 1
    else:
        # a quoted cell may span lines, so the line a resumed reader is on is counted, not taken
        # from the record the offset follows
        line = _lines_before(fp, offset)
        fp.seek(offset)
    lines = _Lines(fp, offset, line)
    reader = csv.reader(lines)
    while True:
        start = lines.line + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Record(start, lines.offset, "", error=unreadable(f"not valid CSV: {exc}"))
            continue
        text = _csv_text(row)
        if not any(cell.strip() for cell in row):
            continue
        if "\ufffd" in text:
            yield Record(start, lines.offset, text, error=unreadable("the row is not UTF-8 text"))
            continue
        if len(row) != len(columns):
            yield Record(start, lines.offset, text,
                         error=unreadable(f"the row has {len(row)} fields; the header names {len(columns)}"))  # fmt: skip
            continue
        try:
            obj = _csv_object(dict(zip(columns, row, strict=True)))
            event, actor = prepare(obj)
        except DomainError as exc:
            yield Record(start, lines.offset, text, error=exc)
            continue
        yield Record(start, lines.offset, text, event=event, actor=actor)


def _lines_before(fp: BinaryIO, offset: int) -> int:
    fp.seek(0)
    count, left = 0, offset
    while left > 0:
        chunk = fp.read(min(left, 1 << 20))
        if not chunk:
            break
        count += chunk.count(b"\n")
        left -= len(chunk)
    return count


def _csv_text(row: Sequence[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(row)
    return buf.getvalue()


def _csv_object(cells: Mapping[str, str]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for name, cell in cells.items():
        if name in READ_ONLY or cell == "":
            continue
        if name == "data":
            try:
                data = json.loads(cell)
            except json.JSONDecodeError as exc:
                raise unreadable(f"the 'data' cell is not valid JSON: {exc.msg}", "data") from None
            except RecursionError:
                raise unreadable(f"the 'data' cell: {TOO_DEEP}", "data") from None
            if not isinstance(data, dict):
                raise unreadable("the 'data' cell must hold a JSON object", "data")
            obj["data"] = data
        else:
            obj[name] = cell
    return obj


def write_csv_header(out: TextIO) -> Any:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    return writer


def csv_row(event: Mapping[str, Any]) -> list[str]:
    row = []
    for name in CSV_COLUMNS:
        value = event.get(name)
        if value is None:
            row.append("")
        elif name == "data":
            row.append(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
        else:
            row.append(str(value))
    return row


# --- EPCIS documents, streamed ----------------------------------------------------------------------

_WS = re.compile(r"[ \t\r\n]*")
_DECODER = json.JSONDecoder()


class EpcisSyntaxError(Exception):
    """The document is not JSON the reader can follow; nothing after this point can be read."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


class _JsonStream:
    """Just enough of an incremental JSON reader to walk an EPCIS document's envelope and hand
    out the events of its event list one at a time."""

    CHUNK = 1 << 20

    def __init__(self, fp: BinaryIO) -> None:
        self.fp = fp
        self.decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self.buf = ""
        self.pos = 0
        self.eof = False
        self._line = 1
        self._line_pos = 0

    def _fill(self) -> bool:
        if self.eof:
            return False
        chunk = self.fp.read(self.CHUNK)
        if self.pos > self.CHUNK:
            self.line_at_pos()
            self.buf = self.buf[self.pos :]
            self._line_pos -= self.pos
            self.pos = 0
        self.eof = not chunk
        try:
            # at the end, a character cut short is an error too
            self.buf += self.decoder.decode(chunk, final=self.eof)
        except UnicodeDecodeError:
            raise EpcisSyntaxError("the document is not UTF-8 text", self.line_at_pos()) from None
        return not self.eof

    def line_at_pos(self) -> int:
        self._line += self.buf.count("\n", self._line_pos, self.pos)
        self._line_pos = self.pos
        return self._line

    def peek(self) -> str:
        while True:
            m = _WS.match(self.buf, self.pos)
            self.pos = m.end() if m else self.pos
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._fill():
                return ""

    def take(self, expected: str) -> None:
        ch = self.peek()
        if ch != expected:
            found = repr(ch) if ch else "the end of the file"
            raise EpcisSyntaxError(f"expected {expected!r}, found {found}", self.line_at_pos())
        self.pos += 1

    def value(self) -> Any:
        self.peek()
        while True:
            try:
                val, end = _DECODER.raw_decode(self.buf, self.pos)
            except RecursionError:
                raise EpcisSyntaxError(TOO_DEEP, self.line_at_pos()) from None
            except json.JSONDecodeError as exc:
                if len(self.buf) - self.pos > MAX_EVENT_CHARS:
                    raise EpcisSyntaxError(f"not valid JSON: {exc.msg}", self.line_at_pos()) from None
                if not self._fill():
                    raise EpcisSyntaxError(f"not valid JSON: {exc.msg}", self.line_at_pos()) from None
                continue
            if end == len(self.buf) and not self.eof and not isinstance(val, dict | list | str):
                self._fill()  # a number or literal at the end of the buffer may go on
                continue
            self.pos = end
            return val

    def key(self) -> str:
        k = self.value()
        if not isinstance(k, str):
            raise EpcisSyntaxError("expected a property name", self.line_at_pos())
        self.take(":")
        return k


@dataclass
class EpcisEnvelope:
    """What an EPCIS document says besides its events (filled in as the reader goes)."""

    fields: dict[str, Any] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)
    events: int = 0

    def document(self) -> dict[str, Any]:
        out = dict(self.fields)
        body = dict(self.body)
        out["epcisBody"] = body
        return out


def iter_epcis_events(fp: BinaryIO, envelope: EpcisEnvelope) -> Iterator[tuple[int, int, Any]]:
    """(index, line, event) for each event in the document's event list, in order; the rest of
    the document is collected in ``envelope``. Raises :class:`EpcisSyntaxError`."""
    s = _JsonStream(fp)
    s.take("{")
    first = True
    while True:
        ch = s.peek()
        if ch == "}":
            s.pos += 1
            break
        if not first:
            s.take(",")
        first = False
        name = s.key()
        if name != "epcisBody":
            envelope.fields[name] = s.value()
            continue
        if envelope.fields.get("type") not in ("EPCISDocument", "EPCISQueryDocument"):
            raise EpcisSyntaxError(
                "'type' (EPCISDocument or EPCISQueryDocument) and '@context' must come before 'epcisBody'",
                s.line_at_pos(),
            )
        yield from _walk_object(s, envelope.body, ("eventList", "queryResults", "resultsBody"), envelope)
    if s.peek() != "":
        raise EpcisSyntaxError("unexpected text after the document", s.line_at_pos())


def _walk_object(
    s: _JsonStream, into: dict[str, Any], path: tuple[str, ...], envelope: EpcisEnvelope
) -> Iterator[tuple[int, int, Any]]:
    s.take("{")
    first = True
    while True:
        if s.peek() == "}":
            s.pos += 1
            return
        if not first:
            s.take(",")
        first = False
        name = s.key()
        if name == "eventList":
            into[name] = []
            yield from _walk_events(s, envelope)
        elif name in path and s.peek() == "{":
            nested: dict[str, Any] = {}
            into[name] = nested
            yield from _walk_object(s, nested, path, envelope)
        else:
            into[name] = s.value()


def _walk_events(s: _JsonStream, envelope: EpcisEnvelope) -> Iterator[tuple[int, int, Any]]:
    s.take("[")
    first = True
    while True:
        if s.peek() == "]":
            s.pos += 1
            return
        if not first:
            s.take(",")
        first = False
        s.peek()
        line = s.line_at_pos()
        event = s.value()
        yield envelope.events, line, event
        envelope.events += 1


def read_epcis(
    fp: BinaryIO,
    schema: EpcisSchema,
    *,
    skip: int = 0,
    passport_base: str | None = None,
    envelope: EpcisEnvelope | None = None,
) -> Iterator[Record]:
    """Records of an EPCIS document: each event is checked against the EPCIS schema and mapped to
    registry events (one per battery it names). The first ``skip`` events are read but not
    returned (resuming). A JSON syntax error ends the stream with :class:`EpcisSyntaxError`."""
    env = envelope if envelope is not None else EpcisEnvelope()
    bindings: dict[str, str] | None = None
    for index, line, event in iter_epcis_events(fp, env):
        if index < skip:
            continue
        if bindings is None:
            bindings = epcis.prefixes(env.fields.get("@context"))
        issues = schema.event_issues(event, prefix=f"/epcisBody/eventList/{index}")
        text = _event_text(event) if issues else ""
        if issues:
            first = issues[0]
            yield Record(line, -1, text, error=DomainError(
                E.EPCIS_INVALID, f"{first.path}: {first.message}", field=first.path,
                extra={"errors": [i.as_dict() for i in issues]}),
                extra={"event": index})  # fmt: skip
            continue
        try:
            mapped = epcis.from_epcis(event, bindings=bindings, passport_base=passport_base)
        except DomainError as exc:
            yield Record(line, -1, _event_text(event), error=exc, extra={"event": index})
            continue
        for m in mapped:
            # the record's text is written only if the registry refuses it (see ``record_text``)
            yield Record(
                line, -1, "", event=m.event, actor=m.recorded_by, extra={"event": index, "source": event}
            )


def _event_text(event: Any) -> str:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))[:10_000]


def record_text(record: Record) -> str:
    """The record as written in the file (for an EPCIS event, the event's JSON)."""
    if not record.text and "source" in record.extra:
        return _event_text(record.extra["source"])
    return record.text


def envelope_issues(schema: EpcisSchema, envelope: EpcisEnvelope) -> list[dict[str, str]]:
    """Schema issues of the document around its events (checked once the whole file is read)."""
    doc = envelope.document()
    if doc.get("type") == "EPCISQueryDocument":
        results = doc["epcisBody"].setdefault("queryResults", {})
        if isinstance(results, dict):
            results.setdefault("resultsBody", {}).setdefault("eventList", [])
    else:
        doc["epcisBody"].setdefault("eventList", [])
    return [i.as_dict() for i in schema.envelope_issues(doc)]
