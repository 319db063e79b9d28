"""EU battery passports (Battery Pass data model 1.2) for a new, an installed, a retired and a
recycled pack and a second-life product: each aspect validates against its official schema, the
passport is cut to the caller's access tier, and the public tier carries no restricted field."""

from __future__ import annotations

from typing import Any

import pytest

from batterytrace.domain.access import Tier
from tests import factories as f
from tests.api.support import Story
from tests.conftest import Actor, Cast
from tests.interop import support as s
from tests.interop.conftest import World

#: Annex XIII of Regulation (EU) 2023/1542, as the notes read it: point 2 and 4 data are for
#: persons with a legitimate interest, point 3 (test reports) for authorities.
RESTRICTED: dict[tuple[str, ...], Tier] = {
    ("GeneralProductInformation", "batteryStatus"): Tier.LEGITIMATE_INTEREST,
    ("GeneralProductInformation", "puttingIntoService"): Tier.LEGITIMATE_INTEREST,
    ("MaterialComposition", "batteryMaterials"): Tier.LEGITIMATE_INTEREST,
    ("Circularity", "dismantlingAndRemovalInformation"): Tier.LEGITIMATE_INTEREST,
    ("Circularity", "sparePartSources"): Tier.LEGITIMATE_INTEREST,
    ("Circularity", "safetyMeasures", "safetyInstructions"): Tier.LEGITIMATE_INTEREST,
    ("Labeling", "resultOfTestReport"): Tier.AUTHORITY,
    ("PerformanceAndDurability", "batteryCondition"): Tier.LEGITIMATE_INTEREST,
    (
        "PerformanceAndDurability",
        "batteryTechicalProperties",
        "roundTripEfficiencyFade",
    ): Tier.LEGITIMATE_INTEREST,
    ("PerformanceAndDurability", "batteryTechicalProperties", "powerFade"): Tier.LEGITIMATE_INTEREST,
    ("PerformanceAndDurability", "batteryTechicalProperties", "expectedLifetime"): Tier.LEGITIMATE_INTEREST,
    (
        "PerformanceAndDurability",
        "batteryTechicalProperties",
        "initialSelfDischarge",
    ): Tier.LEGITIMATE_INTEREST,
}


@pytest.fixture
def cast(world: World) -> Cast:
    return world.cast


@pytest.fixture
def lives(world: World) -> s.Lives:
    return world.lives


def passport(who: Actor | None, client: Any, code: str) -> dict[str, Any]:
    r = (
        who.get(f"/api/v1/batteries/{code}/passport")
        if who
        else client.get(f"/api/v1/batteries/{code}/passport")
    )
    assert r.status_code == 200, r.text
    return r.json()


def check(p: dict[str, Any], tier: Tier) -> None:
    """Every aspect validates; below the authority tier only the withheld fields may be missing, and
    none of them is present."""
    assert p["accessTier"] == tier.label
    withheld = tuple(path for path, needed in RESTRICTED.items() if tier < needed)
    assert sorted(p["withheld"]) == sorted("/" + "/".join(path) for path in withheld)
    keys = {aspect: s.walk_keys(payload) for aspect, payload in p["aspects"].items()}
    for path in withheld:
        assert "/".join(path[1:]) not in keys[path[0]], f"{path} shown at the {tier.label} tier"
    for aspect in s.ASPECT_SCHEMAS:
        relax = tuple(path[1:] for path in withheld if path[0] == aspect)
        assert s.aspect_errors(aspect, p["aspects"][aspect], relax) == []
    assert p["semanticIds"]["GeneralProductInformation"].startswith(
        "urn:samm:io.BatteryPass.GeneralProductInformation:1.2.0#"
    )


def test_passports_validate_at_every_tier(cast: Cast, lives: s.Lives) -> None:
    codes = [lives.new_pack, lives.installed_pack, lives.retired_pack, lives.recycled_pack, lives.product]
    for code in codes:
        full = passport(cast.regulator, None, code)
        assert full["complete"] is True, (code, full["undeclared"])
        assert full["undeclared"] == []
        check(full, Tier.AUTHORITY)
        check(passport(cast.unlicensed, None, code), Tier.LEGITIMATE_INTEREST)  # a recycler, unrelated
        check(passport(None, cast.regulator.client, code), Tier.PUBLIC)


def test_passport_follows_the_life(cast: Cast, lives: s.Lives) -> None:
    general = {
        code: passport(cast.regulator, None, code)["aspects"]["GeneralProductInformation"]
        for code in (
            lives.new_pack,
            lives.installed_pack,
            lives.retired_pack,
            lives.recycled_pack,
            lives.product,
        )
    }
    assert general[lives.new_pack]["batteryStatus"] == "Original"
    assert general[lives.installed_pack]["batteryStatus"] == "Original"
    assert general[lives.retired_pack]["batteryStatus"] == "Waste"
    assert general[lives.recycled_pack]["batteryStatus"] == "Waste"
    assert general[lives.product]["batteryStatus"] == "Repurposed"
    assert general[lives.product]["batteryCategory"] == "stationary"
    assert general[lives.new_pack]["batteryCategory"] == "ev"
    for g in general.values():
        assert g["batteryPassportIdentifier"].startswith("urn:uuid:")
        assert "-" not in g["batteryPassportIdentifier"]
        assert "emailAddress" not in g["manufacturerInformation"]
    # the manufacturer is the maker; a second-life product's is the repurposer (Art. 77(7))
    assert general[lives.new_pack]["manufacturerInformation"]["identifier"] == cast.maker.id
    assert general[lives.product]["manufacturerInformation"]["identifier"] == cast.repurposer.id
    assert general[lives.product]["manufacturerInformation"]["postalAddress"]["postalCode"] == "215000"

    new = passport(cast.regulator, None, lives.new_pack)
    assert new["placeholders"] == ["/GeneralProductInformation/puttingIntoService"]
    installed = passport(cast.regulator, None, lives.installed_pack)
    assert installed["placeholders"] == []
    condition = installed["aspects"]["PerformanceAndDurability"]["batteryCondition"]
    assert condition["stateOfCertifiedEnergy"]["stateOfCertifiedEnergyValue"] == 95.0
    assert condition["numberOfFullCycles"]["numberOfFullCycles" + "Value"] == 150
    assert condition["capacityFade"]["capacityFadeValue"] == 5.0
    assert installed["aspects"]["CarbonFootprintForBatteries"]["batteryCarbonFootprint"] == 74.0
    masses = {
        m["batteryMaterialName"]: m["batteryMaterialMass"]
        for m in installed["aspects"]["MaterialComposition"]["batteryMaterials"]
    }
    assert masses["Lithium"] == 6.0
    assert masses["Cobalt"] == 5.0

    recycled = passport(cast.regulator, None, lives.recycled_pack)
    assert recycled["status"] == "ceased"
    origin = passport(cast.regulator, None, lives.origin)
    product = passport(cast.regulator, None, lives.product)
    assert origin["status"] == "superseded"
    assert product["status"] == "active"
    assert product["passportId"] != origin["passportId"]
    assert [p["passportId"] for p in product["predecessors"]] == [origin["passportId"]]
    assert [p["batteryCode"] for p in origin["successors"]] == [lives.product]
    # composition and dismantling information carry over from the origin; mass is the origins'
    assert product["aspects"]["Circularity"]["dismantlingAndRemovalInformation"]
    assert product["aspects"]["GeneralProductInformation"]["batteryMass"] == 300.0
    assert product["aspects"]["PerformanceAndDurability"]["batteryTechicalProperties"]["ratedEnergy"] == 48.0


def test_public_passport_carries_no_restricted_value(cast: Cast, lives: s.Lives) -> None:
    public = passport(None, cast.regulator.client, lives.installed_pack)
    text = str(public)
    aspects = str(public["aspects"])
    assert lives.vins[lives.installed_pack] not in text
    assert cast.automaker.id not in text  # the holder
    assert cast.outlet.id not in text
    assert "batteryCondition" not in aspects
    assert "resultOfTestReport" not in aspects
    assert "un38-3" not in text  # the test report's address
    assert "stateOfCharge" not in text
    legit = passport(cast.unlicensed, None, lives.installed_pack)
    assert "resultOfTestReport" not in str(legit["aspects"])
    assert "batteryCondition" in str(legit["aspects"])


def test_undeclared_fields_are_named_not_invented(cast: Cast) -> None:
    story = Story(cast)
    code = s.manufacture(story, declared=False)
    p = passport(cast.regulator, None, code)
    assert p["complete"] is False
    assert "/GeneralProductInformation/warrentyPeriod" in p["undeclared"]
    assert "/CarbonFootprintForBatteries/carbonFootprintStudy" in p["undeclared"]
    assert "/SupplyChainDueDiligence/supplyChainDueDiligenceReport" in p["undeclared"]
    aspects = p["aspects"]
    assert aspects["GeneralProductInformation"]["batteryMass"] == 300.0
    assert aspects["CarbonFootprintForBatteries"]["batteryCarbonFootprint"] == 74.0
    assert aspects["MaterialComposition"]["batteryChemistry"]["shortName"] == "NCM/NCA"
    assert aspects["PerformanceAndDurability"]["batteryTechicalProperties"]["ratedEnergy"] == 60.0
    # an aspect validates exactly when nothing under it is undeclared
    for aspect in s.ASPECT_SCHEMAS:
        undeclared = [u for u in p["undeclared"] if u.startswith(f"/{aspect}/")]
        assert (s.aspect_errors(aspect, aspects[aspect]) == []) == (not undeclared), aspect


def _recycled(p: dict[str, Any]) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = p["aspects"]["Circularity"]["recycledContent"]
    return content


def _entry(material: str, pre: float, post: float) -> dict[str, Any]:
    return {"recycledMaterial": material, "preConsumerShare": pre, "postConsumerShare": post}


def test_recycled_content_comes_from_the_registry(cast: Cast) -> None:
    """Post-consumer shares are the registry's (recycled kg / contained kg, in percent); a declared
    pre-consumer share is kept, a declared post-consumer share that differs is named as overridden.
    Recycled content is public (Annex XIII 1(e))."""
    story = Story(cast)
    recycler = cast.recycler.id  # recovered 5.5 kg Li, 4.9 kg Co, 38.9 kg Ni in the world's story
    plain = s.manufacture(story, declared=False)
    content = [{"recycler": recycler, "li_kg": 0.3, "co_kg": 0.4, "ni_kg": 1.58}]
    data = {**f.MANUFACTURED, "recycled_content": content, "passport": s.declarations()}
    both = f.code(level="P")
    story.do(cast.maker, "manufactured", both, data)
    # contained (f.MANUFACTURED): 6.0 kg Li, 5.0 kg Co, 39.5 kg Ni; declared: Co 4 % pre, 12 % post,
    # Li 1 % pre, 5 % post
    expected = [
        _entry("Cobalt", 4.0, 8.0),  # 0.4 / 5.0; the declared 12 % is overridden
        _entry("Nickel", 0.0, 4.0),  # 1.58 / 39.5; nothing declared
        _entry("Lithium", 1.0, 5.0),  # 0.3 / 6.0, as declared
    ]
    overridden = [
        {"pointer": "/Circularity/recycledContent/0/postConsumerShare", "declared": 12.0, "registry": 8.0}
    ]
    full = passport(cast.regulator, None, both)
    assert _recycled(full) == expected
    assert full["overridden"] == overridden
    assert full["complete"] is True
    check(full, Tier.AUTHORITY)
    public = passport(None, cast.regulator.client, both)
    check(public, Tier.PUBLIC)
    assert _recycled(public) == expected
    assert public["overridden"] == overridden

    # recycled content and no declared shares: every material of the model the battery contains, 0
    # where none is recycled, and no pre-consumer share
    only_lithium = f.code(level="P")
    declarations = s.declarations()
    del declarations["Circularity"]["recycledContent"]
    content = [{"recycler": recycler, "li_kg": 0.6}]
    data = {**f.MANUFACTURED, "recycled_content": content, "passport": declarations}
    story.do(cast.maker, "manufactured", only_lithium, data)
    p = passport(None, cast.regulator.client, only_lithium)
    check(p, Tier.PUBLIC)
    assert _recycled(p) == [
        _entry("Cobalt", 0.0, 0.0),
        _entry("Nickel", 0.0, 0.0),
        _entry("Lithium", 0.0, 10.0),
    ]
    assert p["overridden"] == []

    # no recycled content in the registry: an empty list, or the declaration as it stands
    p = passport(None, cast.regulator.client, plain)
    assert _recycled(p) == []
    assert "/Circularity/recycledContent" not in p["undeclared"]
    declared_only = passport(None, cast.regulator.client, s.manufacture(story))
    assert _recycled(declared_only) == s.declarations()["Circularity"]["recycledContent"]
    assert declared_only["overridden"] == []


def test_second_life_product_takes_over_its_origins_recycled_content(cast: Cast) -> None:
    """A product's material is its origins': its shares are their recycled kg over their contained
    kg together, and their declarations carry over (``INHERITED``) under the registry's shares."""
    story = Story(cast)
    lives = s.Lives()
    content = [{"recycler": cast.recycler.id, "li_kg": 0.3, "co_kg": 0.4}]
    with_content = f.code(level="P")
    data = {**f.MANUFACTURED, "recycled_content": content, "passport": s.declarations()}
    story.do(cast.maker, "manufactured", with_content, data)
    without = s.manufacture(story)
    product = f.second_life_code()
    for i, origin in enumerate((with_content, without)):
        s.install(story, origin, lives)
        s.retire(story, origin, cast.repurposer)
        story.do(cast.repurposer, "graded", origin, {"soh_percent": 80.0, "decision": "repurpose"})
        into: dict[str, Any] = {"into": product}
        if i == 0:
            into |= {"capacity_kwh": 96.0, "passport": s.second_life_declarations()}
        story.do(cast.repurposer, "repurposed", origin, into)
    p = passport(None, cast.regulator.client, product)
    check(p, Tier.PUBLIC)
    # 0.3 kg of 2 x 6.0 kg Li, 0.4 kg of 2 x 5.0 kg Co, none of 2 x 39.5 kg Ni; the origins declared
    # Co 4 % pre, 12 % post, Li 1 % pre, 5 % post
    assert _recycled(p) == [
        _entry("Cobalt", 4.0, 4.0),
        _entry("Nickel", 0.0, 0.0),
        _entry("Lithium", 1.0, 2.5),
    ]
    assert p["overridden"] == [
        {"pointer": "/Circularity/recycledContent/0/postConsumerShare", "declared": 12.0, "registry": 4.0},
        {"pointer": "/Circularity/recycledContent/2/postConsumerShare", "declared": 5.0, "registry": 2.5},
    ]
    origin = passport(None, cast.regulator.client, with_content)
    assert _recycled(origin)[0] == _entry("Cobalt", 4.0, 8.0)


def test_traction_battery_code(cast: Cast, lives: s.Lives) -> None:
    client = cast.regulator.client
    tree = client.get(f"/api/v1/batteries/{lives.recycled_pack}/traction-battery-code").json()
    assert list(s.tbc_validator().iter_errors(tree)) == []
    assert tree["productType"] == "pack"
    assert tree["tractionBatteryCode"] == lives.recycled_pack
    modules = {m["tractionBatteryCode"]: m for m in tree["subcomponents"]}
    assert set(modules) == set(lives.modules)
    cells = [c["tractionBatteryCode"] for c in modules[lives.modules[0]]["subcomponents"]]
    assert sorted(cells) == sorted(lives.cells)
    assert all(c["productType"] == "cell" for c in modules[lives.modules[0]]["subcomponents"])
    for code in (lives.product, lives.cells[0]):
        one = client.get(f"/api/v1/batteries/{code}/traction-battery-code").json()
        assert list(s.tbc_validator().iter_errors(one)) == []
        assert "subcomponents" not in one


def test_passport_of_unknown_or_malformed_code(cast: Cast) -> None:
    client = cast.regulator.client
    r = client.get(f"/api/v1/batteries/{f.code()}/passport")
    assert r.status_code == 404
    assert r.json()["code"] == "battery.unknown"
    r = client.get("/api/v1/batteries/NOT-A-CODE/passport")
    assert r.status_code == 422
    assert r.json()["code"].startswith("code.")


def test_a_component_is_seen_as_its_pack_is(cast: Cast, lives: s.Lives) -> None:
    """Whoever holds a pack holds its modules and cells: the recycler holding the recycled pack reads
    its cells' passports at the authority tier, an unrelated recycler at the legitimate-interest tier."""
    cell = lives.cells[0]
    assert passport(cast.recycler, None, cell)["accessTier"] == "authority"
    assert passport(cast.unlicensed, None, cell)["accessTier"] == "legitimate_interest"
    assert passport(None, cast.regulator.client, cell)["accessTier"] == "public"
