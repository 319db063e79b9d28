"""The registry's vocabulary: roles, licence scopes, stages, event types, and the state kept per
battery, vehicle and enterprise. Plain data; the rules that change it live in ``lifecycle``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any


class Role(StrEnum):
    BATTERY_MAKER = "battery_maker"
    AUTOMAKER = "automaker"
    SERVICE_OUTLET = "service_outlet"
    DISMANTLER = "dismantler"
    REPURPOSER = "repurposer"
    RECYCLER = "recycler"
    REGULATOR = "regulator"


class Scope(StrEnum):
    """Licence scopes."""

    COLLECTION = "collection"
    DISMANTLING = "dismantling"
    SECOND_LIFE = "second_life"
    RECYCLING = "recycling"


class Stage(StrEnum):
    NEW = "new"
    INSTALLED = "installed"
    REMOVED = "removed"
    RETIRED = "retired"
    REPURPOSED = "repurposed"
    DISMANTLED = "dismantled"
    RECYCLED = "recycled"
    MISSING = "missing"
    EXPORTED = "exported"


#: Stages after which no further event may be recorded under the code (but retraction).
FINAL_STAGES = frozenset({Stage.RECYCLED, Stage.REPURPOSED, Stage.EXPORTED, Stage.DISMANTLED})
#: Stages at which the battery is waste: from here only licensed facilities may take it.
WASTE_STAGES = frozenset({Stage.RETIRED})


class EventType(StrEnum):
    MANUFACTURED = "manufactured"
    ASSEMBLED = "assembled"
    SHIPPED = "shipped"
    RECEIVED = "received"
    INSTALLED = "installed"
    VEHICLE_SOLD = "vehicle_sold"
    VEHICLE_SCRAPPED = "vehicle_scrapped"
    MAINTAINED = "maintained"
    REMOVED = "removed"
    RETIRED = "retired"
    GRADED = "graded"
    REPURPOSED = "repurposed"
    DISMANTLED = "dismantled"
    RECYCLED = "recycled"
    REPORTED_MISSING = "reported_missing"
    FOUND = "found"
    EXPORTED = "exported"
    RETRACTED = "retracted"


#: Events about a vehicle (they carry ``vin`` instead of ``battery``).
VEHICLE_EVENTS = frozenset({EventType.VEHICLE_SOLD, EventType.VEHICLE_SCRAPPED})

LEVELS = ("pack", "module", "cell")
LEVEL_RANK = {"pack": 0, "module": 1, "cell": 2}

REMOVAL_REASONS = ("repair", "replacement", "retirement", "vehicle_scrapped", "swap")
GRADE_DECISIONS = ("repurpose", "recycle")
MATERIALS = ("li_kg", "co_kg", "ni_kg", "mn_kg", "cu_kg")


@dataclass(frozen=True)
class Licence:
    id: int
    enterprise_id: str
    scope: Scope
    valid_from: date
    valid_to: date
    region: str | None  # a province ("31") or a 6-digit division; None: nationwide
    revoked: bool = False

    def covers(self, scope: Scope, on: date, region: str | None = None) -> bool:
        """Whether this licence allows ``scope`` on the given day, at a site in ``region``."""
        if self.revoked or self.scope != scope:
            return False
        if not (self.valid_from <= on <= self.valid_to):
            return False
        return not (self.region and region and not region.startswith(self.region))


@dataclass(frozen=True)
class Enterprise:
    id: str
    name: str
    roles: frozenset[Role]
    region: str
    manufacturer_codes: frozenset[str] = frozenset()
    network_of: str | None = None
    licences: tuple[Licence, ...] = ()

    def has_role(self, role: Role) -> bool:
        return role in self.roles

    @property
    def is_regulator(self) -> bool:
        return Role.REGULATOR in self.roles

    def licensed(self, scope: Scope, on: date, region: str | None = None) -> bool:
        return any(lic.covers(scope, on, region) for lic in self.licences)

    def licensed_any(self, on: date, region: str | None = None) -> bool:
        return any(self.licensed(s, on, region) for s in Scope)


@dataclass(frozen=True)
class BatteryState:
    """The current state of one battery code, kept beside the append-only event table."""

    code: str
    level: str
    chemistry: str
    manufacturer: str  # the 3-character manufacturer code
    producer: str  # the enterprise that registered it
    stage: Stage
    holder: str | None
    registered_at: datetime
    last_event_time: datetime
    last_event_id: str
    in_transit_to: str | None = None
    vin: str | None = None
    system: str | None = None
    application: str | None = None
    parent: str | None = None
    attached: bool = False
    second_life: bool = False
    stage_before_missing: Stage | None = None
    grade: str | None = None  # last grading decision
    soh_percent: float | None = None
    installer: str | None = None  # the automaker that installed it in a vehicle
    retired_at: datetime | None = None
    capacity_kwh: float | None = None
    mass_kg: float | None = None
    spec: dict[str, Any] = field(default_factory=dict)  # data declared at manufacture

    @property
    def is_final(self) -> bool:
        return self.stage in FINAL_STAGES

    @property
    def is_waste(self) -> bool:
        return self.stage in WASTE_STAGES


@dataclass(frozen=True)
class VehicleState:
    vin: str
    automaker: str | None
    status: str  # "registered" | "in_service" | "scrapped"
    last_event_id: str
    sold_at: datetime | None = None
    scrapped_at: datetime | None = None
    scrapped_by: str | None = None


@dataclass(frozen=True)
class EventIn:
    """An event as reported, after its shape has been checked."""

    id: str
    type: EventType
    time: datetime
    region: str
    data: dict[str, Any]
    battery: str | None = None
    vin: str | None = None


@dataclass(frozen=True)
class Link:
    parent: str
    child: str
    kind: str  # "component" (pack ⊃ module ⊃ cell) or "origin" (origin → second-life product)


@dataclass(frozen=True)
class MaterialFlow:
    """A change to a recycler's balance of one recovered material, in milligrams (exact integers):
    ``recovered_mg`` added by a ``recycled`` event, ``declared_mg`` drawn by a new battery that
    declares recycled content from that recycler."""

    recycler: str
    material: str  # "li", "co", "ni", ... (the material key without "_kg")
    recovered_mg: int = 0
    declared_mg: int = 0
