"""The EU battery passport in the Battery Pass data model 1.2 (DIN DKE SPEC 99100): pure functions
from what the registry knows about a battery to the model's seven aspects, and the cut to an
access tier (Annex XIII of Regulation (EU) 2023/1542).

Where the values come from:

* **Facts** the registry holds win over anything declared: the identifiers, status, category,
  manufacturer and operator identity, manufacturing date, mass, chemistry, material masses,
  carbon footprint, rated energy, capacity and voltage, date of putting into service, the
  battery's condition from its state-of-health readings, and the post-consumer recycled share of
  cobalt, nickel, lithium and lead from the recycled content declared at manufacture (checked
  against the recyclers' recovered balances). A declared share the registry replaces with a
  different value is named in ``overridden``, never dropped silently.
* **Declarations**: model data only the economic operator knows (addresses, documents, test
  reports, performance figures …), sent with the ``manufactured`` event as ``data.passport``, one
  object per aspect in the model's own field names. A second-life product's are sent by the
  repurposer with the ``repurposed`` event; it takes over only its origins' material composition
  and circularity declarations (``INHERITED``).
* Condition values nobody reported start at their value when the battery was placed on the market
  (no cycles, no throughput, no fade), each with its ``lastUpdate``.

A field the model requires that is neither known nor declared is left out and listed in
``undeclared``; such a passport is marked incomplete instead of holding an invented value.

Workarounds for the upstream schema bugs (see ``docs/interop.md``): the passport identifier is
written ``urn:uuid:`` + 32 hexadecimal digits (the pattern refuses hyphens); ``emailAddress`` of
contacts is dropped (its pattern lacks its backslashes and refuses real addresses); CAS numbers are
trimmed; ``warrentyPeriod`` is passed on as declared in the schema's ``--MM`` form.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from batterytrace.domain.access import Tier
from batterytrace.domain.circularity import recycled_shares

DATA_MODEL = "Battery Pass data model 1.2 (DIN DKE SPEC 99100)"
PASSPORT_SPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:batterytrace:passport")

SEMANTIC_IDS: dict[str, str] = {
    "GeneralProductInformation": "urn:samm:io.BatteryPass.GeneralProductInformation:1.2.0#GeneralProductInformation",
    "CarbonFootprintForBatteries": "urn:samm:io.BatteryPass.CarbonFootprint:1.2.0#CarbonFootprintForBatteries",
    "Circularity": "urn:samm:io.BatteryPass.Circularity:1.2.0#Circularity",
    "Labeling": "urn:samm:io.BatteryPass.Labels:1.2.0#Labeling",
    "MaterialComposition": "urn:samm:io.BatteryPass.MaterialComposition:1.2.0#MaterialComposition",
    "PerformanceAndDurability": "urn:samm:io.BatteryPass.Performance:1.2.1#PerformanceAndDurability",
    "SupplyChainDueDiligence": "urn:samm:io.BatteryPass.SupplyChainDueDiligence:1.2.0#SupplyChainDueDiligence",
}
ASPECTS = tuple(SEMANTIC_IDS)
#: Aspects a second-life product takes over from its origins' declarations (same cells, same
#: materials, same way to take them apart); the repurposer declares the others.
INHERITED = frozenset({"MaterialComposition", "Circularity"})

#: Fields below the public tier, after Annex XIII: point 2 and 4 data for persons with a legitimate
#: interest, point 3 (test reports) for authorities. Everything else in the model is public, among
#: it ``Circularity/recycledContent`` (point 1(e), Art. 8(1)).
FIELD_TIERS: dict[tuple[str, ...], Tier] = {
    ("GeneralProductInformation", "batteryStatus"): Tier.LEGITIMATE_INTEREST,  # 4(c)
    ("GeneralProductInformation", "puttingIntoService"): Tier.LEGITIMATE_INTEREST,  # 4
    ("MaterialComposition", "batteryMaterials"): Tier.LEGITIMATE_INTEREST,  # 2(a) detailed composition
    ("Circularity", "dismantlingAndRemovalInformation"): Tier.LEGITIMATE_INTEREST,  # 2(c)
    ("Circularity", "sparePartSources"): Tier.LEGITIMATE_INTEREST,  # 2(b)
    ("Circularity", "safetyMeasures", "safetyInstructions"): Tier.LEGITIMATE_INTEREST,  # 2(d)
    ("Labeling", "resultOfTestReport"): Tier.AUTHORITY,  # 3
    ("PerformanceAndDurability", "batteryCondition"): Tier.LEGITIMATE_INTEREST,  # 4(a), 4(b), 4(d)
    ("PerformanceAndDurability", "batteryTechicalProperties", "roundTripEfficiencyFade"): Tier.LEGITIMATE_INTEREST,
    ("PerformanceAndDurability", "batteryTechicalProperties", "powerFade"): Tier.LEGITIMATE_INTEREST,
    ("PerformanceAndDurability", "batteryTechicalProperties", "expectedLifetime"): Tier.LEGITIMATE_INTEREST,
    ("PerformanceAndDurability", "batteryTechicalProperties", "initialSelfDischarge"): Tier.LEGITIMATE_INTEREST,
}  # fmt: skip

# The required fields of each aspect (``None``: a leaf or a list), after the 1.2 schemas.
_ADDRESS = {"addressCountry": None, "postalCode": None, "streetAddress": None}
_CONTACT = {"contactName": None, "postalAddress": _ADDRESS, "identifier": None}
_CONDITION_ITEMS = (
    "energyThroughput", "capacityThroughput", "numberOfFullCycles", "stateOfCertifiedEnergy", "capacityFade",
    "remainingEnergy", "remainingCapacity", "negativeEvents", "temperatureInformation",
    "remainingPowerCapability", "evolutionOfSelfDischarge", "currentSelfDischargingRate",
    "internalResistanceIncrease", "remainingRoundTripEnergyEfficiency", "stateOfCharge",
)  # fmt: skip
_TECHNICAL = (
    "originalPowerCapability", "ratedMaximumPower", "powerCapabilityRatio", "ratedEnergy", "expectedNumberOfCycles",
    "initialSelfDischarge", "roundtripEfficiency", "ratedCapacity", "initialInternalResistance", "expectedLifetime",
    "nominalVoltage", "minimumVoltage", "maximumVoltage", "capacityThresholdForExhaustion", "lifetimeReferenceTest",
    "cRateLifeCycleTest", "temperatureRangeIdleState", "roundTripEfficiencyat50PerCentCycleLife",
    "roundTripEfficiencyFade", "powerFade",
)  # fmt: skip
REQUIRED: dict[str, dict[str, Any]] = {
    "GeneralProductInformation": {
        "productIdentifier": None, "batteryPassportIdentifier": None, "batteryCategory": None,
        "manufacturerInformation": _CONTACT, "manufacturingDate": None, "batteryStatus": None, "batteryMass": None,
        "manufacturingPlace": _ADDRESS, "operatorInformation": _CONTACT, "puttingIntoService": None,
        "warrentyPeriod": None,
    },
    "CarbonFootprintForBatteries": {
        "batteryCarbonFootprint": None, "carbonFootprintPerLifecycleStage": None,
        "carbonFootprintPerformanceClass": None, "carbonFootprintStudy": None,
    },
    "Circularity": {
        "dismantlingAndRemovalInformation": None, "sparePartSources": None, "recycledContent": None,
        "safetyMeasures": {"safetyInstructions": None, "extinguishingAgent": None},
        "endOfLifeInformation": {"wastePrevention": None, "separateCollection": None, "informationOnCollection": None},
        "renewableContent": None,
    },
    "Labeling": {"declarationOfConformity": None, "resultOfTestReport": None, "labels": None},
    "MaterialComposition": {
        "batteryChemistry": {"shortName": None, "clearName": None}, "batteryMaterials": None,
        "hazardousSubstances": None,
    },
    "PerformanceAndDurability": {
        "batteryTechicalProperties": dict.fromkeys(_TECHNICAL),
        "batteryCondition": dict.fromkeys(_CONDITION_ITEMS),
    },
    "SupplyChainDueDiligence": {"supplyChainDueDiligenceReport": None},
}  # fmt: skip

CHEMISTRIES: dict[str, tuple[str, str]] = {
    "lfp": ("LFP", "Lithium iron phosphate"),
    "ternary": ("NCM/NCA", "Lithium nickel cobalt manganese or aluminium oxide (ternary)"),
    "lmo": ("LMO", "Lithium manganese oxide"),
    "lco": ("LCO", "Lithium cobalt oxide"),
    "lto": ("LTO", "Lithium titanate"),
    "nimh": ("NiMH", "Nickel-metal hydride"),
    "supercapacitor": ("EDLC", "Supercapacitor"),
    "other": ("other", "Other chemistry"),
}
#: Materials the registry records by mass: name, CAS number, on the EU critical raw materials list
#: (Regulation (EU) 2024/1252, Annex II).
MATERIALS: dict[str, tuple[str, str, bool]] = {
    "li_kg": ("Lithium", "7439-93-2", True),
    "co_kg": ("Cobalt", "7440-48-4", True),
    "ni_kg": ("Nickel", "7440-02-0", True),
    "mn_kg": ("Manganese", "7439-96-5", True),
    "cu_kg": ("Copper", "7440-50-8", True),
    "al_kg": ("Aluminium", "7429-90-5", True),
    "fe_kg": ("Iron", "7439-89-6", False),
    "graphite_kg": ("Natural graphite", "7782-42-5", True),
}
_READING_NAMES = frozenset(_CONDITION_ITEMS)
#: Materials whose recycled share the model records (Art. 8(1)), in the schema's order, by the
#: registry's name for them (``co`` for ``co_kg``).
RECYCLED_MATERIALS: dict[str, str] = {"co": "Cobalt", "ni": "Nickel", "li": "Lithium", "pb": "Lead"}
_RECYCLED_ORDER = {name: i for i, name in enumerate(RECYCLED_MATERIALS.values())}


@dataclass(frozen=True)
class Party:
    id: str  # unified social credit code
    name: str
    region: str


@dataclass(frozen=True)
class Origin:
    code: str
    producer: str | None = None


@dataclass(frozen=True)
class Reading:
    """A condition reading from a maintenance or grading event."""

    time: str
    soh_percent: float | None = None
    values: Mapping[str, Any] = field(default_factory=dict)  # batteryCondition names → numbers


@dataclass
class Facts:
    """What the registry knows of one battery, gathered for its passport."""

    code: str
    level: str
    chemistry: str
    stage: str
    second_life: bool
    placed_on_market: str  # RFC 3339 time of manufacture (of repurposing, for a second-life product)
    base_url: str
    producer: Party | None = None
    stage_before_missing: str | None = None
    installed_at: str | None = None
    application: str | None = None
    capacity_kwh: float | None = None
    voltage_v: float | None = None
    mass_kg: float | None = None
    carbon_kgco2e_per_kwh: float | None = None
    materials: Mapping[str, float] = field(default_factory=dict)
    # recycled content declared at manufacture, per recycler (``{"recycler", "li_kg", …}``); for a
    # second-life product its origins'; empty when none was declared
    recycled_content: Sequence[Mapping[str, Any]] = ()
    soh_percent: float | None = None
    readings: Sequence[Reading] = ()
    declarations: Sequence[Mapping[str, Any]] = ()  # oldest first; later ones win
    origins: Sequence[Origin] = ()
    products: Sequence[str] = ()
    children: Sequence[str] = ()


def passport_id(code: str) -> uuid.UUID:
    """The passport's own identifier, separate from the battery's (one per code: a second-life
    product has a new code and so a new passport)."""
    return uuid.uuid5(PASSPORT_SPACE, code)


def schema_passport_id(code: str) -> str:
    """The identifier in the form the 1.2 schema's pattern ``^urn:[a-z0-9]+:[a-z0-9]+$`` accepts."""
    return f"urn:uuid:{passport_id(code).hex}"


def merge(base: Any, over: Any) -> Any:
    """``over`` laid on ``base``: objects merge key by key, anything else is replaced."""
    if isinstance(base, Mapping) and isinstance(over, Mapping):
        out = dict(base)
        for key, value in over.items():
            out[key] = merge(out.get(key), value) if key in out else copy.deepcopy(value)
        return out
    return copy.deepcopy(over)


def _status(facts: Facts) -> str:
    stage = (
        facts.stage_before_missing if facts.stage == "missing" and facts.stage_before_missing else facts.stage
    )
    if stage == "repurposed":
        return "Repurposed"
    if stage in ("retired", "dismantled", "recycled"):
        return "Waste"
    return "Repurposed" if facts.second_life else "Original"


def passport_status(facts: Facts) -> str:
    """``active``; ``superseded`` once repurposed into a product with its own passport; ``ceased``
    once recycled (Art. 77(8): the passport ceases to exist; the registry keeps it readable)."""
    if facts.stage == "recycled":
        return "ceased"
    if facts.stage == "repurposed":
        return "superseded"
    return "active"


def _category(facts: Facts) -> str:
    if facts.second_life or (facts.application or "") == "stationary":
        return "stationary"
    return "ev"


def _contact(party: Party | None) -> dict[str, Any]:
    if party is None:
        return {"postalAddress": {"addressCountry": "CN"}}
    return {"contactName": party.name, "identifier": party.id, "postalAddress": {"addressCountry": "CN"}}


def _last(readings: Sequence[Reading], name: str) -> tuple[Any, str] | None:
    for reading in reversed(readings):
        if name in reading.values:
            return reading.values[name], reading.time
    return None


def _condition(facts: Facts, technical: Mapping[str, Any]) -> dict[str, Any]:
    placed = facts.placed_on_market
    soh_time = placed
    soh = 100.0
    for reading in facts.readings:
        if reading.soh_percent is not None:
            soh, soh_time = float(reading.soh_percent), reading.time
    out: dict[str, Any] = {}

    def item(name: str, initial: Any, when: str = placed) -> None:
        found = _last(facts.readings, name)
        value, at = found if found is not None else (initial, when)
        if value is not None:
            out[name] = {f"{name}Value": value, "lastUpdate": at}

    item("energyThroughput", 0)
    item("capacityThroughput", 0)
    item("numberOfFullCycles", 0)
    item("stateOfCertifiedEnergy", soh, soh_time)
    item("capacityFade", round(100.0 - soh, 6), soh_time)
    if facts.capacity_kwh is not None:
        item("remainingEnergy", round(facts.capacity_kwh * soh / 100.0, 6), soh_time)
    rated_capacity = technical.get("ratedCapacity")
    if isinstance(rated_capacity, int | float):
        item("remainingCapacity", round(rated_capacity * soh / 100.0, 6), soh_time)
    negative = _last(facts.readings, "negativeEvents")
    out["negativeEvents"] = list(negative[0]) if negative and isinstance(negative[0], list) else []
    temperature = _last(facts.readings, "temperatureInformation")
    if temperature and isinstance(temperature[0], Mapping):
        out["temperatureInformation"] = {**temperature[0], "lastUpdate": temperature[1]}
    else:
        out["temperatureInformation"] = {
            "timeExtremeHighTemp": 0,
            "timeExtremeLowTemp": 0,
            "timeExtremeHighTempCharging": 0,
            "timeExtremeLowTempCharging": 0,
            "lastUpdate": placed,
        }
    power = _last(facts.readings, "remainingPowerCapability")
    original = technical.get("originalPowerCapability")
    if power is not None and isinstance(power[0], Mapping):
        out["remainingPowerCapability"] = {
            "remainingPowerCapabilityValue": {**power[0], "rPCLastUpdated": power[1]},
            "lastUpdate": power[1],
        }
    elif isinstance(original, list) and original and isinstance(original[0], Mapping):
        # at placing on the market, the power capability left is the original one
        first = original[0]
        out["remainingPowerCapability"] = {
            "remainingPowerCapabilityValue": {
                "atSoC": first.get("atSoC"),
                "powerCapabilityAt": first.get("powerCapabilityAt"),
                "rPCLastUpdated": placed,
            },
            "lastUpdate": placed,
        }
    item("evolutionOfSelfDischarge", 0)
    item("currentSelfDischargingRate", technical.get("initialSelfDischarge"))
    increase = _last(facts.readings, "internalResistanceIncrease")
    out["internalResistanceIncrease"] = (
        list(increase[0]) if increase and isinstance(increase[0], list) else []
    )
    item("remainingRoundTripEnergyEfficiency", technical.get("roundtripEfficiency"))
    item("stateOfCharge", None)
    return out


def _declared(facts: Facts) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for declaration in facts.declarations:
        if isinstance(declaration, Mapping):
            out = merge(
                out, {k: v for k, v in declaration.items() if k in SEMANTIC_IDS and isinstance(v, Mapping)}
            )
    return out


def _materials(facts: Facts) -> list[dict[str, Any]]:
    out = []
    for key, mass in facts.materials.items():
        if key not in MATERIALS:
            continue
        name, cas, critical = MATERIALS[key]
        out.append(
            {
                "batteryMaterialLocation": {"componentName": facts.level, "componentId": facts.code},
                "batteryMaterialIdentifier": cas,
                "batteryMaterialName": name,
                "batteryMaterialMass": mass,
                "isCriticalRawMaterial": critical,
            }
        )
    return out


@dataclass(frozen=True)
class Override:
    """A declared value the registry replaced with what it knows (``pointer`` into the aspects)."""

    pointer: str
    declared: Any
    registry: Any

    def as_json(self) -> dict[str, Any]:
        return {"pointer": self.pointer, "declared": self.declared, "registry": self.registry}


def _material_of(entry: Any) -> str | None:
    material = entry.get("recycledMaterial") if isinstance(entry, Mapping) else None
    return material if isinstance(material, str) else None


def _recycled_content(facts: Facts, declared: Any) -> tuple[Any, list[Override]]:
    """``Circularity/recycledContent``, and the declared shares it replaced.

    For each material of the model that the battery contains and whose recycled content the
    registry knows (recycled content was declared at manufacture), ``postConsumerShare`` is the
    registry's share in percent. The registry tracks only post-consumer material (recovered by
    registered recyclers), so ``preConsumerShare`` is the declared one, or 0. Declared entries for
    other materials are kept. Without recycled content in the registry the declaration stands as
    it is; without either, the list is empty: nobody declared recycled material in the battery."""
    shares = recycled_shares(
        {"materials": dict(facts.materials), "recycled_content": list(facts.recycled_content)}
    )
    known = {
        RECYCLED_MATERIALS[name]: round(share * 100.0, 4)
        for name, share in (shares or {}).items()
        if name in RECYCLED_MATERIALS
    }
    if not known:
        return (declared if declared is not None else []), []
    kept: list[Any] = []
    claims: dict[str, Mapping[str, Any]] = {}
    for entry in declared if isinstance(declared, list) else []:
        material = _material_of(entry)
        if material in known:
            claims[material] = entry  # a later entry for the same material wins, as declarations do
        else:
            kept.append(entry)
    entries: list[Any] = [
        {
            **claims.get(material, {}),
            "recycledMaterial": material,
            "preConsumerShare": claims.get(material, {}).get("preConsumerShare", 0.0),
            "postConsumerShare": post,
        }
        for material, post in known.items()
    ]
    entries += kept
    entries.sort(key=lambda e: _RECYCLED_ORDER.get(_material_of(e) or "", len(_RECYCLED_ORDER)))
    overrides = []
    for i, entry in enumerate(entries):
        claim = claims.get(_material_of(entry) or "")
        said = claim.get("postConsumerShare") if claim is not None else None
        if said is not None and said != entry["postConsumerShare"]:
            pointer = f"/Circularity/recycledContent/{i}/postConsumerShare"
            overrides.append(Override(pointer, said, entry["postConsumerShare"]))
    return copy.deepcopy(entries), overrides


def aspects(facts: Facts) -> tuple[dict[str, dict[str, Any]], list[Override]]:
    """The seven aspects at full detail, before any cut, and the declared values that registry
    facts replaced."""
    declared = _declared(facts)
    short, clear = CHEMISTRIES.get(facts.chemistry, (facts.chemistry, facts.chemistry))

    general_facts: dict[str, Any] = {
        "productIdentifier": facts.code,
        "batteryPassportIdentifier": schema_passport_id(facts.code),
        "manufacturingDate": facts.placed_on_market,
        "batteryStatus": _status(facts),
        "manufacturerInformation": _contact(facts.producer),
    }
    if facts.mass_kg is not None:
        general_facts["batteryMass"] = facts.mass_kg
    if facts.installed_at is not None:
        general_facts["puttingIntoService"] = facts.installed_at
    general = merge(
        {
            "batteryCategory": _category(facts),
            "operatorInformation": _contact(facts.producer),
            "manufacturingPlace": {"addressCountry": "CN"},
        },
        declared.get("GeneralProductInformation", {}),
    )
    general = merge(general, general_facts)
    if facts.second_life:
        general["operatorInformation"] = merge(
            general.get("operatorInformation", {}), _contact(facts.producer)
        )
    for contact in ("manufacturerInformation", "operatorInformation"):
        if isinstance(general.get(contact), dict):
            general[contact].pop("emailAddress", None)

    carbon = dict(declared.get("CarbonFootprintForBatteries", {}))
    if facts.carbon_kgco2e_per_kwh is not None:
        carbon["batteryCarbonFootprint"] = facts.carbon_kgco2e_per_kwh

    circularity = merge(
        {"endOfLifeInformation": {"informationOnCollection": f"{facts.base_url}/b/{facts.code}"}},
        declared.get("Circularity", {}),
    )
    circularity["recycledContent"], overrides = _recycled_content(facts, circularity.get("recycledContent"))

    labeling = dict(declared.get("Labeling", {}))

    composition = merge({"batteryMaterials": _materials(facts)}, declared.get("MaterialComposition", {}))
    composition["batteryChemistry"] = {"shortName": short, "clearName": clear}
    for listed, key in (
        ("batteryMaterials", "batteryMaterialIdentifier"),
        ("hazardousSubstances", "hazardousSubstanceIdentifier"),
    ):
        for entry in composition.get(listed) or []:
            if isinstance(entry, dict) and isinstance(entry.get(key), str):
                entry[key] = entry[key].strip()

    performance = dict(declared.get("PerformanceAndDurability", {}))
    technical = dict(performance.get("batteryTechicalProperties") or {})
    if facts.capacity_kwh is not None:
        technical["ratedEnergy"] = facts.capacity_kwh
        if facts.voltage_v:
            technical["ratedCapacity"] = round(facts.capacity_kwh * 1000.0 / facts.voltage_v, 6)
    if facts.voltage_v is not None:
        technical["nominalVoltage"] = facts.voltage_v
    performance["batteryTechicalProperties"] = technical
    performance["batteryCondition"] = merge(
        performance.get("batteryCondition") or {}, _condition(facts, technical)
    )

    due_diligence = dict(declared.get("SupplyChainDueDiligence", {}))
    parts = {
        "GeneralProductInformation": general,
        "CarbonFootprintForBatteries": carbon,
        "Circularity": circularity,
        "Labeling": labeling,
        "MaterialComposition": composition,
        "PerformanceAndDurability": performance,
        "SupplyChainDueDiligence": due_diligence,
    }
    return parts, overrides


def missing(payload: Mapping[str, Any], required: Mapping[str, Any], path: str = "") -> list[str]:
    """JSON pointers of required fields absent from ``payload``."""
    out = []
    for key, nested in required.items():
        here = f"{path}/{key}"
        if key not in payload or payload[key] is None:
            out.append(here)
        elif nested is not None and isinstance(payload[key], Mapping):
            out += missing(payload[key], nested, here)
    return out


def build(facts: Facts, *, now: datetime | None = None) -> dict[str, Any]:
    """The passport at full detail: the seven aspects and, around them, the passport's identity,
    status, links to the passports of the battery's origins and products, what is undeclared, and
    the declared values the registry overrode."""
    parts, overrides = aspects(facts)
    undeclared = [f"/{name}{p}" for name in ASPECTS for p in missing(parts[name], REQUIRED[name])]
    placeholders = []
    general = parts["GeneralProductInformation"]
    if "puttingIntoService" not in general:
        # The schema requires it; until the battery is put into service it carries the date it was
        # placed on the market, and is listed here as a placeholder.
        general["puttingIntoService"] = facts.placed_on_market
        placeholders.append("/GeneralProductInformation/puttingIntoService")
        undeclared = [p for p in undeclared if p != "/GeneralProductInformation/puttingIntoService"]
    updates = [facts.placed_on_market] + [r.time for r in facts.readings]
    return {
        "passportId": f"urn:uuid:{passport_id(facts.code)}",
        "batteryCode": facts.code,
        "uniqueIdentifier": f"urn:batterytrace:battery:{facts.code}",
        "passportUrl": f"{facts.base_url}/b/{facts.code}",
        "dataModel": DATA_MODEL,
        "status": passport_status(facts),
        "lastUpdate": max(updates, key=_instant),
        "issuedAt": (now.isoformat() if now is not None else None),
        "predecessors": [
            {
                "batteryCode": o.code,
                "passportId": f"urn:uuid:{passport_id(o.code)}",
                "manufacturer": o.producer,
            }
            for o in facts.origins
        ],
        "successors": [
            {"batteryCode": c, "passportId": f"urn:uuid:{passport_id(c)}"} for c in facts.products
        ],
        "complete": not undeclared,
        "undeclared": undeclared,
        "placeholders": placeholders,
        "overridden": [o.as_json() for o in overrides],
        "semanticIds": dict(SEMANTIC_IDS),
        "aspects": parts,
    }


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


def cut(passport: Mapping[str, Any], tier: Tier) -> dict[str, Any]:
    """The passport as ``tier`` may see it: fields above the tier are removed (and named in
    ``withheld``), as are the ``undeclared``, ``placeholders`` and ``overridden`` entries under
    them."""
    out = copy.deepcopy(dict(passport))
    withheld = []
    for path, needed in FIELD_TIERS.items():
        if tier >= needed:
            continue
        node: Any = out["aspects"]
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, Mapping) else None
        if isinstance(node, dict) and path[-1] in node:
            del node[path[-1]]
        withheld.append("/" + "/".join(path))
    out["accessTier"] = tier.label
    out["withheld"] = withheld

    def visible(pointer: str) -> bool:
        return not any(pointer == w or pointer.startswith(w + "/") for w in withheld)

    out["undeclared"] = [p for p in out.get("undeclared", []) if visible(p)]
    out["placeholders"] = [p for p in out.get("placeholders", []) if visible(p)]
    out["overridden"] = [o for o in out.get("overridden", []) if visible(o["pointer"])]
    return out
