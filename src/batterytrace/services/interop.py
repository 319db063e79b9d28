"""Standards and bulk transfer over the registry's use cases: EPCIS capture and export, the EU
battery passport, and streaming import and export of whole files.

Every write goes through :meth:`Registry.record` (idempotent by event id). An event is recorded by
the enterprise whose key is used; a regulator migrating data may name another recording
enterprise per event (``actor`` in JSON Lines and CSV, ``bt:recordedBy`` in EPCIS), and the event
is then recorded as that enterprise's, under the lifecycle rules for that enterprise.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import and_, or_, select

from batterytrace.domain import errors as E
from batterytrace.domain.access import Tier, tier_for
from batterytrace.domain.codes import parse_battery_code, parse_uscc
from batterytrace.domain.errors import DomainError
from batterytrace.domain.events import parse_event_time
from batterytrace.domain.model import BatteryState, Enterprise
from batterytrace.domain.permissions import Permission
from batterytrace.interop import bulk, epcis, passport
from batterytrace.interop.reference import EpcisSchema, epcis_schema
from batterytrace.services import metrics, views
from batterytrace.services.registry import Caller, EventResult, Registry, require
from batterytrace.store import repo
from batterytrace.store import tables as T
from batterytrace.store.db import read_transaction

MAX_CLOSURE = 100_000
DEFAULT_BATCH = 2_000


class InteropSettings(BaseSettings):
    """Settings of the standards layer (``BATTERYTRACE_`` environment variables)."""

    model_config = SettingsConfigDict(env_prefix="BATTERYTRACE_", extra="ignore")

    #: Folder holding the official reference schemas (``epcis/``, ``batterypass/``); default:
    #: ``../shared/reference`` beside the working directory or the source checkout.
    reference_dir: Path | None = None


@dataclass(frozen=True)
class EventQuery:
    """Which events to read: all filters are optional and combine with AND."""

    battery: str | None = None
    types: frozenset[str] | None = None  # registry event types (from a business step)
    since: datetime | None = None  # event time >= since
    until: datetime | None = None  # event time < until
    enterprise: str | None = None  # the recording enterprise
    after: int | None = None  # log index cursor


def page_token(log_index: int) -> str:
    return base64.urlsafe_b64encode(f"li:{log_index}".encode()).decode().rstrip("=")


def read_page_token(token: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        if not raw.startswith("li:"):
            raise ValueError(raw)
        return int(raw[3:])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise DomainError(
            E.PAGE_INVALID, "'nextPageToken' is not a token this registry gave out", field="nextPageToken"
        ) from None


def parse_query_time(value: str | None, field_name: str) -> datetime | None:
    if value is None or value == "":
        return None
    return parse_event_time(value, field_name)


def step_types(value: str | None) -> frozenset[str] | None:
    """Registry event types written with a business step (bare CBV word, GS1 Web URI or the
    registry's URI), or the registry event type itself."""
    if value is None or value == "":
        return None
    types = epcis.registry_types_for_step(value)
    if not types and value in epcis.BY_TYPE:
        types = frozenset({value})
    return types


class Interop:
    """The standards use cases, over one registry."""

    def __init__(self, registry: Registry, reference_dir: str | Path | None = None) -> None:
        self.registry = registry
        self.reference_dir = reference_dir

    @classmethod
    def from_environment(cls, registry: Registry) -> Interop:
        return cls(registry, InteropSettings().reference_dir)

    def schema(self) -> EpcisSchema:
        """The official EPCIS schema; ``interop.schema_unavailable`` when it is not installed."""
        return epcis_schema(self.reference_dir)

    @property
    def engine(self) -> Any:
        return self.registry.engine

    @property
    def passport_base(self) -> str:
        return self.registry.settings.base_url.rstrip("/")

    # --- recording on behalf of the recorder named in the data -------------------------------------

    def record_as(
        self,
        caller: Caller,
        items: Sequence[tuple[Any, str | None]],
        *,
        atomic: bool = False,
        cache: dict[str, Enterprise | None] | None = None,
    ) -> list[EventResult]:
        """Record ``(raw event, recorder)`` pairs in order. A recorder other than the caller is allowed
        only to a regulator (a migration); the events go to the registry as one batch, each recorded
        as its own recorder, in one transaction."""
        require(caller, Permission.EVENT_RECORD)
        enterprises = cache if cache is not None else {}
        results: list[EventResult | None] = [None] * len(items)
        indexes: list[int] = []  # the events that go to the registry, and who records each
        recorders: list[Caller] = []
        for i, (raw, actor) in enumerate(items):
            who, error = self._recorder(caller, actor, enterprises)
            if error is not None:
                results[i] = EventResult(id=_raw_id(raw), status="rejected", error=error)
                continue
            assert who is not None
            indexes.append(i)
            recorders.append(who)
        refused = [r for r in results if r is not None]
        if atomic and refused:
            aborted = DomainError(
                E.BATCH_ABORTED,
                f"not recorded: the capture is all-or-nothing and event {refused[0].id} was refused",
            )
            return [
                res
                if res is not None
                else EventResult(id=_raw_id(items[i][0]), status="rejected", error=aborted)
                for i, res in enumerate(results)
            ]
        if atomic and len({who.id for who in recorders}) > 1:
            raise DomainError(
                E.REQUEST_INVALID,
                "an all-or-nothing capture is recorded by one enterprise, and these events name several "
                "recorders: capture them with GS1-Capture-Error-Behaviour: proceed",
                field="GS1-Capture-Error-Behaviour",
            )
        if indexes:  # one transaction, each event recorded as its own recorder
            got = self.registry.record(
                caller, [items[i][0] for i in indexes], atomic=atomic, recorders=recorders
            )
            for i, res in zip(indexes, got, strict=True):
                results[i] = res
        return [r for r in results if r is not None]

    def _recorder(
        self, caller: Caller, actor: str | None, cache: dict[str, Enterprise | None]
    ) -> tuple[Caller | None, DomainError | None]:
        if actor is None or actor == caller.id:
            return caller, None
        if not caller.enterprise.is_regulator:
            return None, DomainError(
                E.PERMISSION_DENIED,
                f"the event names {actor} as its recorder; only a regulator may record events on behalf of "
                f"another enterprise (enterprise {caller.id} records its own)",
                field="actor",
            )
        try:
            parse_uscc(actor)
        except DomainError as exc:
            return None, exc.with_field("actor")
        if actor not in cache:
            with read_transaction(self.engine) as conn:
                cache[actor] = repo.load_enterprise(conn, actor)
        ent = cache[actor]
        if ent is None:
            return None, DomainError(
                E.ENTERPRISE_UNKNOWN, f"'actor': no enterprise {actor} is registered", field="actor"
            )
        return Caller(enterprise=ent, key_id=caller.key_id), None

    # --- EPCIS capture ------------------------------------------------------------------------------

    def capture(self, caller: Caller, document: Any, *, rollback: bool = True) -> CaptureReport:
        """Capture an EPCIS document (or query document, or single event): check it against the
        official schema, map each event, record what maps (all or nothing when ``rollback``).
        Raises ``epcis.invalid`` for a document that breaks the schema; the report tells, per event,
        what was recorded or why not."""
        require(caller, Permission.EVENT_RECORD)
        schema = self.schema()
        events = epcis.event_list(document)
        if events is None:
            issues = schema.document_issues(document)
            detail = (
                f"{issues[0].path}: {issues[0].message}"
                if issues
                else "send an EPCISDocument, an EPCISQueryDocument or a single EPCIS event"
            )
            raise DomainError(
                E.EPCIS_INVALID,
                f"not an EPCIS document the registry can capture: {detail}",
                extra={"errors": [i.as_dict() for i in issues]},
            )
        limit = self.registry.settings.max_batch
        if len(events) > limit:
            raise DomainError(
                E.BATCH_TOO_LARGE,
                f"a capture holds at most {limit} events; this document has {len(events)}",
                field="epcisBody.eventList",
            )
        if len(events) == 1 and events[0] is document:  # a single event
            issues = schema.document_issues(document)
        else:
            issues = schema.envelope_issues(document)
            prefix = "/epcisBody/eventList"
            if document.get("type") == "EPCISQueryDocument":
                prefix = "/epcisBody/queryResults/resultsBody/eventList"
            for i, ev in enumerate(events):
                issues += schema.event_issues(ev, prefix=f"{prefix}/{i}")
                if len(issues) >= 50:
                    break
        if issues:
            raise DomainError(
                E.EPCIS_INVALID,
                f"the document breaks the EPCIS 2.0 schema in {len(issues)}"
                f"{'+' if len(issues) >= 50 else ''} place(s); first at {issues[0].path}: {issues[0].message}",
                extra={"errors": [i.as_dict() for i in issues[:50]]},
            )
        bindings = epcis.prefixes(document.get("@context")) if isinstance(document, Mapping) else {}
        report = CaptureReport(rollback=rollback)
        mapped: list[list[epcis.Mapped] | DomainError] = []
        for index, outcome in epcis.iter_mapped(events, bindings, self.passport_base):
            ev = events[index]
            raw_id = ev.get("eventID") if isinstance(ev, Mapping) else None
            entry = CaptureEntry(index, raw_id if isinstance(raw_id, str) else None)
            if isinstance(outcome, DomainError):
                entry.error = outcome
            report.entries.append(entry)
            mapped.append(outcome)
        unmapped = [e.index for e in report.entries if e.error is not None]
        if len(unmapped) == len(events):
            return report
        items: list[tuple[dict[str, Any], str | None]] = []
        owners: list[int] = []
        for i, m in enumerate(mapped):
            if isinstance(m, list):
                for one in m:
                    items.append((one.event, one.recorded_by))
                    owners.append(i)
        if rollback and unmapped:
            aborted = DomainError(
                E.BATCH_ABORTED,
                f"not recorded: the capture is all-or-nothing (GS1-Capture-Error-Behaviour: rollback) and event "
                f"{unmapped[0]} cannot be mapped",
            )
            results = [EventResult(id=raw["id"], status="rejected", error=aborted) for raw, _ in items]
        else:
            results = self.record_as(caller, items, atomic=rollback)
        for owner, (raw, _), res in zip(owners, items, results, strict=True):
            entry = report.entries[owner]
            entry.recorded.append((res, raw))
            if res.status == "rejected" and entry.error is None:
                entry.error = res.error
        return report

    # --- EPCIS export and queries -------------------------------------------------------------------

    def battery_epcis(self, caller: Caller | None, code: str) -> dict[str, Any]:
        """A battery's whole life as an EPCISDocument: the events of the battery, of its components,
        and (for a second-life product) of its origins, plus the vehicles it was in (authority
        tier), in the order the registry accepted them. Fields are cut to the caller's tier."""
        return epcis.document(self.iter_battery_epcis(caller, code), created=self.registry.clock())

    def iter_battery_epcis(self, caller: Caller | None, code: str) -> Iterator[dict[str, Any]]:
        for view, context in self.battery_history(caller, code):
            yield epcis.to_epcis(view, **context)

    def battery_history(
        self, caller: Caller | None, code: str
    ) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        """(event as the caller may see it, EPCIS context) for a battery's whole life."""
        with read_transaction(self.engine) as conn:
            state = _load_battery(conn, code)
            tier = _tier(conn, caller, state)
            closure = _closure(conn, code)
            rows = _rows_for_batteries(conn, sorted(closure))
            if tier >= Tier.AUTHORITY:
                vins = sorted(
                    {
                        str(r["data"]["vin"])
                        for r in rows
                        if r["type"] == "installed"
                        and isinstance(r["data"], Mapping)
                        and r["data"].get("vin")
                    }
                )
                seen = {r["id"] for r in rows}
                for part in repo.chunks(vins):
                    for r in conn.execute(select(T.events).where(T.events.c.vin.in_(part))):
                        if r.id not in seen and r.battery is None:
                            rows.append(dict(r._mapping))
            rows.sort(key=lambda r: r["log_index"])
            retracted = repo.retracted_ids(conn, [r["id"] for r in rows])
            contexts = [_epcis_context(conn, r, tier) for r in rows]
        for row, context in zip(rows, contexts, strict=True):
            yield views.event_for_tier(row, tier, row["id"] in retracted), context

    def query_epcis(
        self, caller: Caller | None, query: EventQuery, per_page: int
    ) -> tuple[dict[str, Any], str | None]:
        """One page of an event query as an EPCISQueryDocument, and the token of the next page."""
        max_page = self.registry.settings.max_page_size
        if not 1 <= per_page <= max_page:
            raise DomainError(E.PAGE_INVALID, f"'perPage' must be between 1 and {max_page}", field="perPage")
        events: list[dict[str, Any]] = []
        last: int | None = None
        more = False
        for view, context in self.iter_events(caller, query):
            if len(events) == per_page:
                more = True
                break
            events.append(epcis.to_epcis(view, **context))
            last = view.get("log_index")
        token = page_token(last) if more and last is not None else None
        doc = epcis.query_document(events, created=self.registry.clock(), next_page_token=token)
        return doc, token

    def iter_events(
        self, caller: Caller | None, query: EventQuery, chunk: int = 1000
    ) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        """Events matching ``query`` in log order, each cut to what the caller may see, with the
        context its EPCIS form needs. A regulator reads everything; another enterprise reads the
        events it recorded, or the events about one battery (at its tier for that battery)."""
        caller = require(caller, Permission.BATTERY_READ)
        regulator = caller.enterprise.is_regulator
        if query.enterprise is not None and query.enterprise != caller.id and not regulator:
            raise DomainError(
                E.PERMISSION_DENIED,
                f"enterprise {caller.id} may query only the events it recorded (or one battery's events)",
                field="enterprise",
            )
        tier = Tier.AUTHORITY
        enterprise = query.enterprise
        ev = T.events
        conditions: list[Any] = []
        if query.battery is not None:
            with read_transaction(self.engine) as conn:
                state = _load_battery(conn, query.battery)
                naming = _ids_naming(conn, query.battery)
                if not regulator:
                    tier = _tier(conn, caller, state)
            conditions.append(
                or_(ev.c.battery == query.battery, ev.c.id.in_(naming))
                if naming
                else (ev.c.battery == query.battery)
            )
        elif not regulator:
            enterprise = caller.id
        if enterprise is not None:
            conditions.append(ev.c.actor == enterprise)
        if query.types is not None:
            if not query.types:
                return
            conditions.append(ev.c.type.in_(sorted(query.types)))
        if query.since is not None:
            conditions.append(ev.c.time_utc >= query.since)
        if query.until is not None:
            conditions.append(ev.c.time_utc < query.until)
        after = query.after if query.after is not None else -1
        while True:
            stmt = (
                select(ev)
                .where(and_(ev.c.log_index > after, *conditions))
                .order_by(ev.c.log_index)
                .limit(chunk)
            )
            with read_transaction(self.engine) as conn:
                rows = [dict(r._mapping) for r in conn.execute(stmt)]
                retracted = repo.retracted_ids(conn, [r["id"] for r in rows])
                contexts = [_epcis_context(conn, r, tier) for r in rows]
            for row, context in zip(rows, contexts, strict=True):
                yield views.event_for_tier(row, tier, row["id"] in retracted), context
            if len(rows) < chunk:
                return
            after = rows[-1]["log_index"]

    # --- passports ----------------------------------------------------------------------------------

    def passport(self, caller: Caller | None, code: str) -> dict[str, Any]:
        """The battery's EU passport (Battery Pass data model 1.2), cut to the caller's tier."""
        with read_transaction(self.engine) as conn:
            state = _load_battery(conn, code)
            facts = _passport_facts(conn, state, self.passport_base)
            tier = _tier(conn, caller, state)
        return passport.cut(passport.build(facts, now=self.registry.clock()), tier)

    def traction_battery_code(self, caller: Caller | None, code: str) -> dict[str, Any]:
        """The Catena-X TractionBatteryCode aspect: the code with its modules and cells (public)."""
        with read_transaction(self.engine) as conn:
            state = _load_battery(conn, code)

            def node(s: BatteryState, depth: int) -> dict[str, Any]:
                out: dict[str, Any] = {"productType": s.level, "tractionBatteryCode": s.code}
                if depth < 3:
                    kids = repo.load_batteries(conn, repo.components(conn, s.code))
                    if kids:
                        out["subcomponents"] = [node(kids[c], depth + 1) for c in sorted(kids)]
                return out

            return node(state, 0)

    # --- bulk import --------------------------------------------------------------------------------

    def import_records(
        self,
        caller: Caller,
        records: Iterable[bulk.Record],
        *,
        batch_size: int = DEFAULT_BATCH,
        on_reject: Callable[[bulk.Record, DomainError, str | None], None],
        on_batch: Callable[[ImportCounts, bulk.Record], None] | None = None,
        counts: ImportCounts | None = None,
    ) -> ImportCounts:
        """Record the records' events in batches; a record that cannot be read or is refused goes to
        ``on_reject`` with its error. ``on_batch`` is called after each committed batch with the
        last record consumed (the resume point)."""
        totals = counts if counts is not None else ImportCounts()
        batch: list[bulk.Record] = []  # in file order, the unreadable ones too (rejects stay in order)
        good = 0
        cache: dict[str, Enterprise | None] = {}
        last: bulk.Record | None = None

        def flush() -> None:
            nonlocal good
            if batch:
                readable = [r for r in batch if r.error is None and r.event is not None]
                results = iter(self.record_as(caller, [(r.event, r.actor) for r in readable], cache=cache))
                for rec in batch:
                    if rec.error is not None or rec.event is None:
                        totals.rejected += 1
                        on_reject(rec, rec.error or bulk.unreadable("empty record"), None)
                        continue
                    res = next(results)
                    if res.status == "accepted":
                        if res.replay:
                            totals.replayed += 1
                        else:
                            totals.accepted += 1
                    else:
                        totals.rejected += 1
                        assert res.error is not None
                        on_reject(rec, res.error, res.id)
                batch.clear()
                good = 0
            if on_batch is not None and last is not None:
                on_batch(totals, last)

        for rec in records:
            totals.read += 1
            last = rec
            batch.append(rec)
            if rec.error is None and rec.event is not None:
                good += 1
            if good >= batch_size or len(batch) >= 4 * batch_size:
                flush()
        flush()
        return totals


@dataclass
class ImportCounts:
    read: int = 0  # registry events read (good and bad)
    accepted: int = 0  # newly recorded
    replayed: int = 0  # already recorded with the same id and body (a re-run)
    rejected: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class CaptureEntry:
    """What became of one event of a captured document."""

    index: int
    event_id: str | None
    error: DomainError | None = None  # why it was not recorded (mapping or lifecycle)
    recorded: list[tuple[EventResult, dict[str, Any]]] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return self.error is None and all(res.status == "accepted" for res, _ in self.recorded)


@dataclass
class CaptureReport:
    rollback: bool
    entries: list[CaptureEntry] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return sum(1 for e in self.entries if e.accepted)

    @property
    def nothing_mapped(self) -> bool:
        return all(e.error is not None and not e.recorded for e in self.entries)


def _raw_id(raw: Any) -> str | None:
    value = raw.get("id") if isinstance(raw, Mapping) else None
    return value if isinstance(value, str) else None


# --- helpers over the database -------------------------------------------------------------------------


def _load_battery(conn: Any, code: str) -> BatteryState:
    try:
        parse_battery_code(code)
    except DomainError as exc:
        raise exc.with_field("code") from None
    state = repo.load_batteries(conn, [code]).get(code)
    if state is None:
        raise DomainError(E.BATTERY_UNKNOWN, f"battery {code} is not registered", field="code")
    return state


def _tier(conn: Any, caller: Caller | None, state: BatteryState) -> Tier:
    """The caller's tier for a battery, as ``GET /batteries/{code}`` has it: a component counts as
    held by whoever holds the battery it is part of."""
    if caller is None:
        return Tier.PUBLIC
    tier = tier_for(caller.enterprise, state)
    root, seen = state, {state.code}
    while tier < Tier.AUTHORITY and root.attached and root.parent and root.parent not in seen:
        parent = repo.load_batteries(conn, [root.parent]).get(root.parent)
        if parent is None:
            break
        seen.add(parent.code)
        root = parent
        tier = max(tier, tier_for(caller.enterprise, root))
    return tier


def _closure(conn: Any, code: str) -> set[str]:
    """The battery, its components (all levels) and its origins (and theirs)."""
    seen = {code}
    todo = [code]
    links = T.battery_links
    while todo:
        part = todo[:500]
        todo = todo[500:]
        stmt = select(links).where(
            or_(
                and_(links.c.parent.in_(part), links.c.kind == "component"),
                and_(links.c.child.in_(part), links.c.kind == "origin"),
            )
        )
        for r in conn.execute(stmt):
            other = r.child if r.kind == "component" else r.parent
            if other not in seen:
                seen.add(other)
                todo.append(other)
        if len(seen) > MAX_CLOSURE:
            raise DomainError(E.REQUEST_INVALID, f"battery {code} has more than {MAX_CLOSURE} related codes")
    return seen


def _rows_for_batteries(conn: Any, codes: Sequence[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for part in repo.chunks(list(codes)):
        rows += [dict(r._mapping) for r in conn.execute(select(T.events).where(T.events.c.battery.in_(part)))]
    return rows


def _ids_naming(conn: Any, code: str) -> list[str]:
    """Ids of events on other batteries that name this one: the parent's assembly and dismantling,
    and the repurposing of its origins into it."""
    links = T.battery_links
    parents: dict[str, str] = {}
    for r in conn.execute(select(links).where(links.c.child == code)):
        parents[r.parent] = r.kind
    if not parents:
        return []
    out = []
    stmt = select(T.events).where(
        and_(
            T.events.c.battery.in_(sorted(parents)),
            T.events.c.type.in_(["assembled", "dismantled", "repurposed"]),
        )
    )
    for r in conn.execute(stmt):
        data = r.data if isinstance(r.data, Mapping) else {}
        kind = parents[r.battery]
        if (
            (r.type == "assembled" and kind == "component" and code in (data.get("children") or []))
            or (r.type == "dismantled" and kind == "component")
            or (r.type == "repurposed" and kind == "origin" and data.get("into") == code)
        ):
            out.append(r.id)
    return out


def _epcis_context(conn: Any, row: Mapping[str, Any], tier: Tier) -> dict[str, Any]:
    """What the EPCIS form of an event needs beyond the event: the vehicle or system a removed
    battery came out of, the components of a dismantled one."""
    if row["type"] == "removed" and tier >= Tier.LEGITIMATE_INTEREST and row.get("battery"):
        stmt = (
            select(T.events.c.data)
            .where(
                and_(
                    T.events.c.battery == row["battery"],
                    T.events.c.type == "installed",
                    T.events.c.log_index < row["log_index"],
                )
            )
            .order_by(T.events.c.log_index.desc())
            .limit(1)
        )
        data = conn.execute(stmt).scalar()
        if isinstance(data, Mapping):
            if data.get("vin") and tier >= Tier.AUTHORITY:
                return {"installed_in": epcis.vin_uri(str(data["vin"]))}
            if data.get("system"):
                return {"installed_in": epcis.system_uri(str(data["system"]))}
        return {}
    if row["type"] == "dismantled" and row.get("battery"):
        return {"components": repo.components(conn, row["battery"])}
    return {}


def _passport_facts(conn: Any, state: BatteryState, base_url: str) -> passport.Facts:
    links = repo.links_of(conn, state.code)
    rows = repo.battery_event_rows(conn, state.code)
    retracted = repo.retracted_ids(conn, [r["id"] for r in rows])
    rows = [r for r in rows if r["id"] not in retracted and r["type"] != "retracted"]
    declarations: list[Mapping[str, Any]] = []
    origins = links.get("origins", [])
    origin_states = repo.load_batteries(conn, origins)
    placed_at = state.registered_at
    if state.second_life:
        origin_rows = _rows_for_batteries(conn, origins)
        for r in sorted(origin_rows, key=lambda r: r["log_index"]):
            data = r["data"] if isinstance(r["data"], Mapping) else {}
            if r["type"] == "manufactured" and isinstance(data.get("passport"), Mapping):
                # the product's cells and materials are its origins': their composition and
                # dismantling information carry over; the rest is the repurposer's to declare
                declarations.append({k: v for k, v in data["passport"].items() if k in passport.INHERITED})
        for r in sorted(origin_rows, key=lambda r: r["log_index"]):
            data = r["data"] if isinstance(r["data"], Mapping) else {}
            repurposing = r["type"] == "repurposed" and data.get("into") == state.code
            if repurposing and isinstance(data.get("passport"), Mapping):
                declarations.append(data["passport"])
    for r in rows:
        data = r["data"] if isinstance(r["data"], Mapping) else {}
        if r["type"] == "manufactured" and isinstance(data.get("passport"), Mapping):
            declarations.append(data["passport"])
    readings = []
    installed_at: str | None = None
    for r in rows:
        data = r["data"] if isinstance(r["data"], Mapping) else {}
        if r["type"] in ("maintained", "graded"):
            readings.append(passport.Reading(time=r["time_text"], soh_percent=data.get("soh_percent"),
                                             values=dict(data.get("readings") or {})))  # fmt: skip
        if r["type"] == "installed" and installed_at is None:
            installed_at = r["time_text"]
    producer = repo.load_enterprise(conn, state.producer)
    origin_producers = repo.load_enterprises(conn, [s.producer for s in origin_states.values()])
    first_rows = [r for r in rows if r["type"] == "manufactured"]
    placed_text = first_rows[0]["time_text"] if first_rows else placed_at.isoformat()
    if state.second_life:
        repurposings = [
            r
            for r in _rows_for_batteries(conn, origins)
            if r["type"] == "repurposed"
            and isinstance(r["data"], Mapping)
            and r["data"].get("into") == state.code
        ]
        if repurposings:
            placed_text = min(repurposings, key=lambda r: r["log_index"])["time_text"]
    materials: dict[str, float] = dict((state.spec or {}).get("materials") or {})
    recycled: list[Mapping[str, Any]] = list((state.spec or {}).get("recycled_content") or [])
    mass = state.mass_kg
    carbon = (state.spec or {}).get("carbon_kgco2e_per_kwh")
    voltage = (state.spec or {}).get("voltage_v")
    if state.second_life:
        for o in origin_states.values():
            for k, v in ((o.spec or {}).get("materials") or {}).items():
                materials[k] = materials.get(k, 0.0) + float(v)
        if all((o.spec or {}).get("materials") for o in origin_states.values()):
            # the product's material is its origins', recycled content included; a share is
            # only known when every origin's content is
            for o in origin_states.values():
                recycled += list((o.spec or {}).get("recycled_content") or [])
        else:
            recycled = []
        if mass is None and origin_states:
            masses = [o.mass_kg for o in origin_states.values()]
            mass = sum(m for m in masses if m is not None) if all(m is not None for m in masses) else None
        if voltage is None:
            volts = {(o.spec or {}).get("voltage_v") for o in origin_states.values()}
            voltage = volts.pop() if len(volts) == 1 else None
    return passport.Facts(
        code=state.code,
        level=state.level,
        chemistry=state.chemistry,
        stage=state.stage.value,
        stage_before_missing=state.stage_before_missing.value if state.stage_before_missing else None,
        second_life=state.second_life,
        placed_on_market=placed_text,
        installed_at=installed_at,
        application=state.application,
        capacity_kwh=state.capacity_kwh,
        voltage_v=voltage,
        mass_kg=mass,
        carbon_kgco2e_per_kwh=carbon,
        materials=materials,
        recycled_content=recycled,
        soh_percent=state.soh_percent,
        readings=readings,
        declarations=declarations,
        producer=passport.Party(producer.id, producer.name, producer.region) if producer else None,
        origins=[
            passport.Origin(
                code=o,
                producer=origin_producers[origin_states[o].producer].name
                if o in origin_states and origin_states[o].producer in origin_producers
                else None,
            )
            for o in origins
        ],
        products=list(links.get("products", [])),
        children=list(links.get("children", [])),
        base_url=base_url,
    )


# --- files ---------------------------------------------------------------------------------------------


@dataclass
class ImportSummary:
    path: str
    format: str
    counts: ImportCounts
    rejects_path: str
    resumed_at_line: int | None = None
    envelope_errors: list[dict[str, str]] = field(default_factory=list)
    fatal: str | None = None

    @property
    def clean(self) -> bool:
        return self.counts.rejected == 0 and not self.envelope_errors and self.fatal is None


def _identity(path: Path) -> dict[str, Any]:
    st = path.stat()
    with open(path, "rb") as fh:
        head = hashlib.sha256(fh.read(1 << 16)).hexdigest()
    return {"file": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "head": head}


def progress_path(path: Path) -> Path:
    return path.with_name(path.name + ".progress.json")


def default_rejects_path(path: Path) -> Path:
    return path.with_name(path.name + ".rejects.jsonl")


def import_file(
    interop: Interop,
    caller: Caller,
    path: Path,
    fmt: str,
    *,
    rejects_path: Path | None = None,
    batch_size: int = DEFAULT_BATCH,
    resume: bool = True,
    on_progress: Callable[[int, ImportCounts], None] | None = None,
) -> ImportSummary:
    """Import a JSON Lines, CSV or EPCIS file, streaming. Rejected records go to the reject file
    (JSON Lines: line, code, reason, the record). After each committed batch the resume point is
    saved beside the file; a run that finds it (same file, same enterprise) continues from there.
    Running again after completion replays every event (idempotent ids): nothing is added twice.

    Progress is reported to the Prometheus metrics (``metrics.track_import``) after each committed
    batch: records accepted (already recorded ones included) and refused in this run."""
    if fmt not in bulk.FORMATS:
        raise DomainError(
            E.REQUEST_INVALID, f"format must be one of {', '.join(bulk.FORMATS)}", field="format"
        )
    rejects = rejects_path or default_rejects_path(path)
    marker = progress_path(path)
    identity = {**_identity(path), "format": fmt, "enterprise": caller.id}
    saved: dict[str, Any] | None = None
    if resume and marker.exists():
        try:
            candidate = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            candidate = None
        if isinstance(candidate, dict) and candidate.get("identity") == identity:
            saved = candidate
    counts = ImportCounts(**saved["counts"]) if saved else ImportCounts()
    summary = ImportSummary(
        str(path), fmt, counts, str(rejects), resumed_at_line=saved["line"] if saved else None
    )
    schema = interop.schema() if fmt == "epcis" else None
    envelope = bulk.EpcisEnvelope()
    # what the metrics were told so far: the counts a resumed import starts from were reported by
    # the run that made them
    reported = {"accepted": counts.accepted + counts.replayed, "refused": counts.rejected}

    with (
        open(path, "rb") as fp,
        open(rejects, "a" if saved else "w", encoding="utf-8") as rej,
        metrics.track_import(fmt) as tracked,
    ):

        def report() -> None:
            now = {"accepted": counts.accepted + counts.replayed, "refused": counts.rejected}
            tracked.advance(
                accepted=now["accepted"] - reported["accepted"], refused=now["refused"] - reported["refused"]
            )
            reported.update(now)

        def on_reject(rec: bulk.Record, error: DomainError, event_id: str | None) -> None:
            entry: dict[str, Any] = {"line": rec.line}
            if "event" in rec.extra:
                entry["event"] = rec.extra["event"]
            entry["id"] = event_id or (rec.event or {}).get("id")
            entry["code"] = error.code
            entry["reason"] = error.message
            if error.field:
                entry["field"] = error.field
            if error.extra.get("errors"):
                entry["errors"] = error.extra["errors"]
            entry["record"] = bulk.record_text(rec)
            rej.write(json.dumps(entry, ensure_ascii=False) + "\n")

        def on_batch(totals: ImportCounts, last: bulk.Record) -> None:
            report()
            rej.flush()
            state = {
                "identity": identity,
                "line": last.line,
                "offset": last.end,
                "event": last.extra.get("event"),
                "counts": totals.as_dict(),
            }
            tmp = marker.with_name(marker.name + ".tmp")
            tmp.write_text(json.dumps(state), encoding="utf-8")
            os.replace(tmp, marker)
            if on_progress is not None:
                on_progress(_position(fp), totals)

        records: Iterator[bulk.Record]
        if fmt == "jsonl":
            start = (saved["offset"], saved["line"]) if saved else (0, 0)
            records = bulk.read_jsonl(fp, offset=start[0], line=start[1])
        elif fmt == "csv":
            start = (saved["offset"], saved["line"]) if saved else (0, 0)
            records = bulk.read_csv(fp, offset=start[0], line=start[1])
        else:
            assert schema is not None
            skip = int(saved.get("event") or 0) if saved else 0
            records = bulk.read_epcis(
                fp, schema, skip=skip, passport_base=interop.passport_base, envelope=envelope
            )
        stream = _progressing(records, fp, counts, on_progress)
        try:
            interop.import_records(
                caller, stream, batch_size=batch_size, on_reject=on_reject, on_batch=on_batch, counts=counts
            )
        except bulk.EpcisSyntaxError as exc:
            counts.rejected += 1
            rej.write(
                json.dumps(
                    {
                        "line": exc.line,
                        "code": E.IMPORT_UNREADABLE,
                        "reason": f"{exc.message}; the rest of the document cannot be read",
                        "record": None,
                    }
                )
                + "\n"
            )
            summary.fatal = str(exc)
            report()
        if fmt == "epcis" and summary.fatal is None and schema is not None:
            summary.envelope_errors = bulk.envelope_issues(schema, envelope)
            for issue in summary.envelope_errors:
                rej.write(json.dumps({"line": None, "code": E.EPCIS_INVALID, "reason": issue["message"],
                                      "field": issue["path"], "record": None}) + "\n")  # fmt: skip
    if summary.fatal is None:
        marker.unlink(missing_ok=True)
    return summary


def _position(fp: BinaryIO) -> int:
    try:
        return fp.tell()
    except (OSError, ValueError):
        return 0


def _progressing(
    records: Iterator[bulk.Record],
    fp: BinaryIO,
    counts: ImportCounts,
    on_progress: Callable[[int, ImportCounts], None] | None,
    every: int = 500,
) -> Iterator[bulk.Record]:
    for n, rec in enumerate(records, start=1):
        yield rec
        if on_progress is not None and n % every == 0:
            on_progress(_position(fp), counts)


def export_events(
    interop: Interop, caller: Caller, query: EventQuery
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Events for an export: by battery, the battery's whole life; otherwise the query."""
    if (
        query.battery is not None
        and query.types is None
        and query.since is None
        and query.until is None
        and (query.enterprise is None)
    ):
        yield from interop.battery_history(caller, query.battery)
        return
    yield from interop.iter_events(caller, query)
