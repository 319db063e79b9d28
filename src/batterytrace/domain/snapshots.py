"""Plain-dict forms of the state records, for storage and for undoing a retracted event."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import Any

from batterytrace.domain.model import BatteryState, Stage, VehicleState

_BATTERY_TIMES = ("registered_at", "last_event_time", "retired_at")
_VEHICLE_TIMES = ("sold_at", "scrapped_at")
BATTERY_FIELDS = tuple(f.name for f in fields(BatteryState))
VEHICLE_FIELDS = tuple(f.name for f in fields(VehicleState))


def _time_out(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _time_in(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def battery_to_dict(state: BatteryState) -> dict[str, Any]:
    out: dict[str, Any] = {name: getattr(state, name) for name in BATTERY_FIELDS}
    for name in _BATTERY_TIMES:
        out[name] = _time_out(out[name])
    out["stage"] = str(state.stage)
    out["stage_before_missing"] = str(state.stage_before_missing) if state.stage_before_missing else None
    out["spec"] = dict(state.spec)
    return out


def battery_from_dict(row: dict[str, Any]) -> BatteryState:
    values: dict[str, Any] = {name: row.get(name) for name in BATTERY_FIELDS}
    for name in _BATTERY_TIMES:
        values[name] = _time_in(values[name])
    values["stage"] = Stage(values["stage"])
    values["stage_before_missing"] = (
        Stage(values["stage_before_missing"]) if values["stage_before_missing"] else None
    )
    values["attached"] = bool(values["attached"])
    values["second_life"] = bool(values["second_life"])
    values["spec"] = dict(values["spec"] or {})
    return BatteryState(**values)


def vehicle_to_dict(state: VehicleState) -> dict[str, Any]:
    out: dict[str, Any] = {name: getattr(state, name) for name in VEHICLE_FIELDS}
    for name in _VEHICLE_TIMES:
        out[name] = _time_out(out[name])
    return out


def vehicle_from_dict(row: dict[str, Any]) -> VehicleState:
    values: dict[str, Any] = {name: row.get(name) for name in VEHICLE_FIELDS}
    for name in _VEHICLE_TIMES:
        values[name] = _time_in(values[name])
    return VehicleState(**values)
