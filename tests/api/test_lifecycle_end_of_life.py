"""Acceptance tests for the end of a battery's life, through the API: retirement, grading,
second life, dismantling, recycling, missing and found, export, and retraction of errors.

As in the custody tests, each event type has its allowed path and forbidden paths; refused events
change nothing and are kept as security events (checked after each test)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import factories as f
from tests.api.support import Story, battery_path
from tests.conftest import Actor, Cast, make_enterprise

RECOVERED = {"li_kg": 5.5, "co_kg": 4.9, "ni_kg": 38.9, "mn_kg": 4.5, "cu_kg": 21.0}


@pytest.fixture
def story(cast: Cast) -> Iterator[Story]:
    s = Story(cast)
    yield s
    s.check_security_events()


def pack_of_modules(story: Story, modules: int) -> tuple[str, list[str]]:
    """A pack assembled from new modules, all held by the maker."""
    pack = story.manufactured("P")
    parts = [story.manufactured("M") for _ in range(modules)]
    story.do(story.cast.maker, "assembled", pack, {"children": parts})
    return pack, parts


def retire_through_a_vehicle(story: Story, pack: str, to: Actor) -> None:
    """Ship ``pack`` to the automaker, install it, have the outlet remove and retire it and ship it to
    ``to``, who receives it."""
    cast = story.cast
    story.move(pack, cast.maker, cast.automaker)
    story.do(cast.automaker, "installed", pack, {"vin": f.vin()})
    story.do(cast.outlet, "removed", pack, {"reason": "retirement"})
    story.do(cast.outlet, "retired", pack)
    story.move(pack, cast.outlet, to)


# --- retired ----------------------------------------------------------------------------------


def test_retired(story: Story, cast: Cast) -> None:
    new = story.manufactured()
    story.refuse(cast.maker, "retired", new, None, 409, "lifecycle.wrong_stage", "battery")
    code, _ = story.installed()
    story.refuse(cast.automaker, "retired", code, None, 409, "lifecycle.wrong_stage", "battery")
    story.do(cast.outlet, "removed", code, {"reason": "retirement"})
    story.refuse(cast.automaker, "retired", code, None, 403, "lifecycle.not_holder", "battery")
    story.do(cast.outlet, "retired", code)
    got = story.expect(code, stage="retired", holder=cast.outlet.id, in_transit_to=None, vin=None)
    assert got["retired_at"] is not None
    story.refuse(cast.outlet, "retired", code, None, 409, "lifecycle.wrong_stage", "battery")


def test_battery_retired_while_still_installed_in_a_scrapped_vehicle(story: Story, cast: Cast) -> None:
    code, vin = story.installed()
    story.do(cast.automaker, "vehicle_sold", None, vin_=vin)
    story.refuse(cast.automaker, "retired", code, None, 409, "lifecycle.wrong_stage", "battery")
    story.do(cast.dismantler, "vehicle_scrapped", None, vin_=vin)
    story.refuse(cast.dismantler, "retired", code, None, 403, "lifecycle.not_holder", "battery")
    story.do(cast.automaker, "retired", code)
    story.expect(code, stage="retired", holder=cast.automaker.id, vin=None)
    # now waste: only to a licensed facility
    story.refuse(
        cast.automaker,
        "shipped",
        code,
        {"to": cast.stranger.id},
        403,
        "lifecycle.unlicensed_receiver",
        "data.to",
    )
    story.do(cast.automaker, "shipped", code, {"to": cast.dismantler.id})
    story.expect(code, in_transit_to=cast.dismantler.id)


# --- graded -----------------------------------------------------------------------------------


def test_graded(story: Story, cast: Cast) -> None:
    code = story.retired()
    # the outlet holds it, but with a collection licence only
    story.refuse(
        cast.outlet, "graded", code, {"soh_percent": 70, "decision": "repurpose"}, 403, "licence.missing"
    )
    story.move(code, cast.outlet, cast.recycler)
    story.refuse(
        cast.repurposer,
        "graded",
        code,
        {"soh_percent": 70, "decision": "repurpose"},
        403,
        "lifecycle.not_holder",
        "battery",
    )
    story.refuse(
        cast.recycler,
        "graded",
        code,
        {"soh_percent": 70, "decision": "reuse"},
        422,
        "request.invalid",
        "data.decision",
    )
    story.refuse(
        cast.recycler,
        "graded",
        code,
        {"soh_percent": 170, "decision": "recycle"},
        422,
        "request.invalid",
        "data.soh_percent",
    )
    story.do(cast.recycler, "graded", code, {"soh_percent": 62.5, "decision": "recycle"})
    story.expect(code, stage="retired", holder=cast.recycler.id, soh_percent=62.5, grade="recycle")
    # grading needs a retired battery
    new = story.manufactured()
    story.move(new, cast.maker, cast.recycler)
    story.refuse(
        cast.recycler,
        "graded",
        new,
        {"soh_percent": 99, "decision": "repurpose"},
        409,
        "lifecycle.wrong_stage",
        "battery",
    )


# --- repurposed -------------------------------------------------------------------------------


def test_three_modules_of_two_packs_repurposed_into_one_product(story: Story, cast: Cast) -> None:
    first, (a1, a2) = pack_of_modules(story, 2)
    second, (b1, b2) = pack_of_modules(story, 2)
    for pack in (first, second):
        retire_through_a_vehicle(story, pack, cast.repurposer)
        story.do(cast.repurposer, "dismantled", pack)
    for module in (a1, a2, b1, b2):
        story.expect(module, stage="retired", holder=cast.repurposer.id)
    for module in (a1, a2, b1):
        story.do(cast.repurposer, "graded", module, {"soh_percent": 81, "decision": "repurpose"})
    product = f.second_life_code(level="P")
    stored = story.do(cast.repurposer, "repurposed", a1, {"into": product, "capacity_kwh": 30.0})
    assert stored["data"] == {"into": product, "capacity_kwh": 30.0}
    story.do(cast.repurposer, "repurposed", a2, {"into": product})
    story.do(cast.repurposer, "repurposed", b1, {"into": product})
    got = story.expect(
        product,
        stage="new",
        holder=cast.repurposer.id,
        in_transit_to=None,
        second_life=True,
        producer=cast.repurposer.id,
        origins=sorted([a1, a2, b1]),
        children=[],
        parent=None,
    )
    assert got["capacity_kwh"] == 30.0
    for origin in (a1, a2, b1):
        story.expect(origin, stage="repurposed", products=[product], holder=cast.repurposer.id)
        # final under its own code
        story.refuse(
            cast.repurposer, "shipped", origin, {"to": cast.recycler.id}, 409, "lifecycle.final", "battery"
        )
        story.refuse(
            cast.repurposer,
            "repurposed",
            origin,
            {"into": f.second_life_code()},
            409,
            "lifecycle.final",
            "battery",
        )
    story.expect(b2, stage="retired", products=[])
    # the product goes into stationary storage, never into an e-bike
    problem = story.refuse(
        cast.repurposer,
        "installed",
        product,
        {"system": "EB-0001", "application": "e_bike"},
        403,
        "lifecycle.e_bike_forbidden",
        "data.application",
    )
    assert "second-life" in problem["detail"]
    assert "e-bike" in problem["detail"]
    # however the application is spelt
    for application in ("E-Bike", " e_bike", "electric bicycle", "Electric-Bike", "ebike", "电动自行车"):
        story.refuse(
            cast.repurposer,
            "installed",
            product,
            {"vin": f.vin(), "application": application},
            403,
            "lifecycle.e_bike_forbidden",
            "data.application",
        )
        story.refuse(
            cast.repurposer,
            "installed",
            product,
            {"system": "EB-0002", "application": application},
            403,
            "lifecycle.e_bike_forbidden",
            "data.application",
        )
    story.do(cast.repurposer, "installed", product, {"system": "ESS-7", "application": "stationary"})
    story.expect(product, stage="installed", system="ESS-7", application="stationary", vin=None)
    # once installed, no more origins are added to it
    story.do(cast.repurposer, "graded", b2, {"soh_percent": 79, "decision": "repurpose"})
    story.refuse(
        cast.repurposer, "repurposed", b2, {"into": product}, 409, "lifecycle.wrong_stage", "data.into"
    )


def test_repurposed_refusals(story: Story, cast: Cast) -> None:
    code = story.retired_at(cast.repurposer)
    product = f.second_life_code()
    story.refuse(
        cast.repurposer,
        "repurposed",
        code,
        {"into": f.code(manufacturer="9RP")},
        422,
        "lifecycle.second_life_code",
        "data.into",
    )
    story.refuse(
        cast.repurposer,
        "repurposed",
        code,
        {"into": f.second_life_code(manufacturer="0AB")},
        403,
        "lifecycle.not_code_owner",
        "data.into",
    )
    story.refuse(cast.repurposer, "repurposed", code, {}, 422, "request.invalid", "data.into")
    story.refuse(cast.recycler, "repurposed", code, {"into": product}, 403, "lifecycle.wrong_role")
    story.do(cast.repurposer, "graded", code, {"soh_percent": 40, "decision": "recycle"})
    story.refuse(
        cast.repurposer,
        "repurposed",
        code,
        {"into": product},
        409,
        "lifecycle.graded_for_recycling",
        "battery",
    )
    assert story.state(product) is None
    # graded again, it may be repurposed
    story.do(cast.repurposer, "graded", code, {"soh_percent": 75, "decision": "repurpose"})
    story.do(cast.repurposer, "repurposed", code, {"into": product})
    story.expect(product, origins=[code], stage="new")
    # only retired batteries are repurposed, and only by a licensed repurposer holding them
    removed = story.removed()
    story.move(removed, cast.outlet, cast.repurposer)
    story.refuse(
        cast.repurposer,
        "repurposed",
        removed,
        {"into": f.second_life_code()},
        409,
        "lifecycle.wrong_stage",
        "battery",
    )
    unlicensed = make_enterprise(cast.regulator, ["repurposer"], codes=["8RP"])
    story.refuse(
        unlicensed,
        "repurposed",
        removed,
        {"into": f.second_life_code(manufacturer="8RP")},
        403,
        "licence.missing",
    )
    story.refuse(
        cast.repurposer,
        "repurposed",
        story.retired(),
        {"into": f.second_life_code()},
        403,
        "lifecycle.not_holder",
        "battery",
    )


# --- dismantled -------------------------------------------------------------------------------


def test_dismantled(story: Story, cast: Cast) -> None:
    # dismantling a pack makes its modules retired and held by the dismantler
    modules = [story.manufactured("M") for _ in range(2)]
    cells = [story.manufactured("C") for _ in range(2)]
    story.do(cast.maker, "assembled", modules[0], {"children": cells})
    pack = story.manufactured("P")
    story.do(cast.maker, "assembled", pack, {"children": modules})
    retire_through_a_vehicle(story, pack, cast.dismantler)
    for module in modules:
        story.expect(module, stage="new", holder=cast.dismantler.id, parent=pack)
    story.do(cast.dismantler, "dismantled", pack)
    story.expect(pack, stage="dismantled", holder=cast.dismantler.id, children=sorted(modules))
    for module in modules:
        story.expect(module, stage="retired", holder=cast.dismantler.id, in_transit_to=None)
    # the pack is final; its modules are batteries of their own now, and waste
    story.refuse(
        cast.dismantler, "shipped", pack, {"to": cast.recycler.id}, 409, "lifecycle.final", "battery"
    )
    story.refuse(
        cast.dismantler,
        "shipped",
        modules[1],
        {"to": cast.stranger.id},
        403,
        "lifecycle.unlicensed_receiver",
        "data.to",
    )
    story.move(modules[1], cast.dismantler, cast.recycler)
    story.expect(modules[1], holder=cast.recycler.id, stage="retired")
    # a module's cells in turn; a cell is not dismantled
    story.do(cast.dismantler, "dismantled", modules[0])
    for cell in cells:
        story.expect(cell, stage="retired", holder=cast.dismantler.id)
    story.refuse(cast.dismantler, "dismantled", cells[0], None, 409, "lifecycle.bad_hierarchy", "battery")
    # only retired batteries
    code, vin = story.installed()
    story.do(cast.dismantler, "vehicle_scrapped", None, vin_=vin)
    story.do(cast.dismantler, "removed", code, {"reason": "vehicle_scrapped"})
    story.refuse(cast.dismantler, "dismantled", code, None, 409, "lifecycle.wrong_stage", "battery")
    # only by a licensed holder
    other, _ = story.installed()
    story.do(cast.automaker, "removed", other, {"reason": "retirement"})
    story.do(cast.automaker, "retired", other)
    story.refuse(cast.automaker, "dismantled", other, None, 403, "licence.missing")
    story.refuse(cast.dismantler, "dismantled", other, None, 403, "lifecycle.not_holder", "battery")
    story.expect(other, stage="retired", holder=cast.automaker.id)


# --- recycled ---------------------------------------------------------------------------------


def test_recycled(story: Story, cast: Cast) -> None:
    code = story.retired_at(cast.recycler)
    data = {"mass_kg": 300.0, "recovered": RECOVERED}
    story.refuse(
        cast.recycler,
        "recycled",
        code,
        {"mass_kg": 300.0, "recovered": {**RECOVERED, "li_kg": 290.0}},
        422,
        "lifecycle.mass_balance",
        "data.recovered",
    )
    story.refuse(
        cast.recycler, "recycled", code, {"mass_kg": 300.0}, 422, "request.invalid", "data.recovered"
    )
    story.refuse(
        cast.recycler,
        "recycled",
        code,
        {"mass_kg": 300.0, "recovered": {"gold": 1}},
        422,
        "request.invalid",
        "data.recovered.gold",
    )
    story.refuse(
        cast.recycler, "recycled", code, {"recovered": RECOVERED}, 422, "request.invalid", "data.mass_kg"
    )
    other = make_enterprise(cast.regulator, ["recycler"], licences=["recycling"])
    story.refuse(other, "recycled", code, data, 403, "lifecycle.not_holder", "battery")
    story.do(cast.recycler, "recycled", code, data)
    story.expect(code, stage="recycled", holder=cast.recycler.id)
    story.refuse(cast.recycler, "recycled", code, data, 409, "lifecycle.final", "battery")
    story.refuse(cast.recycler, "reported_missing", code, None, 409, "lifecycle.final", "battery")
    # only retired batteries
    new = story.manufactured()
    story.move(new, cast.maker, cast.recycler)
    story.refuse(cast.recycler, "recycled", new, data, 409, "lifecycle.wrong_stage", "battery")
    # recycling by an unlicensed recycler: a removed battery is not yet waste, so it may reach one,
    # which retires it
    code = story.removed()
    story.move(code, cast.outlet, cast.unlicensed)
    story.do(cast.unlicensed, "retired", code)
    story.refuse(
        cast.unlicensed, "recycled", code, {"mass_kg": 300.0, "recovered": RECOVERED}, 403, "licence.missing"
    )
    story.expect(code, stage="retired", holder=cast.unlicensed.id)
    # a licensed second-life firm is not a recycler either
    waste = story.retired_at(cast.repurposer)
    story.refuse(
        cast.repurposer,
        "recycled",
        waste,
        {"mass_kg": 300.0, "recovered": RECOVERED},
        403,
        "lifecycle.wrong_role",
    )


# --- reported_missing and found ---------------------------------------------------------------


def test_reported_missing_and_found(story: Story, cast: Cast) -> None:
    code, vin = story.installed()
    story.refuse(cast.stranger, "reported_missing", code, None, 403, "lifecycle.not_holder", "battery")
    story.refuse(cast.regulator, "found", code, None, 409, "lifecycle.not_missing", "battery")
    story.do(cast.automaker, "reported_missing", code)
    story.expect(code, stage="missing", holder=cast.automaker.id, vin=vin, stage_before_missing="installed")
    story.refuse(cast.automaker, "reported_missing", code, None, 409, "lifecycle.wrong_stage", "battery")
    story.refuse(
        cast.automaker, "shipped", code, {"to": cast.outlet.id}, 409, "lifecycle.wrong_stage", "battery"
    )
    story.refuse(cast.outlet, "removed", code, {"reason": "repair"}, 409, "lifecycle.wrong_stage", "battery")
    story.refuse(cast.automaker, "exported", code, {"country": "DE"}, 409, "lifecycle.wrong_stage", "battery")
    story.refuse(cast.automaker, "found", code, None, 403, "lifecycle.wrong_role")
    story.do(cast.regulator, "found", code)
    story.expect(code, stage="installed", holder=cast.automaker.id, vin=vin, stage_before_missing=None)
    # the regulator may report any battery missing
    new = story.manufactured()
    story.do(cast.regulator, "reported_missing", new)
    story.expect(new, stage="missing", holder=cast.maker.id)
    story.do(cast.regulator, "found", new)
    story.expect(new, stage="new", holder=cast.maker.id)


# --- exported ---------------------------------------------------------------------------------


def test_exported(story: Story, cast: Cast) -> None:
    code = story.at_automaker()
    story.refuse(cast.maker, "exported", code, {"country": "DE"}, 403, "lifecycle.not_holder", "battery")
    story.refuse(cast.automaker, "exported", code, {"country": "CN"}, 422, "request.invalid", "data.country")
    story.refuse(
        cast.automaker, "exported", code, {"country": "germany"}, 422, "request.invalid", "data.country"
    )
    story.refuse(cast.automaker, "exported", code, {}, 422, "request.invalid", "data.country")
    story.do(cast.automaker, "exported", code, {"country": "DE"})
    story.expect(code, stage="exported", holder=cast.automaker.id)
    story.refuse(cast.automaker, "exported", code, {"country": "FR"}, 409, "lifecycle.final", "battery")
    story.refuse(cast.automaker, "installed", code, {"vin": f.vin()}, 409, "lifecycle.final", "battery")
    waste = story.retired()
    story.refuse(cast.outlet, "exported", waste, {"country": "DE"}, 409, "lifecycle.waste", "battery")


# --- retracted --------------------------------------------------------------------------------


def events_of(story: Story, code: str) -> list[dict[str, object]]:
    r = story.cast.regulator.get(battery_path(code) + "/events")
    assert r.status_code == 200, r.text
    return r.json()["events"]


def test_retraction_undoes_the_latest_event(story: Story, cast: Cast) -> None:
    code = story.manufactured()
    shipped = story.do(cast.maker, "shipped", code, {"to": cast.stranger.id})
    story.expect(code, in_transit_to=cast.stranger.id)
    story.do(cast.maker, "retracted", code, {"event": shipped["id"], "reason": "wrong addressee"})
    story.expect(code, stage="new", holder=cast.maker.id, in_transit_to=None)
    listed = {e["id"]: e for e in events_of(story, code)}
    assert listed[shipped["id"]]["retracted"] is True
    assert [e["type"] for e in events_of(story, code)] == ["manufactured", "shipped", "retracted"]
    # the correction is a new event
    story.move(code, cast.maker, cast.automaker)
    story.expect(code, holder=cast.automaker.id)

    # an assembly undone: the links go, the cells are free again
    pack, cells = story.manufactured("P"), [story.manufactured("C") for _ in range(2)]
    assembled = story.do(cast.maker, "assembled", pack, {"children": cells})
    story.do(cast.maker, "retracted", pack, {"event": assembled["id"], "reason": "wrong cells"})
    story.expect(pack, children=[])
    story.expect(cells[0], parent=None)
    story.do(cast.maker, "shipped", cells[0], {"to": cast.automaker.id})

    # a registration undone: the code is unknown again, and may be registered afresh
    typo = story.manufactured()
    registered = events_of(story, typo)[0]["id"]
    story.do(cast.regulator, "retracted", typo, {"event": registered, "reason": "code printed twice"})
    assert story.state(typo) is None
    story.do(cast.maker, "manufactured", typo, f.MANUFACTURED)
    story.expect(typo, stage="new", holder=cast.maker.id)

    # a vehicle event undone
    _, vin = story.installed()
    sold = story.do(cast.automaker, "vehicle_sold", None, vin_=vin)
    story.do(cast.automaker, "retracted", None, {"event": sold["id"], "reason": "sale cancelled"}, vin_=vin)
    story.do(cast.automaker, "vehicle_sold", None, vin_=vin)


def test_retraction_refusals(story: Story, cast: Cast) -> None:
    code = story.manufactured()
    shipped = story.do(cast.maker, "shipped", code, {"to": cast.automaker.id})
    story.do(cast.automaker, "received", code)
    problem = story.refuse(
        cast.maker,
        "retracted",
        code,
        {"event": shipped["id"], "reason": "oops"},
        409,
        "lifecycle.retraction_refused",
        "data.event",
    )
    assert "after" in problem["detail"]
    story.expect(code, holder=cast.automaker.id, in_transit_to=None)
    # only the original actor or a regulator
    installed = story.do(cast.automaker, "installed", code, {"vin": f.vin()})
    story.refuse(
        cast.stranger,
        "retracted",
        code,
        {"event": installed["id"], "reason": "x"},
        403,
        "permission.denied",
        "data.event",
    )
    # the regulator may; a retraction is not itself retracted, nor an event retracted twice
    retraction = story.do(
        cast.regulator, "retracted", code, {"event": installed["id"], "reason": "wrong vin"}
    )
    story.expect(code, stage="new", vin=None, holder=cast.automaker.id)
    story.refuse(
        cast.automaker,
        "retracted",
        code,
        {"event": installed["id"], "reason": "x"},
        409,
        "lifecycle.retraction_refused",
        "data.event",
    )
    story.refuse(
        cast.regulator,
        "retracted",
        code,
        {"event": retraction["id"], "reason": "x"},
        409,
        "lifecycle.retraction_refused",
        "data.event",
    )
    # the event must exist and be about the same battery
    story.refuse(
        cast.automaker,
        "retracted",
        code,
        {"event": f.eid(), "reason": "x"},
        404,
        "event.unknown",
        "data.event",
    )
    other = story.manufactured()
    story.refuse(
        cast.maker,
        "retracted",
        other,
        {"event": shipped["id"], "reason": "x"},
        422,
        "request.invalid",
        "battery",
    )
    story.refuse(
        cast.maker,
        "retracted",
        other,
        {"event": "not-a-uuid", "reason": "x"},
        422,
        "request.invalid",
        "data.event",
    )
    story.refuse(
        cast.maker, "retracted", other, {"event": shipped["id"]}, 422, "request.invalid", "data.reason"
    )
