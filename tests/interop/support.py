"""Helpers for the standards tests: the official schemas (read from ../shared, with format checks
written here so that the tests do not lean on the product's own), a battery's life told through
the API, and the declarations a maker sends for the EU passport."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

import jsonschema

from tests import factories as f
from tests.api.support import Story
from tests.conftest import SHARED, Actor

REFERENCE = SHARED / "reference"
EPCIS_DIR = REFERENCE / "epcis"
EPCIS_SCHEMAS = ("EPCIS-JSON-Schema.json", "epcis-json-schema-2.0.0.json")
BATTERYPASS = REFERENCE / "batterypass" / "batterypass-datamodel"
ASPECT_SCHEMAS = {
    "GeneralProductInformation": "GeneralProductInformation/1.2.0/GeneralProductInformation-schema.json",
    "CarbonFootprintForBatteries": "CarbonFootprint/1.2.0/CarbonFootprintForBatteries-schema.json",
    "Circularity": "Circularity/1.2.0/Circularity-schema.json",
    "Labeling": "Labels/1.2.0/Labeling-schema.json",
    "MaterialComposition": "MaterialComposition/1.2.0/MaterialComposition-schema.json",
    "PerformanceAndDurability": "Performance/1.2.1/PerformanceAndDurability-schema.json",
    "SupplyChainDueDiligence": "SupplyChainDueDiligence/1.2.0/SupplyChainDueDiligence-schema.json",
}
TBC_SCHEMA = (
    REFERENCE
    / "batterypass/tractusx-semantic-models/io.catenax.traction_battery_code/2.0.0/TractionBatteryCode-schema.json"
)

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")


def checker() -> jsonschema.FormatChecker:
    """``uri``: an absolute URI (scheme, colon, no blanks); ``date-time``: RFC 3339 with an offset."""
    fc = jsonschema.FormatChecker(formats=())

    @fc.checks("uri")
    def _uri(value: object) -> bool:
        return not isinstance(value, str) or bool(_URI.match(value))

    @fc.checks("date-time")
    def _date_time(value: object) -> bool:
        if not isinstance(value, str):
            return True
        if not re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$", value):
            return False
        datetime.fromisoformat(value.replace("Z", "+00:00"))
        return True

    return fc


@cache
def epcis_validators() -> tuple[Any, ...]:
    return tuple(
        jsonschema.Draft7Validator(json.loads((EPCIS_DIR / name).read_text()), format_checker=checker())
        for name in EPCIS_SCHEMAS
    )


def epcis_errors(document: Any, *, both: bool = True) -> list[str]:
    """Violations of both official EPCIS schemas (GitHub master and the ratified 2.0.0 copy), or
    of the first only."""
    out = []
    pairs = list(zip(EPCIS_SCHEMAS, epcis_validators(), strict=True))
    for name, validator in pairs if both else pairs[:1]:
        out += [
            f"{name}: /{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(document)
        ]
    return out


@cache
def aspect_schema(aspect: str) -> dict[str, Any]:
    return json.loads((BATTERYPASS / ASPECT_SCHEMAS[aspect]).read_text())


def aspect_errors(aspect: str, payload: Any, relax: tuple[tuple[str, ...], ...] = ()) -> list[str]:
    """Violations of an aspect's official schema (draft-04). ``relax`` names fields (paths inside
    the aspect) that are withheld at the caller's tier: only their ``required`` entries are lifted."""
    schema = copy.deepcopy(aspect_schema(aspect))
    for path in relax:
        _unrequire(schema, schema, list(path))
    validator = jsonschema.Draft4Validator(schema, format_checker=checker())
    return [
        f"{aspect}/{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(payload)
    ]


def _unrequire(root: dict[str, Any], node: dict[str, Any], path: list[str]) -> None:
    while "$ref" in node:
        node = root["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    for part in node.get("allOf", []):
        _unrequire(root, part, path)
    if len(path) == 1:
        if path[0] in node.get("required", []):
            node["required"] = [r for r in node["required"] if r != path[0]]
        return
    child = node.get("properties", {}).get(path[0])
    if child is not None:
        _unrequire(root, child, path[1:])


@cache
def tbc_validator() -> Any:
    return jsonschema.Draft4Validator(json.loads(TBC_SCHEMA.read_text()), format_checker=checker())


def walk_keys(value: Any, prefix: str = "") -> set[str]:
    """Every key path in a JSON value, as 'a/b/c' (list items do not add a level)."""
    out: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{prefix}/{key}" if prefix else key
            out.add(here)
            out |= walk_keys(item, here)
    elif isinstance(value, list):
        for item in value:
            out |= walk_keys(item, prefix)
    return out


# --- what a maker declares for the EU passport ---------------------------------------------------


def declarations(maker: str = "Ningde Cell Works") -> dict[str, Any]:
    """Model data the registry cannot know, in the Battery Pass 1.2 field names."""
    address = {"addressCountry": "CN", "postalCode": "352100", "streetAddress": "1 Xingang Road, Ningde"}
    return {
        "GeneralProductInformation": {
            "manufacturerInformation": {"postalAddress": address, "webAddress": "https://maker.example.cn"},
            "manufacturingPlace": address,
            "operatorInformation": {"postalAddress": address},
            "warrentyPeriod": "--08",
        },
        "CarbonFootprintForBatteries": {
            "carbonFootprintPerLifecycleStage": [
                {"lifecycleStage": "RawMaterialExtraction", "carbonFootprint": 41.0},
                {"lifecycleStage": "MainProduction", "carbonFootprint": 27.5},
                {"lifecycleStage": "Distribution", "carbonFootprint": 1.5},
                {"lifecycleStage": "Recycling", "carbonFootprint": 4.0},
            ],
            "carbonFootprintPerformanceClass": "B",
            "carbonFootprintStudy": "https://maker.example.cn/passport/cf-study.pdf",
        },
        "Circularity": {
            "dismantlingAndRemovalInformation": [
                {
                    "documentType": "DismantlingManual",
                    "mimeType": "application/pdf",
                    "documentURL": "https://maker.example.cn/manuals/dismantling.pdf",
                }
            ],
            "sparePartSources": [
                {
                    "nameOfSupplier": maker,
                    "addressOfSupplier": address,
                    "emailAddressOfSupplier": "parts@maker.example.cn",
                    "supplierWebAddress": "https://maker.example.cn/parts",
                    "components": [{"partName": "Module", "partNumber": "MOD-01"}],
                }
            ],
            "recycledContent": [
                {"recycledMaterial": "Cobalt", "preConsumerShare": 4.0, "postConsumerShare": 12.0},
                {"recycledMaterial": "Lithium", "preConsumerShare": 1.0, "postConsumerShare": 5.0},
            ],
            "safetyMeasures": {
                "safetyInstructions": "https://maker.example.cn/manuals/safety.pdf",
                "extinguishingAgent": ["water", "class D powder"],
            },
            "endOfLifeInformation": {
                "wastePrevention": "https://maker.example.cn/eol/prevention",
                "separateCollection": "https://maker.example.cn/eol/collection",
            },
            "renewableContent": 8.5,
        },
        "Labeling": {
            "declarationOfConformity": "https://maker.example.cn/doc/eu-doc.pdf",
            "resultOfTestReport": "https://lab.example.cn/reports/un38-3.pdf",
            "labels": [
                {
                    "labelingSymbol": "https://maker.example.cn/labels/bin.svg",
                    "labelingMeaning": {"en": "Separate collection"},
                    "labelingSubject": "SeparateCollection",
                }
            ],
        },
        "MaterialComposition": {
            "hazardousSubstances": [
                {
                    "hazardousSubstanceClass": "AcuteToxicity",
                    "hazardousSubstanceName": "Lithium hexafluorophosphate",
                    "hazardousSubstanceConcentration": 1.1,
                    "hazardousSubstanceImpact": ["toxic if swallowed"],
                    "hazardousSubstanceLocation": {"componentName": "electrolyte"},
                    "hazardousSubstanceIdentifier": "21324-40-3",
                }
            ]
        },
        "PerformanceAndDurability": {
            "batteryTechicalProperties": {
                "originalPowerCapability": [
                    {"atSoC": 80, "powerCapabilityAt": 150.0},
                    {"atSoC": 20, "powerCapabilityAt": 110.0},
                ],
                "ratedMaximumPower": 160.0,
                "powerCapabilityRatio": 2.6,
                "expectedNumberOfCycles": 3000,
                "initialSelfDischarge": 2.0,
                "roundtripEfficiency": 95.0,
                "initialInternalResistance": [{"ohmicResistance": 0.08, "batteryComponent": "pack"}],
                "expectedLifetime": 10,
                "minimumVoltage": 300.0,
                "maximumVoltage": 450.0,
                "capacityThresholdForExhaustion": 70.0,
                "lifetimeReferenceTest": "https://maker.example.cn/tests/cycle-life.pdf",
                "cRateLifeCycleTest": 0.5,
                "temperatureRangeIdleState": {"minimum": -20.0, "maximum": 45.0},
                "roundTripEfficiencyat50PerCentCycleLife": 92.0,
                "roundTripEfficiencyFade": 3.0,
                "powerFade": 5.0,
            },
            "batteryCondition": {"stateOfCharge": {"stateOfChargeValue": 30.0, "lastUpdate": f.at(0)}},
        },
        "SupplyChainDueDiligence": {
            "supplyChainDueDiligenceReport": "https://maker.example.cn/due-diligence.pdf"
        },
    }


def second_life_declarations() -> dict[str, Any]:
    """What a repurposer declares for its product: its own identity, documents and performance
    (composition and circularity come from the origins)."""
    own = declarations("Jiangsu Second Life Storage")
    address = {"addressCountry": "CN", "postalCode": "215000", "streetAddress": "8 Huanxiu Road, Suzhou"}
    own["GeneralProductInformation"] = {
        "manufacturerInformation": {"postalAddress": address},
        "manufacturingPlace": address,
        "operatorInformation": {"postalAddress": address},
        "warrentyPeriod": "--05",
    }
    own["PerformanceAndDurability"]["batteryTechicalProperties"]["expectedNumberOfCycles"] = 1500
    own["CarbonFootprintForBatteries"]["batteryCarbonFootprint"] = 12.0
    del own["MaterialComposition"]
    del own["Circularity"]
    return own


# --- lives told through the API -------------------------------------------------------------------


@dataclass
class Lives:
    """Batteries at each point of life, and everything known about them."""

    new_pack: str = ""
    installed_pack: str = ""
    retired_pack: str = ""
    recycled_pack: str = ""
    origin: str = ""  # repurposed into the product
    product: str = ""  # second-life product, installed in a storage system
    dismantled_pack: str = ""  # taken out of a scrapped vehicle and dismantled
    exported_pack: str = ""
    modules: list[str] = field(default_factory=list)  # of the recycled pack
    cells: list[str] = field(default_factory=list)  # of the recycled pack's first module
    vins: dict[str, str] = field(default_factory=dict)


def manufacture(story: Story, level: str = "P", *, declared: bool = True) -> str:
    code = f.code(level=level)
    data = dict(f.MANUFACTURED)
    if declared and level == "P":
        data["passport"] = declarations()
    story.do(story.cast.maker, "manufactured", code, data)
    return code


def install(story: Story, code: str, lives: Lives) -> str:
    cast = story.cast
    story.move(code, cast.maker, cast.automaker)
    vin = f.vin()
    story.do(cast.automaker, "installed", code, {"vin": vin})
    lives.vins[code] = vin
    return vin


def retire(story: Story, code: str, to: Actor) -> None:
    cast = story.cast
    story.do(cast.outlet, "removed", code, {"reason": "retirement"})
    story.do(cast.outlet, "retired", code)
    story.move(code, cast.outlet, to)


def tell_lives(story: Story) -> Lives:
    """A new pack (once reported missing, and found); an installed one (sold, maintained, with a
    retracted reading); a retired one; a pack of modules of cells taken to recycling; a pack taken
    from a scrapped vehicle and dismantled; an exported pack; and a pack repurposed into a
    second-life product installed in a storage system. Every event type occurs."""
    cast = story.cast
    lives = Lives()
    lives.new_pack = manufacture(story)
    story.do(cast.maker, "reported_missing", lives.new_pack)
    story.do(cast.regulator, "found", lives.new_pack)

    lives.exported_pack = manufacture(story)
    story.do(cast.maker, "exported", lives.exported_pack, {"country": "DE"})

    lives.dismantled_pack = manufacture(story)
    module = manufacture(story, "M")
    story.do(cast.maker, "assembled", lives.dismantled_pack, {"children": [module]})
    vin = install(story, lives.dismantled_pack, lives)
    story.do(cast.dismantler, "vehicle_scrapped", None, vin_=vin)
    story.do(cast.dismantler, "removed", lives.dismantled_pack, {"reason": "vehicle_scrapped"})
    story.do(cast.dismantler, "retired", lives.dismantled_pack)
    story.do(cast.dismantler, "dismantled", lives.dismantled_pack)

    lives.installed_pack = manufacture(story)
    vin = install(story, lives.installed_pack, lives)
    story.do(cast.automaker, "vehicle_sold", None, vin_=vin)
    wrong = story.do(cast.outlet, "maintained", lives.installed_pack, {"soh_percent": 9.5})
    story.do(cast.outlet, "retracted", lives.installed_pack, {"event": wrong["id"], "reason": "typing error"})
    story.do(
        cast.outlet,
        "maintained",
        lives.installed_pack,
        {"soh_percent": 95.0, "readings": {"numberOfFullCycles": 150, "energyThroughput": 9000.0}},
    )

    lives.retired_pack = manufacture(story)
    install(story, lives.retired_pack, lives)
    retire(story, lives.retired_pack, cast.dismantler)

    lives.recycled_pack = manufacture(story)
    lives.cells = [manufacture(story, "C") for _ in range(2)]
    lives.modules = [manufacture(story, "M") for _ in range(2)]
    story.do(cast.maker, "assembled", lives.modules[0], {"children": lives.cells})
    story.do(cast.maker, "assembled", lives.recycled_pack, {"children": lives.modules})
    install(story, lives.recycled_pack, lives)
    story.do(cast.outlet, "maintained", lives.recycled_pack, {"soh_percent": 71.0})
    retire(story, lives.recycled_pack, cast.recycler)
    story.do(cast.recycler, "graded", lives.recycled_pack, {"soh_percent": 60.0, "decision": "recycle"})
    story.do(
        cast.recycler,
        "recycled",
        lives.recycled_pack,
        {
            "mass_kg": 300.0,
            "recovered": {"li_kg": 5.5, "co_kg": 4.9, "ni_kg": 38.9, "mn_kg": 4.5, "cu_kg": 21.0},
        },
    )

    lives.origin = manufacture(story)
    install(story, lives.origin, lives)
    retire(story, lives.origin, cast.repurposer)
    story.do(cast.repurposer, "graded", lives.origin, {"soh_percent": 82.0, "decision": "repurpose"})
    lives.product = f.second_life_code()
    story.do(
        cast.repurposer,
        "repurposed",
        lives.origin,
        {"into": lives.product, "capacity_kwh": 48.0, "passport": second_life_declarations()},
    )
    story.do(
        cast.repurposer,
        "installed",
        lives.product,
        {"system": "Suzhou grid storage #7", "application": "stationary"},
    )
    return lives
