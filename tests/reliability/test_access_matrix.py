"""What each caller sees: every field of the battery read endpoints × every access tier, generated
from ``BATTERY_FIELD_TIERS`` and ``EVENT_FIELD_TIERS`` (``domain/access.py``) and from ``Role``.

The callers: no key (public); every role, licensed and not, with no part in the battery (public or
legitimate interest by role and licence); and the enterprise itself, in every relation that
makes a battery its own (holder, producer, addressee of a shipment, installer, holder of the pack
a module is part of), which sees the authority tier, as a regulator does. A new field, tier, role
or relation is covered without touching this file; a field the views add but the table lacks (so
that no one would ever see it), or one the table lists but the views never fill, fails here.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import update

from batterytrace.domain.access import BATTERY_FIELD_TIERS, EVENT_FIELD_TIERS, LEGITIMATE_INTEREST_ROLES, Tier
from batterytrace.domain.codes import parse_battery_code
from batterytrace.domain.model import BatteryState, Link, Role, Scope, Stage
from batterytrace.services.registry import Registry
from batterytrace.store import repo
from batterytrace.store import tables as T
from batterytrace.store.db import write_transaction
from tests import factories as f
from tests.conftest import Actor, make_enterprise

#: The tier of an enterprise with no part in a battery, by role, unlicensed (docs/api.md, "Access
#: tiers"). Any licence lifts a role to legitimate interest.
UNRELATED_TIER: dict[Role, Tier] = {
    Role.BATTERY_MAKER: Tier.PUBLIC,
    Role.AUTOMAKER: Tier.PUBLIC,
    Role.SERVICE_OUTLET: Tier.LEGITIMATE_INTEREST,
    Role.DISMANTLER: Tier.LEGITIMATE_INTEREST,
    Role.REPURPOSER: Tier.LEGITIMATE_INTEREST,
    Role.RECYCLER: Tier.LEGITIMATE_INTEREST,
    Role.REGULATOR: Tier.AUTHORITY,
}
#: The relations that make a battery the enterprise's own.
RELATIONS = ("holder", "producer", "in_transit_to", "installer", "holder_of_parent")
#: Fields only the single-battery view carries (its lineage, read from the links).
LINEAGE = {"children", "origins", "products"}


def expected_tier(role: Role, licensed: bool, relation: str | None) -> Tier:
    if relation is not None:
        return Tier.AUTHORITY
    tier = UNRELATED_TIER[role]
    return max(tier, Tier.LEGITIMATE_INTEREST) if licensed else tier


def fields_for(table: dict[str, Tier], tier: Tier) -> set[str]:
    return {name for name, lowest in table.items() if lowest <= tier}


def test_the_tables_cover_every_role_and_tier() -> None:
    assert set(UNRELATED_TIER) == set(Role), "a role has no expected tier here"
    assert {r for r, t in UNRELATED_TIER.items() if t == Tier.LEGITIMATE_INTEREST} == set(
        LEGITIMATE_INTEREST_ROLES
    )
    for table in (BATTERY_FIELD_TIERS, EVENT_FIELD_TIERS):
        for tier in Tier:
            shown = fields_for(table, tier)
            assert shown, (tier, "sees nothing")
            if tier > Tier.PUBLIC:
                assert shown > fields_for(table, Tier(tier - 1)), (
                    f"{tier.label} sees no more than the tier below"
                )


# --- the batteries ------------------------------------------------------------------------------------

T0 = datetime(2026, 6, 1, tzinfo=UTC)


@dataclass
class World:
    registry: Registry
    regulator: Actor
    actors: dict[tuple[Role, bool], Actor]
    maker: Actor
    automaker: Actor  # installs the batteries, so each has an event whose data holds a VIN
    bystander: Actor


def _battery(level: str = "P", **changes: Any) -> BatteryState:
    code = parse_battery_code(f.code(level=level))
    return replace(
        BatteryState(
            code=code.raw,
            level=code.level,
            chemistry=code.chemistry,
            manufacturer=code.manufacturer,
            producer="",
            stage=Stage.NEW,
            holder=None,
            registered_at=T0,
            last_event_time=T0,
            last_event_id=str(uuid.uuid4()),
        ),
        **changes,
    )


def installed_battery(w: World, relation: str | None, actor: Actor | None) -> str:
    """A pack installed by the automaker in a vehicle (a real event), then given ``relation`` to
    ``actor``: returns the code to read (the module, for ``holder_of_parent``)."""
    pack = _battery(producer=w.maker.id, holder=w.automaker.id, spec=dict(f.MANUFACTURED))
    module = _battery(level="M", producer=w.maker.id, holder=w.maker.id, parent=pack.code, attached=True)
    with write_transaction(w.registry.engine) as conn:
        repo.save_batteries(conn, [pack, module], [])
        repo.add_links(conn, [Link(parent=pack.code, child=module.code, kind="component")])
    r = w.automaker.event(
        {
            "id": str(uuid.uuid4()),
            "type": "installed",
            "battery": pack.code,
            "time": "2026-06-02T10:00:00+08:00",
            "region": "310115",
            "data": {"vin": f.vin(), "application": "passenger_car"},
        }
    )
    assert r.status_code == 201, r.text
    if relation is None or actor is None:
        return pack.code
    column = "holder" if relation == "holder_of_parent" else relation
    with write_transaction(w.registry.engine) as conn:
        conn.execute(update(T.batteries).where(T.batteries.c.code == pack.code).values({column: actor.id}))
    return module.code if relation == "holder_of_parent" else pack.code


@pytest.fixture(scope="module")
def world(module_registry: Registry, module_client: Any) -> World:
    uid = f.uscc()
    _, key = module_registry.bootstrap(uid, "National Battery Traceability Office")
    regulator = Actor(uid, key, module_client)
    actors = {}
    for role, licensed in itertools.product(Role, (False, True)):
        actors[(role, licensed)] = make_enterprise(
            regulator, [role.value], licences=[Scope.COLLECTION.value] if licensed else []
        )
    maker = make_enterprise(regulator, ["battery_maker"], codes=["0AB"])
    automaker = make_enterprise(regulator, ["automaker"])
    bystander = make_enterprise(regulator, ["automaker"])
    return World(module_registry, regulator, actors, maker, automaker, bystander)


@pytest.fixture(scope="module")
def unrelated(world: World) -> str:
    """One installed pack that none of the matrix's enterprises has any part in."""
    return installed_battery(world, None, None)


def check_battery(body: dict[str, Any], tier: Tier) -> None:
    assert body["access_tier"] == tier.label, body
    assert set(body) == fields_for(BATTERY_FIELD_TIERS, tier), (
        f"{tier.label}: extra {sorted(set(body) - fields_for(BATTERY_FIELD_TIERS, tier))}, "
        f"missing {sorted(fields_for(BATTERY_FIELD_TIERS, tier) - set(body))}"
    )


def check_events(body: dict[str, Any], tier: Tier) -> None:
    assert body["access_tier"] == tier.label, body
    events = body["events"]
    assert events, body
    wanted = fields_for(EVENT_FIELD_TIERS, tier) - {"vin"}  # battery events carry no top-level VIN
    for event in events:
        assert set(event) == wanted, f"{tier.label}: {sorted(set(event) ^ wanted)}"
    installed = next(e for e in events if e["type"] == "installed")
    if tier >= Tier.LEGITIMATE_INTEREST:
        assert ("vin" in installed["data"]) == (tier == Tier.AUTHORITY), (tier.label, installed)


def read(actor: Actor | None, client: Any, code: str) -> tuple[dict[str, Any], dict[str, Any]]:
    headers = actor.headers if actor is not None else {}
    one = client.get(f"/api/v1/batteries/{code}", headers=headers)
    history = client.get(f"/api/v1/batteries/{code}/events", headers=headers)
    assert one.status_code == 200, one.text
    assert history.status_code == 200, history.text
    return one.json(), history.json()


def test_no_key_sees_the_public_tier(world: World, unrelated: str) -> None:
    one, history = read(None, world.regulator.client, unrelated)
    check_battery(one, Tier.PUBLIC)
    check_events(history, Tier.PUBLIC)
    r = world.regulator.client.get("/api/v1/batteries")
    assert (r.status_code, r.json()["code"]) == (401, "auth.required")


def test_a_regulator_sees_everything(world: World, unrelated: str) -> None:
    one, history = read(world.regulator, world.regulator.client, unrelated)
    check_battery(one, Tier.AUTHORITY)
    assert set(one) == set(BATTERY_FIELD_TIERS), "the authority view and the tier table disagree"
    check_events(history, Tier.AUTHORITY)
    assert {k for e in history["events"] for k in e} == set(EVENT_FIELD_TIERS) - {"vin"}


UNRELATED_CASES = [
    pytest.param(role, licensed, id=f"{role.value}-{'licensed' if licensed else 'unlicensed'}")
    for role, licensed in itertools.product(Role, (False, True))
]


@pytest.mark.parametrize(("role", "licensed"), UNRELATED_CASES)
def test_an_enterprise_with_no_part_in_the_battery(
    world: World, unrelated: str, role: Role, licensed: bool
) -> None:
    actor = world.actors[(role, licensed)]
    tier = expected_tier(role, licensed, None)
    one, history = read(actor, actor.client, unrelated)
    check_battery(one, tier)
    check_events(history, tier)


RELATED_CASES = [
    pytest.param(role, relation, id=f"{role.value}-{relation}")
    for role, relation in itertools.product(Role, RELATIONS)
]


@pytest.mark.parametrize(("role", "relation"), RELATED_CASES)
def test_the_enterprise_itself_sees_the_authority_tier(world: World, role: Role, relation: str) -> None:
    actor = world.actors[(role, False)]
    code = installed_battery(world, relation, actor)
    one, history = read(actor, actor.client, code)
    check_battery(one, Tier.AUTHORITY)
    if relation == "holder_of_parent":
        # the module has no events of its own here; its custody, and so its tier, is its pack's
        assert history["access_tier"] == Tier.AUTHORITY.label, history
        return
    check_events(history, Tier.AUTHORITY)
    # the list shows the enterprise its own batteries, each at the authority tier
    listed = actor.get("/api/v1/batteries", limit=1000)
    assert listed.status_code == 200, listed.text
    items = {item["code"]: item for item in listed.json()["items"]}
    assert code in items
    assert set(items[code]) == fields_for(BATTERY_FIELD_TIERS, Tier.AUTHORITY) - LINEAGE
    assert items[code]["access_tier"] == Tier.AUTHORITY.label


def test_the_list_shows_no_one_else_s_batteries(world: World, unrelated: str) -> None:
    for (role, _licensed), actor in world.actors.items():
        r = actor.get("/api/v1/batteries", limit=1000)
        assert r.status_code == 200, r.text
        codes = {item["code"] for item in r.json()["items"]}
        if role == Role.REGULATOR:
            assert unrelated in codes
        else:
            assert unrelated not in codes, (role, "lists a battery it has no part in")
    everything = world.regulator.get("/api/v1/batteries", limit=1000).json()["items"]
    mine = next(i for i in everything if i["code"] == unrelated)
    assert set(mine) == fields_for(BATTERY_FIELD_TIERS, Tier.AUTHORITY) - LINEAGE


def test_an_enterprise_record_is_for_itself_and_the_regulator(world: World) -> None:
    actor = world.actors[(Role.RECYCLER, True)]
    other = world.actors[(Role.AUTOMAKER, False)]
    path = f"/api/v1/enterprises/{actor.id}"
    own = actor.get(path)
    assert own.status_code == 200, own.text
    assert world.regulator.get(path).json() == own.json()
    r = other.get(path)
    assert (r.status_code, r.json()["code"]) == (403, "permission.denied")
    r = world.regulator.client.get(path)
    assert (r.status_code, r.json()["code"]) == (401, "auth.required")
    # keys are listed without their secrets
    body = own.json()
    assert body["keys"]
    for item in body["keys"]:
        assert set(item) == {"id", "label", "created_at", "expires_at", "revoked_at"}
    assert actor.key.rsplit("_", 1)[1] not in own.text
