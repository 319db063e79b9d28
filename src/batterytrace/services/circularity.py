"""Circularity reports: second-life volumes, what became of retired batteries (repurposed or
recycled), recycled content by maker against the EU minimums, and greenhouse-gas accounting
(declared manufacturing footprints, emissions avoided by second life and by recycling).

Every report is read from the accepted events (retracted ones left out), counted by the year of
the event in China Standard Time and the province of its site, as the national statistics are.
A battery's state just before an event comes from the event's undo record, so a report needs no
history replay. The factors are the policy profile's (``data/policy.toml``); ``docs/circularity.md``
gives their sources.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Connection, and_, func, select

from batterytrace.domain import circularity
from batterytrace.domain import errors as E
from batterytrace.domain.access import Tier, tier_for
from batterytrace.domain.codes import parse_battery_code, parse_province
from batterytrace.domain.errors import DomainError
from batterytrace.domain.model import BatteryState, Stage
from batterytrace.domain.permissions import Permission
from batterytrace.domain.policy import DEFAULT_PROFILE, Profile, get_profile
from batterytrace.domain.snapshots import battery_from_dict
from batterytrace.services.registry import Caller, Registry, require
from batterytrace.store import repo
from batterytrace.store import tables as T
from batterytrace.store.db import read_transaction

CHINA_STANDARD_TIME = timezone(timedelta(hours=8), "CST")
FIRST_YEAR, LAST_YEAR = 2000, 2100
LEVELS = ("pack", "module", "cell")
_STREAM = 5_000


@dataclass(frozen=True)
class Period:
    """Which events a report counts: those of ``year`` (China Standard Time) at sites in
    ``province`` (two digits); ``None`` is every year or province."""

    year: int | None = None
    province: str | None = None

    @classmethod
    def checked(cls, year: int | None, province: str | None) -> Period:
        if year is not None and not FIRST_YEAR <= year <= LAST_YEAR:
            raise DomainError(
                E.REQUEST_INVALID, f"'year' must be between {FIRST_YEAR} and {LAST_YEAR}", field="year"
            )
        if province is not None:
            province = parse_province(province, field="province").code
        return cls(year, province)

    def as_json(self) -> dict[str, Any]:
        return {"year": self.year, "province": self.province}


def _year(moment: datetime) -> int:
    return moment.astimezone(CHINA_STANDARD_TIME).year


def _kg(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _r(value: float) -> float:
    return round(value, 3)


def _share(part: float, whole: float) -> float | None:
    return round(part / whole, 6) if whole > 0 else None


def _events(conn: Connection, types: tuple[str, ...], period: Period) -> Iterator[dict[str, Any]]:
    """Accepted, unretracted events of these types in the period, in log order."""
    e = T.events
    stmt = (
        select(e)
        .where(e.c.type.in_(types))
        .where(e.c.id.not_in(select(T.retractions.c.event_id)))
        .order_by(e.c.log_index)
    )
    if period.year is not None:
        start = datetime(period.year, 1, 1, tzinfo=CHINA_STANDARD_TIME).astimezone(UTC)
        end = datetime(period.year + 1, 1, 1, tzinfo=CHINA_STANDARD_TIME).astimezone(UTC)
        stmt = stmt.where(and_(e.c.time_utc >= start, e.c.time_utc < end))
    if period.province is not None:
        stmt = stmt.where(func.substr(e.c.region, 1, 2) == period.province)
    result = conn.execution_options(stream_results=True, yield_per=_STREAM).execute(stmt)
    try:
        for row in result:
            yield dict(row._mapping)
    finally:
        result.close()


def _before(row: Mapping[str, Any], code: str | None) -> BatteryState | None:
    """The battery as it was just before the event (from the event's undo record)."""
    before = ((row.get("undo") or {}).get("batteries") or {}).get(code) if code else None
    return battery_from_dict(dict(before)) if before else None


def _data(row: Mapping[str, Any]) -> Mapping[str, Any]:
    data = row.get("data")
    return data if isinstance(data, Mapping) else {}


def _where(row: Mapping[str, Any]) -> tuple[int, str]:
    return _year(row["time_utc"]), str(row["region"])[:2]


def _rows(groups: Mapping[tuple[int, str], dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"year": y, "province": p, **groups[(y, p)]} for y, p in sorted(groups)]


# --- second-life products --------------------------------------------------------------------------


@dataclass
class _Product:
    code: str
    year: int
    province: str
    origins: int = 0


def _products_registered(conn: Connection, period: Period) -> tuple[list[_Product], list[dict[str, Any]]]:
    """Second-life products registered in the period (the ``repurposed`` event that named a new
    code), and every ``repurposed`` event of the period."""
    products: list[_Product] = []
    repurposings: list[dict[str, Any]] = []
    for row in _events(conn, ("repurposed",), period):
        repurposings.append(row)
        into = _data(row).get("into")
        undo = (row.get("undo") or {}).get("batteries") or {}
        if isinstance(into, str) and into in undo and undo[into] is None:
            year, province = _where(row)
            products.append(_Product(into, year, province))
    return products, repurposings


def _product_capacities(conn: Connection, codes: list[str]) -> dict[str, tuple[float, str]]:
    """kWh of each second-life product: as declared (``capacity_kwh`` at repurposing) or, when not
    declared, estimated as the sum over its origins of their capacity times their graded state of
    health. Returns (kWh, "declared" | "estimated")."""
    states = repo.load_batteries(conn, codes)
    out: dict[str, tuple[float, str]] = {}
    undeclared = [c for c in codes if c in states and not states[c].capacity_kwh]
    origins: dict[str, list[str]] = defaultdict(list)
    links = T.battery_links
    for part in repo.chunks(undeclared):
        stmt = select(links.c.parent, links.c.child).where(
            and_(links.c.child.in_(part), links.c.kind == "origin")
        )
        for r in conn.execute(stmt):
            origins[r.child].append(r.parent)
    origin_states = repo.load_batteries(conn, [o for os_ in origins.values() for o in os_])
    for code in codes:
        state = states.get(code)
        if state is None:
            continue
        if state.capacity_kwh:
            out[code] = (state.capacity_kwh, "declared")
            continue
        kwh = 0.0
        for origin in origins.get(code, []):
            o = origin_states.get(origin)
            if o is not None and o.capacity_kwh:
                kwh += o.capacity_kwh * ((o.soh_percent if o.soh_percent is not None else 100.0) / 100.0)
        out[code] = (kwh, "estimated")
    return out


def second_life_report(
    registry: Registry, caller: Caller | None, *, year: int | None = None, province: str | None = None
) -> dict[str, Any]:
    """Second-life volumes by year and province: products registered and their capacity, the
    batteries repurposed into them (by level, with their mass), and what happened to second-life
    products since (installed in storage, retired again, recycled)."""
    require(caller, Permission.REPORT_READ)
    period = Period.checked(year, province)
    groups: dict[tuple[int, str], dict[str, Any]] = defaultdict(_second_life_row)
    with read_transaction(registry.engine) as conn:
        products, repurposings = _products_registered(conn, period)
        capacities = _product_capacities(conn, [p.code for p in products])
        for p in products:
            g = groups[(p.year, p.province)]
            kwh, how = capacities.get(p.code, (0.0, "estimated"))
            g["products"] += 1
            g["products_capacity_kwh"] += kwh
            g["products_capacity_estimated"] += how == "estimated"
        for row in repurposings:
            g = groups[_where(row)]
            origin = _before(row, row.get("battery"))
            g["origins"] += 1
            if origin is not None:
                g["origins_by_level"][origin.level] += 1
                g["origins_mass_kg"] += _kg(origin.mass_kg)
        for row in _events(conn, ("installed", "retired", "recycled"), period):
            before = _before(row, row.get("battery"))
            if before is None or not before.second_life:
                continue
            g = groups[_where(row)]
            if row["type"] == "installed":
                g["installed"] += 1
                g["installed_capacity_kwh"] += _kg(before.capacity_kwh)
            elif row["type"] == "retired":
                g["retired"] += 1
            else:
                g["recycled"] += 1
                g["recycled_mass_kg"] += _kg(_data(row).get("mass_kg"))
    rows = _rows(groups)
    for r in rows:
        for key in ("products_capacity_kwh", "origins_mass_kg", "installed_capacity_kwh", "recycled_mass_kg"):
            r[key] = _r(r[key])
    return {"period": period.as_json(), "rows": rows, "totals": _totals(rows)}


def _second_life_row() -> dict[str, Any]:
    return {
        "products": 0,
        "products_capacity_kwh": 0.0,
        "products_capacity_estimated": 0,
        "origins": 0,
        "origins_by_level": dict.fromkeys(LEVELS, 0),
        "origins_mass_kg": 0.0,
        "installed": 0,
        "installed_capacity_kwh": 0.0,
        "retired": 0,
        "recycled": 0,
        "recycled_mass_kg": 0.0,
    }


def _totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for r in rows:
        for key, value in r.items():
            if key in ("year", "province"):
                continue
            if isinstance(value, dict):
                inner = out.setdefault(key, {})
                for k, v in value.items():
                    inner[k] = inner.get(k, 0) + v
            elif isinstance(value, int | float) and not isinstance(value, bool):
                out[key] = out.get(key, 0) + value
    return {k: (_r(v) if isinstance(v, float) else v) for k, v in out.items()}


# --- repurposed versus recycled ----------------------------------------------------------------------


def circularity_report(
    registry: Registry, caller: Caller | None, *, year: int | None = None, province: str | None = None
) -> dict[str, Any]:
    """What became of retired batteries, by year and province of the outcome: batteries
    repurposed (their mass and level) against batteries recycled (mass in), as shares of mass and
    of count; gradings by decision; and the retired batteries still awaiting either, now."""
    require(caller, Permission.REPORT_READ)
    period = Period.checked(year, province)
    profile = get_profile()
    groups: dict[tuple[int, str], dict[str, Any]] = defaultdict(_outcome_row)
    with read_transaction(registry.engine) as conn:
        for row in _events(conn, ("retired", "dismantled", "graded", "repurposed", "recycled"), period):
            kind = row["type"]
            code = row.get("battery")
            g = groups[_where(row)]
            before = _before(row, code)
            if kind == "retired":
                g["retired"] += 1
                g["retired_mass_kg"] += _kg(before.mass_kg if before else None)
            elif kind == "dismantled":
                # its components become retired batteries of their own
                for child, child_before in ((row.get("undo") or {}).get("batteries") or {}).items():
                    if child != code and child_before:
                        g["retired"] += 1
                        g["retired_mass_kg"] += _kg(child_before.get("mass_kg"))
            elif kind == "graded":
                data = _data(row)
                decision = data.get("decision")
                if decision in ("repurpose", "recycle"):
                    g["graded"][str(decision)] += 1
                if decision == "repurpose" and _kg(data.get("soh_percent")) > profile.repurpose_max_soh:
                    g["graded_repurpose_above_ceiling"] += 1
            elif kind == "repurposed":
                g["repurposed"] += 1
                g["repurposed_mass_kg"] += _kg(before.mass_kg if before else None)
                if before is not None:
                    g["repurposed_by_level"][before.level] += 1
            else:
                g["recycled"] += 1
                g["recycled_mass_kg"] += _kg(_data(row).get("mass_kg"))
                if before is not None and before.second_life:
                    g["recycled_after_second_life"] += 1
        b = T.batteries
        awaiting = conn.execute(
            select(func.count(), func.coalesce(func.sum(b.c.mass_kg), 0.0)).where(
                and_(b.c.stage == Stage.RETIRED.value, b.c.attached.is_(False))
            )
        ).one()
    rows = _rows(groups)
    for r in rows:
        _outcome_shares(r)
    totals = _totals(rows)
    _outcome_shares(totals)
    return {
        "period": period.as_json(),
        "profile": profile.name,
        "rows": rows,
        "totals": totals,
        "awaiting_now": {"batteries": int(awaiting[0]), "mass_kg": _r(float(awaiting[1]))},
    }


def _outcome_row() -> dict[str, Any]:
    return {
        "retired": 0,
        "retired_mass_kg": 0.0,
        "graded": {"repurpose": 0, "recycle": 0},
        "graded_repurpose_above_ceiling": 0,
        "repurposed": 0,
        "repurposed_by_level": dict.fromkeys(LEVELS, 0),
        "repurposed_mass_kg": 0.0,
        "recycled": 0,
        "recycled_after_second_life": 0,
        "recycled_mass_kg": 0.0,
    }


def _outcome_shares(r: dict[str, Any]) -> None:
    for key in ("retired_mass_kg", "repurposed_mass_kg", "recycled_mass_kg"):
        r[key] = _r(r.get(key, 0.0))
    mass = r["repurposed_mass_kg"] + r["recycled_mass_kg"]
    count = r.get("repurposed", 0) + r.get("recycled", 0)
    r["share_repurposed_by_mass"] = _share(r["repurposed_mass_kg"], mass)
    r["share_recycled_by_mass"] = _share(r["recycled_mass_kg"], mass)
    r["share_repurposed_by_count"] = _share(r.get("repurposed", 0), count)
    r["share_recycled_by_count"] = _share(r.get("recycled", 0), count)


# --- recycled content --------------------------------------------------------------------------------


def recycled_content_report(
    registry: Registry, caller: Caller | None, *, year: int | None = None, maker: str | None = None
) -> dict[str, Any]:
    """Recycled content of new batteries by maker and level (batteries manufactured in ``year``):
    metal contained and recycled, the recycled share of each metal against the EU-2031 minimums,
    and the recyclers it was drawn from; and every recycler's balance of recovered material."""
    require(caller, Permission.REPORT_READ)
    period = Period.checked(year, None)
    minimums = get_profile(circularity.RECYCLED_CONTENT_PROFILE)
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    with read_transaction(registry.engine) as conn:
        for row in _events(conn, ("manufactured",), period):
            if maker is not None and row["actor"] != maker:
                continue
            level: str = parse_battery_code(str(row["battery"])).level
            g = groups.setdefault((row["actor"], level), _content_row())
            spec = _data(row)
            g["batteries"] += 1
            for name, kg in circularity.contained(spec).items():
                g["contained_kg"][name] = g["contained_kg"].get(name, 0.0) + kg
            totals = circularity.recycled_totals(spec)
            if totals is None:
                continue
            g["batteries_with_recycled_content"] += 1
            for name, kg in totals.items():
                g["recycled_kg"][name] = g["recycled_kg"].get(name, 0.0) + kg
            for source in spec.get("recycled_content") or []:
                if isinstance(source, Mapping):
                    drawn = g["sources"].setdefault(str(source.get("recycler")), {})
                    for name, kg in source.items():
                        if name != "recycler":
                            drawn[name] = _r(drawn.get(name, 0.0) + _kg(kg))
        recyclers = _balances(conn)
    rows = []
    for (who, level), g in sorted(groups.items()):
        contained = {k: _r(v) for k, v in sorted(g["contained_kg"].items())}
        recycled = {k: _r(v) for k, v in sorted(g["recycled_kg"].items())}
        spec = {"materials": contained, "recycled_content": [{"recycler": "*", **recycled}]}
        rows.append(
            {
                "maker": who,
                "level": level,
                "batteries": g["batteries"],
                "batteries_with_recycled_content": g["batteries_with_recycled_content"],
                "contained_kg": contained,
                "recycled_kg": recycled,
                "recycled_share": circularity.recycled_shares(spec) or {},
                "minimums": circularity.minimums_check(spec, False, minimums),
                "sources": dict(sorted(g["sources"].items())),
            }
        )
    return {
        "period": period.as_json(),
        "maker": maker,
        "minimums_profile": minimums.name,
        "rows": rows,
        "recyclers": recyclers,
    }


def _content_row() -> dict[str, Any]:
    return {
        "batteries": 0,
        "batteries_with_recycled_content": 0,
        "contained_kg": {},
        "recycled_kg": {},
        "sources": {},
    }


def _balances(conn: Connection) -> list[dict[str, Any]]:
    """Every recycler's recovered material: recovered, declared in new batteries, and left, in kg."""
    b = T.material_balances
    out: dict[str, dict[str, Any]] = {}
    for r in conn.execute(select(b).order_by(b.c.recycler, b.c.material)):
        item = out.setdefault(r.recycler, {"recycler": r.recycler, "materials": {}})
        item["materials"][r.material] = {
            "recovered_kg": r.recovered_mg / 1_000_000,
            "declared_kg": r.declared_mg / 1_000_000,
            "remaining_kg": (r.recovered_mg - r.declared_mg) / 1_000_000,
        }
    return list(out.values())


# --- greenhouse gas ------------------------------------------------------------------------------------


def _profile(name: str | None) -> Profile:
    return get_profile(name or DEFAULT_PROFILE)


def ghg_report(
    registry: Registry,
    caller: Caller | None,
    *,
    year: int | None = None,
    province: str | None = None,
    profile: str | None = None,
) -> dict[str, Any]:
    """Greenhouse-gas accounting for the period: the manufacturing footprint of the batteries
    made (as declared, and as the profile's factors estimate it), and the emissions avoided by the
    second-life products registered and by the metals recovered."""
    require(caller, Permission.REPORT_READ)
    period = Period.checked(year, province)
    prof = _profile(profile)
    made: dict[str, dict[str, Any]] = {}
    recovered: dict[str, float] = {}
    with read_transaction(registry.engine) as conn:
        for row in _events(conn, ("manufactured", "recycled"), period):
            data = _data(row)
            if row["type"] == "recycled":
                for name, kg in (data.get("recovered") or {}).items():
                    recovered[name] = recovered.get(name, 0.0) + _kg(kg)
                continue
            code = parse_battery_code(str(row["battery"]))
            capacity = _kg(data.get("capacity_kwh"))
            fp = circularity.manufacturing_footprint(data, code.chemistry, capacity, prof)
            g = made.setdefault(code.level, _made_row())
            g["batteries"] += 1
            g["capacity_kwh"] += capacity
            g["estimated_kgco2e"] += fp["estimated_kgco2e"] or 0.0
            if fp["declared_kgco2e"] is not None:
                g["declared"] += 1
                g["declared_capacity_kwh"] += capacity
                g["declared_kgco2e"] += fp["declared_kgco2e"]
        products, _ = _products_registered(conn, period)
        capacities = _product_capacities(conn, [p.code for p in products])
    kwh = sum(k for k, _ in capacities.values())
    by_metal = circularity.recycling_avoided(recovered, prof)
    second_life = circularity.second_life_avoided(kwh, prof)
    return {
        "period": period.as_json(),
        "profile": prof.name,
        "manufacturing": {
            level: {k: (_r(v) if isinstance(v, float) else v) for k, v in g.items()}
            for level, g in sorted(made.items())
        },
        "second_life": {
            "products": len(products),
            "capacity_kwh": _r(kwh),
            "capacity_estimated_products": sum(1 for _, how in capacities.values() if how == "estimated"),
            "avoided_kgco2e": second_life,
        },
        "recycling": {
            "recovered_kg": {k: _r(v) for k, v in sorted(recovered.items())},
            "avoided_kgco2e_by_metal": by_metal,
            "avoided_kgco2e": _r(sum(by_metal.values())),
        },
        "avoided_kgco2e": _r(second_life + sum(by_metal.values())),
        "factors": _factors(prof),
    }


def _made_row() -> dict[str, Any]:
    return {
        "batteries": 0,
        "capacity_kwh": 0.0,
        "declared": 0,
        "declared_capacity_kwh": 0.0,
        "declared_kgco2e": 0.0,
        "estimated_kgco2e": 0.0,
    }


def _factors(prof: Profile) -> dict[str, Any]:
    return {
        "manufacturing_kgco2e_per_kwh": dict(sorted(prof.ghg.manufacturing_kgco2e_per_kwh.items())),
        "repurposed_avoided_kgco2e_per_kwh": prof.ghg.repurposed_avoided_kgco2e_per_kwh,
        "recovered_avoided_kgco2e_per_kg": dict(sorted(prof.ghg.recovered_avoided_kgco2e_per_kg.items())),
        "sources": "docs/circularity.md; batterytrace/data/policy.toml",
    }


def battery_ghg(
    registry: Registry, caller: Caller | None, code: str, *, profile: str | None = None
) -> dict[str, Any]:
    """One battery's greenhouse-gas figures, for its passport: the manufacturing footprint (declared
    and estimated) of a new battery; for a second-life product, the emissions its second life
    avoids; for a recycled battery, those its recovered metals avoid. Public, like the carbon
    footprint it extends."""
    prof = _profile(profile)
    try:
        parse_battery_code(code)
    except DomainError as exc:
        raise exc.with_field("code") from None
    with read_transaction(registry.engine) as conn:
        state = repo.load_batteries(conn, [code]).get(code)
        if state is None:
            raise DomainError(
                E.BATTERY_UNKNOWN, f"battery {code} is not registered: it may not be genuine", field="code"
            )
        capacity = _product_capacities(conn, [code]).get(code) if state.second_life else None
        recycling = None
        if state.stage == Stage.RECYCLED:
            e = T.events
            row = conn.execute(
                select(e.c.data)
                .where(and_(e.c.battery == code, e.c.type == "recycled"))
                .where(e.c.id.not_in(select(T.retractions.c.event_id)))
                .order_by(e.c.log_index.desc())
                .limit(1)
            ).first()
            recycling = row.data if row is not None and isinstance(row.data, Mapping) else None
    tier = tier_for(caller.enterprise if caller else None, state)
    out: dict[str, Any] = {"code": code, "profile": prof.name, "access_tier": tier.label}
    out["manufacturing"] = (
        None
        if state.second_life
        else circularity.manufacturing_footprint(state.spec, state.chemistry, state.capacity_kwh, prof)
    )
    if capacity is not None:
        kwh, how = capacity
        out["second_life"] = {
            "capacity_kwh": _r(kwh),
            "capacity": how,
            "avoided_kgco2e": circularity.second_life_avoided(kwh, prof),
        }
    if recycling is not None:
        metals = {k: _kg(v) for k, v in (recycling.get("recovered") or {}).items()}
        by_metal = circularity.recycling_avoided(metals, prof)
        out["recycling"] = {
            "avoided_kgco2e": _r(sum(by_metal.values())),
            **({"avoided_kgco2e_by_metal": by_metal} if tier >= Tier.LEGITIMATE_INTEREST else {}),
        }
    return out
