"""Where the regulator dashboard and the enterprise view get their figures: one adapter over the
monitoring service (alerts), the reports (statistics, producer responsibility, recovery) and the
forecast, so the pages need not know how each is kept.

The reports read the rollups that monitoring keeps current as events arrive, and the counts by
stage and the forecast read the fleet rollup that is kept in the transaction of each change to a
battery, so their cost does not grow with the number of batteries. The figures are kept per
registry until the log grows: every accepted change appends to the log, so its size versions the
data exactly.
"""

from __future__ import annotations

import base64
import threading
import weakref
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from batterytrace.domain.policy import METALS, get_profile
from batterytrace.domain.regions import provinces
from batterytrace.ledger import ProofError, entry_leaf_hash, open_checkpoint, verify_inclusion
from batterytrace.services import forecast, reports
from batterytrace.services import log as logsvc
from batterytrace.services.monitoring import monitoring_for
from batterytrace.services.registry import Caller, Registry
from batterytrace.store import tables as T
from batterytrace.store.db import read_transaction
from batterytrace.web.passport import ENTERPRISE_FIELDS, enterprise_names

#: Policy profiles whose recovery thresholds the dashboard compares with.
RECOVERY_PROFILES = ("CN-2026", "EU-2027", "EU-2031")
#: Alerts listed for action on the dashboard and the enterprise view (the newest first).
ALERTS_SHOWN = 50
#: Statuses of an alert whose condition still holds (the monitoring service's vocabulary).
OPEN_STATUSES = ("open", "acknowledged")


@dataclass(frozen=True)
class Headline:
    by_stage: Mapping[str, int]  # batteries (every code: packs, modules, cells) by stage now
    registered_t: float  # tonnes of packs registered, all years
    recycled_t: float  # tonnes of packs recycled, all years

    @property
    def batteries(self) -> int:
        return sum(self.by_stage.values())

    @property
    def in_service(self) -> int:
        return self.by_stage.get("installed", 0)

    @property
    def waste(self) -> int:
        return self.by_stage.get("retired", 0)


@dataclass(frozen=True)
class YearRow:
    year: int
    registered_t: float
    retired_t: float
    recycled_t: float
    repurposed_t: float
    registered_change_pct: float | None  # tonnes registered, on the year before


@dataclass(frozen=True)
class ProvinceRow:
    province: str
    registered_t: float
    retired_t: float


@dataclass(frozen=True)
class ProducerRow:
    id: str
    name: str
    responsibility: str  # "producer" (the battery maker) or "automaker"
    retired: int
    overdue: int
    in_time_share: float | None  # collected in time over those already due


@dataclass(frozen=True)
class MetalRow:
    metal: str
    contained_kg: float
    recovered_kg: float
    rate: float | None
    thresholds: Mapping[str, float | None]  # profile -> minimum share


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
    forecast_profile: str
    alerts_open: int = 0
    alerts_by_rule: list[tuple[str, int]] = field(default_factory=list)
    alerts_by_province: list[tuple[str, int]] = field(default_factory=list)
    #: the newest open alerts that no one has acknowledged yet
    open_alerts: list[AlertRow] = field(default_factory=list)


# --- loading ------------------------------------------------------------------------------------

_CACHE: weakref.WeakKeyDictionary[Registry, tuple[int, Dashboard]] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def log_size(registry: Registry) -> int:
    with read_transaction(registry.engine) as conn:
        size = conn.execute(select(T.log_head.c.size).where(T.log_head.c.id == 1)).scalar()
    return int(size or 0)


def load_dashboard(registry: Registry, caller: Caller) -> Dashboard:
    """The dashboard's figures. The reports are recomputed only when the registry has changed;
    the alerts are read on every load (listing them may raise the ones whose deadline passed)."""
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
    engine = registry.engine
    now = registry.clock()
    by_province = reports.statistics(engine, group_by=["province"]).rows
    profile = get_profile(registry.settings.monitoring_profile)
    return Dashboard(
        as_of=now,
        log_size=size,
        headline=_headline(registry, by_province),
        years=_years(by_province),
        provinces=_provinces(by_province),
        producers=_producers(reports.producers(engine, now).rows),
        recovery=_recovery(reports.recovery(engine, profiles=RECOVERY_PROFILES).rows),
        forecast=[
            (int(r["year"]), float(r["tonnes"])) for r in forecast.from_fleet(engine, profile, now).rows
        ],
        forecast_profile=profile.name,
    )


def _headline(registry: Registry, stats: list[dict[str, Any]]) -> Headline:
    f = T.fleet_rollup
    with read_transaction(registry.engine) as conn:
        by_stage = {
            str(stage): int(n)
            for stage, n in conn.execute(select(f.c.stage, func.sum(f.c.batteries)).group_by(f.c.stage))
            if n
        }
    return Headline(
        by_stage=by_stage,
        registered_t=sum(float(r["registered_tonnes"]) for r in stats),
        recycled_t=sum(float(r["recycled_tonnes"]) for r in stats),
    )


def _years(stats: list[dict[str, Any]]) -> list[YearRow]:
    """Tonnes a year, summed over the provinces of the statistics report."""
    metrics = ("registered", "retired", "recycled", "repurposed")
    acc: dict[int, dict[str, float]] = defaultdict(lambda: dict.fromkeys(metrics, 0.0))
    for r in stats:
        for m in metrics:
            acc[int(r["year"])][m] += float(r[f"{m}_tonnes"])
    if not acc:
        return []
    out = []
    for year in range(min(acc), max(acc) + 1):
        t = acc[year]
        previous = acc[year - 1]["registered"] if year - 1 in acc else 0.0
        out.append(
            YearRow(
                year=year,
                registered_t=t["registered"],
                retired_t=t["retired"],
                recycled_t=t["recycled"],
                repurposed_t=t["repurposed"],
                registered_change_pct=reports.change_pct(t["registered"], previous),
            )
        )
    return out


def _provinces(rows: list[dict[str, Any]]) -> list[ProvinceRow]:
    acc: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for r in rows:
        cell = acc[str(r["province"])]
        cell[0] += float(r["registered_tonnes"])
        cell[1] += float(r["retired_tonnes"])
    known = provinces()
    out = [ProvinceRow(p, v[0], v[1]) for p, v in acc.items() if p in known]
    return sorted(out, key=lambda row: (-row.retired_t, -row.registered_t, row.province))


def _producers(rows: list[dict[str, Any]]) -> list[ProducerRow]:
    out = [
        ProducerRow(
            id=str(r["enterprise"]),
            name=str(r["name"] or r["enterprise"]),
            responsibility=str(r["responsibility"]),
            retired=int(r["retired"]),
            overdue=int(r["overdue"]),
            in_time_share=r["in_time_share"],
        )
        for r in rows
        if r["in_time_share"] is not None
    ]
    return sorted(out, key=lambda row: (row.in_time_share or 0.0, -row.retired, row.name))


def _recovery(rows: list[dict[str, Any]]) -> list[MetalRow]:
    national = [r for r in rows if r["recycler"] == "national"]
    if not national:
        return []
    first = national[0]
    return [
        MetalRow(
            metal=metal,
            contained_kg=float(first[f"{metal}_contained_kg"]),
            recovered_kg=float(first[f"{metal}_recovered_kg"]),
            rate=first[f"{metal}_rate"],
            thresholds={str(r["profile"]): r[f"{metal}_threshold"] for r in national},
        )
        for metal in METALS
    ]


# --- alerts, through the monitoring service ---------------------------------------------------------


def _with_alerts(registry: Registry, caller: Caller, figures: Dashboard) -> Dashboard:
    listed = monitoring_for(registry).list_alerts(caller, status="open", limit=_alerts_limit(registry))
    by_rule, by_province = _alert_counts(registry)
    return replace(
        figures,
        alerts_open=int(listed["total"] or 0),
        alerts_by_rule=by_rule,
        alerts_by_province=by_province,
        open_alerts=[a for a in map(_alert_row, listed["items"]) if not a.acknowledged],
    )


def _alerts_limit(registry: Registry) -> int:
    return min(ALERTS_SHOWN, registry.settings.max_page_size)


def _alert_counts(registry: Registry) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """Alerts whose condition still holds, by rule and by province (counted in the database)."""
    a = T.alerts
    with read_transaction(registry.engine) as conn:
        rows = conn.execute(
            select(a.c.rule, a.c.province, func.count())
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


def enterprise_alerts(registry: Registry, caller: Caller) -> list[AlertRow]:
    """The alerts about this enterprise (as the party responsible or the counterparty) whose
    condition still holds."""
    listed = monitoring_for(registry).list_alerts(caller, status="open", limit=_alerts_limit(registry))
    return [_alert_row(a) for a in listed["items"]]


def acknowledge_alert(registry: Registry, caller: Caller, alert_id: int, note: str | None) -> None:
    """Acknowledge an alert through the monitoring service (which checks the caller, records the
    action in the log and refuses an alert that is not open)."""
    monitoring_for(registry).acknowledge(caller, alert_id, note)


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
    names: dict[str, str]  # enterprise id -> name, for the enterprises named on the page
    checkpoint_size: int
    checkpoint_root: str  # base64
    checkpoint_note: str


def battery_history(registry: Registry, caller: Caller, code: str) -> History:
    """The battery and every event recorded on it, each checked against the latest signed
    checkpoint with an inclusion proof (RFC 9162), as a regulator sees them."""
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
        # The event as the log holds it (``views.log_event``): the stored row must hash to the leaf.
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
    ids = {str(battery[f]) for f in ENTERPRISE_FIELDS if battery.get(f)}
    ids |= {str(e["actor"]) for e in events if e.get("actor")}
    return History(
        battery=battery,
        events=proven,
        names=enterprise_names(registry, ids),
        checkpoint_size=checkpoint.size,
        checkpoint_root=base64.b64encode(checkpoint.root_hash).decode("ascii"),
        checkpoint_note=note,
    )
