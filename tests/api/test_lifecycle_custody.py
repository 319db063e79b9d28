"""Acceptance tests for the first half of a battery's life, through the API: manufacture, assembly,
custody (shipped, received), installation, vehicle sale and scrapping, maintenance and removal.

For each event type of DESIGN.md's table: the allowed path (201 and the resulting state as the
regulator sees it) and forbidden paths (status, stable code, offending field). A refused event
changes nothing, does not grow the log, and is kept as a security event (checked after each test)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import factories as f
from tests.api.support import Story
from tests.conftest import Cast, make_enterprise


@pytest.fixture
def story(cast: Cast) -> Iterator[Story]:
    s = Story(cast)
    yield s
    s.check_security_events()


# --- manufactured -----------------------------------------------------------------------------


def test_manufactured(story: Story, cast: Cast) -> None:
    code = f.code(chemistry="E")
    stored = story.do(cast.maker, "manufactured", code, f.MANUFACTURED)
    assert stored["battery"] == code
    assert stored["data"] == f.MANUFACTURED
    got = story.expect(
        code,
        stage="new",
        holder=cast.maker.id,
        in_transit_to=None,
        vin=None,
        parent=None,
        children=[],
        origins=[],
        products=[],
        level="pack",
        chemistry="ternary",
        producer=cast.maker.id,
        second_life=False,
    )
    assert got["capacity_kwh"] == 60.0
    assert got["materials"] == f.MANUFACTURED["materials"]
    # registered twice
    story.refuse(cast.maker, "manufactured", code, f.MANUFACTURED, 409, "battery.exists", "battery")


def test_manufactured_refusals(story: Story, cast: Cast) -> None:
    # a code under another maker's manufacturer code (9RP is the repurposer's), or under nobody's
    for manufacturer in ("9RP", "7ZZ"):
        code = f.code(manufacturer=manufacturer)
        problem = story.refuse(
            cast.maker, "manufactured", code, f.MANUFACTURED, 403, "lifecycle.not_code_owner", "battery"
        )
        assert problem["position"] == 1
        assert manufacturer in problem["detail"]
        assert story.state(code) is None
    # a party that is not a battery maker
    code = f.code()
    story.refuse(cast.automaker, "manufactured", code, f.MANUFACTURED, 403, "lifecycle.wrong_role")
    # a second-life code is registered by 'repurposed', not 'manufactured'
    second = f.second_life_code(manufacturer="0AB")
    story.refuse(
        cast.maker, "manufactured", second, f.MANUFACTURED, 422, "lifecycle.second_life_code", "battery"
    )
    # declared materials heavier than the battery (they add up to 77.3 kg)
    story.refuse(
        cast.maker,
        "manufactured",
        code,
        {**f.MANUFACTURED, "mass_kg": 50.0},
        422,
        "lifecycle.mass_balance",
        "data.materials",
    )
    story.refuse(
        cast.maker,
        "manufactured",
        code,
        {**f.MANUFACTURED, "capacity_kwh": "60"},
        422,
        "request.invalid",
        "data.capacity_kwh",
    )
    story.refuse(
        cast.maker,
        "manufactured",
        code,
        {**f.MANUFACTURED, "capacity_kwh": -1},
        422,
        "request.invalid",
        "data.capacity_kwh",
    )
    assert story.state(code) is None
    assert story.state(second) is None


# --- assembled --------------------------------------------------------------------------------


def test_assembled_cell_to_pack_and_pack_module_cell(story: Story, cast: Cast) -> None:
    # cell-to-pack, without modules
    ctp = story.manufactured("P")
    ctp_cells = [story.manufactured("C") for _ in range(3)]
    story.do(cast.maker, "assembled", ctp, {"children": ctp_cells})
    story.expect(ctp, stage="new", holder=cast.maker.id, children=sorted(ctp_cells), parent=None)
    for cell in ctp_cells:
        story.expect(cell, stage="new", parent=ctp, holder=cast.maker.id, children=[])
    # pack → module → cell
    pack = story.manufactured("P")
    modules = [story.manufactured("M") for _ in range(2)]
    cells = [[story.manufactured("C") for _ in range(2)] for _ in modules]
    for module, its_cells in zip(modules, cells, strict=True):
        story.do(cast.maker, "assembled", module, {"children": its_cells})
    story.do(cast.maker, "assembled", pack, {"children": modules})
    story.expect(pack, children=sorted(modules), parent=None)
    for module, its_cells in zip(modules, cells, strict=True):
        story.expect(module, parent=pack, children=sorted(its_cells))
        for cell in its_cells:
            story.expect(cell, parent=module, children=[])
    # custody of a component follows the pack it is part of
    story.move(pack, cast.maker, cast.automaker)
    story.expect(modules[0], holder=cast.automaker.id)
    story.expect(cells[1][0], holder=cast.automaker.id)
    # and a component cannot be handled on its own
    problem = story.refuse(
        cast.automaker,
        "shipped",
        modules[0],
        {"to": cast.outlet.id},
        409,
        "lifecycle.part_of_parent",
        "battery",
    )
    assert pack in problem["detail"]
    story.refuse(
        cast.automaker, "installed", cells[0][0], {"vin": f.vin()}, 409, "lifecycle.part_of_parent", "battery"
    )


def test_assembled_refusals(story: Story, cast: Cast) -> None:
    pack, other_pack, module, cell = (story.manufactured(level) for level in ("P", "P", "M", "C"))
    # levels: a pack holds modules or cells, a module holds cells, a cell holds nothing
    story.refuse(
        cast.maker,
        "assembled",
        pack,
        {"children": [cell, other_pack]},
        409,
        "lifecycle.bad_hierarchy",
        "data.children[1]",
    )
    story.refuse(
        cast.maker,
        "assembled",
        module,
        {"children": [pack]},
        409,
        "lifecycle.bad_hierarchy",
        "data.children[0]",
    )
    story.refuse(
        cast.maker, "assembled", cell, {"children": [module]}, 409, "lifecycle.bad_hierarchy", "battery"
    )
    story.refuse(
        cast.maker,
        "assembled",
        pack,
        {"children": [pack]},
        409,
        "lifecycle.bad_hierarchy",
        "data.children[0]",
    )
    story.refuse(
        cast.maker,
        "assembled",
        pack,
        {"children": [cell, "0ABCE01"]},
        422,
        "code.bad_length",
        "data.children[1]",
    )
    story.refuse(cast.maker, "assembled", pack, {"children": []}, 422, "request.invalid", "data.children")
    # the parent's holder must hold it and the children
    elsewhere = story.manufactured("M")
    story.move(elsewhere, cast.maker, cast.automaker)
    story.refuse(
        cast.maker,
        "assembled",
        pack,
        {"children": [module, elsewhere]},
        403,
        "lifecycle.not_holder",
        "data.children[1]",
    )
    story.refuse(
        cast.automaker, "assembled", pack, {"children": [elsewhere]}, 403, "lifecycle.not_holder", "battery"
    )
    story.expect(pack, children=[])
    story.expect(module, parent=None)
    story.expect(cell, parent=None)
    # a child already part of another battery
    story.do(cast.maker, "assembled", other_pack, {"children": [cell]})
    story.refuse(
        cast.maker,
        "assembled",
        pack,
        {"children": [cell]},
        409,
        "lifecycle.bad_hierarchy",
        "data.children[0]",
    )
    story.expect(cell, parent=other_pack)
    # only new batteries are assembled
    installed, _ = story.installed()
    story.move(module, cast.maker, cast.automaker)
    story.refuse(
        cast.automaker,
        "assembled",
        installed,
        {"children": [module]},
        409,
        "lifecycle.wrong_stage",
        "battery",
    )


# --- shipped and received ---------------------------------------------------------------------


def test_shipped_and_received(story: Story, cast: Cast) -> None:
    code = story.manufactured()
    story.refuse(
        cast.stranger, "shipped", code, {"to": cast.stranger.id}, 403, "lifecycle.not_holder", "battery"
    )
    story.refuse(cast.maker, "shipped", code, {"to": f.uscc()}, 404, "enterprise.unknown", "data.to")
    story.refuse(cast.automaker, "received", code, None, 403, "lifecycle.not_addressee", "battery")
    stored = story.do(cast.maker, "shipped", code, {"to": cast.automaker.id})
    assert stored["data"] == {"to": cast.automaker.id}
    story.expect(code, stage="new", holder=cast.maker.id, in_transit_to=cast.automaker.id)
    story.refuse(
        cast.maker, "shipped", code, {"to": cast.stranger.id}, 409, "lifecycle.in_transit", "battery"
    )
    story.refuse(cast.stranger, "received", code, None, 403, "lifecycle.not_addressee", "battery")
    story.refuse(cast.maker, "received", code, None, 403, "lifecycle.not_addressee", "battery")
    story.do(cast.automaker, "received", code)
    story.expect(code, stage="new", holder=cast.automaker.id, in_transit_to=None)
    story.refuse(cast.maker, "shipped", code, {"to": cast.outlet.id}, 403, "lifecycle.not_holder", "battery")


def test_waste_goes_only_to_licensed_facilities_or_the_producers_network(story: Story, cast: Cast) -> None:
    code = story.retired()
    for receiver in (cast.unlicensed, cast.stranger):
        problem = story.refuse(
            cast.outlet, "shipped", code, {"to": receiver.id}, 403, "lifecycle.unlicensed_receiver", "data.to"
        )
        assert receiver.id in problem["detail"]
    story.expect(code, stage="retired", holder=cast.outlet.id, in_transit_to=None)
    story.do(cast.outlet, "shipped", code, {"to": cast.recycler.id})
    story.expect(code, stage="retired", holder=cast.outlet.id, in_transit_to=cast.recycler.id)
    story.do(cast.recycler, "received", code)
    story.expect(code, stage="retired", holder=cast.recycler.id, in_transit_to=None)

    # a collection point of the automaker's network that holds no licence of its own
    point = make_enterprise(cast.regulator, ["service_outlet"], network_of=cast.automaker.id)
    other, _ = story.installed()
    story.do(cast.automaker, "removed", other, {"reason": "retirement"})
    story.do(cast.automaker, "retired", other)
    story.do(cast.automaker, "shipped", other, {"to": point.id})
    story.do(point, "received", other)
    story.expect(other, stage="retired", holder=point.id, in_transit_to=None)
    # an outlet of another producer's network is no such channel
    foreign = make_enterprise(cast.regulator, ["service_outlet"], network_of=cast.stranger.id)
    story.refuse(point, "shipped", other, {"to": foreign.id}, 403, "lifecycle.unlicensed_receiver", "data.to")
    story.do(point, "shipped", other, {"to": cast.dismantler.id})
    story.expect(other, in_transit_to=cast.dismantler.id)


# --- installed --------------------------------------------------------------------------------


def test_installed(story: Story, cast: Cast) -> None:
    code = story.manufactured()
    story.refuse(cast.maker, "installed", code, {"vin": f.vin()}, 403, "lifecycle.wrong_role")
    story.move(code, cast.maker, cast.automaker)
    story.refuse(cast.stranger, "installed", code, {"vin": f.vin()}, 403, "lifecycle.not_holder", "battery")
    story.refuse(
        cast.automaker,
        "installed",
        code,
        {"vin": "LSVAU2A3XPN000001"},
        422,
        "vin.bad_check_character",
        "data.vin",
    )
    story.refuse(cast.automaker, "installed", code, {}, 422, "request.invalid", "data")
    scrapped = f.vin()
    story.do(cast.dismantler, "vehicle_scrapped", None, vin_=scrapped)
    story.refuse(
        cast.automaker, "installed", code, {"vin": scrapped}, 409, "lifecycle.vehicle_scrapped", "data.vin"
    )
    vin = f.vin()
    story.do(cast.automaker, "installed", code, {"vin": vin})
    story.expect(
        code,
        stage="installed",
        holder=cast.automaker.id,
        vin=vin,
        installer=cast.automaker.id,
        in_transit_to=None,
    )
    story.refuse(cast.automaker, "installed", code, {"vin": f.vin()}, 409, "lifecycle.wrong_stage", "battery")
    # out for repair and back in by the outlet that removed it
    story.do(cast.outlet, "removed", code, {"reason": "repair"})
    story.expect(code, stage="removed", holder=cast.outlet.id, vin=None)
    story.do(cast.outlet, "installed", code, {"vin": vin})
    story.expect(code, stage="installed", holder=cast.outlet.id, vin=vin)
    # in transit
    spare = story.at_automaker()
    story.do(cast.automaker, "shipped", spare, {"to": cast.outlet.id})
    story.refuse(cast.automaker, "installed", spare, {"vin": f.vin()}, 409, "lifecycle.in_transit", "battery")
    # waste
    story.do(cast.outlet, "removed", code, {"reason": "retirement"})
    story.do(cast.outlet, "retired", code)
    story.refuse(cast.outlet, "installed", code, {"vin": vin}, 409, "lifecycle.waste", "battery")


# --- vehicle_sold and vehicle_scrapped --------------------------------------------------------


def test_vehicle_sold_and_scrapped(story: Story, cast: Cast) -> None:
    code, vin = story.installed()
    story.refuse(cast.maker, "vehicle_sold", None, None, 403, "lifecycle.wrong_role", vin_=vin)
    story.refuse(cast.stranger, "vehicle_sold", None, None, 403, "lifecycle.not_holder", "vin", vin_=vin)
    story.refuse(cast.automaker, "vehicle_sold", code, None, 422, "request.invalid", "battery")
    stored = story.do(cast.automaker, "vehicle_sold", None, vin_=vin)
    assert stored["vin"] == vin
    assert "battery" not in stored
    story.expect(code, stage="installed", vin=vin, holder=cast.automaker.id)
    story.refuse(cast.automaker, "vehicle_sold", None, None, 409, "lifecycle.vehicle_state", "vin", vin_=vin)

    story.refuse(cast.automaker, "vehicle_scrapped", None, None, 403, "lifecycle.wrong_role", vin_=vin)
    unlicensed = make_enterprise(cast.regulator, ["dismantler"])
    story.refuse(unlicensed, "vehicle_scrapped", None, None, 403, "licence.missing", vin_=vin)
    stored = story.do(cast.dismantler, "vehicle_scrapped", None, vin_=vin)
    assert stored["vin"] == vin
    story.expect(code, stage="installed", vin=vin, holder=cast.automaker.id)
    story.refuse(
        cast.dismantler, "vehicle_scrapped", None, None, 409, "lifecycle.vehicle_scrapped", "vin", vin_=vin
    )
    story.refuse(
        cast.automaker, "vehicle_sold", None, None, 409, "lifecycle.vehicle_scrapped", "vin", vin_=vin
    )
    # the battery is then removed by the dismantler and collected
    story.refuse(unlicensed, "removed", code, {"reason": "vehicle_scrapped"}, 403, "licence.missing")
    story.do(cast.dismantler, "removed", code, {"reason": "vehicle_scrapped"})
    story.expect(code, stage="removed", holder=cast.dismantler.id, vin=None)


# --- maintained -------------------------------------------------------------------------------


def test_maintained(story: Story, cast: Cast) -> None:
    new = story.manufactured()
    story.refuse(cast.maker, "maintained", new, {"soh_percent": 100}, 409, "lifecycle.wrong_stage", "battery")
    code, vin = story.installed()
    stored = story.do(cast.outlet, "maintained", code, {"soh_percent": 93.5})
    assert stored["data"] == {"soh_percent": 93.5}
    story.expect(code, stage="installed", holder=cast.automaker.id, vin=vin, soh_percent=93.5)
    story.do(cast.automaker, "maintained", code, {"soh_percent": 92.0})
    story.expect(code, soh_percent=92.0, holder=cast.automaker.id)
    story.refuse(
        cast.stranger, "maintained", code, {"soh_percent": 90}, 403, "lifecycle.not_holder", "battery"
    )
    foreign = make_enterprise(cast.regulator, ["service_outlet"], network_of=cast.stranger.id)
    story.refuse(foreign, "maintained", code, {"soh_percent": 90}, 403, "lifecycle.not_holder", "battery")
    story.refuse(
        cast.outlet, "maintained", code, {"soh_percent": 120}, 422, "request.invalid", "data.soh_percent"
    )
    story.refuse(
        cast.outlet, "maintained", code, {"soh_percent": "good"}, 422, "request.invalid", "data.soh_percent"
    )
    story.refuse(cast.outlet, "maintained", code, {}, 422, "request.invalid", "data.soh_percent")
    # a removed battery is still maintained
    story.do(cast.outlet, "removed", code, {"reason": "repair"})
    story.do(cast.outlet, "maintained", code, {"soh_percent": 91.0})
    story.expect(code, stage="removed", soh_percent=91.0)


# --- removed ----------------------------------------------------------------------------------


def test_removed(story: Story, cast: Cast) -> None:
    new = story.at_automaker()
    story.refuse(
        cast.automaker, "removed", new, {"reason": "repair"}, 409, "lifecycle.wrong_stage", "battery"
    )
    code, _ = story.installed()
    story.refuse(cast.stranger, "removed", code, {"reason": "repair"}, 403, "lifecycle.not_holder", "battery")
    story.refuse(cast.outlet, "removed", code, {"reason": "bored"}, 422, "request.invalid", "data.reason")
    story.refuse(cast.outlet, "removed", code, {}, 422, "request.invalid", "data.reason")
    story.expect(code, stage="installed", holder=cast.automaker.id)
    story.do(cast.outlet, "removed", code, {"reason": "replacement"})
    story.expect(code, stage="removed", holder=cast.outlet.id, vin=None, in_transit_to=None)
    story.refuse(cast.outlet, "removed", code, {"reason": "repair"}, 409, "lifecycle.wrong_stage", "battery")
    # the holder itself may remove it too
    own, _ = story.installed()
    story.do(cast.automaker, "removed", own, {"reason": "swap"})
    story.expect(own, stage="removed", holder=cast.automaker.id, vin=None)
