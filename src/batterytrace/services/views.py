"""How records are shown: stored events, batteries cut to an access tier, enterprises."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from batterytrace.domain import circularity
from batterytrace.domain.access import BATTERY_FIELD_TIERS, EVENT_FIELD_TIERS, Tier, cut
from batterytrace.domain.codes import parse_battery_code
from batterytrace.domain.model import BatteryState, Enterprise, Stage
from batterytrace.domain.policy import get_profile


def jsonable(value: Any) -> Any:
    """Datetimes and dates as ISO strings, bytes as hex, recursively."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def log_event(row: Mapping[str, Any]) -> dict[str, Any]:
    """The event as it is committed to the log (its leaf is the RFC 8785 form of this)."""
    out: dict[str, Any] = {"id": row["id"], "type": row["type"]}
    if row.get("battery") is not None:
        out["battery"] = row["battery"]
    if row.get("vin") is not None:
        out["vin"] = row["vin"]
    out["time"] = row["time_text"]
    out["recorded_at"] = _iso(row["recorded_at"])
    out["actor"] = row["actor"]
    out["region"] = row["region"]
    out["data"] = row["data"]
    return out


def _iso(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def stored_event(row: Mapping[str, Any]) -> dict[str, Any]:
    out = log_event(row)
    out["log_index"] = row.get("log_index")
    return out


def event_for_tier(row: Mapping[str, Any], tier: Tier, retracted: bool) -> dict[str, Any]:
    full = stored_event(row)
    full["province"] = str(row["region"])[:2]
    full["retracted"] = retracted
    shown = cut(full, tier, EVENT_FIELD_TIERS)
    if tier < Tier.AUTHORITY and isinstance(shown.get("data"), Mapping) and "vin" in shown["data"]:
        shown["data"] = {k: v for k, v in shown["data"].items() if k != "vin"}
    return shown


STATUS_TEXT = {
    Stage.NEW: "Registered, not yet in service",
    Stage.INSTALLED: "In service",
    Stage.REMOVED: "Removed from service",
    Stage.RETIRED: "Retired: must go to a licensed facility",
    Stage.REPURPOSED: "Repurposed into a second-life product",
    Stage.DISMANTLED: "Dismantled at a licensed facility",
    Stage.RECYCLED: "Recycled",
    Stage.MISSING: "Reported missing: do not buy",
    Stage.EXPORTED: "Exported",
}


def battery(
    state: BatteryState,
    links: Mapping[str, Sequence[str]] | None,
    tier: Tier,
    *,
    root: BatteryState | None = None,
    retired_on: date | None = None,
) -> dict[str, Any]:
    code = parse_battery_code(state.code)
    holder, in_transit = state.holder, state.in_transit_to
    if root is not None and root is not state:
        holder, in_transit = root.holder, root.in_transit_to
    spec = state.spec or {}
    full: dict[str, Any] = {
        "code": state.code,
        "level": state.level,
        "chemistry": state.chemistry,
        "manufacturer": state.manufacturer,
        "production_date": code.production_date.isoformat(),
        "second_life": state.second_life,
        "stage": state.stage.value,
        "status": STATUS_TEXT[state.stage],
        "holder": holder,
        "in_transit_to": in_transit,
        "vin": state.vin,
        "system": state.system,
        "application": state.application,
        "parent": state.parent,
        "producer": state.producer,
        "installer": state.installer,
        "registered_at": state.registered_at.isoformat(),
        "last_event_time": state.last_event_time.isoformat(),
        "retired_at": state.retired_at.isoformat() if state.retired_at else None,
        "capacity_kwh": state.capacity_kwh,
        "voltage_v": spec.get("voltage_v"),
        "mass_kg": state.mass_kg,
        "carbon_kgco2e_per_kwh": spec.get("carbon_kgco2e_per_kwh"),
        "carbon_footprint_kgco2e": circularity.manufacturing_footprint(
            spec, state.chemistry, state.capacity_kwh, get_profile()
        )["declared_kgco2e"],
        "recycled_share": circularity.recycled_shares(spec),
        "recycled_content_minimums": circularity.minimums_check(
            spec, state.second_life, get_profile(circularity.RECYCLED_CONTENT_PROFILE)
        ),
        "materials": spec.get("materials"),
        "recycled_content": spec.get("recycled_content"),
        "soh_percent": state.soh_percent,
        "grade": state.grade,
        "stage_before_missing": state.stage_before_missing.value if state.stage_before_missing else None,
    }
    if links is not None:
        full["children"] = list(links.get("children", []))
        full["origins"] = list(links.get("origins", []))
        full["products"] = list(links.get("products", []))
    full["access_tier"] = tier.label
    return cut(full, tier, BATTERY_FIELD_TIERS)


def enterprise(
    ent: Enterprise,
    created_at: datetime,
    log_index: int | None,
    licence_rows: Sequence[Mapping[str, Any]],
    keys: Sequence[Mapping[str, Any]],
    today: date,
) -> dict[str, Any]:
    licences = []
    for row in licence_rows:
        item = jsonable(dict(row))
        item["active"] = (not row["revoked"]) and row["valid_from"] <= today <= row["valid_to"]
        licences.append(item)
    return {
        "id": ent.id,
        "name": ent.name,
        "roles": sorted(r.value for r in ent.roles),
        "region": ent.region,
        "manufacturer_codes": sorted(ent.manufacturer_codes),
        "network_of": ent.network_of,
        "created_at": created_at.isoformat(),
        "log_index": log_index,
        "licences": licences,
        "keys": list(keys),
    }
