"""The second-life story, end to end through the API.

Two packs are made (one with a module of cells), installed, maintained, removed and retired, and
collected by a licensed second-life firm, which grades them, splits them into modules, and combines
three modules of the two packs into a stationary-storage product under its own manufacturer code.
The product is installed, maintained, retired again and recycled; the lithium, cobalt and nickel
recovered are declared as recycled content of new packs, whose passports show their recycled
shares against the EU-2031 minimums. At every step the lineage and the public passport data are
checked, and every forbidden move (grading or repurposing without a licence or without a grading,
a grade below the policy threshold, waste to an unlicensed party, a second-life battery into an
e-bike, more recycled content than was recovered) is refused with its reason.

Finally the regulator's circularity reports add the story up, and `verify` replays it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from batterytrace.services.verify import verify
from tests import factories as f
from tests.api.support import Story, battery_path
from tests.conftest import Actor, Cast, make_enterprise

MODULE = {
    "capacity_kwh": 20.0,
    "voltage_v": 130.0,
    "mass_kg": 100.0,
    "materials": {"li_kg": 2.0, "co_kg": 1.7, "ni_kg": 13.0, "mn_kg": 1.5, "cu_kg": 7.0},
    "carbon_kgco2e_per_kwh": 74.0,
}
CELL = {"capacity_kwh": 0.2, "voltage_v": 3.7, "mass_kg": 1.0, "materials": {"li_kg": 0.02}}
#: what the recycler gets back from the storage product (three modules) and from one module
FROM_PRODUCT = {"li_kg": 5.4, "co_kg": 4.6, "ni_kg": 35.0, "mn_kg": 4.0, "cu_kg": 20.0}
FROM_MODULE = {"li_kg": 1.8, "co_kg": 1.5, "ni_kg": 11.5}


@pytest.fixture
def story(cast: Cast) -> Iterator[Story]:
    s = Story(cast)
    yield s
    s.check_security_events()


def public(client: Any, path: str) -> dict[str, Any]:
    r = client.get(path)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def lineage(story: Story, code: str, actor: Actor | None = None) -> dict[str, Any]:
    """The lineage as ``actor`` sees it (None: the public)."""
    path = battery_path(code) + "/lineage"
    r = actor.get(path) if actor is not None else story.cast.regulator.client.get(path)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["code"] == code
    assert body["battery"]["code"] == code
    return body


def eu_passport(client: Any, code: str) -> dict[str, Any]:
    """The public EU battery passport (Battery Pass data model 1.2) of ``code``."""
    body = public(client, battery_path(code) + "/passport")
    assert body["batteryCode"] == code
    return body


def linked(items: list[dict[str, Any]]) -> set[str]:
    return {item["batteryCode"] for item in items}


def codes(nodes: list[dict[str, Any]]) -> dict[str, int]:
    return {n["code"]: n["depth"] for n in nodes}


def edges(body: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(e["from"], e["to"], e["kind"]) for e in body["edges"]}


def test_second_life_story(story: Story, cast: Cast, registry: Any) -> None:
    client = cast.regulator.client

    maker, automaker, outlet, repurposer, recycler = (
        cast.maker,
        cast.automaker,
        cast.outlet,
        cast.repurposer,
        cast.recycler,
    )
    pirate = make_enterprise(cast.regulator, ["repurposer"], codes=["8RP"])  # no second_life licence

    # --- made: two packs of two modules; one module holds two cells --------------------------------
    c1, c2 = f.code(level="C"), f.code(level="C")
    a1, a2, b1, b2 = (f.code(level="M") for _ in range(4))
    p1, p2 = f.code(level="P"), f.code(level="P")
    for cell in (c1, c2):
        story.do(maker, "manufactured", cell, CELL)
    for module in (a1, a2, b1, b2):
        story.do(maker, "manufactured", module, MODULE)
    story.do(maker, "assembled", a1, {"children": [c1, c2]})
    for pack, parts in ((p1, [a1, a2]), (p2, [b1, b2])):
        story.do(maker, "manufactured", pack, f.MANUFACTURED)
        story.do(maker, "assembled", pack, {"children": parts})
    seen = lineage(story, p1)
    assert seen["access_tier"] == "public"
    assert codes(seen["descendants"]) == {a1: 1, a2: 1, c1: 2, c2: 2}
    assert seen["ancestors"] == []
    assert edges(seen) == {
        (p1, a1, "component"),
        (p1, a2, "component"),
        (a1, c1, "component"),
        (a1, c2, "component"),
    }
    assert "holder" not in seen["battery"]
    seen = lineage(story, c1)
    assert codes(seen["ancestors"]) == {a1: 1, p1: 2}
    passport = public(client, battery_path(p1))
    assert passport["carbon_kgco2e_per_kwh"] == 74.0
    assert passport["carbon_footprint_kgco2e"] == 60.0 * 74.0
    assert passport["recycled_share"] is None  # no recycled content declared
    assert passport["recycled_content_minimums"]["profile"] == "EU-2031"
    assert passport["recycled_content_minimums"]["meets"] is False
    assert eu_passport(client, p1)["status"] == "active"

    # --- installed, maintained, removed, retired ----------------------------------------------------
    for pack in (p1, p2):
        story.move(pack, maker, automaker)
        story.do(automaker, "installed", pack, {"vin": f.vin()})
        story.do(outlet, "maintained", pack, {"soh_percent": 86.0})
        story.do(outlet, "maintained", pack, {"soh_percent": 79.5})
        story.do(outlet, "removed", pack, {"reason": "retirement"})
        story.do(outlet, "retired", pack)
    assert public(client, battery_path(p1))["stage"] == "retired"
    # the outlet collects, but may not grade: it holds a collection licence only
    problem = story.refuse(
        outlet, "graded", p1, {"soh_percent": 79.5, "decision": "repurpose"}, 403, "licence.missing"
    )
    assert "second_life or recycling licence" in problem["detail"]

    # --- collected: waste only to a licensed facility -----------------------------------------------
    problem = story.refuse(
        outlet, "shipped", p1, {"to": pirate.id}, 403, "lifecycle.unlicensed_receiver", "data.to"
    )
    assert "licensed facility" in problem["detail"]
    for pack in (p1, p2):
        story.move(pack, outlet, repurposer)
    story.expect(p1, stage="retired", holder=repurposer.id)

    # --- graded ---------------------------------------------------------------------------------------
    product = f.second_life_code(level="P")
    problem = story.refuse(
        repurposer,
        "repurposed",
        p1,
        {"into": product},
        409,
        "lifecycle.not_graded_for_repurposing",
        "battery",
    )
    assert "graded" in problem["detail"]
    problem = story.refuse(
        repurposer,
        "graded",
        p1,
        {"soh_percent": 50.0, "decision": "repurpose"},
        422,
        "lifecycle.soh_below_threshold",
        "data.decision",
    )
    assert "60 %" in problem["detail"]
    assert "CN-2026" in problem["detail"]
    story.do(repurposer, "graded", p1, {"soh_percent": 79.5, "decision": "repurpose"})
    story.do(repurposer, "graded", p2, {"soh_percent": 76.0, "decision": "repurpose"})
    story.expect(p1, grade="repurpose", soh_percent=79.5)

    # --- split into modules ---------------------------------------------------------------------------
    for pack in (p1, p2):
        story.do(repurposer, "dismantled", pack)
    for module in (a1, a2, b1, b2):
        story.expect(module, stage="retired", holder=repurposer.id, grade=None)
    assert public(client, battery_path(p1))["stage"] == "dismantled"
    seen = lineage(story, a1)
    assert codes(seen["ancestors"]) == {p1: 1}
    assert codes(seen["descendants"]) == {c1: 1, c2: 1}
    # each module is graded on its own: above the profile's 85 % ceiling is accepted (and counted)
    story.do(repurposer, "graded", a1, {"soh_percent": 88.0, "decision": "repurpose"})
    story.do(repurposer, "graded", a2, {"soh_percent": 79.0, "decision": "repurpose"})
    story.do(repurposer, "graded", b1, {"soh_percent": 77.0, "decision": "repurpose"})
    story.do(repurposer, "graded", b2, {"soh_percent": 55.0, "decision": "recycle"})

    # --- three modules of two packs combined into one storage product ---------------------------------
    problem = story.refuse(
        pirate,
        "repurposed",
        a1,
        {"into": f.second_life_code(manufacturer="8RP")},
        403,
        "licence.missing",
    )
    assert "second_life licence" in problem["detail"]
    story.do(repurposer, "repurposed", a1, {"into": product, "capacity_kwh": 45.0})
    story.do(repurposer, "repurposed", a2, {"into": product})
    story.do(repurposer, "repurposed", b1, {"into": product})
    problem = story.refuse(
        repurposer, "repurposed", b2, {"into": product}, 409, "lifecycle.graded_for_recycling", "battery"
    )
    assert "recycling" in problem["detail"]
    passport = public(client, battery_path(product))
    assert passport["code"] == product
    assert len(product) == 19
    assert product.startswith("9RP")
    assert (passport["second_life"], passport["stage"], passport["capacity_kwh"]) == (True, "new", 45.0)
    assert passport["origins"] == sorted([a1, a2, b1])
    assert passport["recycled_content_minimums"] is None  # second-life products are exempt
    for origin in (a1, a2, b1):
        got = public(client, battery_path(origin))
        assert (got["stage"], got["products"]) == ("repurposed", [product])
        # the origin's passport is superseded by the product's, which links back to it
        old = eu_passport(client, origin)
        assert (old["status"], linked(old["successors"])) == ("superseded", {product})
    second_life = eu_passport(client, product)
    assert second_life["status"] == "active"
    assert linked(second_life["predecessors"]) == {a1, a2, b1}
    seen = lineage(story, product)
    assert codes(seen["ancestors"]) == {a1: 1, a2: 1, b1: 1, p1: 2, p2: 2}
    assert seen["descendants"] == []
    assert edges(seen) == {
        (a1, product, "origin"),
        (a2, product, "origin"),
        (b1, product, "origin"),
        (p1, a1, "component"),
        (p1, a2, "component"),
        (p2, b1, "component"),
    }
    seen = lineage(story, p1)
    assert codes(seen["descendants"]) == {a1: 1, a2: 1, c1: 2, c2: 2, product: 2}

    # --- installed in stationary storage, never in an e-bike --------------------------------------------
    problem = story.refuse(
        repurposer,
        "installed",
        product,
        {"system": "EB-1", "application": "e_bike"},
        403,
        "lifecycle.e_bike_forbidden",
        "data.application",
    )
    assert "second-life product" in problem["detail"]
    assert "e-bikes" in problem["detail"]
    story.do(repurposer, "installed", product, {"system": "ESS-31-0007", "application": "stationary"})
    story.do(repurposer, "maintained", product, {"soh_percent": 71.0})
    assert public(client, battery_path(product))["stage"] == "installed"
    story.expect(product, system="ESS-31-0007", application="stationary", soh_percent=71.0)

    # --- retired again and recycled -------------------------------------------------------------------
    story.do(repurposer, "removed", product, {"reason": "retirement"})
    story.do(repurposer, "retired", product)
    problem = story.refuse(
        repurposer,
        "shipped",
        product,
        {"to": cast.unlicensed.id},
        403,
        "lifecycle.unlicensed_receiver",
        "data.to",
    )
    story.move(product, repurposer, recycler)
    story.do(recycler, "recycled", product, {"mass_kg": 300.0, "recovered": FROM_PRODUCT})
    story.move(b2, repurposer, recycler)
    story.do(recycler, "recycled", b2, {"mass_kg": 100.0, "recovered": FROM_MODULE})
    assert public(client, battery_path(product))["stage"] == "recycled"
    assert eu_passport(client, product)["status"] == "ceased"  # Art. 77(8): recycling ends the passport
    seen = lineage(story, product)
    recycling = seen["battery"]["recycling"]
    assert recycling["province"] == "31"
    assert "recycler" not in recycling  # who recycled it and what came out: legitimate interest
    seen = lineage(story, product, cast.regulator)
    recycling = seen["battery"]["recycling"]
    assert (recycling["recycler"], recycling["mass_kg"], recycling["recovered"]) == (
        recycler.id,
        300.0,
        FROM_PRODUCT,
    )
    assert recycling["avoided_kgco2e"]["li"] == pytest.approx(5.4 * 57)
    seen = lineage(story, p1, cast.regulator)
    descendants = {n["code"]: n for n in seen["descendants"]}
    assert descendants[product]["stage"] == "recycled"
    assert descendants[product]["recycling"]["recovered"] == FROM_PRODUCT

    # --- recovered material declared into new packs ------------------------------------------------------
    stranger_recycler = make_enterprise(cast.regulator, ["recycler"], licences=["recycling"])
    new = f.code(level="P")
    problem = story.refuse(
        maker,
        "manufactured",
        new,
        {**f.MANUFACTURED, "recycled_content": [{"recycler": recycler.id, "li_kg": 6.5}]},
        422,
        "lifecycle.mass_balance",
        "data.recycled_content",
    )
    assert "6 kg the battery contains" in problem["detail"]
    problem = story.refuse(
        maker,
        "manufactured",
        new,
        {**f.MANUFACTURED, "recycled_content": [{"recycler": stranger_recycler.id, "li_kg": 0.6}]},
        409,
        "lifecycle.recycled_content_exceeds_recovered",
        "data.recycled_content[0].li_kg",
    )
    assert "recovered only 0 kg" in problem["detail"]
    content = [{"recycler": recycler.id, "li_kg": 0.6, "co_kg": 0.8, "ni_kg": 2.4}]
    story.do(maker, "manufactured", new, {**f.MANUFACTURED, "recycled_content": content})
    passport = public(client, battery_path(new))
    assert passport["recycled_share"] == {
        "li": 0.1,
        "co": 0.16,
        "ni": round(2.4 / 39.5, 6),
        "mn": 0.0,
        "cu": 0.0,
    }
    check = passport["recycled_content_minimums"]
    assert check["meets"] is True
    assert check["metals"]["li"] == {"minimum": 0.06, "share": 0.1, "applies": True, "meets": True}
    assert check["metals"]["co"]["meets"] is True
    assert "recycled_content" not in passport  # the recyclers it came from: legitimate interest
    assert cast.recycler.get(battery_path(new)).json()["recycled_content"] == content
    eu = eu_passport(client, new)
    assert eu["status"] == "active"
    # the EU passport states the same shares, in percent of the metal the pack contains
    shares = {e["recycledMaterial"]: e for e in eu["aspects"]["Circularity"]["recycledContent"]}
    assert shares["Lithium"]["postConsumerShare"] == 10.0
    assert shares["Cobalt"]["postConsumerShare"] == 16.0
    assert shares["Nickel"]["postConsumerShare"] == round(100 * 2.4 / 39.5, 4)
    assert {e["preConsumerShare"] for e in shares.values()} == {0}
    seen = lineage(story, new)
    assert (seen["ancestors"], seen["descendants"]) == ([], [])
    assert seen["battery"]["recycled_share"]["li"] == 0.1
    # the recycler's lithium is used up, declaration by declaration (7.2 kg recovered)
    second = f.code(level="P")
    story.do(
        maker,
        "manufactured",
        second,
        {**f.MANUFACTURED, "recycled_content": [{"recycler": recycler.id, "li_kg": 6.0}]},
    )
    assert public(client, battery_path(second))["recycled_share"]["li"] == 1.0
    third = f.code(level="P")
    problem = story.refuse(
        maker,
        "manufactured",
        third,
        {**f.MANUFACTURED, "recycled_content": [{"recycler": recycler.id, "li_kg": 0.7}]},
        409,
        "lifecycle.recycled_content_exceeds_recovered",
        "data.recycled_content[0].li_kg",
    )
    assert f"recovered by {recycler.id}" in problem["detail"]
    assert "recovered only 0.6 kg" in problem["detail"]
    story.do(
        maker,
        "manufactured",
        third,
        {**f.MANUFACTURED, "recycled_content": [{"recycler": recycler.id, "li_kg": 0.6}]},
    )

    # --- the regulator's reports add the story up ------------------------------------------------------
    reports = "/api/v1/reports/"
    r = maker.get(reports + "second-life")
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "permission.denied"
    second_life = cast.regulator.get(reports + "second-life", year=2026, province="31").json()
    (row,) = second_life["rows"]
    assert (row["year"], row["province"]) == (2026, "31")
    assert (row["products"], row["products_capacity_kwh"], row["origins"]) == (1, 45.0, 3)
    assert row["origins_by_level"] == {"pack": 0, "module": 3, "cell": 0}
    assert (row["origins_mass_kg"], row["installed"], row["retired"], row["recycled"]) == (300.0, 1, 1, 1)
    assert cast.regulator.get(reports + "second-life", year=2025).json()["rows"] == []

    outcomes = cast.regulator.get(reports + "circularity", year=2026).json()["totals"]
    assert (outcomes["repurposed"], outcomes["recycled"], outcomes["recycled_after_second_life"]) == (3, 2, 1)
    assert (outcomes["repurposed_mass_kg"], outcomes["recycled_mass_kg"]) == (300.0, 400.0)
    assert outcomes["share_repurposed_by_mass"] == round(300 / 700, 6)
    assert outcomes["share_repurposed_by_count"] == 0.6
    assert outcomes["graded"] == {"repurpose": 5, "recycle": 1}
    assert outcomes["graded_repurpose_above_ceiling"] == 1
    assert outcomes["retired"] == 2 + 4 + 1  # two packs, their four modules, the product

    content_report = cast.regulator.get(reports + "recycled-content", year=2026, maker=maker.id).json()
    packs = next(r for r in content_report["rows"] if r["level"] == "pack")
    assert (packs["batteries"], packs["batteries_with_recycled_content"]) == (5, 3)
    assert packs["recycled_kg"]["li_kg"] == 7.2
    assert packs["recycled_share"]["li"] == round(7.2 / 30.0, 6)
    assert packs["sources"] == {recycler.id: {"li_kg": 7.2, "co_kg": 0.8, "ni_kg": 2.4}}
    (balance,) = [b for b in content_report["recyclers"] if b["recycler"] == recycler.id]
    assert balance["materials"]["li"] == {"recovered_kg": 7.2, "declared_kg": 7.2, "remaining_kg": 0.0}
    assert balance["materials"]["ni"]["remaining_kg"] == pytest.approx(46.5 - 2.4)

    ghg = cast.regulator.get(reports + "ghg", year=2026, province="31").json()
    assert ghg["second_life"]["capacity_kwh"] == 45.0
    assert ghg["second_life"]["avoided_kgco2e"] == 45.0 * 30.0
    assert ghg["recycling"]["avoided_kgco2e_by_metal"] == {
        "co": pytest.approx(6.1 * 42),
        "li": pytest.approx(7.2 * 57),
        "ni": pytest.approx(46.5 * 14),
    }
    assert ghg["manufacturing"]["pack"]["declared_kgco2e"] == pytest.approx(5 * 60 * 74.0)
    battery_ghg = public(client, battery_path(product) + "/ghg")
    assert battery_ghg["second_life"] == {
        "capacity_kwh": 45.0,
        "capacity": "declared",
        "avoided_kgco2e": 1350.0,
    }
    assert battery_ghg["recycling"]["avoided_kgco2e"] == pytest.approx(5.4 * 57 + 4.6 * 42 + 35.0 * 14)

    # --- and the whole story replays from the log --------------------------------------------------------
    report = verify(registry.engine, registry.log)
    assert report.ok, [str(x) for x in report.findings]
