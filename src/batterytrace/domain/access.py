"""Access tiers, after the EU battery passport: what each caller may see of a battery."""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from typing import Any

from batterytrace.domain.model import BatteryState, Enterprise, Role


class Tier(IntEnum):
    PUBLIC = 0
    LEGITIMATE_INTEREST = 1
    AUTHORITY = 2

    @property
    def label(self) -> str:
        return {0: "public", 1: "legitimate_interest", 2: "authority"}[int(self)]


#: Roles that have a legitimate interest in any battery's details (repair, collection,
#: second life, recycling), as the EU passport grants to such operators.
LEGITIMATE_INTEREST_ROLES = frozenset({Role.SERVICE_OUTLET, Role.DISMANTLER, Role.REPURPOSER, Role.RECYCLER})

#: The lowest tier that may see each field of a battery; a field not listed is not shown.
BATTERY_FIELD_TIERS: dict[str, Tier] = {
    "code": Tier.PUBLIC,
    "level": Tier.PUBLIC,
    "chemistry": Tier.PUBLIC,
    "manufacturer": Tier.PUBLIC,
    "production_date": Tier.PUBLIC,
    "second_life": Tier.PUBLIC,
    "stage": Tier.PUBLIC,
    "status": Tier.PUBLIC,
    "parent": Tier.PUBLIC,
    "children": Tier.PUBLIC,
    "origins": Tier.PUBLIC,
    "products": Tier.PUBLIC,
    "registered_at": Tier.PUBLIC,
    "capacity_kwh": Tier.PUBLIC,
    "voltage_v": Tier.PUBLIC,
    "mass_kg": Tier.PUBLIC,
    "carbon_kgco2e_per_kwh": Tier.PUBLIC,
    "carbon_footprint_kgco2e": Tier.PUBLIC,
    "recycled_share": Tier.PUBLIC,
    "recycled_content_minimums": Tier.PUBLIC,
    "access_tier": Tier.PUBLIC,
    "holder": Tier.LEGITIMATE_INTEREST,
    "in_transit_to": Tier.LEGITIMATE_INTEREST,
    "materials": Tier.LEGITIMATE_INTEREST,
    "recycled_content": Tier.LEGITIMATE_INTEREST,
    "soh_percent": Tier.LEGITIMATE_INTEREST,
    "grade": Tier.LEGITIMATE_INTEREST,
    "application": Tier.LEGITIMATE_INTEREST,
    "retired_at": Tier.LEGITIMATE_INTEREST,
    "producer": Tier.LEGITIMATE_INTEREST,
    "vin": Tier.AUTHORITY,
    "system": Tier.AUTHORITY,
    "installer": Tier.AUTHORITY,
    "last_event_time": Tier.AUTHORITY,
    "stage_before_missing": Tier.AUTHORITY,
}

#: What each tier sees of a battery's events.
EVENT_FIELD_TIERS: dict[str, Tier] = {
    "id": Tier.PUBLIC,
    "type": Tier.PUBLIC,
    "battery": Tier.PUBLIC,
    "time": Tier.PUBLIC,
    "province": Tier.PUBLIC,
    "retracted": Tier.PUBLIC,
    "recorded_at": Tier.LEGITIMATE_INTEREST,
    "actor": Tier.LEGITIMATE_INTEREST,
    "region": Tier.LEGITIMATE_INTEREST,
    "data": Tier.LEGITIMATE_INTEREST,
    "vin": Tier.AUTHORITY,
    "log_index": Tier.PUBLIC,
}


def tier_for(caller: Enterprise | None, battery: BatteryState | None = None) -> Tier:
    """The tier of ``caller`` for ``battery`` (or for batteries in general)."""
    if caller is None:
        return Tier.PUBLIC
    if caller.is_regulator:
        return Tier.AUTHORITY
    if battery is not None and caller.id in {
        battery.holder,
        battery.producer,
        battery.in_transit_to,
        battery.installer,
    }:
        return Tier.AUTHORITY
    if caller.roles & LEGITIMATE_INTEREST_ROLES or caller.licences:
        return Tier.LEGITIMATE_INTEREST
    return Tier.PUBLIC


def cut(record: Mapping[str, Any], tier: Tier, table: Mapping[str, Tier]) -> dict[str, Any]:
    """The fields of ``record`` that ``tier`` may see, in the record's order."""
    return {k: v for k, v in record.items() if k in table and table[k] <= tier}
