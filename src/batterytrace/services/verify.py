"""``batterytrace verify``: replay the database against the log and name every row that differs.

Three passes, each streaming:
1. the log itself: every entry's leaf hash against the stored tree, the tree's root against the
   log head and against every signed checkpoint (signatures checked with the registry's keys);
2. the rows that the log records (events, enterprises, licences, keys): each row against its
   entry, and every entry against a row, so an altered, a deleted and an inserted row are named;
3. the current state: the lifecycle rules replayed over the logged history, in log order, and
   the resulting batteries, vehicles and links compared with the state tables, the recyclers'
   material balances and the fleet rollup (batteries by registration year, chemistry and stage)
   with what the replayed history gives.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Engine, select

from batterytrace.domain.errors import DomainError
from batterytrace.domain.events import parse_event
from batterytrace.domain.lifecycle import Changes, PastEvent, decide
from batterytrace.domain.model import (
    BatteryState,
    Enterprise,
    EventType,
    Licence,
    Link,
    Role,
    Scope,
    VehicleState,
)
from batterytrace.domain.policy import Profile, get_profile
from batterytrace.domain.snapshots import (
    battery_from_dict,
    battery_to_dict,
    vehicle_from_dict,
    vehicle_to_dict,
)
from batterytrace.ledger.checkpoint import NoteError, open_checkpoint
from batterytrace.ledger.entries import canonical_entry
from batterytrace.ledger.merkle import EMPTY_ROOT, leaf_hash, node_hash
from batterytrace.services import views
from batterytrace.services.log import Log
from batterytrace.store import fleet
from batterytrace.store import tables as T

BATCH = 5000


@dataclass(frozen=True)
class Finding:
    kind: str  # altered | missing | extra | log | checkpoint | state
    table: str
    key: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind:<10} {self.table}:{self.key}  {self.detail}"


@dataclass
class Report:
    log_size: int = 0
    checkpoints: int = 0
    rows_checked: int = 0
    batteries_checked: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def add(self, kind: str, table: str, key: Any, detail: str) -> None:
        self.findings.append(Finding(kind, table, str(key), detail))


class _RootTracker:
    """Roots of every prefix of the log, from a stack of complete subtrees (O(log n) memory)."""

    def __init__(self) -> None:
        self.stack: list[tuple[int, bytes]] = []  # (level, hash), highest level first
        self.size = 0

    def push(self, h: bytes) -> None:
        level = 0
        while self.stack and self.stack[-1][0] == level:
            _, left = self.stack.pop()
            h = node_hash(left, h)
            level += 1
        self.stack.append((level, h))
        self.size += 1

    def root(self) -> bytes:
        if not self.stack:
            return EMPTY_ROOT
        h = self.stack[-1][1]
        for _, left in reversed(self.stack[:-1]):
            h = node_hash(left, h)
        return h


def _stream(conn: Connection, table: Any, order: Any) -> Iterator[dict[str, Any]]:
    result = conn.execution_options(stream_results=True, yield_per=BATCH).execute(
        select(table).order_by(order)
    )
    for row in result:
        yield dict(row._mapping)


def _diff(expected: Any, actual: Any, prefix: str = "") -> list[str]:
    if isinstance(expected, dict) and isinstance(actual, dict):
        out: list[str] = []
        for key in sorted(set(expected) | set(actual)):
            out += _diff(expected.get(key), actual.get(key), f"{prefix}{key}.")
        return out
    if expected != actual:
        return [
            f"{prefix.rstrip('.')}: log has {json.dumps(expected, default=str)}, "
            f"row has {json.dumps(actual, default=str)}"
        ]
    return []


class _ReplayContext:
    """An in-memory registry that the lifecycle rules replay the log into."""

    def __init__(self) -> None:
        self.batteries: dict[str, BatteryState] = {}
        self.vehicles: dict[str, VehicleState] = {}
        self.enterprises: dict[str, Enterprise] = {}
        self.owners: dict[str, str] = {}
        self.links: set[Link] = set()
        self.past: dict[str, PastEvent] = {}
        self.rules_profile = get_profile()
        #: recyclers' material balances, (recycler, material) → [recovered mg, declared mg]
        self.balances: dict[tuple[str, str], list[int]] = {}

    def battery(self, code: str) -> BatteryState | None:
        return self.batteries.get(code)

    def vehicle(self, vin: str) -> VehicleState | None:
        return self.vehicles.get(vin)

    def enterprise(self, enterprise_id: str) -> Enterprise | None:
        return self.enterprises.get(enterprise_id)

    def manufacturer_owner(self, manufacturer_code: str) -> str | None:
        return self.owners.get(manufacturer_code)

    def components(self, code: str) -> list[str]:
        return sorted(ln.child for ln in self.links if ln.parent == code and ln.kind == "component")

    def past_event(self, event_id: str) -> PastEvent | None:
        return self.past.get(event_id)

    def profile(self) -> Profile:
        return self.rules_profile

    def recovered_balance(self, recycler: str, material: str) -> int:
        recovered, declared = self.balances.get((recycler, material), [0, 0])
        return recovered - declared

    def apply(self, changes: Changes) -> None:
        self.batteries.update(changes.batteries)
        for code in changes.deleted_batteries:
            self.batteries.pop(code, None)
        self.vehicles.update(changes.vehicles)
        for vin in changes.deleted_vehicles:
            self.vehicles.pop(vin, None)
        self.links |= set(changes.links)
        self.links -= set(changes.removed_links)
        for flow in changes.materials:
            balance = self.balances.setdefault((flow.recycler, flow.material), [0, 0])
            balance[0] += flow.recovered_mg
            balance[1] += flow.declared_mg
        if changes.retracts and changes.retracts in self.past:
            p = self.past[changes.retracts]
            self.past[p.id] = PastEvent(p.id, p.type, p.actor, p.battery, p.vin, p.undo, True)


def _replay_entry(ctx: _ReplayContext, entry: dict[str, Any], index: int, report: Report) -> None:
    kind = entry.get("kind")
    if kind == "enterprise":
        e = entry["enterprise"]
        ctx.enterprises[e["id"]] = Enterprise(
            id=e["id"],
            name=e["name"],
            roles=frozenset(Role(r) for r in e["roles"]),
            region=e["region"],
            manufacturer_codes=frozenset(e.get("manufacturer_codes") or []),
            network_of=e.get("network_of"),
        )
        for code in e.get("manufacturer_codes") or []:
            ctx.owners[code] = e["id"]
    elif kind == "licence":
        lic = entry["licence"]
        ent = ctx.enterprises.get(lic["enterprise_id"])
        if ent is not None:
            licence = Licence(
                id=lic["id"],
                enterprise_id=lic["enterprise_id"],
                scope=Scope(lic["scope"]),
                valid_from=date.fromisoformat(lic["valid_from"]),
                valid_to=date.fromisoformat(lic["valid_to"]),
                region=lic.get("region"),
                revoked=bool(lic.get("revoked")),
            )
            ctx.enterprises[ent.id] = Enterprise(
                id=ent.id,
                name=ent.name,
                roles=ent.roles,
                region=ent.region,
                manufacturer_codes=ent.manufacturer_codes,
                network_of=ent.network_of,
                licences=(*ent.licences, licence),
            )
    elif kind == "event":
        ev_body = entry["event"]
        actor = ctx.enterprises.get(ev_body["actor"])
        raw = {
            k: ev_body[k] for k in ("id", "type", "battery", "vin", "time", "region", "data") if k in ev_body
        }
        try:
            if actor is None:
                raise DomainError("enterprise.unknown", f"actor {ev_body['actor']} is not in the log")
            ev = parse_event(raw, now=datetime.fromisoformat(ev_body["recorded_at"]))
            changes = decide(ev, actor, ctx)
        except DomainError as exc:
            report.add(
                "log",
                "log_entries",
                index,
                f"event {ev_body['id']} does not replay: {exc.code}: {exc.message}",
            )
            return
        ctx.apply(changes)
        ctx.past[ev.id] = PastEvent(
            ev.id, EventType(ev.type), actor.id, ev.battery, ev.vin, changes.undo, False
        )


def verify(engine: Engine, log: Log, progress: Callable[[str, int], None] | None = None) -> Report:
    report = Report()
    tick = progress or (lambda _stage, _n: None)
    with engine.connect() as conn:
        head = conn.execute(select(T.log_head).where(T.log_head.c.id == 1)).one()
        report.log_size = int(head.size)
        verifiers = log.verifiers(conn)
        checkpoints = {int(r.size): r for r in conn.execute(select(T.checkpoints))}

        # pass 1: the log, its stored tree and its checkpoints; pass 3's replay rides along
        tracker = _RootTracker()
        entries_by_ref: dict[tuple[str, str], int] = {}
        ctx = _ReplayContext()
        expected = 0
        node_rows = conn.execution_options(stream_results=True, yield_per=BATCH).execute(
            select(T.log_nodes.c.idx, T.log_nodes.c.hash)
            .where(T.log_nodes.c.level == 0)
            .order_by(T.log_nodes.c.idx)
        )
        nodes = iter(node_rows)
        next_node = next(nodes, None)
        for row in _stream(conn, T.log_entries, T.log_entries.c.idx):
            idx = int(row["idx"])
            if idx != expected:
                report.add(
                    "missing", "log_entries", expected, f"log entries {expected}..{idx - 1} are missing"
                )
                expected = idx
            text = row["entry"].encode("utf-8")
            h = leaf_hash(text)
            while next_node is not None and next_node.idx < idx:
                next_node = next(nodes, None)
            if next_node is None or next_node.idx != idx:
                report.add("missing", "log_nodes", f"0/{idx}", "leaf hash missing from the stored tree")
            elif bytes(next_node.hash) != h:
                report.add(
                    "altered",
                    "log_entries",
                    idx,
                    "entry does not hash to the stored leaf (entry or tree altered)",
                )
            tracker.push(h)
            expected += 1
            try:
                entry = json.loads(text)
            except ValueError:
                report.add("altered", "log_entries", idx, "entry is not JSON")
                continue
            if canonical_entry(entry) != text:
                report.add("altered", "log_entries", idx, "entry is not in RFC 8785 canonical form")
            entries_by_ref[(row["kind"], row["ref"])] = idx
            _replay_entry(ctx, entry, idx, report)
            cp = checkpoints.get(tracker.size)
            if cp is not None:
                report.checkpoints += 1
                _check_checkpoint(cp, tracker.root(), verifiers, log.origin, report)
            if expected % BATCH == 0:
                tick("log", expected)
        node_rows.close()
        if tracker.size != report.log_size:
            report.add(
                "log", "log_head", 1, f"log head says {report.log_size} entries, the log holds {tracker.size}"
            )
        elif bytes(head.root) != tracker.root():
            report.add("log", "log_head", 1, "log head root does not match the entries")
        for size in checkpoints:
            if size > tracker.size:
                report.add(
                    "checkpoint", "checkpoints", size, "checkpoint is for more entries than the log holds"
                )

        # pass 2: rows against their entries
        seen: set[tuple[str, str]] = set()

        def check(kind: str, table: str, key: str, log_index: Any, expected_entry: dict[str, Any]) -> None:
            report.rows_checked += 1
            seen.add((kind, key))
            idx = entries_by_ref.get((kind, key))
            if idx is None:
                report.add(
                    "extra", table, key, "row has no entry in the log (inserted outside the registry?)"
                )
                return
            if log_index is not None and int(log_index) != idx:
                report.add("altered", table, key, f"row says log index {log_index}, the log has it at {idx}")
            text = conn.execute(select(T.log_entries.c.entry).where(T.log_entries.c.idx == idx)).scalar_one()
            logged = json.loads(text)
            differences = _diff(logged, json.loads(json.dumps(expected_entry, default=str)))
            if differences:
                report.add("altered", table, key, "; ".join(differences[:5]))

        for row in _stream(conn, T.events, T.events.c.id):
            check(
                "event",
                "events",
                row["id"],
                row["log_index"],
                {"kind": "event", "event": views.log_event(row)},
            )
            if report.rows_checked % BATCH == 0:
                tick("rows", report.rows_checked)
        codes_by_ent: dict[str, list[str]] = {}
        for r in conn.execute(select(T.manufacturer_codes)):
            codes_by_ent.setdefault(r.enterprise_id, []).append(r.code)
        for row in _stream(conn, T.enterprises, T.enterprises.c.id):
            logged_codes = None
            idx = entries_by_ref.get(("enterprise", row["id"]))
            if idx is not None:
                logged = json.loads(
                    conn.execute(select(T.log_entries.c.entry).where(T.log_entries.c.idx == idx)).scalar_one()
                )
                logged_codes = logged["enterprise"].get("manufacturer_codes")
            codes = codes_by_ent.get(row["id"], [])
            if logged_codes is not None and sorted(logged_codes) == sorted(codes):
                codes = list(logged_codes)
            check(
                "enterprise",
                "enterprises",
                row["id"],
                row["log_index"],
                {
                    "kind": "enterprise",
                    "enterprise": {
                        "id": row["id"],
                        "name": row["name"],
                        "roles": row["roles"],
                        "region": row["region"],
                        "manufacturer_codes": codes,
                        "network_of": row["network_of"],
                        "created_at": row["created_at"].isoformat(),
                    },
                },
            )
        for row in _stream(conn, T.licences, T.licences.c.id):
            idx = entries_by_ref.get(("licence", str(row["id"])))
            granted_by = None
            if idx is not None:
                logged = json.loads(
                    conn.execute(select(T.log_entries.c.entry).where(T.log_entries.c.idx == idx)).scalar_one()
                )
                granted_by = logged["licence"].get("granted_by")
            record = {
                k: row[k]
                for k in (
                    "enterprise_id",
                    "scope",
                    "valid_from",
                    "valid_to",
                    "region",
                    "revoked",
                    "created_at",
                )
            }
            record["revoked"] = bool(record["revoked"])
            check(
                "licence",
                "licences",
                str(row["id"]),
                row["log_index"],
                {
                    "kind": "licence",
                    "licence": {**views.jsonable(record), "id": row["id"], "granted_by": granted_by},
                },
            )
        for row in _stream(conn, T.api_keys, T.api_keys.c.id):
            record = {k: row[k] for k in ("id", "enterprise_id", "label", "created_at", "expires_at")}
            check(
                "key", "api_keys", row["id"], row["log_index"], {"kind": "key", "key": views.jsonable(record)}
            )
        tables = {"event": "events", "enterprise": "enterprises", "licence": "licences", "key": "api_keys"}
        for (kind, ref), idx in entries_by_ref.items():
            if kind in tables and (kind, ref) not in seen:
                report.add("missing", tables[kind], ref, f"logged at index {idx} but the row is gone")

        # pass 3: the state tables against the replayed history
        _compare_state(conn, ctx, report)
    return report


def _check_checkpoint(cp: Any, root: bytes, verifiers: list[Any], origin: str, report: Report) -> None:
    try:
        opened = open_checkpoint(cp.note, verifiers)
    except NoteError as exc:
        report.add("checkpoint", "checkpoints", cp.size, f"signature or format does not verify: {exc}")
        return
    if opened.size != int(cp.size) or opened.origin != origin:
        report.add("checkpoint", "checkpoints", cp.size, "signed note names another size or origin")
    if opened.root_hash != root or bytes(cp.root) != root:
        report.add("checkpoint", "checkpoints", cp.size, "signed root does not match the log's entries")


def _compare_state(conn: Connection, ctx: _ReplayContext, report: Report) -> None:
    seen: set[str] = set()
    for row in _stream(conn, T.batteries, T.batteries.c.code):
        code = row["code"]
        seen.add(code)
        report.batteries_checked += 1
        want = ctx.batteries.get(code)
        if want is None:
            report.add("extra", "batteries", code, "battery row has no history in the log")
            continue
        have = battery_to_dict(battery_from_dict(row))
        diffs = _diff(_comparable(battery_to_dict(want)), _comparable(have))
        if diffs:
            report.add("state", "batteries", code, "; ".join(diffs[:5]))
    for code in ctx.batteries:
        if code not in seen:
            report.add(
                "missing", "batteries", code, "the log's history registers this battery but its row is gone"
            )
    seen_v: set[str] = set()
    for row in _stream(conn, T.vehicles, T.vehicles.c.vin):
        seen_v.add(row["vin"])
        want_v = ctx.vehicles.get(row["vin"])
        if want_v is None:
            report.add("extra", "vehicles", row["vin"], "vehicle row has no history in the log")
            continue
        diffs = _diff(
            _comparable(vehicle_to_dict(want_v)), _comparable(vehicle_to_dict(vehicle_from_dict(row)))
        )
        if diffs:
            report.add("state", "vehicles", row["vin"], "; ".join(diffs[:5]))
    for vin in ctx.vehicles:
        if vin not in seen_v:
            report.add("missing", "vehicles", vin, "the log's history has this vehicle but its row is gone")
    stored = {Link(r.parent, r.child, r.kind) for r in conn.execute(select(T.battery_links))}
    for ln in sorted(stored - ctx.links, key=lambda x: (x.parent, x.child)):
        report.add(
            "extra", "battery_links", f"{ln.parent}>{ln.child}", f"{ln.kind} link not in the log's history"
        )
    for ln in sorted(ctx.links - stored, key=lambda x: (x.parent, x.child)):
        report.add(
            "missing", "battery_links", f"{ln.parent}>{ln.child}", f"{ln.kind} link from the log is gone"
        )
    _compare_balances(conn, ctx, report)
    _compare_fleet(conn, ctx, report)


def _compare_fleet(conn: Connection, ctx: _ReplayContext, report: Report) -> None:
    """The fleet rollup against the replayed batteries (``batterytrace db rebuild-fleet`` recounts
    it from the batteries table)."""
    replayed = fleet.of_states(ctx.batteries.values())
    for key, want, have in fleet.differences(replayed, fleet.stored(conn)):
        report.add(
            "state",
            "fleet_rollup",
            fleet.key_text(key),
            f"batteries/mg/with mass: the log gives {want[0]}/{want[1]}/{want[2]}, "
            f"the row has {have[0]}/{have[1]}/{have[2]}",
        )


def _compare_balances(conn: Connection, ctx: _ReplayContext, report: Report) -> None:
    """Recyclers' material balances against the recovered and declared amounts in the log."""
    stored = {
        (r.recycler, r.material): (int(r.recovered_mg), int(r.declared_mg))
        for r in conn.execute(select(T.material_balances))
    }
    replayed = {key: (rec, dec) for key, (rec, dec) in ctx.balances.items()}
    for key in sorted(set(stored) | set(replayed)):
        have, want = stored.get(key, (0, 0)), replayed.get(key, (0, 0))
        if have != want:
            report.add(
                "state",
                "material_balances",
                "/".join(key),
                f"recovered/declared mg: the log gives {want[0]}/{want[1]}, the row has {have[0]}/{have[1]}",
            )


def _comparable(d: dict[str, Any]) -> dict[str, Any]:
    """Times compared as instants (the database keeps UTC, the replay keeps the reported offset)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, str) and len(v) >= 19 and v[4] == "-" and v[10] == "T":
            try:
                out[k] = datetime.fromisoformat(v).timestamp()
                continue
            except ValueError:
                pass
        out[k] = v
    return out
