"""The circularity rules as pure functions: grading thresholds from the policy profile, repurposing
only after a 'repurpose' grading, recycled content checked against recyclers' recovered balances,
and the accounting of recycled shares and greenhouse gas. No database: an in-memory context."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import pytest

from batterytrace.domain import circularity
from batterytrace.domain.errors import DomainError
from batterytrace.domain.lifecycle import Changes, PastEvent, decide
from batterytrace.domain.model import (
    BatteryState,
    Enterprise,
    EventIn,
    EventType,
    Licence,
    MaterialFlow,
    Role,
    Scope,
    Stage,
    VehicleState,
)
from batterytrace.domain.policy import Profile, get_profile
from tests import factories as f


def _licensed(
    roles: set[Role], scopes: tuple[Scope, ...] = (), codes: frozenset[str] = frozenset()
) -> Enterprise:
    uid = f.uscc()
    licences = tuple(
        Licence(i, uid, scope, date(2026, 1, 1), date(2030, 12, 31), None) for i, scope in enumerate(scopes)
    )
    return Enterprise(uid, "E", frozenset(roles), "310115", manufacturer_codes=codes, licences=licences)


MAKER = _licensed({Role.BATTERY_MAKER}, codes=frozenset({"0AB"}))
REPURPOSER = _licensed({Role.REPURPOSER}, (Scope.SECOND_LIFE,), frozenset({"9RP"}))
RECYCLER = _licensed({Role.RECYCLER}, (Scope.RECYCLING,))
OTHER_RECYCLER = _licensed({Role.RECYCLER}, (Scope.RECYCLING,))


class Memory:
    """A registry in memory, as the lifecycle rules see it."""

    def __init__(self, profile: Profile | None = None) -> None:
        self.batteries: dict[str, BatteryState] = {}
        self.balances: dict[tuple[str, str], int] = {}
        self.rules_profile = profile or get_profile()
        self.past: dict[str, PastEvent] = {}
        self.enterprises = {e.id: e for e in (MAKER, REPURPOSER, RECYCLER, OTHER_RECYCLER)}
        self.minutes = 0

    def battery(self, code: str) -> BatteryState | None:
        return self.batteries.get(code)

    def vehicle(self, vin: str) -> VehicleState | None:
        return None

    def enterprise(self, enterprise_id: str) -> Enterprise | None:
        return self.enterprises.get(enterprise_id)

    def manufacturer_owner(self, manufacturer_code: str) -> str | None:
        return {"0AB": MAKER.id, "9RP": REPURPOSER.id}.get(manufacturer_code)

    def components(self, code: str) -> list[str]:
        return []

    def past_event(self, event_id: str) -> PastEvent | None:
        return self.past.get(event_id)

    def profile(self) -> Profile:
        return self.rules_profile

    def recovered_balance(self, recycler: str, material: str) -> int:
        return self.balances.get((recycler, material), 0)

    # --- telling ----------------------------------------------------------------------------------

    def record(
        self, actor: Enterprise, type_: str, battery: str, data: dict[str, Any] | None = None
    ) -> Changes:
        self.minutes += 10
        body = f.event(type_, battery, self.minutes, data)
        ev = EventIn(
            id=body["id"],
            type=EventType(type_),
            time=f.T0 + timedelta(minutes=self.minutes),
            region="310115",
            data=body["data"],
            battery=battery,
        )
        changes = decide(ev, actor, self)
        for code, state in changes.batteries.items():
            self.batteries[code] = state
        for code in changes.deleted_batteries:
            self.batteries.pop(code, None)
        for flow in changes.materials:
            key = (flow.recycler, flow.material)
            self.balances[key] = self.balances.get(key, 0) + flow.recovered_mg - flow.declared_mg
        self.past[ev.id] = PastEvent(ev.id, ev.type, actor.id, battery, None, changes.undo, False)
        return changes

    def refused(
        self, actor: Enterprise, type_: str, battery: str, data: dict[str, Any] | None, code: str
    ) -> DomainError:
        with pytest.raises(DomainError) as caught:
            self.record(actor, type_, battery, data)
        assert caught.value.code == code, caught.value
        return caught.value

    def retired(self, holder: Enterprise, **fields: Any) -> str:
        code = f.code(level="M")
        self.batteries[code] = BatteryState(
            code=code,
            level="module",
            chemistry="ternary",
            manufacturer="0AB",
            producer=MAKER.id,
            stage=Stage.RETIRED,
            holder=holder.id,
            registered_at=f.T0,
            last_event_time=f.T0,
            last_event_id=f.eid(),
            retired_at=f.T0,
            capacity_kwh=20.0,
            mass_kg=100.0,
            **fields,
        )
        return code


# --- grading --------------------------------------------------------------------------------------


def test_a_repurpose_grading_needs_the_profiles_minimum_state_of_health() -> None:
    reg = Memory()
    code = reg.retired(REPURPOSER)
    err = reg.refused(
        REPURPOSER,
        "graded",
        code,
        {"soh_percent": 59.9, "decision": "repurpose"},
        "lifecycle.soh_below_threshold",
    )
    assert err.field == "data.decision"
    assert "59.9 %" in err.message
    assert "from 60 % up" in err.message
    assert reg.batteries[code].grade is None
    reg.record(REPURPOSER, "graded", code, {"soh_percent": 60.0, "decision": "repurpose"})
    assert (reg.batteries[code].grade, reg.batteries[code].soh_percent) == ("repurpose", 60.0)
    # above the ceiling (85 % in CN-2026) is a plausibility flag for reports, not a refusal
    reg.record(REPURPOSER, "graded", code, {"soh_percent": 92.0, "decision": "repurpose"})
    # any state of health may be graded for recycling
    reg.record(REPURPOSER, "graded", code, {"soh_percent": 12.0, "decision": "recycle"})
    assert reg.batteries[code].grade == "recycle"


def test_the_threshold_is_the_profiles() -> None:
    strict = replace(get_profile(), name="TEST-STRICT", repurpose_min_soh=70.0)
    reg = Memory(strict)
    code = reg.retired(REPURPOSER)
    err = reg.refused(
        REPURPOSER,
        "graded",
        code,
        {"soh_percent": 65.0, "decision": "repurpose"},
        "lifecycle.soh_below_threshold",
    )
    assert "TEST-STRICT" in err.message
    assert "70 %" in err.message
    reg.record(REPURPOSER, "graded", code, {"soh_percent": 70.0, "decision": "repurpose"})


def test_repurposing_needs_a_standing_repurpose_grading() -> None:
    reg = Memory()
    product = f.second_life_code()
    code = reg.retired(REPURPOSER)
    err = reg.refused(
        REPURPOSER, "repurposed", code, {"into": product}, "lifecycle.not_graded_for_repurposing"
    )
    assert err.field == "battery"
    reg.record(REPURPOSER, "graded", code, {"soh_percent": 75.0, "decision": "recycle"})
    reg.refused(REPURPOSER, "repurposed", code, {"into": product}, "lifecycle.graded_for_recycling")
    reg.record(REPURPOSER, "graded", code, {"soh_percent": 75.0, "decision": "repurpose"})
    reg.record(REPURPOSER, "repurposed", code, {"into": product})
    assert reg.batteries[code].stage == Stage.REPURPOSED
    # the product's other origins are graded on their own
    other = reg.retired(REPURPOSER)
    reg.refused(REPURPOSER, "repurposed", other, {"into": product}, "lifecycle.not_graded_for_repurposing")


# --- recovered material and recycled content ---------------------------------------------------------


def test_recycling_adds_exact_milligrams_to_the_recyclers_balance_and_its_undo() -> None:
    reg = Memory()
    code = reg.retired(RECYCLER)
    changes = reg.record(
        RECYCLER,
        "recycled",
        code,
        {"mass_kg": 100.0, "recovered": {"li_kg": 0.1, "ni_kg": 2.2, "al_kg": 0.0}},
    )
    assert changes.materials == [
        MaterialFlow(RECYCLER.id, "li", recovered_mg=100_000),
        MaterialFlow(RECYCLER.id, "ni", recovered_mg=2_200_000),
    ]
    assert changes.undo["materials"] == [
        {"recycler": RECYCLER.id, "material": "li", "recovered_mg": 100_000, "declared_mg": 0},
        {"recycler": RECYCLER.id, "material": "ni", "recovered_mg": 2_200_000, "declared_mg": 0},
    ]
    # 0.1 + 0.2 is not 0.3 in floating point; in milligrams it is
    reg.record(RECYCLER, "recycled", reg.retired(RECYCLER), {"mass_kg": 100.0, "recovered": {"li_kg": 0.2}})
    assert reg.recovered_balance(RECYCLER.id, "li") == 300_000
    new = f.code()
    data = {**f.MANUFACTURED, "recycled_content": [{"recycler": RECYCLER.id, "li_kg": 0.3}]}
    changes = reg.record(MAKER, "manufactured", new, data)
    assert changes.materials == [MaterialFlow(RECYCLER.id, "li", declared_mg=300_000)]
    assert reg.recovered_balance(RECYCLER.id, "li") == 0
    assert reg.batteries[new].spec["recycled_content"] == [{"recycler": RECYCLER.id, "li_kg": 0.3}]


def _with_balance() -> Memory:
    reg = Memory()
    reg.record(
        RECYCLER,
        "recycled",
        reg.retired(RECYCLER),
        {"mass_kg": 100.0, "recovered": {"li_kg": 1.0, "co_kg": 1.0}},
    )
    return reg


def test_each_source_draws_on_its_own_recycler() -> None:
    reg = _with_balance()
    new = f.code()
    content = [{"recycler": RECYCLER.id, "li_kg": 0.5}, {"recycler": OTHER_RECYCLER.id, "li_kg": 0.1}]
    err = reg.refused(
        MAKER,
        "manufactured",
        new,
        {**f.MANUFACTURED, "recycled_content": content},
        "lifecycle.recycled_content_exceeds_recovered",
    )
    assert err.field == "data.recycled_content[1].li_kg"
    assert OTHER_RECYCLER.id in err.message
    assert reg.recovered_balance(RECYCLER.id, "li") == 1_000_000  # nothing drawn
    content = [{"recycler": RECYCLER.id, "li_kg": 0.5, "co_kg": 1.0}]
    reg.record(MAKER, "manufactured", new, {**f.MANUFACTURED, "recycled_content": content})
    assert (reg.recovered_balance(RECYCLER.id, "li"), reg.recovered_balance(RECYCLER.id, "co")) == (
        500_000,
        0,
    )
    err = reg.refused(
        MAKER,
        "manufactured",
        f.code(),
        {**f.MANUFACTURED, "recycled_content": [{"recycler": RECYCLER.id, "co_kg": 0.001}]},
        "lifecycle.recycled_content_exceeds_recovered",
    )
    assert "recovered only 0 kg" in err.message


@pytest.mark.parametrize(
    ("content", "code", "field"),
    [
        ({"recycler": "x"}, "request.invalid", "data.recycled_content"),
        ([], "request.invalid", "data.recycled_content"),
        (["x"], "request.invalid", "data.recycled_content[0]"),
        ([{"li_kg": 0.1}], "request.invalid", "data.recycled_content[0].recycler"),
        (
            [{"recycler": "BADCHECK", "li_kg": 0.1}],
            "uscc.bad_check_character",
            "data.recycled_content[0].recycler",
        ),
        ([{"recycler": "R", "li_kg": 0.1}], "uscc.bad_length", "data.recycled_content[0].recycler"),
        ([{"recycler": 42, "li_kg": 0.1}], "request.invalid", "data.recycled_content[0].recycler"),
        ([{"recycler": "RECYCLER"}], "request.invalid", "data.recycled_content[0]"),
        ([{"recycler": "RECYCLER", "li_kg": -0.1}], "request.invalid", "data.recycled_content[0].li_kg"),
        ([{"recycler": "RECYCLER", "li_kg": "0.1"}], "request.invalid", "data.recycled_content[0].li_kg"),
        ([{"recycler": "RECYCLER", "lithium": 0.1}], "request.invalid", "data.recycled_content[0].lithium"),
        ([{"recycler": "RECYCLER", "al_kg": 0.1}], "request.invalid", "data.recycled_content[0].al_kg"),
        (
            [{"recycler": "RECYCLER", "li_kg": 0.1}, {"recycler": "RECYCLER", "co_kg": 0.1}],
            "request.invalid",
            "data.recycled_content[1].recycler",
        ),
        ([{"recycler": "RECYCLER", "li_kg": 6.01}], "lifecycle.mass_balance", "data.recycled_content"),
        (
            [{"recycler": "RECYCLER", "li_kg": 3.0}, {"recycler": "OTHER", "li_kg": 3.01}],
            "lifecycle.mass_balance",
            "data.recycled_content",
        ),
        ([{"recycler": "UNKNOWN", "li_kg": 0.1}], "enterprise.unknown", "data.recycled_content[0].recycler"),
        (
            [{"recycler": "RECYCLER", "li_kg": 0.1}] * 101,
            "request.invalid",
            "data.recycled_content",
        ),
    ],
)
def test_recycled_content_is_checked_field_by_field(content: Any, code: str, field: str) -> None:
    valid = f.uscc()
    wrong_check = valid[:-1] + ("0" if valid[-1] != "0" else "1")
    names = {
        "RECYCLER": RECYCLER.id,
        "OTHER": OTHER_RECYCLER.id,
        "UNKNOWN": f.uscc(),
        "BADCHECK": wrong_check,
    }

    def named(value: Any) -> Any:
        if isinstance(value, list):
            return [named(v) for v in value]
        if isinstance(value, dict):
            return {k: names.get(v, v) if k == "recycler" else v for k, v in value.items()}
        return value

    reg = _with_balance()
    new = f.code()
    with pytest.raises(DomainError) as caught:
        reg.record(MAKER, "manufactured", new, {**f.MANUFACTURED, "recycled_content": named(content)})
    assert (caught.value.code, caught.value.field) == (code, field), caught.value
    assert new not in reg.batteries


def test_a_retraction_gives_back_what_a_declaration_drew_and_refuses_to_unrecover_what_was_drawn() -> None:
    reg = Memory()
    code = reg.retired(RECYCLER)
    recycled = reg.record(RECYCLER, "recycled", code, {"mass_kg": 100.0, "recovered": {"li_kg": 1.0}})
    recycled_id = next(i for i, p in reg.past.items() if p.type == EventType.RECYCLED)
    new = f.code()
    reg.record(
        MAKER,
        "manufactured",
        new,
        {**f.MANUFACTURED, "recycled_content": [{"recycler": RECYCLER.id, "li_kg": 0.4}]},
    )
    made_id = next(i for i, p in reg.past.items() if p.type == EventType.MANUFACTURED)
    err = reg.refused(
        RECYCLER, "retracted", code, {"event": recycled_id, "reason": "wrong"}, "lifecycle.retraction_refused"
    )
    assert "declared as recycled content" in err.message
    undo = reg.record(MAKER, "retracted", new, {"event": made_id, "reason": "wrong"})
    assert undo.materials == [MaterialFlow(RECYCLER.id, "li", 0, -400_000)]
    assert reg.recovered_balance(RECYCLER.id, "li") == 1_000_000
    assert new not in reg.batteries
    undone = reg.record(RECYCLER, "retracted", code, {"event": recycled_id, "reason": "wrong"})
    assert undone.materials == [MaterialFlow(RECYCLER.id, "li", -1_000_000, 0)]
    assert recycled.materials == [MaterialFlow(RECYCLER.id, "li", recovered_mg=1_000_000)]
    assert reg.recovered_balance(RECYCLER.id, "li") == 0


# --- accounting -----------------------------------------------------------------------------------


def test_recycled_shares_and_the_eu_minimums() -> None:
    eu = get_profile(circularity.RECYCLED_CONTENT_PROFILE)
    ternary = {
        "materials": {"li_kg": 6.0, "co_kg": 5.0, "ni_kg": 40.0},
        "recycled_content": [
            {"recycler": "A", "li_kg": 0.3, "co_kg": 0.5},
            {"recycler": "B", "li_kg": 0.06, "ni_kg": 2.4},
        ],
    }
    assert circularity.recycled_totals(ternary) == {"co_kg": 0.5, "li_kg": 0.36, "ni_kg": 2.4}
    assert circularity.recycled_shares(ternary) == {"co": 0.1, "li": 0.06, "ni": 0.06}
    check = circularity.minimums_check(ternary, False, eu)
    assert check is not None
    assert check["profile"] == "EU-2031"
    assert check["metals"]["li"]["meets"] is True  # 6 % is the minimum: met exactly
    assert check["metals"]["co"] == {"minimum": 0.16, "share": 0.1, "applies": True, "meets": False}
    assert check["meets"] is False
    # an LFP battery holds no cobalt or nickel: only lithium's minimum applies
    lfp = {"materials": {"li_kg": 5.0, "cu_kg": 30.0}, "recycled_content": [{"recycler": "A", "li_kg": 0.5}]}
    check = circularity.minimums_check(lfp, False, eu)
    assert check is not None
    assert check["metals"]["co"]["applies"] is False
    assert check["metals"]["ni"]["applies"] is False
    assert check["meets"] is True
    assert circularity.recycled_shares(lfp) == {"cu": 0.0, "li": 0.1}
    # no declaration: no shares, and every minimum missed; second-life products are exempt
    assert circularity.recycled_shares({"materials": {"li_kg": 5.0}}) is None
    assert circularity.minimums_check({"materials": {"li_kg": 5.0}}, False, eu)["meets"] is False  # type: ignore[index]
    assert circularity.minimums_check(lfp, True, eu) is None
    assert circularity.minimums_check({}, False, eu) is None
    assert circularity.minimums_check(lfp, False, get_profile("CN-2026")) is None  # China sets none


def test_greenhouse_gas_figures_use_the_profiles_factors() -> None:
    profile = get_profile()
    fp = circularity.manufacturing_footprint({"carbon_kgco2e_per_kwh": 70.0}, "ternary", 60.0, profile)
    assert fp == {
        "declared_kgco2e_per_kwh": 70.0,
        "declared_kgco2e": 4200.0,
        "estimated_kgco2e_per_kwh": 77.0,
        "estimated_kgco2e": 4620.0,
        "estimate_basis": "ternary",
    }
    fp = circularity.manufacturing_footprint({"cathode": "NCM811"}, "ternary", 10.0, profile)
    assert (fp["declared_kgco2e"], fp["estimated_kgco2e_per_kwh"], fp["estimate_basis"]) == (
        None,
        74.0,
        "ncm811",
    )
    assert circularity.manufacturing_footprint({}, "lfp", None, profile)["estimated_kgco2e"] is None
    assert circularity.manufacturing_footprint({}, "lto", 1.0, profile)["estimate_basis"] == "other"
    assert circularity.second_life_avoided(45.0, profile) == 1350.0
    avoided = circularity.recycling_avoided({"li_kg": 1.0, "co_kg": 1.0, "ni_kg": 1.0, "cu_kg": 9.0}, profile)
    assert avoided == {"co": 42.0, "li": 57.0, "ni": 14.0}
    cheap = replace(profile, ghg=replace(profile.ghg, repurposed_avoided_kgco2e_per_kwh=10.0))
    assert circularity.second_life_avoided(45.0, cheap) == 450.0
