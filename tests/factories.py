"""Small factories for test data: valid identifiers and ready-made enterprises."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from batterytrace.domain.codes import make_battery_code, make_uscc, make_vin

_serial = itertools.count(1)
_uscc = itertools.count(1)
_vin = itertools.count(1)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def uscc() -> str:
    n = next(_uscc)
    return make_uscc(f"91310115{n:09d}")


def vin() -> str:
    n = next(_vin)
    return make_vin("LSVAU2A3", f"PN{n:06d}")


def code(
    manufacturer: str = "0AB",
    level: str = "P",
    chemistry: str = "E",
    serial: int | None = None,
    day: date = date(2026, 3, 1),
) -> str:
    return make_battery_code(manufacturer, level, chemistry, "01", "A1B2C3D", day, serial or next(_serial))


def second_life_code(manufacturer: str = "9RP", level: str = "P", serial: int | None = None) -> str:
    return make_battery_code(manufacturer, level, "B", "02", None, date(2026, 6, 1), serial or next(_serial))


def eid() -> str:
    return str(uuid.uuid4())


def at(minutes: int) -> str:
    """An event time ``minutes`` after T0, with a China Standard Time offset."""
    from datetime import timezone

    return (T0 + timedelta(minutes=minutes)).astimezone(timezone(timedelta(hours=8))).isoformat()


def event(
    type_: str,
    battery: str | None,
    minutes: int,
    data: dict[str, Any] | None = None,
    region: str = "310115",
    vin_: str | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": eid(),
        "type": type_,
        "time": at(minutes),
        "region": region,
        "data": data or {},
    }
    if battery is not None:
        out["battery"] = battery
    if vin_ is not None:
        out["vin"] = vin_
    return out


MANUFACTURED = {
    "capacity_kwh": 60.0,
    "voltage_v": 400.0,
    "mass_kg": 300.0,
    "materials": {"li_kg": 6.0, "ni_kg": 39.5, "co_kg": 5.0, "mn_kg": 4.6, "cu_kg": 22.2},
    "carbon_kgco2e_per_kwh": 74.0,
}
