"""Who may record what: every event type × every role × holding the battery or not × licensed or
not, through the API, against an expected outcome computed from the "recorded by" column of
``docs/lifecycle.md`` (the table ``RECORDED_BY`` below).

The cases are generated from ``EventType`` and ``Role``: a new event type or role without an entry
in ``RECORDED_BY`` and a scene in ``SCENES`` fails here, so nothing new escapes the matrix.

Each case puts one battery (or vehicle) straight into the state where the step is otherwise
allowed, held by the acting enterprise or by another one, and sends the event with the actor's key.
The answer must be 201, or the refusal the table predicts with its HTTP status, and every refusal
must be kept as a security event with the same code.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import pytest

from batterytrace.api.problems import STATUS
from batterytrace.domain.codes import parse_battery_code
from batterytrace.domain.errors import catalog
from batterytrace.domain.model import BatteryState, EventType, Role, Scope, Stage, VehicleState
from batterytrace.services.registry import Registry
from batterytrace.store import repo
from batterytrace.store.db import write_transaction
from tests import factories as f
from tests.api.support import security_codes
from tests.conftest import Actor, make_enterprise

WRONG_ROLE = "lifecycle.wrong_role"
NOT_HOLDER = "lifecycle.not_holder"
NO_LICENCE = "licence.missing"


@dataclass(frozen=True)
class RecordedBy:
    """Who may record an event type, as ``docs/lifecycle.md`` states it.

    ``roles``: the roles that may (None: any role). ``holder``: the actor must be the holder (for
    ``manufactured`` the owner of the code's manufacturer code, for ``received`` the addressee,
    for ``vehicle_sold`` the automaker that built the vehicle, for ``retracted`` the enterprise that
    recorded the event). ``licence``: a licence in a scope the step needs. ``regulator_too``: a
    regulator may without holding. ``licensed_non_holder``: this role may without holding when
    licensed. ``checks``: the order in which the rules are applied, which decides the refusal.
    """

    roles: frozenset[Role] | None
    holder: bool
    licence: bool
    checks: tuple[str, ...] = ("role", "holder", "licence")
    holder_refusal: str = NOT_HOLDER
    regulator_too: bool = False
    licensed_non_holder: Role | None = None


RECORDED_BY: dict[EventType, RecordedBy] = {
    EventType.MANUFACTURED: RecordedBy(
        frozenset({Role.BATTERY_MAKER}), holder=True, licence=False, holder_refusal="lifecycle.not_code_owner"
    ),
    EventType.ASSEMBLED: RecordedBy(None, holder=True, licence=False),
    EventType.SHIPPED: RecordedBy(None, holder=True, licence=False),
    EventType.RECEIVED: RecordedBy(
        None, holder=True, licence=False, holder_refusal="lifecycle.not_addressee"
    ),
    EventType.INSTALLED: RecordedBy(
        frozenset({Role.AUTOMAKER, Role.SERVICE_OUTLET, Role.REPURPOSER}), holder=True, licence=False
    ),
    EventType.VEHICLE_SOLD: RecordedBy(frozenset({Role.AUTOMAKER}), holder=True, licence=False),
    EventType.VEHICLE_SCRAPPED: RecordedBy(frozenset({Role.DISMANTLER}), holder=False, licence=True),
    EventType.MAINTAINED: RecordedBy(None, holder=True, licence=False),
    EventType.REMOVED: RecordedBy(None, holder=True, licence=False, licensed_non_holder=Role.DISMANTLER),
    EventType.RETIRED: RecordedBy(None, holder=True, licence=False),
    EventType.GRADED: RecordedBy(None, holder=True, licence=True, checks=("holder", "licence")),
    EventType.REPURPOSED: RecordedBy(
        frozenset({Role.REPURPOSER}), holder=True, licence=True, checks=("role", "licence", "holder")
    ),
    EventType.DISMANTLED: RecordedBy(None, holder=True, licence=True, checks=("holder", "licence")),
    EventType.RECYCLED: RecordedBy(
        frozenset({Role.RECYCLER}), holder=True, licence=True, checks=("role", "licence", "holder")
    ),
    EventType.REPORTED_MISSING: RecordedBy(None, holder=True, licence=False, regulator_too=True),
    EventType.FOUND: RecordedBy(frozenset({Role.REGULATOR}), holder=False, licence=False),
    EventType.EXPORTED: RecordedBy(None, holder=True, licence=False),
    EventType.RETRACTED: RecordedBy(
        None, holder=True, licence=False, holder_refusal="permission.denied", regulator_too=True
    ),
}


def expected(event_type: EventType, role: Role, holder: bool, licensed: bool) -> str | None:
    """The error code the registry must answer, or None when it must accept."""
    rule = RECORDED_BY[event_type]
    for check in rule.checks:
        if check == "role" and rule.roles is not None and role not in rule.roles:
            return WRONG_ROLE
        if check == "holder" and rule.holder and not holder:
            if rule.regulator_too and role == Role.REGULATOR:
                continue
            if rule.licensed_non_holder == role:
                if licensed:
                    continue
                return NO_LICENCE
            return rule.holder_refusal
        if check == "licence" and rule.licence and not licensed:
            return NO_LICENCE
    return None


def test_the_table_covers_every_event_type_and_its_codes_exist() -> None:
    assert set(RECORDED_BY) == set(EventType), "an event type has no 'recorded by' entry here"
    assert set(SCENES) == set(EventType), "an event type has no scene here"
    codes = {WRONG_ROLE, NOT_HOLDER, NO_LICENCE} | {r.holder_refusal for r in RECORDED_BY.values()}
    assert codes <= set(catalog())
    # every event type can be recorded by someone, and refused to someone
    for event_type in EventType:
        outcomes = {
            expected(event_type, role, holder, licensed)
            for role, holder, licensed in itertools.product(Role, (True, False), (True, False))
        }
        assert None in outcomes, event_type
        assert outcomes - {None}, event_type


# --- the scenes: one battery or vehicle in the state where the step is otherwise allowed -----------

STATE_TIME = datetime(2026, 6, 1, tzinfo=UTC)
EVENT_TIME = "2026-06-02T10:00:00+08:00"
PRODUCER_CODE = "PRD"


@dataclass
class Matrix:
    """The enterprises of the matrix: one per role, licensed and not, and a few bystanders."""

    registry: Registry
    regulator: Actor
    actors: dict[tuple[Role, bool], Actor]
    codes: dict[str, str]  # enterprise id -> its manufacturer code
    producer: Actor
    other: Actor  # holds what the actor does not
    receiver: Actor
    refused: dict[str, str] = field(default_factory=dict)

    def write(self, batteries: Sequence[BatteryState] = (), vehicles: Sequence[VehicleState] = ()) -> None:
        with write_transaction(self.registry.engine) as conn:
            repo.save_batteries(conn, list(batteries), [])
            repo.save_vehicles(conn, list(vehicles), [])


def battery(holder: str, level: str = "P", stage: Stage = Stage.NEW, **changes: Any) -> BatteryState:
    code = parse_battery_code(f.code(manufacturer=PRODUCER_CODE, level=level))
    state = BatteryState(
        code=code.raw,
        level=code.level,
        chemistry=code.chemistry,
        manufacturer=code.manufacturer,
        producer="",
        stage=stage,
        holder=holder,
        registered_at=STATE_TIME,
        last_event_time=STATE_TIME,
        last_event_id=str(uuid.uuid4()),
        capacity_kwh=60.0,
        mass_kg=300.0,
        spec={"capacity_kwh": 60.0, "voltage_v": 400.0, "mass_kg": 300.0, "materials": {"li_kg": 6.0}},
    )
    return replace(state, **changes)


def event(
    type_: str, battery_code: str | None, data: dict[str, Any] | None = None, **kw: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "type": type_,
        "time": EVENT_TIME,
        "region": "310115",
        "data": data or {},
    }
    if battery_code is not None:
        body["battery"] = battery_code
    body.update(kw)
    return body


Scene = Callable[[Matrix, Actor, bool], dict[str, Any]]


def _holder(m: Matrix, actor: Actor, holder: bool) -> str:
    return actor.id if holder else m.other.id


def scene_manufactured(m: Matrix, actor: Actor, holder: bool) -> dict[str, Any]:
    owner_code = m.codes.get(actor.id, "ZZ9") if holder else m.codes[m.other.id]
    return event("manufactured", f.code(manufacturer=owner_code), f.MANUFACTURED)


def scene_assembled(m: Matrix, actor: Actor, holder: bool) -> dict[str, Any]:
    who = _holder(m, actor, holder)
    parent = battery(who, producer=m.producer.id)
    child = battery(who, level="C", producer=m.producer.id)
    m.write([parent, child])
    return event("assembled", parent.code, {"children": [child.code]})


def scene_received(m: Matrix, actor: Actor, holder: bool) -> dict[str, Any]:
    state = battery(m.other.id, producer=m.producer.id, in_transit_to=actor.id if holder else m.receiver.id)
    m.write([state])
    return event("received", state.code)


def scene_vehicle_sold(m: Matrix, actor: Actor, holder: bool) -> dict[str, Any]:
    vin = f.vin()
    built_by = actor.id if holder else m.other.id
    m.write(vehicles=[VehicleState(vin=vin, automaker=built_by, status="registered", last_event_id="x")])
    return event("vehicle_sold", None, vin=vin)


def scene_vehicle_scrapped(m: Matrix, actor: Actor, holder: bool) -> dict[str, Any]:
    vin = f.vin()
    m.write(vehicles=[VehicleState(vin=vin, automaker=m.other.id, status="in_service", last_event_id="x")])
    return event("vehicle_scrapped", None, vin=vin)


def scene_repurposed(m: Matrix, actor: Actor, holder: bool) -> dict[str, Any]:
    state = battery(
        _holder(m, actor, holder),
        stage=Stage.RETIRED,
        producer=m.producer.id,
        retired_at=STATE_TIME,
        grade="repurpose",
        soh_percent=75.0,
    )
    m.write([state])
    into = f.second_life_code(manufacturer=m.codes.get(actor.id, "ZZ8"))
    return event("repurposed", state.code, {"into": into})


def scene_found(m: Matrix, actor: Actor, holder: bool) -> dict[str, Any]:
    state = battery(
        _holder(m, actor, holder), stage=Stage.MISSING, producer=m.producer.id, stage_before_missing=Stage.NEW
    )
    m.write([state])
    return event("found", state.code)


def scene_retracted(m: Matrix, actor: Actor, holder: bool) -> dict[str, Any]:
    """The event to retract is a maintenance recorded by the actor (or by another enterprise)."""
    original = actor if holder else m.other
    state = battery(original.id, stage=Stage.REMOVED, producer=m.producer.id)
    m.write([state])
    target = event("maintained", state.code, {"soh_percent": 91})
    r = original.event(target)
    assert r.status_code == 201, r.text
    return event("retracted", state.code, {"event": target["id"], "reason": "entered twice"})


def _scene(
    stage: Stage, type_: str, data: dict[str, Any] | Callable[[Matrix], dict[str, Any]], **changes: Any
) -> Scene:
    def scene(m: Matrix, actor: Actor, holder: bool) -> dict[str, Any]:
        state = battery(_holder(m, actor, holder), stage=stage, producer=m.producer.id, **changes)
        m.write([state])
        return event(type_, state.code, data(m) if callable(data) else data)

    return scene


SCENES: dict[EventType, Scene] = {
    EventType.MANUFACTURED: scene_manufactured,
    EventType.ASSEMBLED: scene_assembled,
    EventType.SHIPPED: _scene(Stage.NEW, "shipped", lambda m: {"to": m.receiver.id}),
    EventType.RECEIVED: scene_received,
    EventType.INSTALLED: _scene(Stage.NEW, "installed", lambda m: {"vin": f.vin()}),
    EventType.VEHICLE_SOLD: scene_vehicle_sold,
    EventType.VEHICLE_SCRAPPED: scene_vehicle_scrapped,
    EventType.MAINTAINED: _scene(
        Stage.INSTALLED, "maintained", {"soh_percent": 88}, vin=None, system="ESS-1"
    ),
    EventType.REMOVED: _scene(Stage.INSTALLED, "removed", {"reason": "repair"}, vin=None, system="ESS-1"),
    EventType.RETIRED: _scene(Stage.REMOVED, "retired", {}),
    EventType.GRADED: _scene(
        Stage.RETIRED, "graded", {"soh_percent": 75, "decision": "repurpose"}, retired_at=STATE_TIME
    ),
    EventType.REPURPOSED: scene_repurposed,
    EventType.DISMANTLED: _scene(Stage.RETIRED, "dismantled", {}, retired_at=STATE_TIME),
    EventType.RECYCLED: _scene(
        Stage.RETIRED, "recycled", {"mass_kg": 300, "recovered": {"li_kg": 5.5}}, retired_at=STATE_TIME
    ),
    EventType.REPORTED_MISSING: _scene(Stage.NEW, "reported_missing", {}),
    EventType.FOUND: scene_found,
    EventType.EXPORTED: _scene(Stage.NEW, "exported", {"country": "DE"}),
    EventType.RETRACTED: scene_retracted,
}


@pytest.fixture(scope="module")
def matrix(module_registry: Registry, module_client: Any) -> Iterator[Matrix]:
    uid = f.uscc()
    _, key = module_registry.bootstrap(uid, "National Battery Traceability Office")
    regulator = Actor(uid, key, module_client)
    actors: dict[tuple[Role, bool], Actor] = {}
    codes: dict[str, str] = {}
    serial = itertools.count(10)
    for role in Role:
        for licensed in (False, True):
            own = [f"K{next(serial)}"] if role in (Role.BATTERY_MAKER, Role.REPURPOSER) else []
            actor = make_enterprise(
                regulator, [role.value], codes=own, licences=[s.value for s in Scope] if licensed else []
            )
            actors[(role, licensed)] = actor
            if own:
                codes[actor.id] = own[0]
    producer = make_enterprise(regulator, ["battery_maker"], codes=[PRODUCER_CODE])
    other = make_enterprise(regulator, ["battery_maker", "automaker"], codes=["OTH"])
    codes[other.id] = "OTH"
    receiver = make_enterprise(regulator, ["automaker"])
    m = Matrix(module_registry, regulator, actors, codes, producer, other, receiver)
    yield m
    # every refusal of the matrix was kept as a security event with its code
    logged = security_codes(regulator)
    wrong = {i: (c, logged.get(i)) for i, c in m.refused.items() if logged.get(i) != c}
    assert not wrong, f"refusals not kept as security events (expected, logged): {wrong}"


CASES = [
    pytest.param(
        event_type,
        role,
        holder,
        licensed,
        id=f"{event_type.value}-{role.value}-{'holder' if holder else 'not_holder'}-"
        f"{'licensed' if licensed else 'unlicensed'}",
    )
    for event_type, role, holder, licensed in itertools.product(EventType, Role, (True, False), (True, False))
]


@pytest.mark.parametrize(("event_type", "role", "holder", "licensed"), CASES)
def test_who_may_record_what(
    matrix: Matrix, event_type: EventType, role: Role, holder: bool, licensed: bool
) -> None:
    actor = matrix.actors[(role, licensed)]
    body = SCENES[event_type](matrix, actor, holder)
    want = expected(event_type, role, holder, licensed)
    r = actor.event(body)
    if want is None:
        assert r.status_code == 201, r.text
        assert isinstance(r.json()["log_index"], int)
        return
    status = STATUS[catalog()[want].kind]
    assert (r.status_code, r.json().get("code")) == (status, want), r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    matrix.refused[body["id"]] = want
