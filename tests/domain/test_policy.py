"""Policy profiles: the packaged file loads, holds the documented numbers, and a bad override
file is refused with an error that names the key."""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import pytest

from batterytrace.domain.errors import POLICY_INVALID, POLICY_UNKNOWN_PROFILE, DomainError
from batterytrace.domain.policy import (
    CHEMISTRIES,
    DEFAULT_PROFILE,
    EVENT_TYPES,
    ROLES,
    Profile,
    Weibull,
    get_profile,
    load_profiles,
    reporting_deadline_wd,
)

PACKAGED = resources.files("batterytrace").joinpath("data/policy.toml").read_text(encoding="utf-8")


def write_policy(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(text, encoding="utf-8")
    return path


def edited(old: str, new: str) -> str:
    """The packaged file with the first occurrence of ``old`` replaced."""
    assert old in PACKAGED, old
    return PACKAGED.replace(old, new, 1)


# --- the packaged profiles ----------------------------------------------------------------------


def test_packaged_profiles_load() -> None:
    profiles = load_profiles()
    assert set(profiles) == {"CN-2026", "EU-2027", "EU-2031"}
    assert all(isinstance(p, Profile) and p.name == name for name, p in profiles.items())
    assert all(p.description for p in profiles.values())


def test_cn_2026_is_the_default() -> None:
    assert DEFAULT_PROFILE == "CN-2026"
    assert get_profile().name == "CN-2026"
    assert get_profile() is get_profile("CN-2026")


def test_recovery_thresholds_are_the_documented_numbers() -> None:
    # China: 2024 Industry Standard Conditions. EU: Regulation (EU) 2023/1542 Annex XII Part C.
    assert get_profile("CN-2026").recovery_thresholds == {"li": 0.90, "ni": 0.98, "co": 0.98, "mn": 0.98}
    assert get_profile("EU-2027").recovery_thresholds == {"li": 0.50, "co": 0.90, "ni": 0.90, "cu": 0.90}
    assert get_profile("EU-2031").recovery_thresholds == {"li": 0.80, "co": 0.95, "ni": 0.95, "cu": 0.95}


def test_recycled_content_minimums() -> None:
    assert get_profile("CN-2026").recycled_content_minimums == {}
    assert get_profile("EU-2027").recycled_content_minimums == {}
    assert get_profile("EU-2031").recycled_content_minimums == {"co": 0.16, "li": 0.06, "ni": 0.06}


def test_custody_deadlines_and_grading() -> None:
    profile = get_profile()
    assert profile.transfer_deadline_wd == 10
    assert profile.collection_deadline_wd == 30
    assert profile.scrapped_vehicle_deadline_wd == 15
    assert (profile.repurpose_min_soh, profile.repurpose_max_soh) == (60.0, 85.0)
    assert profile.repurpose_allowed(60)
    assert profile.repurpose_allowed(85)
    assert not profile.repurpose_allowed(59.9)
    assert not profile.repurpose_allowed(90)


@pytest.mark.parametrize(
    ("event_type", "role", "days"),
    [
        # 2018 Traceability Provisions: automakers and outlets 30 (Arts. 10-11) ...
        ("maintained", "automaker", 30),
        ("maintained", "service_outlet", 30),
        ("removed", "service_outlet", 30),
        ("removed", "automaker", 30),
        ("received", "service_outlet", 30),
        ("shipped", "service_outlet", 30),
        # ... recyclers 30 (Art. 15) ...
        ("received", "recycler", 30),
        ("recycled", "recycler", 30),
        # ... dismantlers 15 (Art. 13) and second-life firms 15 (Art. 14).
        ("vehicle_scrapped", "dismantler", 15),
        ("removed", "dismantler", 15),
        ("shipped", "dismantler", 15),
        ("received", "repurposer", 15),
        ("repurposed", "repurposer", 15),
        ("shipped", "repurposer", 15),
        # No deadline.
        ("manufactured", "battery_maker", None),
        ("vehicle_sold", "automaker", None),
        ("retracted", "regulator", None),
        ("maintained", "recycler", None),
        ("no_such_event", "automaker", None),
    ],
)
def test_reporting_deadlines(event_type: str, role: str, days: int | None) -> None:
    assert reporting_deadline_wd(get_profile(), event_type, role) == days


def test_reporting_deadlines_follow_the_2018_split_by_role() -> None:
    profile = get_profile()
    by_role: dict[str, set[int]] = {}
    for roles in profile.reporting_deadlines.values():
        for role, days in roles.items():
            by_role.setdefault(role, set()).add(days)
    assert by_role == {
        "automaker": {30},
        "service_outlet": {30},
        "recycler": {30},
        "dismantler": {15},
        "repurposer": {15},
    }
    assert set(profile.reporting_deadlines) <= EVENT_TYPES
    assert set(by_role) <= ROLES


def test_eu_profiles_inherit_everything_but_recovery() -> None:
    cn, eu27, eu31 = get_profile("CN-2026"), get_profile("EU-2027"), get_profile("EU-2031")
    for eu in (eu27, eu31):
        assert eu.reporting_deadlines == cn.reporting_deadlines
        assert eu.transfer_deadline_wd == cn.transfer_deadline_wd
        assert eu.lifetime == cn.lifetime
        assert eu.ghg == cn.ghg


def test_lifetimes() -> None:
    lifetime = get_profile().lifetime
    assert set(CHEMISTRIES) <= set(lifetime)
    assert lifetime["lfp"] == Weibull(shape=3.5, scale=10.0)
    assert lifetime["ternary"] == Weibull(shape=3.5, scale=8.0)
    assert lifetime["lfp"].mean == pytest.approx(9.0, abs=0.01)  # figures.md §2.4: mean ≈ 9 y
    assert lifetime["ternary"].mean == pytest.approx(7.2, abs=0.01)
    assert get_profile().lifetime_for("lmo") is lifetime["other"]


def test_ghg_factors() -> None:
    ghg = get_profile().ghg
    assert ghg.manufacturing_kgco2e_per_kwh["lfp"] == 62
    assert ghg.manufacturing_kgco2e_per_kwh["ncm811"] == 74
    assert ghg.manufacturing_for("ternary") == 77
    assert ghg.manufacturing_for("sodium_ion") == ghg.manufacturing_kgco2e_per_kwh["other"]
    assert ghg.repurposed_avoided_kgco2e_per_kwh == 30
    assert ghg.recovered_avoided_kgco2e_per_kg == {"li": 57, "ni": 14, "co": 42}
    # figures.md §3.3 check: NMC811 metal content times the credits ≈ 18 kg CO2e per kWh.
    per_kwh = 0.10 * 57 + 0.658 * 14 + 0.083 * 42
    assert per_kwh == pytest.approx(18, abs=0.5)


def test_load_profiles_returns_a_fresh_mapping() -> None:
    first = load_profiles()
    first.pop("CN-2026")
    assert "CN-2026" in load_profiles()


# --- operator override files --------------------------------------------------------------------


def test_override_file_loads(tmp_path: Path) -> None:
    path = write_policy(tmp_path, edited("transfer_deadline_wd = 10", "transfer_deadline_wd = 5"))
    profiles = load_profiles(path)
    assert profiles["CN-2026"].transfer_deadline_wd == 5
    assert profiles["EU-2031"].transfer_deadline_wd == 5  # inherited
    assert get_profile("EU-2027", path=path).transfer_deadline_wd == 5
    assert get_profile().transfer_deadline_wd == 10  # the packaged file is untouched


def test_override_file_with_an_own_profile(tmp_path: Path) -> None:
    text = (
        PACKAGED
        + """
[profiles.CN-2026-strict]
inherits = "CN-2026"
description = "Tighter transfer deadline for a pilot province."
transfer_deadline_wd = 3
"""
    )
    profile = get_profile("CN-2026-strict", path=write_policy(tmp_path, text))
    assert profile.transfer_deadline_wd == 3
    assert profile.recovery_thresholds == get_profile().recovery_thresholds


BAD_EDITS = [
    # (old text, new text, the key the error must name)
    ("li = 0.90", "li = 1.5", "profiles.CN-2026.recovery_thresholds.li"),
    ("li = 0.90", "li = 0", "profiles.CN-2026.recovery_thresholds.li"),
    ("li = 0.90", 'li = "90 %"', "profiles.CN-2026.recovery_thresholds.li"),
    ("mn = 0.98", "pb = 0.98", "profiles.CN-2026.recovery_thresholds.pb"),
    ("co = 0.16", "co = -0.16", "profiles.EU-2031.recycled_content_minimums.co"),
    ("transfer_deadline_wd = 10", "transfer_deadline_wd = 0", "profiles.CN-2026.transfer_deadline_wd"),
    ("transfer_deadline_wd = 10", "transfer_deadline_wd = 10.5", "profiles.CN-2026.transfer_deadline_wd"),
    ("transfer_deadline_wd = 10", "transfer_deadline_wd = true", "profiles.CN-2026.transfer_deadline_wd"),
    ("transfer_deadline_wd = 10", "transfer_deadlines_wd = 10", "profiles.CN-2026.transfer_deadlines_wd"),
    ("collection_deadline_wd = 30", "", "profiles.CN-2026.collection_deadline_wd"),
    (
        "automaker = 30       # Art. 10",
        "automaker = 0",
        "profiles.CN-2026.reporting_deadlines.maintained.automaker",
    ),
    (
        "service_outlet = 30  # Art. 10",
        "service_outlt = 30",
        "profiles.CN-2026.reporting_deadlines.maintained.service_outlt",
    ),
    (
        "[profiles.CN-2026.reporting_deadlines.maintained]",
        "[profiles.CN-2026.reporting_deadlines.maintenance]",
        "profiles.CN-2026.reporting_deadlines.maintenance",
    ),
    ("max_soh_percent = 85.0", "max_soh_percent = 50.0", "profiles.CN-2026.repurpose.max_soh_percent"),
    ("min_soh_percent = 60.0", "min_soh_percent = 160.0", "profiles.CN-2026.repurpose.min_soh_percent"),
    (
        "[profiles.CN-2026.lifetime.other]",
        "[profiles.CN-2026.lifetime.others]",
        "profiles.CN-2026.lifetime.other",
    ),
    ("scale_years = 10.0", "scale_years = -1.0", "profiles.CN-2026.lifetime.lfp.scale_years"),
    ("shape = 3.5", "k = 3.5", "profiles.CN-2026.lifetime.lfp.k"),
    ("lfp = 62.0", "lfp = -62.0", "profiles.CN-2026.ghg.manufacturing_kgco2e_per_kwh.lfp"),
    ("lfp = 62.0", "LFP = 62.0", "profiles.CN-2026.ghg.manufacturing_kgco2e_per_kwh.LFP"),
    (
        "repurposed_avoided_kgco2e_per_kwh = 30.0",
        "",
        "profiles.CN-2026.ghg.repurposed_avoided_kgco2e_per_kwh",
    ),
    ('inherits = "CN-2026"', 'inherits = "CN-2025"', "profiles.EU-2027.inherits"),
    ("schema = 1", "schema = 2", "schema"),
    ("schema = 1", "version = 1", "version"),
]


@pytest.mark.parametrize(("old", "new", "key"), BAD_EDITS, ids=[key for _, _, key in BAD_EDITS])
def test_bad_override_names_the_key(tmp_path: Path, old: str, new: str, key: str) -> None:
    path = write_policy(tmp_path, edited(old, new))
    with pytest.raises(DomainError) as info:
        load_profiles(path)
    error = info.value
    assert error.code == POLICY_INVALID
    assert error.field == key
    assert key in error.message
    assert str(path) in error.message


def test_inheritance_cycle_is_refused(tmp_path: Path) -> None:
    text = edited('inherits = "CN-2026"', 'inherits = "EU-2031"')
    text = text.replace(
        '[profiles.EU-2031]\ninherits = "CN-2026"', '[profiles.EU-2031]\ninherits = "EU-2027"'
    )
    with pytest.raises(DomainError) as info:
        load_profiles(write_policy(tmp_path, text))
    assert info.value.code == POLICY_INVALID
    assert info.value.field in {"profiles.EU-2027.inherits", "profiles.EU-2031.inherits"}
    assert "cycle" in info.value.message


def test_unreadable_or_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(DomainError) as info:
        load_profiles(tmp_path / "missing.toml")
    assert info.value.code == POLICY_INVALID
    assert "missing.toml" in info.value.message
    with pytest.raises(DomainError) as info:
        load_profiles(write_policy(tmp_path, "schema = 1\n[profiles\n"))
    assert info.value.code == POLICY_INVALID
    assert "TOML" in info.value.message


def test_unknown_profile() -> None:
    with pytest.raises(DomainError) as info:
        get_profile("CN-2099")
    assert info.value.code == POLICY_UNKNOWN_PROFILE
    assert info.value.field == "profile"
    assert "CN-2026" in info.value.message


# --- Weibull ------------------------------------------------------------------------------------


def test_weibull_cdf() -> None:
    w = Weibull(shape=3.5, scale=9.5)
    assert w.cdf(0) == 0
    assert w.cdf(-1) == 0
    assert w.cdf(9.5) == pytest.approx(1 - math.exp(-1))
    assert w.cdf(40) == pytest.approx(1)
    ages = [0.5 * i for i in range(60)]
    values = [w.cdf(t) for t in ages]
    assert values == sorted(values)
    assert all(w.cdf(t) + w.survival(t) == pytest.approx(1) for t in ages)


def test_weibull_mean() -> None:
    assert Weibull(shape=1, scale=4).mean == pytest.approx(4)  # exponential
    assert Weibull(shape=2, scale=1).mean == pytest.approx(math.sqrt(math.pi) / 2)
    # figures.md §2.4: k = 3.5, λ = 9.5 gives a mean of 8.55 years.
    assert Weibull(shape=3.5, scale=9.5).mean == pytest.approx(8.55, abs=0.01)


def test_weibull_pdf_is_the_derivative_of_the_cdf() -> None:
    w = Weibull(shape=3.5, scale=8)
    h = 1e-5
    for t in (1.0, 5.0, 8.0, 12.0):
        assert w.pdf(t) == pytest.approx((w.cdf(t + h) - w.cdf(t - h)) / (2 * h), rel=1e-5)
    step = 0.01
    total = sum(w.pdf(step * (i + 0.5)) for i in range(4000)) * step
    assert total == pytest.approx(1, abs=1e-6)
    mean = sum(step * (i + 0.5) * w.pdf(step * (i + 0.5)) for i in range(4000)) * step
    assert mean == pytest.approx(w.mean, rel=1e-6)
    assert w.pdf(-1) == 0
    assert w.pdf(0) == 0
    assert Weibull(shape=1, scale=2).pdf(0) == 0.5


def test_weibull_quantile_inverts_the_cdf() -> None:
    w = Weibull(shape=3.5, scale=10)
    for p in (0.0, 0.1, 0.5, 0.9, 0.999):
        assert w.cdf(w.quantile(p)) == pytest.approx(p, abs=1e-12)
    with pytest.raises(ValueError):
        w.quantile(1)


@pytest.mark.parametrize(("shape", "scale"), [(0, 1), (1, 0), (-1, 1), (math.nan, 1), (1, math.inf)])
def test_weibull_rejects_bad_parameters(shape: float, scale: float) -> None:
    with pytest.raises(ValueError):
        Weibull(shape=shape, scale=scale)
