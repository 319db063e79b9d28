"""Where the regulator dashboard gets its figures: one adapter, so the pages do not care whether
a figure comes from the monitoring and reporting services or is computed here from the
registry's own tables.

The figures computed here are exact counts and sums over the current-state table (one row per
battery): batteries and tonnes by stage, by year of registration, retirement and end of life, by
the province of the enterprise holding them; recovery from the ``recycled`` events against the
materials declared at manufacture; a retirement forecast from the fleet still in use and the
policy profile's lifetime distributions. What needs event timing (alerts, "in time") comes from
the monitoring service only.

Results are kept per registry until the log grows: every accepted change appends to the log, so
its size is an exact version number of the data.
"""

from __future__ import annotations

import importlib
import threading
import weakref
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, extract, func, select

from batterytrace.domain.model import FINAL_STAGES, Scope, Stage
from batterytrace.domain.policy import get_profile, load_profiles
from batterytrace.domain.regions import provinces
from batterytrace.services.registry import Caller, Registry
from batterytrace.store import repo
from batterytrace.store import tables as T
from batterytrace.store.db import read_transaction

FORECAST_TO = 2035
METALS = ("li", "co", "ni", "mn", "cu")
#: Stages in which a battery is still in use or in stock (the fleet the forecast ages).
ACTIVE_STAGES = (Stage.NEW.value, Stage.INSTALLED.value, Stage.REMOVED.value)
#: Stages only a licensed facility can have brought a battery to.
LICENSED_END_STAGES = (Stage.REPURPOSED.value, Stage.DISMANTLED.value, Stage.RECYCLED.value)
#: Recovery comparisons: the policy profiles shown as thresholds.
RECOVERY_PROFILES = ("CN-2026", "EU-2027", "EU-2031")


@dataclass(frozen=True)
class Headline:
    batteries: int
    tonnes: float
    by_stage: Mapping[str, int]
    tonnes_by_stage: Mapping[str, float]

    @property
    def in_service(self) -> int:
        return self.by_stage.get(Stage.INSTALLED.value, 0)

    @property
    def waste(self) -> int:
        return self.by_stage.get(Stage.RETIRED.value, 0)

    @property
    def recycled_tonnes(self) -> float:
        return self.tonnes_by_stage.get(Stage.RECYCLED.value, 0.0)


@dataclass(frozen=True)
class YearRow:
    year: int
    registered_t: float
    retired_t: float
    recycled_t: float
    repurposed_t: float


@dataclass(frozen=True)
class ProvinceRow:
    province: str
    batteries: int
    tonnes: float
    waste: int


@dataclass(frozen=True)
class ProducerRow:
    id: str
    name: str
    retired: int  # retired batteries (and those that went on from there)
    licensed: int  # of which are with, or were ended by, a licensed facility

    @property
    def share(self) -> float:
        return self.licensed / self.retired if self.retired else 0.0


@dataclass(frozen=True)
class MetalRow:
    metal: str
    contained_kg: float
    recovered_kg: float
    thresholds: Mapping[str, float | None]

    @property
    def rate(self) -> float | None:
        return self.recovered_kg / self.contained_kg if self.contained_kg > 0 else None


@dataclass(frozen=True)
class AlertRow:
    id: str
    rule: str
    title: str
    battery: str | None
    enterprise: str | None
    province: str | None
    since: str | None
    deadline: str | None
    detail: str
    acknowledged: bool


@dataclass(frozen=True)
class Dashboard:
    as_of: datetime
    log_size: int
    headline: Headline
    years: list[YearRow]
    provinces: list[ProvinceRow]
    producers: list[ProducerRow]
    recovery: list[MetalRow]
    forecast: list[tuple[int, float]]
    #: Alerts come from the monitoring service; None while it is not installed.
    alerts_open: int | None = None
    alerts_by_rule: list[tuple[str, int]] | None = None
    alerts_by_province: list[tuple[str, int]] | None = None
    open_alerts: list[AlertRow] | None = None
    #: Which figures came from where: figure name -> "monitoring" | "registry".
    sources: dict[str, str] = field(default_factory=dict)


class AlertsUnavailableError(RuntimeError):
    """The monitoring service is not installed, so there are no alerts to acknowledge."""


# --- the monitoring service ---------------------------------------------------------------------


def monitoring(registry: Registry) -> Any | None:
    """The registry's monitoring service (``batterytrace.services.monitoring``), or None when
    that package is not installed."""
    try:
        module = importlib.import_module("batterytrace.services.monitoring")
    except ModuleNotFoundError as exc:
        if exc.name not in ("batterytrace.services.monitoring",):
            raise
        return None
    return module.monitoring_for(registry)


# --- loading ------------------------------------------------------------------------------------

_CACHE: weakref.WeakKeyDictionary[Registry, tuple[int, Dashboard]] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def log_size(registry: Registry) -> int:
    with read_transaction(registry.engine) as conn:
        size = conn.execute(select(T.log_head.c.size).where(T.log_head.c.id == 1)).scalar()
    return int(size or 0)


def load_dashboard(registry: Registry, caller: Caller) -> Dashboard:
    """The dashboard's figures, recomputed only when the registry has changed."""
    size = log_size(registry)
    with _LOCK:
        cached = _CACHE.get(registry)
    if cached is not None and cached[0] == size:
        figures = cached[1]
    else:
        figures = _compute(registry, size)
        with _LOCK:
            _CACHE[registry] = (size, figures)
    return _with_alerts(registry, caller, figures)


def _compute(registry: Registry, size: int) -> Dashboard:
    now = registry.clock()
    with read_transaction(registry.engine) as conn:
        overview = _overview_rows(conn)
        holders = _holder_rows(conn)
        producers = _producer_rows(conn)
        recovery = _recovery_sums(conn)
        ids = {r["holder"] for r in holders} | {p for r in producers for p in (r["producer"], r["installer"])}
        enterprises = repo.load_enterprises(conn, [i for i in ids if i])
    return Dashboard(
        as_of=now,
        log_size=size,
        headline=_headline(overview),
        years=_years(overview),
        provinces=_provinces(holders, enterprises),
        producers=_producers(producers, enterprises, now),
        recovery=_recovery(recovery),
        forecast=_forecast(overview, now),
        sources=dict.fromkeys(
            ("headline", "years", "provinces", "producers", "recovery", "forecast"), "registry"
        ),
    )


#: Alerts shown for action on the dashboard (the newest first).
ALERTS_SHOWN = 50
#: Statuses of an alert whose condition still holds (the monitoring service's vocabulary).
OPEN_STATUSES = ("open", "acknowledged")


def _with_alerts(registry: Registry, caller: Caller, figures: Dashboard) -> Dashboard:
    service = monitoring(registry)
    if service is None:
        return figures
    listed = service.list_alerts(
        caller, status="open", limit=min(ALERTS_SHOWN, registry.settings.max_page_size)
    )
    alerts = [_alert_row(a) for a in listed["items"]]
    by_rule, by_province = _alert_counts(registry)
    return replace(
        figures,
        alerts_open=int(listed["total"] or 0),
        alerts_by_rule=by_rule,
        alerts_by_province=by_province,
        open_alerts=[a for a in alerts if not a.acknowledged],
        sources={**figures.sources, "alerts": "monitoring"},
    )


def _alert_counts(registry: Registry) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """Alerts whose condition still holds, by rule and by province (counted in the database)."""
    a = T.alerts
    with read_transaction(registry.engine) as conn:
        rows = conn.execute(
            select(a.c.rule, a.c.province, func.count().label("n"))
            .where(a.c.status.in_(OPEN_STATUSES))
            .group_by(a.c.rule, a.c.province)
        ).all()
    by_rule: dict[str, int] = defaultdict(int)
    by_province: dict[str, int] = defaultdict(int)
    for rule, province, n in rows:
        by_rule[str(rule)] += int(n)
        by_province[str(province or "")] += int(n)

    def ranked(counts: dict[str, int]) -> list[tuple[str, int]]:
        return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))

    return ranked(by_rule), ranked(by_province)


def _alert_row(a: Mapping[str, Any]) -> AlertRow:
    return AlertRow(
        id=str(a["id"]),
        rule=str(a["rule"]),
        title=str(a.get("title") or a["rule"]),
        battery=a.get("battery"),
        enterprise=a.get("enterprise"),
        province=a.get("province"),
        since=a.get("since"),
        deadline=a.get("deadline"),
        detail=str(a.get("detail") or ""),
        acknowledged=a.get("status") != "open",
    )


def enterprise_alerts(registry: Registry, caller: Caller) -> list[AlertRow] | None:
    """The alerts about this enterprise whose condition still holds; None without monitoring."""
    service = monitoring(registry)
    if service is None:
        return None
    listed = service.list_alerts(
        caller, status="open", limit=min(ALERTS_SHOWN, registry.settings.max_page_size)
    )
    return [_alert_row(a) for a in listed["items"]]


def acknowledge_alert(registry: Registry, caller: Caller, alert_id: int, note: str | None) -> None:
    """Acknowledge an alert through the monitoring service (which checks the caller, records the
    action in the log and refuses an alert that is not open)."""
    service = monitoring(registry)
    if service is None:
        raise AlertsUnavailableError("the monitoring service is not installed: no alert can be acknowledged")
    service.acknowledge(caller, alert_id, note)


# --- queries over the current-state table ----------------------------------------------------------


def _overview_rows(conn: Any) -> list[dict[str, Any]]:
    """Batteries and kg by stage, chemistry, year registered, year retired, year ended."""
    b = T.batteries
    final = [s.value for s in FINAL_STAGES]
    reg_year = extract("year", b.c.registered_at)
    ret_year = extract("year", b.c.retired_at)
    end_year = case((b.c.stage.in_(final), extract("year", b.c.last_event_time)), else_=None)
    stmt = select(
        b.c.stage,
        b.c.chemistry,
        reg_year.label("reg_year"),
        ret_year.label("ret_year"),
        end_year.label("end_year"),
        func.count().label("n"),
        func.coalesce(func.sum(b.c.mass_kg), 0.0).label("kg"),
    ).group_by(b.c.stage, b.c.chemistry, reg_year, ret_year, end_year)
    return [dict(r._mapping) for r in conn.execute(stmt)]


def _holder_rows(conn: Any) -> list[dict[str, Any]]:
    b = T.batteries
    stmt = select(
        b.c.holder,
        b.c.stage,
        func.count().label("n"),
        func.coalesce(func.sum(b.c.mass_kg), 0.0).label("kg"),
    ).group_by(b.c.holder, b.c.stage)
    return [dict(r._mapping) for r in conn.execute(stmt)]


def _producer_rows(conn: Any) -> list[dict[str, Any]]:
    """Batteries that have been retired, by maker, installing automaker, holder and stage."""
    b = T.batteries
    stmt = (
        select(b.c.producer, b.c.installer, b.c.holder, b.c.stage, func.count().label("n"))
        .where(b.c.retired_at.is_not(None))
        .group_by(b.c.producer, b.c.installer, b.c.holder, b.c.stage)
    )
    return [dict(r._mapping) for r in conn.execute(stmt)]


def _recovery_sums(conn: Any) -> dict[str, tuple[float, float]]:
    """Per metal: (kg contained, kg recovered) over the batteries with a ``recycled`` event."""
    b, e = T.batteries, T.events
    columns = []
    for metal in METALS:
        key = f"{metal}_kg"
        contained = b.c.spec[("materials", key)].as_float()
        recovered = e.c.data[("recovered", key)].as_float()
        columns.append(func.coalesce(func.sum(contained), 0.0).label(f"{metal}_in"))
        columns.append(func.coalesce(func.sum(recovered), 0.0).label(f"{metal}_out"))
    stmt = (
        select(*columns)
        .select_from(b.join(e, and_(e.c.battery == b.c.code, e.c.type == "recycled")))
        .where(b.c.stage == Stage.RECYCLED.value)
    )
    row = conn.execute(stmt).one()._mapping
    return {m: (float(row[f"{m}_in"] or 0.0), float(row[f"{m}_out"] or 0.0)) for m in METALS}


# --- shaping ------------------------------------------------------------------------------------------


def _headline(rows: list[dict[str, Any]]) -> Headline:
    by_stage: dict[str, int] = defaultdict(int)
    kg_by_stage: dict[str, float] = defaultdict(float)
    for r in rows:
        by_stage[r["stage"]] += int(r["n"])
        kg_by_stage[r["stage"]] += float(r["kg"])
    return Headline(
        batteries=sum(by_stage.values()),
        tonnes=sum(kg_by_stage.values()) / 1000,
        by_stage=dict(by_stage),
        tonnes_by_stage={k: v / 1000 for k, v in kg_by_stage.items()},
    )


def _years(rows: list[dict[str, Any]]) -> list[YearRow]:
    acc: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r in rows:
        kg = float(r["kg"])
        if r["reg_year"] is not None:
            acc[int(r["reg_year"])]["registered"] += kg
        if r["ret_year"] is not None:
            acc[int(r["ret_year"])]["retired"] += kg
        if r["end_year"] is not None and r["stage"] in (Stage.RECYCLED.value, Stage.REPURPOSED.value):
            acc[int(r["end_year"])][r["stage"]] += kg
    if not acc:
        return []
    years = range(min(acc), max(acc) + 1)
    return [
        YearRow(
            year=y,
            registered_t=acc[y]["registered"] / 1000,
            retired_t=acc[y]["retired"] / 1000,
            recycled_t=acc[y][Stage.RECYCLED.value] / 1000,
            repurposed_t=acc[y][Stage.REPURPOSED.value] / 1000,
        )
        for y in years
    ]


def growth(current: float, previous: float | None) -> float | None:
    """Change on the year before, as a fraction; None when there is nothing to compare with."""
    if previous is None or previous <= 0:
        return None
    return current / previous - 1


def _provinces(rows: list[dict[str, Any]], enterprises: Mapping[str, Any]) -> list[ProvinceRow]:
    acc: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0])
    for r in rows:
        ent = enterprises.get(r["holder"]) if r["holder"] else None
        if ent is None:
            continue
        cell = acc[ent.region[:2]]
        cell[0] += int(r["n"])
        cell[1] += float(r["kg"]) / 1000
        if r["stage"] == Stage.RETIRED.value:
            cell[2] += int(r["n"])
    known = provinces()
    out = [
        ProvinceRow(province=p, batteries=int(v[0]), tonnes=float(v[1]), waste=int(v[2]))
        for p, v in acc.items()
        if p in known
    ]
    return sorted(out, key=lambda row: (-row.tonnes, row.province))


def _producers(
    rows: list[dict[str, Any]], enterprises: Mapping[str, Any], now: datetime
) -> list[ProducerRow]:
    today = now.date()
    acc: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        holder = enterprises.get(r["holder"]) if r["holder"] else None
        licensed = r["stage"] in LICENSED_END_STAGES or (
            holder is not None and any(holder.licensed(s, today) for s in Scope)
        )
        if r["stage"] in (Stage.MISSING.value, Stage.EXPORTED.value):
            licensed = False
        for responsible in {r["producer"], r["installer"]} - {None}:
            acc[responsible][0] += int(r["n"])
            acc[responsible][1] += int(r["n"]) if licensed else 0
    out = [
        ProducerRow(
            id=eid,
            name=enterprises[eid].name if eid in enterprises else eid,
            retired=v[0],
            licensed=v[1],
        )
        for eid, v in acc.items()
    ]
    return sorted(out, key=lambda row: (row.share, -row.retired, row.name))


def _recovery(sums: Mapping[str, tuple[float, float]]) -> list[MetalRow]:
    profiles = load_profiles()
    out = []
    for metal in METALS:
        contained, recovered = sums[metal]
        thresholds = {
            name: profiles[name].recovery_thresholds.get(metal)
            for name in RECOVERY_PROFILES
            if name in profiles
        }
        out.append(
            MetalRow(metal=metal, contained_kg=contained, recovered_kg=recovered, thresholds=thresholds)
        )
    return out


def chemistry_class(chemistry: str) -> str:
    return chemistry if chemistry in ("lfp", "ternary") else "other"


def _forecast(rows: list[dict[str, Any]], now: datetime) -> list[tuple[int, float]]:
    """Tonnes expected to retire each year to 2035: each cohort still in use (by year registered
    and chemistry) retires by the profile's lifetime distribution, given that it has lasted so far."""
    profile = get_profile()
    this_year = now.year
    fraction_done = (now.timetuple().tm_yday - 1) / 365.25
    expected: dict[int, float] = defaultdict(float)
    for r in rows:
        if r["stage"] not in ACTIVE_STAGES or r["reg_year"] is None:
            continue
        life = profile.lifetime_for(chemistry_class(str(r["chemistry"])))
        born = int(r["reg_year"]) + 0.5  # mid-year on average
        age_now = max(this_year + fraction_done - born, 0.0)
        alive = life.survival(age_now)
        if alive <= 0:
            continue
        tonnes = float(r["kg"]) / 1000
        for year in range(this_year, FORECAST_TO + 1):
            start = max(year - born, age_now)
            end = year + 1 - born
            if end <= start:
                continue
            expected[year] += tonnes * (life.cdf(end) - life.cdf(start)) / alive
    return [(year, expected[year]) for year in range(this_year, FORECAST_TO + 1)]


# --- one battery's history, with the log's proofs ------------------------------------------------


@dataclass(frozen=True)
class ProvenEvent:
    event: dict[str, Any]
    log_index: int | None
    leaf_hash: str | None  # base64
    proof: list[str]  # base64 sibling hashes, leaf to root
    matches_log: bool  # the event row is the entry the log holds
    included: bool  # the entry is in the signed checkpoint's tree


@dataclass(frozen=True)
class History:
    battery: dict[str, Any]
    events: list[ProvenEvent]
    checkpoint_size: int
    checkpoint_root: str  # base64
    checkpoint_note: str


def battery_history(registry: Registry, caller: Caller, code: str) -> History:
    """The battery and every event recorded on it, each checked against the latest signed
    checkpoint with an inclusion proof (RFC 9162), as a regulator sees them."""
    import base64

    from batterytrace.ledger import ProofError, entry_leaf_hash, open_checkpoint, verify_inclusion
    from batterytrace.services import log as logsvc

    battery = registry.get_battery(caller, code)
    events = registry.battery_events(caller, code)["events"]
    note = logsvc.latest_checkpoint(registry.engine) or ""
    with read_transaction(registry.engine) as conn:
        verifiers = registry.log.verifiers(conn)
    checkpoint = open_checkpoint(note, verifiers, origin=registry.log.origin)
    proven = []
    for event in events:
        index = event.get("log_index")
        if not isinstance(index, int) or index >= checkpoint.size:
            proven.append(ProvenEvent(event, None, None, [], False, False))
            continue
        proof = logsvc.prove_inclusion(registry.engine, index, checkpoint.size)
        logged = {
            k: event[k]
            for k in ("id", "type", "battery", "vin", "time", "recorded_at", "actor", "region", "data")
            if k in event
        }
        matches = entry_leaf_hash({"kind": "event", "event": logged}) == proof["leaf_hash"]
        try:
            verify_inclusion(
                proof["leaf_hash"], index, checkpoint.size, proof["hashes"], checkpoint.root_hash
            )
            included = True
        except ProofError:
            included = False
        proven.append(
            ProvenEvent(
                event=event,
                log_index=index,
                leaf_hash=base64.b64encode(proof["leaf_hash"]).decode("ascii"),
                proof=[base64.b64encode(h).decode("ascii") for h in proof["hashes"]],
                matches_log=matches,
                included=included,
            )
        )
    return History(
        battery=battery,
        events=proven,
        checkpoint_size=checkpoint.size,
        checkpoint_root=base64.b64encode(checkpoint.root_hash).decode("ascii"),
        checkpoint_note=note,
    )
