"""The lifecycle rules: who may record which event on a battery, and what it changes.

``decide`` is a pure function of the reported event, the acting enterprise and a read-only
view of the registry (``Context``). It either raises a ``DomainError`` naming the rule that
was broken, or returns the ``Changes`` to store. It never writes anything itself.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from batterytrace.domain import errors as E
from batterytrace.domain.codes import parse_battery_code, parse_uscc, parse_vin
from batterytrace.domain.errors import DomainError
from batterytrace.domain.events import require_mapping, require_number, require_str
from batterytrace.domain.model import (
    GRADE_DECISIONS,
    LEVEL_RANK,
    REMOVAL_REASONS,
    BatteryState,
    Enterprise,
    EventIn,
    EventType,
    Link,
    MaterialFlow,
    Role,
    Scope,
    Stage,
    VehicleState,
)
from batterytrace.domain.policy import Profile
from batterytrace.domain.snapshots import (
    battery_from_dict,
    battery_to_dict,
    vehicle_from_dict,
    vehicle_to_dict,
)

MAX_CHILDREN = 10_000
#: Most recyclers one battery's recycled content may be drawn from.
MAX_RECYCLED_SOURCES = 100
#: Material balances are kept in milligrams, so that adding and drawing them is exact.
MG_PER_KG = 1_000_000
E_BIKE_APPLICATIONS = frozenset(
    {"e_bike", "ebike", "electric_bike", "e_bicycle", "electric_bicycle", "电动自行车"}
)
_SEPARATORS = re.compile(r"[\s_\-]+")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_MATERIAL_KEY = re.compile(r"^[a-z][a-z0-9_]*_kg$")


@dataclass(frozen=True)
class PastEvent:
    """What the rules need to know about an accepted event, to retract it."""

    id: str
    type: EventType
    actor: str
    battery: str | None
    vin: str | None
    undo: Mapping[str, Any]
    retracted: bool


class Context(Protocol):
    """A read-only view of the registry, as of just before the event."""

    def battery(self, code: str) -> BatteryState | None: ...
    def vehicle(self, vin: str) -> VehicleState | None: ...
    def enterprise(self, enterprise_id: str) -> Enterprise | None: ...
    def manufacturer_owner(self, manufacturer_code: str) -> str | None: ...
    def components(self, code: str) -> list[str]: ...
    def past_event(self, event_id: str) -> PastEvent | None: ...
    def profile(self) -> Profile:
        """The policy profile whose thresholds the rules apply."""
        ...

    def recovered_balance(self, recycler: str, material: str) -> int:
        """Milligrams of ``material`` (``li``, ``co``, …) that ``recycler`` has recovered and that no
        battery has yet declared as its recycled content."""
        ...


@dataclass
class Changes:
    """Everything one accepted event changes, and how to undo it."""

    batteries: dict[str, BatteryState] = field(default_factory=dict)
    deleted_batteries: list[str] = field(default_factory=list)
    vehicles: dict[str, VehicleState] = field(default_factory=dict)
    deleted_vehicles: list[str] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    removed_links: list[Link] = field(default_factory=list)
    retracts: str | None = None
    undo: dict[str, Any] = field(default_factory=dict)
    materials: list[MaterialFlow] = field(default_factory=list)


# --- helpers ------------------------------------------------------------------------------


def _battery(ev: EventIn, ctx: Context) -> BatteryState:
    assert ev.battery is not None
    state = ctx.battery(ev.battery)
    if state is None:
        raise DomainError(
            E.BATTERY_UNKNOWN,
            f"battery {ev.battery} is not registered; it must be 'manufactured' first",
            field="battery",
        )
    return state


def _check_time(ev: EventIn, state: BatteryState) -> None:
    if ev.time < state.last_event_time:
        raise DomainError(
            E.EVENT_TIME_ORDER,
            f"'time' {ev.time.isoformat()} is earlier than the last event recorded for battery {state.code} "
            f"({state.last_event_time.isoformat()}); report events in the order they happened",
            field="time",
        )


def _check_open(ev: EventIn, state: BatteryState) -> None:
    if state.is_final:
        raise DomainError(
            E.FINAL,
            f"battery {state.code} is {state.stage}: no further '{ev.type}' can be recorded under this code",
            field="battery",
        )
    if state.attached and state.parent:
        raise DomainError(
            E.ATTACHED,
            f"battery {state.code} is part of {state.parent}; record '{ev.type}' on {state.parent} "
            "(or dismantle it first)",
            field="battery",
        )


def _check_holder(ev: EventIn, state: BatteryState, actor: Enterprise) -> None:
    if state.holder != actor.id:
        raise DomainError(
            E.NOT_HOLDER,
            f"enterprise {actor.id} does not hold battery {state.code}; only its holder may record '{ev.type}'",
            field="battery",
        )


def _check_not_in_transit(ev: EventIn, state: BatteryState) -> None:
    if state.in_transit_to is not None:
        raise DomainError(
            E.IN_TRANSIT,
            f"battery {state.code} is in transit to {state.in_transit_to}; it must be 'received' "
            f"before '{ev.type}'",
            field="battery",
        )


def _check_stage(ev: EventIn, state: BatteryState, allowed: tuple[Stage, ...]) -> None:
    if state.stage not in allowed:
        names = " or ".join(s.value for s in allowed)
        raise DomainError(
            E.WRONG_STAGE,
            f"'{ev.type}' needs a battery that is {names}; battery {state.code} is {state.stage}",
            field="battery",
        )


def _check_role(ev: EventIn, actor: Enterprise, roles: tuple[Role, ...]) -> None:
    if not any(actor.has_role(r) for r in roles):
        names = " or ".join(r.value for r in roles)
        raise DomainError(
            E.WRONG_ROLE,
            f"'{ev.type}' may only be recorded by a {names}; enterprise {actor.id} is not one",
        )


def _check_licence(ev: EventIn, actor: Enterprise, scopes: tuple[Scope, ...]) -> None:
    on = ev.time.date()
    if not any(actor.licensed(s, on, ev.region) for s in scopes):
        names = " or ".join(s.value for s in scopes)
        raise DomainError(
            E.LICENCE_MISSING,
            f"'{ev.type}' needs a valid {names} licence covering {on.isoformat()} and region {ev.region}; "
            f"enterprise {actor.id} has none",
        )


def _in_producer_network(actor: Enterprise, state: BatteryState) -> bool:
    if not actor.has_role(Role.SERVICE_OUTLET) or actor.network_of is None:
        return False
    return actor.network_of in {state.producer, state.installer}


def _advance(state: BatteryState, **changes: Any) -> BatteryState:
    return replace(state, **changes)


def _materials(data: Mapping[str, Any], key: str) -> dict[str, float]:
    raw = data.get(key)
    if raw is None:
        return {}
    mats = require_mapping(raw, f"data.{key}")
    out: dict[str, float] = {}
    for name in mats:
        if not isinstance(name, str) or not _MATERIAL_KEY.match(name):
            raise DomainError(
                E.REQUEST_INVALID,
                f"'data.{key}.{name}' is not a material: use names such as li_kg, co_kg, ni_kg, mn_kg, cu_kg",
                field=f"data.{key}.{name}",
            )
        value = require_number(mats, name, prefix=f"data.{key}")
        assert value is not None
        out[name] = value
    return out


def _code_field(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise DomainError(E.REQUEST_INVALID, f"'{path}' must be a battery code string", field=path)
    try:
        return parse_battery_code(value).raw
    except DomainError as exc:
        raise exc.with_field(path) from None


def _mg(kg: float) -> int:
    return round(kg * MG_PER_KG)


def _recycled_content(
    data: Mapping[str, Any], contained: Mapping[str, float], ctx: Context
) -> tuple[list[dict[str, Any]], list[MaterialFlow]]:
    """``data.recycled_content`` of a new battery: per recycler, the kg of each material it
    recovered that went into this battery. Each material must be declared in ``data.materials``
    (at least as much as is recycled), and each recycler must have recovered that much and not
    have it already declared in other batteries (mass balance per recycler and material)."""
    raw = data.get("recycled_content")
    if raw is None:
        return [], []
    if not isinstance(raw, list) or not raw or len(raw) > MAX_RECYCLED_SOURCES:
        raise DomainError(
            E.REQUEST_INVALID,
            f"'data.recycled_content' must be a list of 1 to {MAX_RECYCLED_SOURCES} sources such as "
            '{"recycler": "<USCC>", "li_kg": 0.5}',
            field="data.recycled_content",
        )
    sources: list[dict[str, Any]] = []
    totals: dict[str, int] = {}
    seen: set[str] = set()
    for i, item in enumerate(raw):
        key = f"recycled_content[{i}]"
        path = f"data.{key}"
        entry = require_mapping(item, path)
        recycler_raw = entry.get("recycler")
        if not isinstance(recycler_raw, str):
            raise DomainError(
                E.REQUEST_INVALID,
                f"'{path}.recycler' is required: the USCC of the recycler that recovered the material",
                field=f"{path}.recycler",
            )
        try:
            recycler = parse_uscc(recycler_raw)
        except DomainError as exc:
            raise exc.with_field(f"{path}.recycler") from None
        if recycler in seen:
            raise DomainError(
                E.REQUEST_INVALID,
                f"'{path}.recycler' repeats {recycler}: give one entry per recycler",
                field=f"{path}.recycler",
            )
        seen.add(recycler)
        amounts = _materials({key: {k: v for k, v in entry.items() if k != "recycler"}}, key)
        if not amounts:
            raise DomainError(
                E.REQUEST_INVALID,
                f"'{path}' names no material: give the kg recycled, e.g. li_kg, co_kg, ni_kg",
                field=path,
            )
        for name in amounts:
            if name not in contained:
                raise DomainError(
                    E.REQUEST_INVALID,
                    f"'{path}.{name}': declare the battery's content of this material in 'data.materials.{name}' "
                    "too, so that its recycled share can be worked out",
                    field=f"{path}.{name}",
                )
            totals[name] = totals.get(name, 0) + _mg(amounts[name])
        sources.append({"recycler": recycler, **amounts})
    for name, total in sorted(totals.items()):
        if total > _mg(contained[name]):
            raise DomainError(
                E.MASS_BALANCE,
                f"'data.recycled_content' declares {total / MG_PER_KG:g} kg of recycled {name[:-3]}, more than "
                f"the {contained[name]:g} kg the battery contains ('data.materials.{name}')",
                field="data.recycled_content",
            )
    flows: list[MaterialFlow] = []
    for i, source in enumerate(sources):
        recycler = source["recycler"]
        if ctx.enterprise(recycler) is None:
            raise DomainError(
                E.ENTERPRISE_UNKNOWN,
                f"'data.recycled_content[{i}].recycler': no enterprise {recycler} is registered",
                field=f"data.recycled_content[{i}].recycler",
            )
        for name, kg in sorted(source.items()):
            if name == "recycler" or _mg(kg) == 0:
                continue
            material = name[:-3]
            left = ctx.recovered_balance(recycler, material)
            if _mg(kg) > left:
                raise DomainError(
                    E.RECYCLED_CONTENT_UNBACKED,
                    f"'data.recycled_content[{i}].{name}' declares {kg:g} kg of {material} recovered by {recycler}, "
                    f"but that recycler has recovered only {left / MG_PER_KG:g} kg not yet declared in other "
                    "batteries; declare no more recycled content than was really recovered",
                    field=f"data.recycled_content[{i}].{name}",
                )
            flows.append(MaterialFlow(recycler=recycler, material=material, declared_mg=_mg(kg)))
    return sources, flows


def _flow_dict(flow: MaterialFlow) -> dict[str, Any]:
    return {
        "recycler": flow.recycler,
        "material": flow.material,
        "recovered_mg": flow.recovered_mg,
        "declared_mg": flow.declared_mg,
    }


# --- the rules, one per event type ----------------------------------------------------------


def _manufactured(ev: EventIn, actor: Enterprise, ctx: Context) -> Changes:
    assert ev.battery is not None
    if ctx.battery(ev.battery) is not None:
        raise DomainError(E.BATTERY_EXISTS, f"battery {ev.battery} is already registered", field="battery")
    code = parse_battery_code(ev.battery)
    if code.second_life:
        raise DomainError(
            E.SECOND_LIFE_CODE,
            f"{code.raw} is a second-life code; it is registered by a 'repurposed' event naming it in 'data.into'",
            field="battery",
        )
    _check_role(ev, actor, (Role.BATTERY_MAKER,))
    owner = ctx.manufacturer_owner(code.manufacturer)
    if owner != actor.id:
        raise DomainError(
            E.NOT_MANUFACTURER,
            f"manufacturer code '{code.manufacturer}' (positions 1–3 of {code.raw}) is not held by enterprise "
            f"{actor.id}; a maker registers only codes under its own manufacturer codes",
            field="battery",
            position=1,
        )
    data = ev.data
    capacity = require_number(data, "capacity_kwh", positive=True, maximum=100_000)
    voltage = require_number(data, "voltage_v", positive=True, maximum=10_000)
    mass = require_number(data, "mass_kg", positive=True, maximum=1_000_000)
    materials = _materials(data, "materials")
    if mass is not None and sum(materials.values()) > mass:
        raise DomainError(
            E.MASS_BALANCE,
            f"'data.materials' add up to {sum(materials.values()):g} kg, more than the battery's mass_kg {mass:g}",
            field="data.materials",
        )
    carbon = require_number(data, "carbon_kgco2e_per_kwh", optional=True, maximum=10_000)
    spec: dict[str, Any] = {
        "capacity_kwh": capacity,
        "voltage_v": voltage,
        "mass_kg": mass,
        "materials": materials,
    }
    if carbon is not None:
        spec["carbon_kgco2e_per_kwh"] = carbon
    for extra in ("cathode", "model"):
        value = require_str(data, extra, optional=True)
        if value is not None:
            spec[extra] = value
    recycled, flows = _recycled_content(data, materials, ctx)
    if recycled:
        spec["recycled_content"] = recycled
    state = BatteryState(
        code=code.raw,
        level=code.level,
        chemistry=code.chemistry,
        manufacturer=code.manufacturer,
        producer=actor.id,
        stage=Stage.NEW,
        holder=actor.id,
        registered_at=ev.time,
        last_event_time=ev.time,
        last_event_id=ev.id,
        capacity_kwh=capacity,
        mass_kg=mass,
        spec=spec,
    )
    return Changes(batteries={state.code: state}, materials=flows)


def _assembled(ev: EventIn, actor: Enterprise, ctx: Context) -> Changes:
    parent = _battery(ev, ctx)
    _check_open(ev, parent)
    _check_holder(ev, parent, actor)
    _check_not_in_transit(ev, parent)
    _check_stage(ev, parent, (Stage.NEW,))
    if parent.level == "cell":
        raise DomainError(
            E.HIERARCHY, f"battery {parent.code} is a cell: cells have no components", field="battery"
        )
    raw = ev.data.get("children")
    if not isinstance(raw, list) or not raw:
        raise DomainError(
            E.REQUEST_INVALID,
            "'data.children' must be a non-empty list of battery codes",
            field="data.children",
        )
    if len(raw) > MAX_CHILDREN:
        raise DomainError(
            E.REQUEST_INVALID, f"'data.children' may list at most {MAX_CHILDREN} codes", field="data.children"
        )
    changes = Changes(batteries={})
    seen: set[str] = set()
    for i, item in enumerate(raw):
        path = f"data.children[{i}]"
        code = _code_field(item, path)
        if code in seen:
            raise DomainError(E.REQUEST_INVALID, f"'{path}' repeats {code}", field=path)
        seen.add(code)
        if code == parent.code:
            raise DomainError(E.HIERARCHY, f"'{path}': a battery cannot contain itself", field=path)
        child = ctx.battery(code)
        if child is None:
            raise DomainError(E.BATTERY_UNKNOWN, f"'{path}': battery {code} is not registered", field=path)
        if LEVEL_RANK[child.level] <= LEVEL_RANK[parent.level]:
            raise DomainError(
                E.HIERARCHY,
                f"'{path}': a {child.level} cannot be a component of a {parent.level} "
                "(packs hold modules or cells, modules hold cells)",
                field=path,
            )
        if child.attached:
            raise DomainError(
                E.HIERARCHY, f"'{path}': battery {code} is already part of {child.parent}", field=path
            )
        if child.holder != actor.id or child.in_transit_to is not None:
            raise DomainError(
                E.NOT_HOLDER,
                f"'{path}': battery {code} is not held by {actor.id}, the holder of the parent",
                field=path,
            )
        if child.stage != Stage.NEW:
            raise DomainError(
                E.WRONG_STAGE,
                f"'{path}': battery {code} is {child.stage}; only new batteries are assembled",
                field=path,
            )
        changes.batteries[code] = _advance(child, parent=parent.code, attached=True)
        changes.links.append(Link(parent=parent.code, child=code, kind="component"))
    changes.batteries[parent.code] = parent
    return changes


def _shipped(ev: EventIn, actor: Enterprise, ctx: Context) -> Changes:
    state = _battery(ev, ctx)
    _check_open(ev, state)
    _check_holder(ev, state, actor)
    _check_not_in_transit(ev, state)
    if state.stage == Stage.MISSING:
        raise DomainError(E.WRONG_STAGE, f"battery {state.code} is reported missing", field="battery")
    to = require_str(ev.data, "to")
    assert to is not None
    receiver = ctx.enterprise(to)
    if receiver is None:
        raise DomainError(
            E.ENTERPRISE_UNKNOWN, f"'data.to': no enterprise {to} is registered", field="data.to"
        )
    if receiver.id == actor.id:
        raise DomainError(E.REQUEST_INVALID, "'data.to' names the sender itself", field="data.to")
    if state.is_waste:
        on = ev.time.date()
        licensed = receiver.licensed_any(on)
        own_outlet = _in_producer_network(receiver, state)
        if not (licensed or own_outlet):
            raise DomainError(
                E.WASTE_UNLICENSED,
                f"battery {state.code} is retired (waste) and may only be shipped to a licensed facility or an "
                f"outlet of its producer's collection network; {receiver.id} is neither on {on.isoformat()}",
                field="data.to",
            )
    return Changes(batteries={state.code: _advance(state, in_transit_to=receiver.id)})


def _received(ev: EventIn, actor: Enterprise, ctx: Context) -> Changes:
    state = _battery(ev, ctx)
    _check_open(ev, state)
    if state.in_transit_to != actor.id:
        raise DomainError(
            E.NOT_IN_TRANSIT_TO_ACTOR,
            f"battery {state.code} is not in transit to {actor.id}; only the addressee of a shipment receives it",
            field="battery",
        )
    return Changes(batteries={state.code: _advance(state, holder=actor.id, in_transit_to=None)})


def _installed(ev: EventIn, actor: Enterprise, ctx: Context) -> Changes:
    state = _battery(ev, ctx)
    _check_open(ev, state)
    _check_role(ev, actor, (Role.AUTOMAKER, Role.SERVICE_OUTLET, Role.REPURPOSER))
    _check_holder(ev, state, actor)
    _check_not_in_transit(ev, state)
    if state.is_waste:
        raise DomainError(
            E.WASTE_NOT_ALLOWED,
            f"battery {state.code} is retired (waste): it may not be installed until repurposed under a new code",
            field="battery",
        )
    _check_stage(ev, state, (Stage.NEW, Stage.REMOVED))
    has_vin = ev.data.get("vin") is not None
    has_system = ev.data.get("system") is not None
    if has_vin == has_system:
        raise DomainError(
            E.REQUEST_INVALID,
            "'installed' needs exactly one of 'data.vin' (a vehicle) or 'data.system' (a storage system)",
            field="data",
        )
    changes = Changes()
    if has_vin:
        raw_vin = require_str(ev.data, "vin")
        assert raw_vin is not None
        try:
            vin = parse_vin(raw_vin)
        except DomainError as exc:
            raise exc.with_field("data.vin") from None
        application = _application(ev.data, "vehicle")
        vehicle = ctx.vehicle(vin)
        if vehicle is not None and vehicle.status == "scrapped":
            raise DomainError(E.VEHICLE_SCRAPPED, f"vehicle {vin} has been scrapped", field="data.vin")
        if vehicle is None:
            automaker = actor.id if actor.has_role(Role.AUTOMAKER) else None
            changes.vehicles[vin] = VehicleState(
                vin=vin, automaker=automaker, status="registered", last_event_id=ev.id
            )
        installer = actor.id if actor.has_role(Role.AUTOMAKER) else state.installer
        new_state = _advance(
            state, stage=Stage.INSTALLED, vin=vin, system=None, application=application, installer=installer
        )
    else:
        system = require_str(ev.data, "system")
        application = _application(ev.data, "stationary").lower()
        new_state = _advance(state, stage=Stage.INSTALLED, vin=None, system=system, application=application)
    if new_state.application == "e_bike" and (state.second_life or state.retired_at is not None):
        raise DomainError(
            E.E_BIKE_FORBIDDEN,
            f"battery {state.code} is a {'second-life product' if state.second_life else 'retired power battery'}: "
            "since 2026-04-01 retired power batteries and products made from them may not be used in e-bikes",
            field="data.application",
        )
    changes.batteries[state.code] = new_state
    return changes


def _application(data: Mapping[str, Any], default: str) -> str:
    """``data.application`` as given, or ``e_bike`` however an e-bike is spelt (case, spaces, hyphens)."""
    application = require_str(data, "application", optional=True) or default
    if _SEPARATORS.sub("_", application.strip().lower()).strip("_") in E_BIKE_APPLICATIONS:
        return "e_bike"
    return application


def _vehicle(ev: EventIn, ctx: Context) -> tuple[str, VehicleState | None]:
    assert ev.vin is not None
    return ev.vin, ctx.vehicle(ev.vin)


def _vehicle_sold(ev: EventIn, actor: Enterprise, ctx: Context) -> Changes:
    _check_role(ev, actor, (Role.AUTOMAKER,))
    vin, vehicle = _vehicle(ev, ctx)
    if vehicle is not None:
        if vehicle.automaker is not None and vehicle.automaker != actor.id:
            raise DomainError(
                E.NOT_HOLDER,
                f"vehicle {vin} was built by another automaker; only it reports the sale",
                field="vin",
            )
        if vehicle.status == "scrapped":
            raise DomainError(E.VEHICLE_SCRAPPED, f"vehicle {vin} has been scrapped", field="vin")
        if vehicle.status == "in_service":
            raise DomainError(E.VEHICLE_STATE, f"vehicle {vin} is already sold and in service", field="vin")
        if ev.time < (vehicle.sold_at or ev.time):
            raise DomainError(E.EVENT_TIME_ORDER, "'time' is before the vehicle's last event", field="time")
        new = replace(vehicle, automaker=actor.id, status="in_service", sold_at=ev.time)
    else:
        new = VehicleState(
            vin=vin, automaker=actor.id, status="in_service", last_event_id=ev.id, sold_at=ev.time
        )
    return Changes(vehicles={vin: new})


def _vehicle_scrapped(ev: EventIn, actor: Enterprise, ctx: Context) -> Changes:
    _check_role(ev, actor, (Role.DISMANTLER,))
    _check_licence(ev, actor, (Scope.DISMANTLING,))
    vin, vehicle = _vehicle(ev, ctx)
    if vehicle is not None and vehicle.status == "scrapped":
        raise DomainError(E.VEHICLE_SCRAPPED, f"vehicle {vin} is already scrapped", field="vin")
    base = vehicle or VehicleState(vin=vin, automaker=None, status="registered", last_event_id=ev.id)
    new = replace(base, status="scrapped", scrapped_at=ev.time, scrapped_by=actor.id)
    return Changes(vehicles={vin: new})


def _maintained(ev: EventIn, actor: Enterprise, ctx: Context) -> Changes:
    state = _battery(ev, ctx)
    _check_open(ev, state)
    if state.holder != actor.id and not _in_producer_network(actor, state):
        raise DomainError(
            E.NOT_HOLDER,
            f"only the holder of battery {state.code} or an outlet in its producer's network may record "
            "'maintained'",
            field="battery",
        )
    _check_stage(ev, state, (Stage.INSTALLED, Stage.REMOVED))
    soh = require_number(ev.data, "soh_percent", maximum=100)
    return Changes(batteries={state.code: _advance(state, soh_percent=soh)})


def _removed(ev: EventIn, actor: Enterprise, ctx: Context) -> Changes:
    state = _battery(ev, ctx)
    _check_open(ev, state)
    _check_not_in_transit(ev, state)
    is_dismantler = actor.has_role(Role.DISMANTLER)
    if state.holder != actor.id and not _in_producer_network(actor, state) and not is_dismantler:
        raise DomainError(
            E.NOT_HOLDER,
            f"battery {state.code} may be removed only by its holder, an outlet in its producer's network, "
            "or a licensed dismantler",
            field="battery",
        )
    if is_dismantler and state.holder != actor.id and not _in_producer_network(actor, state):
        _check_licence(ev, actor, (Scope.DISMANTLING,))
    _check_stage(ev, state, (Stage.INSTALLED,))
    reason = require_str(ev.data, "reason")
    if reason not in REMOVAL_REASONS:
        raise DomainError(
            E.REQUEST_INVALID,
            f"'data.reason' must be one of {', '.join(REMOVAL_REASONS)}, got {reason!r}",
            field="data.reason",
        )
    return Changes(
        batteries={
            state.code: _advance(
                state, stage=Stage.REMOVED, holder=actor.id, vin=None, system=None, application=None
            )
        }
    )


def _retired(ev: EventIn, actor: Enterprise, ctx: Context) -> Changes:
    state = _battery(ev, ctx)
    _check_open(ev, state)
    _check_holder(ev, state, actor)
    _check_not_in_transit(ev, state)
    in_scrapped = False
    if state.stage == Stage.INSTALLED and state.vin is not None:
        vehicle = ctx.vehicle(state.vin)
        in_scrapped = vehicle is not None and vehicle.status == "scrapped"
    if state.stage != Stage.REMOVED and not in_scrapped:
        raise DomainError(
            E.WRONG_STAGE,
            f"'retired' needs a removed battery (or one in a scrapped vehicle); battery {state.code} is {state.stage}",
            field="battery",
        )
    return Changes(
        batteries={
            state.code: _advance(state, stage=Stage.RETIRED, retired_at=ev.time, vin=None, system=None)
        }
    )


def _graded(ev: EventIn, actor: Enterprise, ctx: Context) -> Changes:
    state = _battery(ev, ctx)
    _check_open(ev, state)
    _check_holder(ev, state, actor)
    _check_not_in_transit(ev, state)
    _check_licence(ev, actor, (Scope.SECOND_LIFE, Scope.RECYCLING))
    _check_stage(ev, state, (Stage.RETIRED,))
    soh = require_number(ev.data, "soh_percent", maximum=100)
    decision = require_str(ev.data, "decision")
    if decision not in GRADE_DECISIONS:
        raise DomainError(
            E.REQUEST_INVALID, "'data.decision' must be 'repurpose' or 'recycle'", field="data.decision"
        )
    assert soh is not None
    profile = ctx.profile()
    if decision == "repurpose" and soh < profile.repurpose_min_soh:
        raise DomainError(
            E.SOH_BELOW_THRESHOLD,
            f"battery {state.code} tested at {soh:g} % state of health; the {profile.name} policy allows "
            f"repurposing from {profile.repurpose_min_soh:g} % up, so the decision must be 'recycle'",
            field="data.decision",
        )
    return Changes(batteries={state.code: _advance(state, soh_percent=soh, grade=decision)})


def _repurposed(ev: EventIn, actor: Enterprise, ctx: Context) -> Changes:
    state = _battery(ev, ctx)
    _check_open(ev, state)
    _check_role(ev, actor, (Role.REPURPOSER,))
    _check_licence(ev, actor, (Scope.SECOND_LIFE,))
    _check_holder(ev, state, actor)
    _check_not_in_transit(ev, state)
    _check_stage(ev, state, (Stage.RETIRED,))
    if state.grade == "recycle":
        raise DomainError(
            E.GRADED_FOR_RECYCLING,
            f"battery {state.code} was graded for recycling; grade it again before repurposing",
            field="battery",
        )
    into = _code_field(ev.data.get("into"), "data.into") if ev.data.get("into") is not None else None
    if into is None:
        raise DomainError(
            E.REQUEST_INVALID, "'data.into' is required: the second-life product's code", field="data.into"
        )
    product_code = parse_battery_code(into)
    if not product_code.second_life:
        raise DomainError(
            E.SECOND_LIFE_CODE,
            f"'data.into' {into} is not a second-life code: second-life products are re-coded without the "
            "traceability field (19 characters ending in R and P, M or C)",
            field="data.into",
        )
    if ctx.manufacturer_owner(product_code.manufacturer) != actor.id:
        raise DomainError(
            E.NOT_MANUFACTURER,
            f"'data.into': manufacturer code '{product_code.manufacturer}' is not held by {actor.id}; "
            "second-life products are coded under the repurposer's own manufacturer code",
            field="data.into",
        )
    if state.grade != "repurpose":
        raise DomainError(
            E.NOT_GRADED_FOR_REPURPOSING,
            f"battery {state.code} has not been graded for repurposing; record 'graded' with its state of "
            "health and the decision 'repurpose' first",
            field="battery",
        )
    capacity = require_number(ev.data, "capacity_kwh", optional=True, positive=True, maximum=1_000_000)
    existing = ctx.battery(into)
    changes = Changes()
    if existing is None:
        product = BatteryState(
            code=into,
            level=product_code.level,
            chemistry=product_code.chemistry,
            manufacturer=product_code.manufacturer,
            producer=actor.id,
            stage=Stage.NEW,
            holder=actor.id,
            registered_at=ev.time,
            last_event_time=ev.time,
            last_event_id=ev.id,
            second_life=True,
            capacity_kwh=capacity,
            spec={"capacity_kwh": capacity} if capacity is not None else {},
        )
    else:
        if not existing.second_life or existing.producer != actor.id:
            raise DomainError(
                E.HIERARCHY,
                f"'data.into': {into} is not a second-life product of {actor.id}",
                field="data.into",
            )
        if existing.stage != Stage.NEW or existing.holder != actor.id or existing.in_transit_to is not None:
            raise DomainError(
                E.WRONG_STAGE,
                f"'data.into': second-life product {into} is {existing.stage}; origins are added before it is "
                "shipped or installed",
                field="data.into",
            )
        product = existing
        if capacity is not None:
            product = _advance(
                product, capacity_kwh=capacity, spec={**product.spec, "capacity_kwh": capacity}
            )
    changes.batteries[into] = product
    changes.batteries[state.code] = _advance(state, stage=Stage.REPURPOSED)
    changes.links.append(Link(parent=state.code, child=into, kind="origin"))
    return changes


def _dismantled(ev: EventIn, actor: Enterprise, ctx: Context) -> Changes:
    state = _battery(ev, ctx)
    _check_open(ev, state)
    _check_holder(ev, state, actor)
    _check_not_in_transit(ev, state)
    _check_licence(ev, actor, (Scope.DISMANTLING, Scope.RECYCLING, Scope.SECOND_LIFE))
    _check_stage(ev, state, (Stage.RETIRED,))
    if state.level == "cell":
        raise DomainError(
            E.HIERARCHY,
            f"battery {state.code} is a cell: only packs and modules are dismantled",
            field="battery",
        )
    changes = Changes()
    changes.batteries[state.code] = _advance(state, stage=Stage.DISMANTLED)
    for code in ctx.components(state.code):
        child = ctx.battery(code)
        if child is None:
            continue
        changes.batteries[code] = _advance(
            child,
            attached=False,
            stage=Stage.RETIRED,
            holder=actor.id,
            in_transit_to=None,
            retired_at=ev.time,
        )
    return changes


def _recycled(ev: EventIn, actor: Enterprise, ctx: Context) -> Changes:
    state = _battery(ev, ctx)
    _check_open(ev, state)
    _check_role(ev, actor, (Role.RECYCLER,))
    _check_licence(ev, actor, (Scope.RECYCLING,))
    _check_holder(ev, state, actor)
    _check_not_in_transit(ev, state)
    _check_stage(ev, state, (Stage.RETIRED,))
    mass = require_number(ev.data, "mass_kg", positive=True, maximum=1_000_000)
    assert mass is not None
    if ev.data.get("recovered") is None:
        raise DomainError(
            E.REQUEST_INVALID,
            "'data.recovered' is required: the materials recovered, in kg",
            field="data.recovered",
        )
    recovered = _materials(ev.data, "recovered")
    if sum(recovered.values()) > mass:
        raise DomainError(
            E.MASS_BALANCE,
            f"'data.recovered' adds up to {sum(recovered.values()):g} kg, more than the {mass:g} kg recycled",
            field="data.recovered",
        )
    flows = [
        MaterialFlow(recycler=actor.id, material=name[:-3], recovered_mg=_mg(kg))
        for name, kg in sorted(recovered.items())
        if _mg(kg) > 0
    ]
    return Changes(batteries={state.code: _advance(state, stage=Stage.RECYCLED)}, materials=flows)


def _reported_missing(ev: EventIn, actor: Enterprise, ctx: Context) -> Changes:
    state = _battery(ev, ctx)
    _check_open(ev, state)
    if state.holder != actor.id and not actor.is_regulator:
        raise DomainError(
            E.NOT_HOLDER,
            f"only the holder of battery {state.code} or a regulator may report it missing",
            field="battery",
        )
    if state.stage == Stage.MISSING:
        raise DomainError(E.WRONG_STAGE, f"battery {state.code} is already reported missing", field="battery")
    return Changes(
        batteries={state.code: _advance(state, stage=Stage.MISSING, stage_before_missing=state.stage)}
    )


def _found(ev: EventIn, actor: Enterprise, ctx: Context) -> Changes:
    state = _battery(ev, ctx)
    _check_role(ev, actor, (Role.REGULATOR,))
    if state.stage != Stage.MISSING:
        raise DomainError(
            E.NOT_MISSING, f"battery {state.code} is {state.stage}, not missing", field="battery"
        )
    back = state.stage_before_missing or Stage.NEW
    return Changes(batteries={state.code: _advance(state, stage=back, stage_before_missing=None)})


def _exported(ev: EventIn, actor: Enterprise, ctx: Context) -> Changes:
    state = _battery(ev, ctx)
    _check_open(ev, state)
    _check_holder(ev, state, actor)
    _check_not_in_transit(ev, state)
    if state.is_waste:
        raise DomainError(
            E.WASTE_NOT_ALLOWED,
            f"battery {state.code} is retired (waste) and may not be exported",
            field="battery",
        )
    if state.stage == Stage.MISSING:
        raise DomainError(E.WRONG_STAGE, f"battery {state.code} is reported missing", field="battery")
    country = require_str(ev.data, "country")
    assert country is not None
    if not _COUNTRY.match(country) or country == "CN":
        raise DomainError(
            E.REQUEST_INVALID,
            "'data.country' must be the ISO 3166-1 alpha-2 code of the destination country (not CN)",
            field="data.country",
        )
    return Changes(batteries={state.code: _advance(state, stage=Stage.EXPORTED)})


def _retracted(ev: EventIn, actor: Enterprise, ctx: Context) -> Changes:
    raw_target = require_str(ev.data, "event")
    assert raw_target is not None
    try:
        target_id = str(uuid.UUID(raw_target))
    except ValueError:
        raise DomainError(
            E.REQUEST_INVALID, "'data.event' must be the UUID of the event to retract", field="data.event"
        ) from None
    require_str(ev.data, "reason")
    target = ctx.past_event(target_id)
    if target is None:
        raise DomainError(E.EVENT_UNKNOWN, f"'data.event': no accepted event {target_id}", field="data.event")
    if target.type == EventType.RETRACTED:
        raise DomainError(
            E.RETRACT_NOT_ALLOWED, "a retraction cannot itself be retracted", field="data.event"
        )
    if target.retracted:
        raise DomainError(
            E.RETRACT_NOT_ALLOWED, f"event {target_id} is already retracted", field="data.event"
        )
    if target.actor != actor.id and not actor.is_regulator:
        raise DomainError(
            E.PERMISSION_DENIED,
            f"event {target_id} was recorded by another enterprise; only it or a regulator may retract it",
            field="data.event",
        )
    subject = ev.battery or ev.vin
    if subject not in (target.battery, target.vin):
        raise DomainError(
            E.REQUEST_INVALID,
            f"event {target_id} is about {target.battery or target.vin}, not {subject}",
            field="battery" if ev.battery else "vin",
        )
    changes = Changes(retracts=target_id)
    undo = target.undo
    for code, before in undo.get("batteries", {}).items():
        current = ctx.battery(code)
        if current is None or current.last_event_id != target_id:
            raise DomainError(
                E.RETRACT_NOT_ALLOWED,
                f"battery {code} has events after {target_id}; retract those first, newest first",
                field="data.event",
            )
        if before is None:
            changes.deleted_batteries.append(code)
        else:
            changes.batteries[code] = battery_from_dict(before)
    for vin, before in undo.get("vehicles", {}).items():
        current_v = ctx.vehicle(vin)
        if current_v is None or current_v.last_event_id != target_id:
            raise DomainError(
                E.RETRACT_NOT_ALLOWED,
                f"vehicle {vin} has events after {target_id}; retract those first, newest first",
                field="data.event",
            )
        if before is None:
            changes.deleted_vehicles.append(vin)
        else:
            changes.vehicles[vin] = vehicle_from_dict(before)
    for item in undo.get("materials", []):
        flow = MaterialFlow(**item)
        if ctx.recovered_balance(flow.recycler, flow.material) - flow.recovered_mg + flow.declared_mg < 0:
            raise DomainError(
                E.RETRACT_NOT_ALLOWED,
                f"the {flow.material} that {flow.recycler} recovered in event {target_id} has since been declared "
                "as recycled content of new batteries; retract those batteries' manufacture first",
                field="data.event",
            )
        changes.materials.append(
            MaterialFlow(flow.recycler, flow.material, -flow.recovered_mg, -flow.declared_mg)
        )
    changes.removed_links = [Link(**link) for link in undo.get("links", [])]
    changes.undo = {"restores": True}
    return changes


_Handler = Callable[[EventIn, Enterprise, Context], Changes]

RULES: dict[EventType, _Handler] = {
    EventType.MANUFACTURED: _manufactured,
    EventType.ASSEMBLED: _assembled,
    EventType.SHIPPED: _shipped,
    EventType.RECEIVED: _received,
    EventType.INSTALLED: _installed,
    EventType.VEHICLE_SOLD: _vehicle_sold,
    EventType.VEHICLE_SCRAPPED: _vehicle_scrapped,
    EventType.MAINTAINED: _maintained,
    EventType.REMOVED: _removed,
    EventType.RETIRED: _retired,
    EventType.GRADED: _graded,
    EventType.REPURPOSED: _repurposed,
    EventType.DISMANTLED: _dismantled,
    EventType.RECYCLED: _recycled,
    EventType.REPORTED_MISSING: _reported_missing,
    EventType.FOUND: _found,
    EventType.EXPORTED: _exported,
    EventType.RETRACTED: _retracted,
}


def decide(ev: EventIn, actor: Enterprise, ctx: Context) -> Changes:
    """Apply the rules for ``ev`` recorded by ``actor``; raise ``DomainError`` if any is broken."""
    if ev.battery is not None and ev.type not in (EventType.MANUFACTURED, EventType.RETRACTED):
        current = ctx.battery(ev.battery)
        if current is not None:
            _check_time(ev, current)
    changes = RULES[ev.type](ev, actor, ctx)
    if ev.type == EventType.RETRACTED:
        return changes
    undo_batteries: dict[str, Any] = {}
    stamped: dict[str, BatteryState] = {}
    for code, state in changes.batteries.items():
        before = ctx.battery(code)
        undo_batteries[code] = battery_to_dict(before) if before is not None else None
        stamped[code] = replace(
            state, last_event_id=ev.id, last_event_time=max(ev.time, state.last_event_time)
        )
    changes.batteries = stamped
    undo_vehicles: dict[str, Any] = {}
    stamped_v: dict[str, VehicleState] = {}
    for vin, vstate in changes.vehicles.items():
        before_v = ctx.vehicle(vin)
        undo_vehicles[vin] = vehicle_to_dict(before_v) if before_v is not None else None
        stamped_v[vin] = replace(vstate, last_event_id=ev.id)
    changes.vehicles = stamped_v
    changes.undo = {
        "batteries": undo_batteries,
        "vehicles": undo_vehicles,
        "links": [{"parent": ln.parent, "child": ln.child, "kind": ln.kind} for ln in changes.links],
    }
    if changes.materials:
        changes.undo["materials"] = [_flow_dict(flow) for flow in changes.materials]
    return changes


def now_utc() -> datetime:
    from datetime import UTC

    return datetime.now(UTC)
