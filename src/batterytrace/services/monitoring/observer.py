"""Monitoring of accepted events, inside the transaction that records them.

For each committed batch this module

* adds the batch's events to the report rollups (statistics, producer responsibility,
  recovery), and takes back what a retracted event had added;
* raises the alerts an event shows at once: a late report, metal recovered beyond what the
  battery contained, a scrapped vehicle with its battery missing, a recycler below the recovery
  thresholds;
* keeps a *watch* per running deadline (shipment in transit, retired battery not yet with a
  licensed facility, battery still in a scrapped vehicle), derived from each touched battery's
  state after the batch; a watch whose deadline has passed raises its alert, and a watch whose
  condition clears closes it;
* closes refusal alerts whose condition cleared (the battery reached a licensed facility; the
  party that was refused now holds the battery).

The work per batch is a fixed number of bulk statements, whatever the batch's size.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from string import Formatter
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, String, and_, case, cast, desc, func, literal, select

from batterytrace.domain.battery_code import parse_battery_code
from batterytrace.domain.model import BatteryState, Enterprise, Role, Stage
from batterytrace.domain.policy import METALS, reporting_deadline_wd
from batterytrace.domain.snapshots import battery_from_dict
from batterytrace.domain.workdays import CHINA_STANDARD_TIME
from batterytrace.services.monitoring import rules as R
from batterytrace.services.monitoring.store import (
    NewAlert,
    close_alerts,
    delete_watches,
    event_evidence,
    grams,
    insert_watches,
    load_watches,
    open_alerts,
    update_watches,
)
from batterytrace.store import repo
from batterytrace.store import tables as T
from batterytrace.store.counters import add_counts

if TYPE_CHECKING:
    from batterytrace.domain.policy import Profile
    from batterytrace.services.context import BatchContext

STAT_METRICS = ("registered", "installed", "retired", "collected", "repurposed", "dismantled", "recycled")
#: Producer responsibility: the enterprise that registered the code, and the automaker that
#: installed it in a vehicle.
RESPONSIBILITIES = ("producer", "automaker")
_FINAL_ARRIVALS = frozenset({"recycled", "repurposed", "dismantled"})
#: Events that change neither stage, holder, transit nor vehicle: no deadline watch can change.
_WATCH_NEUTRAL = frozenset({"manufactured", "assembled", "maintained", "graded"})
_HOLDER_MOVES = frozenset({"received", "removed", "dismantled"})


def stamp(moment: datetime) -> str:
    """A moment as a fixed UTC text, for condition keys."""
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


#: Event types whose monitoring reads the batteries' states before the event; for the others only
#: the codes they touched are needed (parsing the states is the costliest part of an event).
NEEDS_BEFORE = frozenset({"installed", "retired", "received", "repurposed", "dismantled", "recycled"})


def befores(row: dict[str, Any]) -> dict[str, BatteryState | None]:
    """The batteries an event changed, as they were just before it (from its undo record); for an
    event type not in ``NEEDS_BEFORE``, only their codes (each mapped to None)."""
    undo = row.get("undo") or {}
    changed = undo.get("batteries") or {}
    if row["type"] not in NEEDS_BEFORE:
        return dict.fromkeys(changed)
    return {code: (battery_from_dict(dict(before)) if before else None) for code, before in changed.items()}


def materials_of(conn: Connection, state: BatteryState) -> dict[str, float]:
    """Material content declared for a battery: its own ``materials`` at manufacture or, for a
    second-life product without its own, the sum over the batteries it was made from."""
    own = state.spec.get("materials") if state.spec else None
    if own:
        return {k: float(v) for k, v in own.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    if not state.second_life:
        return {}
    links = T.battery_links
    origins = [
        r.parent
        for r in conn.execute(
            select(links.c.parent).where(and_(links.c.child == state.code, links.c.kind == "origin"))
        )
    ]
    total: dict[str, float] = defaultdict(float)
    for origin in repo.load_batteries(conn, origins).values():
        for k, v in (origin.spec.get("materials") or {}).items():
            if isinstance(v, int | float) and not isinstance(v, bool):
                total[k] += float(v)
    return dict(total)


def reporting_days(profile: Profile, event_type: str, roles: frozenset[Role]) -> int | None:
    """Working days to report an event for an enterprise with these roles: the longest deadline
    among its roles (it may be reporting in any of them); None when no role has one."""
    allowed = [reporting_deadline_wd(profile, event_type, role.value) for role in roles]
    return max((n for n in allowed if n is not None), default=None)


class Deltas:
    """Rollup changes of one batch, added up before they are written."""

    def __init__(self) -> None:
        self.stats: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0])
        self.producers: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        self.recovery: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0, 0, 0])

    def write(self, conn: Connection) -> None:
        add_counts(
            conn, T.stat_rollup, ("year", "province", "chemistry", "producer", "level", "metric"), self.stats
        )
        add_counts(conn, T.producer_rollup, ("enterprise_id", "responsibility", "year"), self.producers)
        add_counts(conn, T.recovery_rollup, ("recycler", "year", "metal"), self.recovery)


class Contributions:
    """What one event adds to the rollups. ``sign`` -1 takes back a retracted event's share: the
    result depends only on the event, the batteries' states before it and its actor, all of which
    are kept, so the retraction subtracts exactly what was added."""

    def __init__(
        self,
        conn: Connection,
        profile: Profile,
        deltas: Deltas,
        enterprise: Callable[[str], Enterprise | None],
    ) -> None:
        self.conn = conn
        self.profile = profile
        self.d = deltas
        self.enterprise = enterprise
        #: (recycler, year) whose recovery changed
        self.recyclers: set[tuple[str, int]] = set()

    def licensed(self, enterprise_id: str | None, moment: datetime) -> bool:
        if enterprise_id is None:
            return False
        ent = self.enterprise(enterprise_id)
        return ent is not None and ent.licensed_any(R.cst_day(moment))

    def add(self, row: dict[str, Any], sign: int, before: dict[str, BatteryState | None]) -> None:
        kind = row["type"]
        when: datetime = row["time_utc"]
        year = R.cst_year(when)
        province = str(row["region"])[:2]
        code = row.get("battery")
        data = row.get("data") or {}
        actor = row["actor"]

        def stat(metric: str, b: BatteryState, mass_kg: Any = None) -> None:
            d = self.d.stats[(year, province, b.chemistry, b.producer, b.level, metric)]
            d[0] += sign
            d[1] += sign * grams(b.mass_kg if mass_kg is None else mass_kg)

        if kind == "manufactured" and code:
            parsed = parse_battery_code(code)
            d = self.d.stats[(year, province, parsed.chemistry, actor, parsed.level, "registered")]
            d[0] += sign
            d[1] += sign * grams(data.get("mass_kg"))
            return
        b = before.get(code) if code else None
        if b is None:
            return
        if kind == "installed":
            if b.stage == Stage.NEW:
                stat("installed", b)
        elif kind == "retired":
            stat("retired", b)
            self._producers(b, year, sign, retired=True, mass_g=grams(b.mass_kg))
            if self.licensed(actor, when):
                stat("collected", b)
                self._producers(b, year, sign, in_time=True)
        elif kind == "received":
            if (
                b.stage == Stage.RETIRED
                and b.retired_at is not None
                and not self.licensed(b.holder, when)
                and self.licensed(actor, when)
            ):
                stat("collected", b)
                due, _ = R.deadline(b.retired_at, self.profile.collection_deadline_wd)
                self._producers(b, R.cst_year(b.retired_at), sign, in_time=when <= due, late=when > due)
        elif kind == "repurposed":
            stat("repurposed", b)
        elif kind == "dismantled":
            stat("dismantled", b)
            for child, cb in before.items():
                if child != code and cb is not None:
                    stat("retired", cb)
                    stat("collected", cb)
        elif kind == "recycled":
            stat("recycled", b, mass_kg=data.get("mass_kg"))
            self._recovery(row, b, sign, year)

    def _producers(
        self,
        b: BatteryState,
        year: int,
        sign: int,
        *,
        retired: bool = False,
        mass_g: int = 0,
        in_time: bool = False,
        late: bool = False,
    ) -> None:
        parties = [(b.producer, "producer")]
        if b.installer:
            parties.append((b.installer, "automaker"))
        for enterprise_id, responsibility in parties:
            d = self.d.producers[(enterprise_id, responsibility, year)]
            d[0] += sign * retired
            d[1] += sign * mass_g
            d[2] += sign * in_time
            d[3] += sign * late

    def _recovery(
        self, row: dict[str, Any], b: BatteryState, sign: int, year: int
    ) -> dict[str, tuple[float, float]]:
        data = row.get("data") or {}
        recycler = row["actor"]
        recovered = {
            k: float(v)
            for k, v in (data.get("recovered") or {}).items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        contained = materials_of(self.conn, b)
        star = self.d.recovery[(recycler, year, "*")]
        star[0] += sign
        star[1] += sign * grams(data.get("mass_kg"))
        star[2] += sign * sum(grams(v) for v in recovered.values())
        excess: dict[str, tuple[float, float]] = {}
        for metal in METALS:
            key = f"{metal}_kg"
            got = recovered.get(key, 0.0)
            d = self.d.recovery[(recycler, year, metal)]
            if key in contained:
                d[0] += sign
                d[1] += sign * grams(contained[key])
                d[2] += sign * grams(got)
                if grams(got) > grams(contained[key]):
                    excess[metal] = (got, contained[key])
            else:
                d[3] += sign * grams(got)
        self.recyclers.add((recycler, year))
        return excess

    def mass_balance(self, row: dict[str, Any], b: BatteryState) -> dict[str, tuple[float, float]]:
        """Metals of a recycled event recovered beyond the battery's declared content."""
        data = row.get("data") or {}
        contained = materials_of(self.conn, b)
        out: dict[str, tuple[float, float]] = {}
        for metal in METALS:
            key = f"{metal}_kg"
            got = (data.get("recovered") or {}).get(key)
            if key in contained and isinstance(got, int | float) and grams(got) > grams(contained[key]):
                out[metal] = (float(got), contained[key])
        return out


class EventBatch:
    """Monitoring of one committed batch of accepted events."""

    def __init__(
        self, profile: Profile, conn: Connection, ctx: BatchContext, rows: list[dict[str, Any]]
    ) -> None:
        self.profile = profile
        self.conn = conn
        self.ctx = ctx
        self.rows = rows
        self.now: datetime = rows[0]["recorded_at"]
        self.deltas = Deltas()
        self.contrib = Contributions(conn, profile, self.deltas, ctx.enterprise)
        self.new_alerts: list[NewAlert] = []
        self.close_reasons: dict[str, str] = {}
        self.clearing: dict[str, dict[str, Any]] = {}
        #: batteries whose watches may change (their stage, holder, transit or vehicle changed)
        self.touched: set[str] = set()
        #: batteries whose holder may have changed (a refused party may now hold them)
        self.holder_moves: set[str] = set()
        self.last_row: dict[str, dict[str, Any]] = {}
        self.latest: dict[tuple[str, str], dict[str, Any]] = {}  # (code, type) -> last row in batch
        self.scrapped: dict[str, dict[str, Any]] = {}  # vin -> vehicle_scrapped row
        self.vins: set[str] = set()
        #: code -> the event that brought the waste battery to a licensed facility
        self.arrivals: dict[str, dict[str, Any]] = {}
        self.recycled_rows: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
        self.days: dict[tuple[str, frozenset[Role]], int | None] = {}

    # --- helpers ------------------------------------------------------------------------------

    def close(self, key: str, reason: str, clearing: dict[str, Any] | None = None) -> None:
        self.close_reasons[key] = reason
        if clearing is not None:
            self.clearing[key] = event_evidence(clearing, "cleared")

    def licensed(self, enterprise_id: str | None, moment: datetime) -> bool:
        return self.contrib.licensed(enterprise_id, moment)

    def province_of(self, enterprise_id: str | None) -> str | None:
        ent = self.ctx.enterprise(enterprise_id) if enterprise_id else None
        return ent.region[:2] if ent is not None else None

    def latest_event(self, code: str, kind: str) -> dict[str, Any] | None:
        found = self.latest.get((code, kind))
        if found is not None:
            return found
        e = T.events
        row = self.conn.execute(
            select(e)
            .where(and_(e.c.battery == code, e.c.type == kind))
            .order_by(desc(e.c.time_utc), desc(e.c.log_index))
            .limit(1)
        ).first()
        return dict(row._mapping) if row is not None else None

    def latest_vehicle_event(self, vin: str, kind: str) -> dict[str, Any] | None:
        found = self.scrapped.get(vin) if kind == "vehicle_scrapped" else None
        if found is not None:
            return found
        e = T.events
        row = self.conn.execute(
            select(e)
            .where(and_(e.c.vin == vin, e.c.type == kind))
            .order_by(desc(e.c.time_utc), desc(e.c.log_index))
            .limit(1)
        ).first()
        return dict(row._mapping) if row is not None else None

    # --- per event ----------------------------------------------------------------------------

    def run(self) -> None:
        for row in self.rows:
            self.event(row)
        self.finish()

    def event(self, row: dict[str, Any]) -> None:
        kind = row["type"]
        if kind == "retracted":
            self.retraction(row)
            return
        before = befores(row)
        self.late_report(row)
        self.contrib.add(row, +1, before)
        code = row.get("battery")
        if kind not in _WATCH_NEUTRAL:
            for touched in before:
                self.touched.add(touched)
                self.last_row[touched] = row
        if kind in _HOLDER_MOVES:
            self.holder_moves.update(before)
        if code:
            self.latest[(code, kind)] = row
        if kind == "vehicle_scrapped" and row.get("vin"):
            self.scrapped[row["vin"]] = row
            self.vins.add(row["vin"])
        b = before.get(code) if code else None
        if code is None or b is None:
            return
        waste_received = kind == "received" and b.stage == Stage.RETIRED
        if kind in _FINAL_ARRIVALS or (waste_received and self.licensed(row["actor"], row["time_utc"])):
            self.arrivals[code] = row
        if kind == "recycled":
            self.recycled_rows[(row["actor"], R.cst_year(row["time_utc"]))].append(row)
            excess = self.contrib.mass_balance(row, b)
            if excess:
                self.mass_balance_alert(row, b, excess)

    def retraction(self, row: dict[str, Any]) -> None:
        target_id = (row.get("data") or {}).get("event")
        target = repo.events_by_id(self.conn, [target_id]).get(target_id) if target_id else None
        if target is None:
            return
        before = befores(target)
        self.contrib.add(target, -1, before)
        for code in before:
            self.touched.add(code)
            self.holder_moves.add(code)
            self.last_row[code] = row
        if target.get("vin"):
            self.vins.add(target["vin"])
            if target["type"] == "vehicle_scrapped":
                self.close(
                    f"{R.SCRAPPED_VEHICLE_BATTERY}:{target['vin']}:none",
                    f"the scrapping of vehicle {target['vin']} was retracted",
                    row,
                )
        self.close(f"{R.LATE_REPORT}:{target_id}", f"event {target_id} was retracted", row)
        if target.get("battery"):
            self.close(
                f"{R.MASS_BALANCE}:{target['battery']}:{target_id}",
                f"the recycling report {target_id} was retracted",
                row,
            )

    def late_report(self, row: dict[str, Any]) -> None:
        actor = self.ctx.enterprise(row["actor"])
        if actor is None:
            return
        key = (row["type"], actor.roles)
        if key not in self.days:
            self.days[key] = reporting_days(self.profile, row["type"], actor.roles)
        days = self.days[key]
        if days is None:
            return
        due, basis = R.deadline(row["time_utc"], days)
        recorded: datetime = row["recorded_at"]
        if recorded <= due:
            return
        subject = row.get("battery") or row.get("vin")
        self.new_alerts.append(
            NewAlert(
                rule=R.LATE_REPORT,
                key=f"{R.LATE_REPORT}:{row['id']}",
                since=row["time_utc"],
                deadline=due,
                deadline_basis=basis,
                battery=row.get("battery"),
                vin=row.get("vin"),
                enterprise_id=actor.id,
                province=str(row["region"])[:2],
                detail=(
                    f"'{row['type']}' of {subject} at {row['time_text']} was recorded on "
                    f"{recorded.isoformat()}, after its deadline of {days} working days "
                    f"(end of {R.cst_day(due).isoformat()}, China Standard Time)"
                ),
                evidence=[event_evidence(row)],
            )
        )

    def mass_balance_alert(
        self, row: dict[str, Any], b: BatteryState, excess: dict[str, tuple[float, float]]
    ) -> None:
        code = row["battery"]
        parts = ", ".join(
            f"{m} {got:g} kg recovered of {had:g} kg contained" for m, (got, had) in excess.items()
        )
        evidence = [event_evidence(row)]
        made = self.latest_event(code, "manufactured")
        if made is not None:
            evidence.insert(0, event_evidence(made, "declared_content"))
        self.new_alerts.append(
            NewAlert(
                rule=R.MASS_BALANCE,
                key=f"{R.MASS_BALANCE}:{code}:{row['id']}",
                since=row["time_utc"],
                battery=code,
                enterprise_id=row["actor"],
                counterparty=b.producer,
                province=str(row["region"])[:2],
                detail=f"recycling of battery {code} reports more metal than it contained: {parts}",
                evidence=evidence,
            )
        )

    # --- after the batch ---------------------------------------------------------------------

    def finish(self) -> None:
        self.deltas.write(self.conn)
        vin_codes: dict[str, list[str]] = defaultdict(list)
        if self.vins:
            b = T.batteries
            for part in repo.chunks(sorted(self.vins)):
                for r in self.conn.execute(select(b.c.code, b.c.vin).where(b.c.vin.in_(part))):
                    vin_codes[r.vin].append(r.code)
                    self.touched.add(r.code)
        prefetch = getattr(self.ctx, "prefetch", None)
        if prefetch is not None:
            prefetch(codes=self.touched)
        states = {code: self.ctx.battery(code) for code in sorted(self.touched)}
        if prefetch is not None:
            prefetch(vins={st.vin for st in states.values() if st is not None and st.vin})
        existing = load_watches(self.conn, states)
        desired: dict[tuple[str, str], dict[str, Any]] = {}
        for code, state in states.items():
            if state is not None:
                desired.update(self.desired_watches(code, state, existing))
        self.apply_watches(existing, desired, states)
        self.scrapped_vehicles(vin_codes, states)
        self.clear_refusal_alerts(states)
        self.recovery_alerts()
        close_alerts(self.conn, self.close_reasons, self.now, self.close_reasons, self.clearing)
        open_alerts(self.conn, self.new_alerts, self.now)

    def watch(
        self,
        code: str,
        rule: str,
        key: str,
        since: datetime,
        working_days: int,
        state: BatteryState,
        *,
        enterprise_id: str | None,
        counterparty: str | None,
        cause: dict[str, Any] | None,
        vin: str | None = None,
    ) -> dict[str, Any]:
        due, basis = R.deadline(since, working_days)
        province = str(cause["region"])[:2] if cause else self.province_of(enterprise_id)
        return {
            "battery": code,
            "rule": rule,
            "condition_key": key,
            "vin": vin,
            "since": since,
            "deadline": due,
            "deadline_basis": basis,
            "enterprise_id": enterprise_id,
            "counterparty": counterparty,
            "producer": state.producer,
            "installer": state.installer,
            "province": province,
            "evidence": [event_evidence(cause)] if cause else [],
            "alerted": False,
        }

    def desired_watches(
        self, code: str, st: BatteryState, existing: dict[tuple[str, str], dict[str, Any]]
    ) -> dict[tuple[str, str], dict[str, Any]]:
        out: dict[tuple[str, str], dict[str, Any]] = {}
        p = self.profile
        # a shipment must be received within transfer_deadline_wd
        k = (code, R.SHIPMENT_OVERDUE)
        if st.in_transit_to is not None:
            ship = self.latest.get((code, "shipped"))
            if ship is None and k in existing:
                out[k] = {**existing[k], "counterparty": st.in_transit_to}
            else:
                ship = ship or self.latest_event(code, "shipped")
                if ship is not None:
                    out[k] = self.watch(
                        code,
                        R.SHIPMENT_OVERDUE,
                        f"{R.SHIPMENT_OVERDUE}:{code}:{ship['id']}",
                        ship["time_utc"],
                        p.transfer_deadline_wd,
                        st,
                        enterprise_id=ship["actor"],
                        counterparty=st.in_transit_to,
                        cause=ship,
                    )
        # a retired battery must be with a licensed facility within collection_deadline_wd
        k = (code, R.COLLECTION_OVERDUE)
        if st.stage == Stage.RETIRED and st.retired_at is not None:
            if not self.licensed(st.holder, st.last_event_time):
                key = f"{R.COLLECTION_OVERDUE}:{code}:{stamp(st.retired_at)}"
                if k in existing and existing[k]["condition_key"] == key:
                    out[k] = {**existing[k], "enterprise_id": st.holder}
                else:
                    out[k] = self.watch(
                        code,
                        R.COLLECTION_OVERDUE,
                        key,
                        st.retired_at,
                        p.collection_deadline_wd,
                        st,
                        enterprise_id=st.holder,
                        counterparty=st.installer or st.producer,
                        cause=self.latest_event(code, "retired"),
                    )
        elif st.stage == Stage.MISSING and k in existing:
            out[k] = existing[k]
        # a scrapped vehicle's battery must be removed and collected within scrapped_vehicle_deadline_wd
        k = (code, R.SCRAPPED_VEHICLE_BATTERY)
        vehicle = self.ctx.vehicle(st.vin) if st.vin else None
        if (
            st.stage == Stage.INSTALLED
            and vehicle is not None
            and vehicle.status == "scrapped"
            and vehicle.scrapped_at is not None
        ):
            key = f"{R.SCRAPPED_VEHICLE_BATTERY}:{code}:{vehicle.vin}"
            if k in existing and existing[k]["condition_key"] == key:
                out[k] = existing[k]
            else:
                out[k] = self.watch(
                    code,
                    R.SCRAPPED_VEHICLE_BATTERY,
                    key,
                    vehicle.scrapped_at,
                    p.scrapped_vehicle_deadline_wd,
                    st,
                    enterprise_id=vehicle.scrapped_by,
                    counterparty=st.installer or st.producer,
                    cause=self.latest_vehicle_event(vehicle.vin, "vehicle_scrapped"),
                    vin=vehicle.vin,
                )
        elif (
            k in existing
            and st.stage not in (Stage.INSTALLED, Stage.MISSING)
            and not st.is_final
            and not self.licensed(st.holder, st.last_event_time)
        ):
            out[k] = {**existing[k], "enterprise_id": st.holder}
        return out

    def apply_watches(
        self,
        existing: dict[tuple[str, str], dict[str, Any]],
        desired: dict[tuple[str, str], dict[str, Any]],
        states: dict[str, BatteryState | None],
    ) -> None:
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        deletes: list[tuple[str, str]] = []
        for k, w in desired.items():
            old = existing.get(k)
            if old is not None and old["condition_key"] == w["condition_key"]:
                if (old["enterprise_id"], old["counterparty"]) != (w["enterprise_id"], w["counterparty"]):
                    updates.append(w)
                continue
            if old is not None:
                deletes.append(k)
                if old["alerted"]:
                    self.close(
                        old["condition_key"], "a newer condition replaced this one", self.last_row.get(k[0])
                    )
            w["alerted"] = w["deadline"] < self.now
            if w["alerted"]:
                self.new_alerts.append(watch_alert(w, self.profile))
            inserts.append(w)
        for k, old in existing.items():
            if k in desired:
                continue
            deletes.append(k)
            if old["alerted"]:
                self.close(
                    old["condition_key"], cleared_reason(old, states.get(k[0])), self.last_row.get(k[0])
                )
        delete_watches(self.conn, deletes)
        insert_watches(self.conn, inserts)
        update_watches(self.conn, updates, ("enterprise_id", "counterparty"))

    def scrapped_vehicles(
        self, vin_codes: dict[str, list[str]], states: dict[str, BatteryState | None]
    ) -> None:
        for vin, row in self.scrapped.items():
            if vin_codes.get(vin):
                continue
            vehicle = self.ctx.vehicle(vin)
            self.new_alerts.append(
                NewAlert(
                    rule=R.SCRAPPED_VEHICLE_BATTERY,
                    key=f"{R.SCRAPPED_VEHICLE_BATTERY}:{vin}:none",
                    since=row["time_utc"],
                    vin=vin,
                    enterprise_id=row["actor"],
                    counterparty=vehicle.automaker if vehicle is not None else None,
                    province=str(row["region"])[:2],
                    detail=(
                        f"vehicle {vin} was scrapped by {row['actor']} with no battery recorded in it: "
                        "its traction battery is missing from the registry"
                    ),
                    evidence=[event_evidence(row)],
                )
            )
        for code, st in states.items():
            if st is None or st.vin is None:
                continue
            vehicle = self.ctx.vehicle(st.vin)
            key = f"{R.SCRAPPED_VEHICLE_BATTERY}:{st.vin}:{code}:missing"
            if vehicle is not None and vehicle.status == "scrapped" and st.stage == Stage.MISSING:
                cause = self.scrapped.get(st.vin) or self.latest_event(code, "reported_missing")
                self.new_alerts.append(
                    NewAlert(
                        rule=R.SCRAPPED_VEHICLE_BATTERY,
                        key=key,
                        since=vehicle.scrapped_at or self.now,
                        battery=code,
                        vin=st.vin,
                        enterprise_id=vehicle.scrapped_by,
                        counterparty=st.installer or st.producer,
                        province=str(cause["region"])[:2] if cause else None,
                        detail=f"vehicle {st.vin} was scrapped while its battery {code} is reported missing",
                        evidence=[event_evidence(cause)] if cause else [],
                    )
                )
            elif st.stage != Stage.MISSING and (
                st.vin in self.vins or (vehicle is not None and vehicle.status == "scrapped")
            ):
                self.close(key, f"battery {code} is no longer missing", self.last_row.get(code))

    def clear_refusal_alerts(self, states: dict[str, BatteryState | None]) -> None:
        candidates = sorted(set(self.arrivals) | self.holder_moves)
        if not candidates:
            return
        a = T.alerts
        found = []
        for part in repo.chunks(candidates):
            found += list(
                self.conn.execute(
                    select(a.c.rule, a.c.battery, a.c.enterprise_id, a.c.condition_key).where(
                        and_(
                            a.c.battery.in_(part),
                            a.c.rule.in_((R.UNLICENSED_RECEIVER, R.SUSPECTED_CLONE)),
                            a.c.condition_key.is_not(None),
                        )
                    )
                )
            )
        for r in found:
            st = states.get(r.battery) if r.battery in states else self.ctx.battery(r.battery)
            if r.rule == R.UNLICENSED_RECEIVER and r.battery in self.arrivals:
                row = self.arrivals[r.battery]
                self.close(
                    r.condition_key,
                    f"battery {r.battery} reached licensed facility {row['actor']} ('{row['type']}')",
                    row,
                )
            elif r.rule == R.SUSPECTED_CLONE and st is not None and st.holder == r.enterprise_id:
                self.close(
                    r.condition_key,
                    f"{r.enterprise_id} now holds battery {r.battery}: the refused attempt came before "
                    "the battery reached it",
                    self.last_row.get(r.battery),
                )

    def recovery_alerts(self) -> None:
        if not self.contrib.recyclers:
            return
        figures = recovery_figures(self.conn, self.contrib.recyclers)
        thresholds = self.profile.recovery_thresholds
        for recycler, year in sorted(self.contrib.recyclers):
            metals = figures.get((recycler, year), {})
            rates = {m: metals[m][1] / metals[m][0] for m in thresholds if m in metals and metals[m][0] > 0}
            below = {m: r for m, r in rates.items() if r < thresholds[m]}
            key = f"{R.RECOVERY_BELOW_THRESHOLD}:{recycler}:{year}"
            if not below:
                self.close(key, f"recovery by {recycler} in {year} is back at or above the thresholds")
                continue
            shown = ", ".join(
                f"{m} {r:.1%} (threshold {thresholds[m]:.0%})" for m, r in sorted(below.items())
            )
            evidence: list[dict[str, Any]] = [
                {
                    "relation": "figures",
                    "recycler": recycler,
                    "year": year,
                    "profile": self.profile.name,
                    "rates": {m: round(r, 6) for m, r in rates.items()},
                    "thresholds": dict(thresholds),
                    "contained_kg": {m: metals[m][0] / 1000 for m in metals},
                    "recovered_kg": {m: metals[m][1] / 1000 for m in metals},
                }
            ]
            evidence += [event_evidence(r) for r in self.recycled_rows.get((recycler, year), [])[-20:]]
            self.new_alerts.append(
                NewAlert(
                    rule=R.RECOVERY_BELOW_THRESHOLD,
                    key=key,
                    since=datetime(year, 1, 1, tzinfo=CHINA_STANDARD_TIME),
                    enterprise_id=recycler,
                    province=self.province_of(recycler),
                    detail=f"recycler {recycler} recovered less than the {self.profile.name} thresholds in {year}: {shown}",
                    evidence=evidence,
                    merge="refresh",
                )
            )


def recovery_figures(
    conn: Connection, keys: set[tuple[str, int]]
) -> dict[tuple[str, int], dict[str, tuple[int, int]]]:
    """(recycler, year) -> metal -> (grams contained, grams recovered)."""
    r = T.recovery_rollup
    out: dict[tuple[str, int], dict[str, tuple[int, int]]] = defaultdict(dict)
    for part in repo.chunks(sorted(keys), 200):
        stmt = select(r).where(and_(repo.pairs_in(r.c.recycler, r.c.year, part), r.c.metal != "*"))
        for row in conn.execute(stmt):
            out[(row.recycler, row.year)][row.metal] = (int(row.contained_g), int(row.recovered_g))
    return out


#: The detail of an alert raised by a watch, by rule: fields of the watch in braces, ``{days}``
#: the rule's working days. The same text is written by :func:`watch_alert` and, in SQL, by the
#: re-scan (:func:`watch_detail_sql`); the dates are the alert's ``since`` and ``deadline``.
WATCH_DETAILS = {
    R.SHIPMENT_OVERDUE: (
        "battery {battery} was shipped by {enterprise_id} to {counterparty} and not received within "
        "{days} working days"
    ),
    R.COLLECTION_OVERDUE: (
        "retired battery {battery} is not with a licensed facility within {days} working days of its "
        "retirement; it is held by {enterprise_id}"
    ),
    R.SCRAPPED_VEHICLE_BATTERY: (
        "vehicle {vin} was scrapped and its battery {battery} was not removed and collected by a licensed "
        "facility within {days} working days"
    ),
}


def watch_days(rule: str, profile: Profile) -> int:
    if rule == R.SHIPMENT_OVERDUE:
        return profile.transfer_deadline_wd
    if rule == R.COLLECTION_OVERDUE:
        return profile.collection_deadline_wd
    return profile.scrapped_vehicle_deadline_wd


def watch_alert(w: dict[str, Any], profile: Profile) -> NewAlert:
    """The alert a watch raises when its deadline passes (on the write path)."""
    rule = w["rule"]
    values = {
        k: ("?" if w.get(k) is None else w[k]) for k in ("battery", "vin", "enterprise_id", "counterparty")
    }
    detail = WATCH_DETAILS[rule].format(days=watch_days(rule, profile), **values)
    return NewAlert(
        rule=rule,
        key=w["condition_key"],
        since=w["since"],
        deadline=w["deadline"],
        deadline_basis=w["deadline_basis"],
        battery=w["battery"],
        vin=w["vin"],
        enterprise_id=w["enterprise_id"],
        counterparty=w["counterparty"],
        province=w["province"],
        detail=detail,
        evidence=list(w["evidence"]),
    )


def watch_detail_sql(profile: Profile) -> Any:
    """The same details as :func:`watch_alert`, as one SQL expression over ``alert_watches``."""
    w = T.alert_watches
    whens = []
    for rule, template in WATCH_DETAILS.items():
        expr: Any = None
        for text, field, _, _ in Formatter().parse(template):
            parts: list[Any] = []
            if text:
                parts.append(cast(literal(text), String))
            if field == "days":
                parts.append(cast(literal(str(watch_days(rule, profile))), String))
            elif field:
                parts.append(func.coalesce(w.c[field], "?"))
            for part in parts:
                expr = part if expr is None else expr + part
        whens.append((w.c.rule == rule, expr))
    return case(*whens, else_=cast(literal(""), String))


def cleared_reason(w: dict[str, Any], st: BatteryState | None) -> str:
    code = w["battery"]
    if st is None:
        return f"battery {code} is no longer registered (its registration was retracted)"
    if w["rule"] == R.SHIPMENT_OVERDUE:
        if st.in_transit_to is None and st.holder == w["counterparty"]:
            return f"battery {code} was received by {st.holder}"
        return f"battery {code} is no longer in transit to {w['counterparty']}"
    if st.is_final:
        return f"battery {code} is {st.stage.value}"
    if w["rule"] == R.COLLECTION_OVERDUE:
        if st.stage == Stage.RETIRED:
            return f"battery {code} is with licensed facility {st.holder}"
        return f"battery {code} is no longer retired (it is {st.stage.value})"
    if st.stage == Stage.INSTALLED:
        return f"the scrapping of vehicle {w['vin']} was retracted"
    if st.stage == Stage.MISSING:
        return f"battery {code} is reported missing (see the missing-battery alert)"
    return f"battery {code} was removed and is with licensed facility {st.holder}"
