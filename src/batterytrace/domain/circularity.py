"""Circularity accounting: a new battery's recycled-content shares against the EU minimums, and
greenhouse-gas figures (declared manufacturing footprint, emissions avoided by second life and by
recycling) from the policy profile's factors. Pure functions of declared data and a profile.

The numbers and their sources are in ``batterytrace/data/policy.toml``; ``docs/circularity.md``
explains how they are used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from batterytrace.domain.policy import Profile

#: The profile whose minimum recycled content a new battery's shares are compared with.
RECYCLED_CONTENT_PROFILE = "EU-2031"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def contained(spec: Mapping[str, Any]) -> dict[str, float]:
    """kg of each material the battery contains, as declared at manufacture (``li_kg`` → kg)."""
    raw = spec.get("materials")
    if not isinstance(raw, Mapping):
        return {}
    out: dict[str, float] = {}
    for name, value in raw.items():
        kg = _number(value)
        if kg is not None:
            out[str(name)] = kg
    return out


def recycled_totals(spec: Mapping[str, Any]) -> dict[str, float] | None:
    """kg of each material declared as recycled content, summed over the recyclers it came from;
    ``None`` when the battery declared no recycled content."""
    sources = spec.get("recycled_content")
    if not isinstance(sources, list) or not sources:
        return None
    out: dict[str, float] = {}
    for source in sources:
        if not isinstance(source, Mapping):
            continue
        for name, value in source.items():
            kg = _number(value)
            if name != "recycler" and kg is not None:
                out[str(name)] = out.get(str(name), 0.0) + kg
    return {name: round(kg, 9) for name, kg in sorted(out.items())}


def recycled_shares(spec: Mapping[str, Any]) -> dict[str, float] | None:
    """Recycled share of each material the battery contains (``li`` → recycled kg / contained kg),
    0 for a contained material with no recycled content; ``None`` when no recycled content was
    declared."""
    totals = recycled_totals(spec)
    if totals is None:
        return None
    out: dict[str, float] = {}
    for name, kg in sorted(contained(spec).items()):
        if kg > 0:
            out[name.removesuffix("_kg")] = round(totals.get(name, 0.0) / kg, 6)
    return out


def minimums_check(spec: Mapping[str, Any], second_life: bool, profile: Profile) -> dict[str, Any] | None:
    """The battery's recycled shares against ``profile``'s minimums, metal by metal.

    A metal the battery does not contain (cobalt and nickel in LFP) has no minimum to meet
    (``applies`` false). Second-life products are exempt (Regulation (EU) 2023/1542 Art. 8(4)), and
    a battery whose materials were not declared cannot be compared: both give ``None``.
    """
    minimums = profile.recycled_content_minimums
    content = contained(spec)
    if second_life or not minimums or not content:
        return None
    totals = recycled_totals(spec) or {}
    metals: dict[str, Any] = {}
    for metal, minimum in sorted(minimums.items()):
        kg = content.get(f"{metal}_kg") or 0.0
        if kg <= 0:
            metals[metal] = {"minimum": minimum, "share": None, "applies": False, "meets": None}
            continue
        share = round(totals.get(f"{metal}_kg", 0.0) / kg, 6)
        metals[metal] = {"minimum": minimum, "share": share, "applies": True, "meets": share >= minimum}
    applicable = [m["meets"] for m in metals.values() if m["applies"]]
    return {"profile": profile.name, "meets": all(applicable), "metals": metals}


# --- greenhouse gas ---------------------------------------------------------------------------------


def manufacturing_footprint(
    spec: Mapping[str, Any], chemistry: str, capacity_kwh: float | None, profile: Profile
) -> dict[str, Any]:
    """The cradle-to-gate footprint of making the battery: as declared at manufacture
    (``carbon_kgco2e_per_kwh``), and as the profile estimates it for its cathode (when declared)
    or chemistry. Totals need the capacity."""
    declared = _number(spec.get("carbon_kgco2e_per_kwh"))
    cathode = spec.get("cathode")
    factors = profile.ghg.manufacturing_kgco2e_per_kwh
    basis = cathode.lower() if isinstance(cathode, str) and cathode.lower() in factors else chemistry
    estimated = profile.ghg.manufacturing_for(basis)
    return {
        "declared_kgco2e_per_kwh": declared,
        "declared_kgco2e": round(declared * capacity_kwh, 3)
        if declared is not None and capacity_kwh
        else None,
        "estimated_kgco2e_per_kwh": estimated,
        "estimated_kgco2e": round(estimated * capacity_kwh, 3) if capacity_kwh else None,
        "estimate_basis": basis if basis in factors else "other",
    }


def second_life_avoided(capacity_kwh: float, profile: Profile) -> float:
    """kg CO2e avoided by putting ``capacity_kwh`` of repurposed capacity into second life instead
    of a new storage battery (an estimate that holds when the second life lasts 4–6 years or more)."""
    return round(capacity_kwh * profile.ghg.repurposed_avoided_kgco2e_per_kwh, 3)


def recycling_avoided(recovered: Mapping[str, float], profile: Profile) -> dict[str, float]:
    """kg CO2e avoided per metal by recovering it instead of producing it from ore, for the metals
    the profile has a factor for (``li_kg`` → kg CO2e, keyed ``li``)."""
    factors = profile.ghg.recovered_avoided_kgco2e_per_kg
    out: dict[str, float] = {}
    for name, kg in sorted(recovered.items()):
        metal = name.removesuffix("_kg")
        if metal in factors and kg > 0:
            out[metal] = round(kg * factors[metal], 3)
    return out
