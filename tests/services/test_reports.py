"""Reports read from rollups kept current as events arrive: statistics, producer responsibility,
recovery (rates and verdicts computed by hand below) and the retirement forecast. Each test has a
registry of its own, so national totals are exactly its own events."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from batterytrace.domain.errors import DomainError
from batterytrace.domain.policy import get_profile
from batterytrace.services import forecast, reports
from batterytrace.services.registry import Registry
from tests import factories as f
from tests.conftest import Actor, Cast, Clock, make_enterprise
from tests.services.test_alerts import Life, World, at, world

__all__ = ["world"]  # the module-scoped registry shared by most tests here

TERNARY = {"li_kg": 6.0, "ni_kg": 39.5, "co_kg": 5.0, "mn_kg": 4.6, "cu_kg": 22.2}
LFP = {"li_kg": 5.0, "cu_kg": 30.3}


@pytest.fixture
def fresh(registry: Registry, client: TestClient, cast: Cast, clock: Clock) -> Life:
    """A registry of the test's own: national totals are exactly its events."""
    return Life(World(registry, clock, client, cast))


@pytest.fixture
def life(world: World) -> Life:
    """The module's shared registry, with a maker, automaker, outlet and recycler of the test's own."""
    return Life(world).own_cast()


def by(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    found = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    assert len(found) == 1, (match, rows)
    return found[0]


# --- recovery ---------------------------------------------------------------------------------


def recycle(
    life: Life, recycler: Actor, materials: dict[str, float], recovered: dict[str, float], chem: str
) -> None:
    code = f.code(chemistry=chem)
    data = {**f.MANUFACTURED, "materials": materials}
    life.ok(life.cast.maker, "manufactured", code, data)
    life.move(code, life.cast.maker, life.cast.automaker)
    life.ok(life.cast.automaker, "installed", code, {"vin": f.vin()})
    life.ok(life.cast.automaker, "removed", code, {"reason": "retirement"})
    life.ok(life.cast.automaker, "retired", code)
    life.move(code, life.cast.automaker, recycler)
    life.ok(recycler, "recycled", code, {"mass_kg": 300, "recovered": recovered})


def test_recovery_rates_and_verdicts_match_a_hand_computation(fresh: Life) -> None:
    life = fresh
    a = make_enterprise(life.cast.regulator, ["recycler"], licences=["recycling"])
    b = make_enterprise(life.cast.regulator, ["recycler"], licences=["recycling"])
    recycle(life, a, TERNARY, {"li_kg": 5.5, "ni_kg": 39.0, "co_kg": 4.95, "mn_kg": 4.55, "cu_kg": 21.0}, "E")
    recycle(life, a, TERNARY, {"li_kg": 5.1, "ni_kg": 38.5, "co_kg": 4.9, "mn_kg": 4.5, "cu_kg": 20.0}, "E")
    recycle(life, b, LFP, {"li_kg": 4.6, "cu_kg": 29.0, "al_kg": 30.0}, "B")
    rows = reports.recovery(life.registry.engine).rows

    # Recycler A: Li 10.6 / 12 = 0.883333, Ni 77.5 / 79 = 0.981013, Co 9.85 / 10 = 0.985,
    # Mn 9.05 / 9.2 = 0.983696, Cu 41 / 44.4 = 0.923423.
    cn = by(rows, recycler=a.id, profile="CN-2026")
    assert cn["batteries"] == 2
    assert cn["input_tonnes"] == 0.6
    assert cn["li_contained_kg"] == 12.0
    assert cn["li_recovered_kg"] == 10.6
    assert cn["li_rate"] == pytest.approx(0.883333, abs=1e-6)
    assert cn["ni_rate"] == pytest.approx(0.981013, abs=1e-6)
    assert cn["co_rate"] == pytest.approx(0.985, abs=1e-6)
    assert cn["mn_rate"] == pytest.approx(0.983696, abs=1e-6)
    assert cn["cu_rate"] == pytest.approx(0.923423, abs=1e-6)
    # CN-2026: Li 90 % (below), Ni, Co, Mn 98 % (met), no copper threshold.
    assert [cn[f"{m}_verdict"] for m in ("li", "ni", "co", "mn", "cu")] == [
        "below",
        "meets",
        "meets",
        "meets",
        "no_threshold",
    ]
    assert cn["verdict"] == "below"
    # EU-2027: Li 50 %, Co, Ni, Cu 90 %: all met; no manganese target.
    eu27 = by(rows, recycler=a.id, profile="EU-2027")
    assert [eu27[f"{m}_verdict"] for m in ("li", "ni", "co", "mn", "cu")] == [
        "meets",
        "meets",
        "meets",
        "no_threshold",
        "meets",
    ]
    assert eu27["verdict"] == "meets"
    # EU-2031: Li 80 %, Co, Ni, Cu 95 %: copper 92.3 % is below.
    eu31 = by(rows, recycler=a.id, profile="EU-2031")
    assert eu31["cu_verdict"] == "below"
    assert eu31["verdict"] == "below"

    # Recycler B (LFP): Li 4.6 / 5 = 0.92, Cu 29 / 30.3 = 0.957096; aluminium is not a tracked metal.
    b_cn = by(rows, recycler=b.id, profile="CN-2026")
    assert b_cn["li_rate"] == pytest.approx(0.92, abs=1e-6)
    assert b_cn["ni_verdict"] == "no_data"
    assert b_cn["verdict"] == "meets"
    assert b_cn["recovered_tonnes"] == pytest.approx((4.6 + 29.0 + 30.0) / 1000)
    assert by(rows, recycler=b.id, profile="EU-2031")["verdict"] == "meets"

    # Nationally: Li 15.2 / 17 = 0.894118 (below 90 %), Cu 70 / 74.7 = 0.937082.
    nat = by(rows, recycler="national", profile="CN-2026")
    assert rows[0]["recycler"] == "national"
    assert nat["batteries"] == 3
    assert nat["li_rate"] == pytest.approx(0.894118, abs=1e-6)
    assert nat["verdict"] == "below"
    assert by(rows, recycler="national", profile="EU-2031")["cu_rate"] == pytest.approx(0.937082, abs=1e-6)
    assert all(r["mass_balance"] == "ok" for r in rows)

    only_cn = reports.recovery(life.registry.engine, profiles=["CN-2026"], recycler=b.id).rows
    assert [(r["recycler"], r["profile"]) for r in only_cn] == [(b.id, "CN-2026")]


def test_recovery_beyond_the_content_is_a_mass_balance_violation_and_a_retraction_takes_it_back(
    life: Life,
) -> None:
    code = life.retired_at_recycler()
    rid = life.ok(
        life.cast.recycler, "recycled", code, {"mass_kg": 300, "recovered": {**TERNARY, "co_kg": 6.0}}
    )
    mine = life.cast.recycler.id
    row = by(reports.recovery(life.registry.engine, profiles=["EU-2027"], recycler=mine).rows, recycler=mine)
    assert row["co_verdict"] == "exceeds_content"
    assert row["mass_balance"] == "violated"
    life.ok(life.cast.recycler, "retracted", code, {"event": rid, "reason": "wrong figures"})
    after = reports.recovery(life.registry.engine, recycler=mine).rows
    assert {(r["batteries"], r["co_contained_kg"], r["verdict"], r["mass_balance"]) for r in after} == {
        (0, 0.0, "no_data", "ok")
    }


# --- statistics -------------------------------------------------------------------------------


def test_statistics_count_each_stage_once_with_tonnes_and_change_on_the_year_before(life: Life) -> None:
    maker, automaker, outlet = life.cast.maker, life.cast.automaker, life.cast.outlet
    m = life.manufacturer
    old = f.code(manufacturer=m)
    life.ok(maker, "manufactured", old, f.MANUFACTURED, when=at(2025, 6, 1), region="320500")
    codes = [f.code(manufacturer=m) for _ in range(2)] + [f.code(manufacturer=m, chemistry="B")]
    for code in codes:
        life.ok(maker, "manufactured", code, f.MANUFACTURED, when=at(2026, 3, 2), region="320500")
        life.move(code, maker, automaker)
        life.ok(automaker, "installed", code, {"vin": f.vin()})
    # a repair: removed and installed again is not a second installation
    life.ok(outlet, "removed", codes[0], {"reason": "repair"})
    life.ok(outlet, "installed", codes[0], {"vin": f.vin()})
    # retired at the licensed outlet: retired and collected at once
    life.ok(outlet, "removed", codes[1], {"reason": "retirement"})
    life.ok(outlet, "retired", codes[1])
    life.move(codes[1], outlet, life.cast.recycler)
    life.ok(life.cast.recycler, "recycled", codes[1], {"mass_kg": 290.5, "recovered": {"li_kg": 5.5}})

    engine = life.registry.engine
    row = by(reports.statistics(engine, year=2026, producer=maker.id).rows, year=2026)
    assert row["registered"] == 3
    assert row["registered_tonnes"] == 0.9
    assert row["registered_change_pct"] == 200.0  # 1 in 2025
    assert row["installed"] == 3
    assert row["retired"] == 1
    assert row["collected"] == 1
    assert row["recycled"] == 1
    assert row["recycled_tonnes"] == 0.2905  # the mass that went into recycling
    assert row["repurposed"] == 0
    assert row["repurposed_change_pct"] is None

    by_place = reports.statistics(engine, producer=maker.id, group_by=["province", "chemistry"]).rows
    assert by(by_place, year=2026, province="32", chemistry="ternary")["registered"] == 2
    assert by(by_place, year=2026, province="32", chemistry="lfp")["registered"] == 1
    assert by(by_place, year=2026, province="31", chemistry="ternary")["installed"] == 2
    assert by(by_place, year=2025, province="32", chemistry="ternary")["registered"] == 1

    mine = reports.statistics(engine, producer=maker.id, group_by=["producer"]).rows
    assert by(mine, year=2026)["producer_name"].startswith("Enterprise")
    assert reports.statistics(engine, producer="913101150000009999").rows == []
    assert reports.statistics(engine, producer=maker.id, level="cell").rows == []
    csv_text = reports.statistics(engine, year=2026, producer=maker.id).as_csv()
    assert csv_text.splitlines()[0].startswith("year,registered,registered_tonnes,registered_change_pct")
    assert csv_text.splitlines()[1].startswith("2026,3,0.9,200")


def test_a_retracted_registration_leaves_the_statistics(life: Life) -> None:
    code = f.code(manufacturer=life.manufacturer)
    mid = life.ok(life.cast.maker, "manufactured", code, f.MANUFACTURED)
    mine = life.cast.maker.id
    assert reports.statistics(life.registry.engine, producer=mine).rows[0]["registered"] == 1
    life.ok(life.cast.maker, "retracted", code, {"event": mid, "reason": "label misprinted"})
    assert reports.statistics(life.registry.engine, producer=mine).rows[0]["registered"] == 0


def test_statistics_refuse_an_unknown_group_or_level(life: Life) -> None:
    with pytest.raises(DomainError) as caught:
        reports.statistics(life.registry.engine, group_by=["colour"])
    assert caught.value.code == "request.invalid"
    with pytest.raises(DomainError):
        reports.statistics(life.registry.engine, level="crate")


# --- producer responsibility -----------------------------------------------------------------


def test_producer_responsibility_counts_collection_in_time_late_outstanding_and_overdue(life: Life) -> None:
    automaker, recycler, outlet = life.cast.automaker, life.cast.recycler, life.cast.outlet
    in_time, late, overdue, fresh = (life.removed_at_automaker() for _ in range(4))
    at_outlet, _ = life.installed()
    life.ok(outlet, "removed", at_outlet, {"reason": "retirement"})
    life.ok(outlet, "retired", at_outlet, when=at(2026, 3, 9))  # a licensed outlet: collected at once
    life.ok(automaker, "retired", in_time, when=at(2026, 3, 10))
    life.ok(automaker, "retired", late, when=at(2026, 3, 11))
    life.ok(automaker, "retired", overdue, when=at(2026, 3, 12))
    # 30 working days after Tue 10 March end with Tue 21 April (Qingming: 6 April off)
    life.move(in_time, automaker, recycler, when=at(2026, 4, 21, 15))
    life.move(late, automaker, recycler, when=at(2026, 5, 6, 9))
    life.ok(automaker, "retired", fresh, when=at(2026, 11, 19))
    life.clock.now = at(2026, 11, 20, 12).astimezone(life.clock.now.tzinfo)

    engine, now = life.registry.engine, life.clock()
    for who, resp in ((automaker.id, "automaker"), (life.cast.maker.id, "producer")):
        row = by(reports.producers(engine, now, enterprise=who).rows, responsibility=resp)
        assert row["retired"] == 5
        assert row["retired_tonnes"] == 1.5
        assert row["collected_in_time"] == 2
        assert row["collected_late"] == 1
        assert row["outstanding"] == 2
        assert row["overdue"] == 1
        assert row["in_time_share"] == 0.5  # 2 of the 4 already due
    row = by(reports.producers(engine, now, enterprise=automaker.id).rows, responsibility="automaker")
    assert row["collection_points_by_province"] == {"31": 1}
    assert row["collection_points"] == 1
    assert (
        by(reports.producers(engine, now, enterprise=life.cast.stranger.id).rows, responsibility="automaker")[
            "retired"
        ]
        == 0
    )
    assert reports.producers(engine, now, year=2025, enterprise=automaker.id).rows[0]["retired"] == 0
    assert (
        reports.producers(engine, now, enterprise=automaker.id).as_csv().splitlines()[1].endswith(",1,31=1")
    )


# --- forecast ---------------------------------------------------------------------------------


def weibull_cdf(t: float, shape: float, scale: float) -> float:
    return 0.0 if t <= 0 else 1 - math.exp(-((t / scale) ** shape))


NOW = at(2026, 11, 20, 12)


def test_forecast_from_sales_follows_the_lifetime_distribution_and_names_its_inputs() -> None:
    sales = "year,tonnes,lfp_share\n2020,1000,1\n"
    report = forecast.from_sales(sales, get_profile("CN-2026"), NOW, until=2035)
    # LFP: Weibull shape 3.5, scale 10 years, from the middle of 2020.
    expected = {
        y: 1000 * (weibull_cdf(y + 1 - 2020.5, 3.5, 10) - weibull_cdf(y - 2020.5, 3.5, 10))
        for y in range(2020, 2036)
    }
    got = {r["year"]: r["tonnes"] for r in report.rows}
    assert got.keys() == expected.keys()
    for year, value in expected.items():
        assert got[year] == pytest.approx(value, abs=1e-3)
    assert report.rows[0]["tonnes_lfp"] == report.rows[0]["tonnes"]
    inputs = report.meta["inputs"]
    assert inputs["source"] == "sales_csv"
    assert inputs["sales"] == [
        {"year": 2020, "vehicles": None, "tonnes": 1000.0, "pack_kg": None, "lfp_share": 1.0, "assumed": []}
    ]
    assert inputs["lifetime"]["lfp"]["scale_years"] == 10.0


def test_forecast_from_vehicle_sales_assumes_pack_mass_and_chemistry_and_says_so() -> None:
    report = forecast.from_sales("year,vehicles\n2024,1000\n", get_profile(), NOW, until=2100)
    (given,) = report.meta["inputs"]["sales"]
    assert given["assumed"] == ["pack_kg", "lfp_share"]
    assert given["tonnes"] == pytest.approx(1000 * forecast.DEFAULT_PACK_KG / 1000)
    total = sum(r["tonnes"] for r in report.rows)
    assert total == pytest.approx(
        given["tonnes"], abs=0.1
    )  # rows round to kg  # by 2100 every battery has retired
    assert report.columns == ["year", "batteries", "tonnes", "tonnes_lfp", "tonnes_ternary"]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("year,colour\n2024,red\n", "needs a header"),
        ("year,vehicles,speed\n2024,1,2\n", "unknown column"),
        ("year,vehicles\n2024,many\n", "line 2: 'vehicles' is not a number"),
        ("year,vehicles\n2024,1\n2024,2\n", "appears twice"),
        ("year,vehicles,lfp_share\n2024,1,1.5\n", "between 0 and 1"),
        ("year,vehicles\n", "no rows"),
    ],
)
def test_a_bad_sales_file_is_refused_with_its_line(text: str, needle: str) -> None:
    with pytest.raises(DomainError) as caught:
        forecast.from_sales(text, get_profile(), NOW)
    assert caught.value.code == "request.invalid"
    assert needle in caught.value.message


def test_forecast_from_the_fleet_ages_batteries_still_in_use(fresh: Life) -> None:
    life = fresh
    in_use, _ = life.installed()
    gone = life.removed_at_automaker()
    life.ok(life.cast.automaker, "retired", gone)
    life.clock.now = at(2026, 11, 20, 12).astimezone(life.clock.now.tzinfo)
    report = forecast.from_fleet(life.registry.engine, get_profile(), life.clock(), until=2100)
    inputs = report.meta["inputs"]
    assert inputs["source"] == "registered_fleet"
    assert inputs["cohorts"] == [{"year": 2026, "chemistry": "ternary", "batteries": 1, "tonnes": 0.3}]
    assert report.rows[0]["year"] == 2026
    assert sum(r["tonnes"] for r in report.rows) == pytest.approx(0.3, abs=2e-3)  # rows round to kg
    # ternary: shape 3.5, scale 8; in service since mid-2026, known to be in use on 20 November 2026
    now = 2026 + (life.clock() - at(2026, 1, 1, 8).astimezone(life.clock().tzinfo)) / timedelta(days=365)
    alive = 1 - weibull_cdf(now - 2026.5, 3.5, 8)
    y2030 = (weibull_cdf(2031 - 2026.5, 3.5, 8) - weibull_cdf(2030 - 2026.5, 3.5, 8)) / alive
    assert by(report.rows, year=2030)["tonnes"] == pytest.approx(0.3 * y2030, abs=1e-3)
    assert in_use
