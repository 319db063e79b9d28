"""What the passport page shows of a battery, through the registry's own read use cases, so the
fields are cut to the caller's access tier before the page sees them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from batterytrace.domain.model import Role, Stage
from batterytrace.services.registry import Caller, Registry
from batterytrace.store import repo
from batterytrace.store.db import read_transaction

#: Stages reached by one event whose date the status names ("Recycled on …").
DATED_STAGES = {
    Stage.RECYCLED.value: "recycled",
    Stage.REPURPOSED.value: "repurposed",
    Stage.DISMANTLED.value: "dismantled",
    Stage.EXPORTED.value: "exported",
    Stage.MISSING.value: "reported_missing",
    Stage.RETIRED.value: "retired",
}

#: How each stage looks: ``ok`` in use or in stock, ``warn`` waste that must be handed in,
#: ``danger`` do not buy, ``final`` the end of this code's life.
TONES = {
    Stage.NEW.value: "ok",
    Stage.INSTALLED.value: "ok",
    Stage.REMOVED.value: "ok",
    Stage.RETIRED.value: "warn",
    Stage.MISSING.value: "danger",
    Stage.REPURPOSED.value: "final",
    Stage.DISMANTLED.value: "final",
    Stage.RECYCLED.value: "final",
    Stage.EXPORTED.value: "final",
}

#: Fields shown in the sections of the page beyond the public one, in order.
INTEREST_FIELDS = (
    "holder",
    "in_transit_to",
    "producer",
    "soh_percent",
    "grade",
    "application",
    "retired_at",
    "materials",
)
AUTHORITY_FIELDS = ("vin", "system", "installer", "last_event_time", "stage_before_missing")
#: Fields that name an enterprise (shown with its name).
ENTERPRISE_FIELDS = frozenset({"holder", "in_transit_to", "producer", "installer"})


@dataclass(frozen=True)
class Passport:
    battery: dict[str, Any]  # cut to the caller's tier
    events: list[dict[str, Any]]  # cut to the caller's tier
    tier: str
    status_date: str | None
    names: dict[str, str]  # enterprise id -> name, for the ids the caller may see

    @property
    def stage(self) -> str:
        return str(self.battery["stage"])

    @property
    def tone(self) -> str:
        return TONES.get(self.stage, "ok")

    @property
    def interest_fields(self) -> list[str]:
        return [f for f in INTEREST_FIELDS if f in self.battery]

    @property
    def authority_fields(self) -> list[str]:
        return [f for f in AUTHORITY_FIELDS if f in self.battery]

    @property
    def lineage(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        if self.battery.get("parent"):
            out["parent"] = [self.battery["parent"]]
        for key in ("children", "origins", "products"):
            if self.battery.get(key):
                out[key] = list(self.battery[key])
        return out


def load_passport(registry: Registry, caller: Caller | None, code: str) -> Passport:
    """The passport of ``code`` as ``caller`` may see it; raises the registry's error for a
    malformed or unregistered code."""
    battery = registry.get_battery(caller, code)
    history = registry.battery_events(caller, code)
    events = history["events"]
    status_date = None
    wanted = DATED_STAGES.get(str(battery["stage"]))
    if wanted is not None:
        for event in reversed(events):
            if event["type"] == wanted and not event.get("retracted"):
                status_date = str(event["time"])[:10]
                break
    ids = {str(battery[f]) for f in ENTERPRISE_FIELDS if battery.get(f)}
    ids |= {str(e["actor"]) for e in events if e.get("actor")}
    return Passport(
        battery=battery,
        events=events,
        tier=str(battery["access_tier"]),
        status_date=status_date,
        names=enterprise_names(registry, ids),
    )


def enterprise_names(registry: Registry, ids: Iterable[str]) -> dict[str, str]:
    wanted = [i for i in ids if i]
    if not wanted:
        return {}
    with read_transaction(registry.engine) as conn:
        return {eid: ent.name for eid, ent in repo.load_enterprises(conn, wanted).items()}


def facilities(registry: Registry, province: str) -> list[dict[str, Any]]:
    """Licensed facilities and collection points in a province (the public directory), licensed
    recyclers first."""
    order = {"recycling": 0, "second_life": 1, "dismantling": 2, "collection": 3}
    items = [
        e
        for e in registry.list_enterprises(province=province)
        if e["licensed_scopes"] or Role.SERVICE_OUTLET.value in e["roles"]
    ]
    items.sort(key=lambda e: (min((order[s] for s in e["licensed_scopes"]), default=9), e["name"]))
    return items
