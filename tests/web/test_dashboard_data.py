"""The dashboard's figures, computed from the registry's tables, against a small story whose
answers are known; and the cache that lasts until the log grows."""

from __future__ import annotations

import pytest

from batterytrace.domain.policy import get_profile
from batterytrace.services.registry import Registry
from batterytrace.web import dashboard_data as dd
from tests.api.support import Story
from tests.conftest import Cast

RECOVERED = {"li_kg": 5.5, "co_kg": 4.9, "ni_kg": 38.9, "mn_kg": 4.5, "cu_kg": 21.0}


@pytest.fixture
def story(cast: Cast) -> Story:
    return Story(cast)


def caller(registry: Registry, cast: Cast):  # type: ignore[no-untyped-def]
    return registry.authenticate(cast.regulator.key)


def test_figures(registry: Registry, story: Story, cast: Cast) -> None:
    story.manufactured()  # new, 300 kg
    story.installed()  # installed
    recycled = story.retired_at(cast.recycler)
    story.do(cast.recycler, "recycled", recycled, {"mass_kg": 300.0, "recovered": RECOVERED})
    story.retired()  # retired by the outlet, which holds a collection licence
    missing, _ = story.installed()
    story.do(cast.automaker, "reported_missing", missing)

    d = dd.load_dashboard(registry, caller(registry, cast))
    assert d.headline.batteries == 5
    assert d.headline.by_stage == {"new": 1, "installed": 1, "recycled": 1, "retired": 1, "missing": 1}
    assert d.headline.in_service == 1
    assert d.headline.waste == 1
    assert d.headline.registered_t == pytest.approx(1.5)
    assert d.headline.recycled_t == pytest.approx(0.3)

    (year,) = d.years  # the story happens in 2026
    assert (year.year, year.registered_change_pct) == (2026, None)
    assert year.registered_t == pytest.approx(1.5)
    assert year.retired_t == pytest.approx(0.6)
    assert year.recycled_t == pytest.approx(0.3)
    assert year.repurposed_t == 0

    by_metal = {m.metal: m for m in d.recovery}
    assert by_metal["li"].contained_kg == pytest.approx(6.0)
    assert by_metal["li"].recovered_kg == pytest.approx(5.5)
    assert by_metal["li"].rate == pytest.approx(5.5 / 6.0)
    assert by_metal["li"].thresholds == {"CN-2026": 0.90, "EU-2027": 0.50, "EU-2031": 0.80}
    assert by_metal["cu"].thresholds["CN-2026"] is None

    # every event of the story is at a site in Shanghai (31)
    assert [(p.province, round(p.registered_t, 3), round(p.retired_t, 3)) for p in d.provinces] == [
        ("31", 1.5, 0.6)
    ]

    # Both retired batteries reached a licensed holder in time; maker and automaker answer for both.
    producers = {(p.id, p.responsibility): p for p in d.producers}
    assert producers[(cast.maker.id, "producer")].retired == 2
    assert producers[(cast.maker.id, "producer")].in_time_share == 1.0
    assert producers[(cast.automaker.id, "automaker")].retired == 2

    # The forecast runs from this year to 2035 over the two packs still in use or in stock
    # (0.6 t of ternary packs registered in 2026, taken as born mid-year), given they last so far.
    assert [y for y, _ in d.forecast] == list(range(2026, 2036))
    life = get_profile(d.forecast_profile).lifetime_for("ternary")
    age_now = 2026 + (d.as_of.timetuple().tm_yday - 1) / 365 - 2026.5
    expected = 0.6 * (life.cdf(2036 - 2026.5) - life.cdf(age_now)) / life.survival(age_now)
    assert sum(t for _, t in d.forecast) == pytest.approx(expected, abs=0.01)


def test_alerts_come_from_the_monitoring_service(registry: Registry, story: Story, cast: Cast) -> None:
    code = story.manufactured()
    story.do(cast.maker, "shipped", code, {"to": cast.automaker.id})  # never received
    d = dd.load_dashboard(registry, caller(registry, cast))
    assert d.alerts_open >= 1
    rules = dict(d.alerts_by_rule)
    assert rules.get("shipment_overdue") == 1
    assert d.open_alerts
    alert = next(a for a in d.open_alerts if a.rule == "shipment_overdue")
    assert alert.battery == code
    dd.acknowledge_alert(registry, caller(registry, cast), int(alert.id), "called the automaker")
    after = dd.load_dashboard(registry, caller(registry, cast))
    assert alert.id not in {a.id for a in after.open_alerts}
    assert after.alerts_open == d.alerts_open  # acknowledged, still open until it is received


def test_figures_are_kept_until_the_log_grows(registry: Registry, story: Story, cast: Cast) -> None:
    story.manufactured()
    first = dd.load_dashboard(registry, caller(registry, cast))
    again = dd.load_dashboard(registry, caller(registry, cast))
    assert again.headline is first.headline
    story.manufactured()
    later = dd.load_dashboard(registry, caller(registry, cast))
    assert later.headline.batteries == first.headline.batteries + 1
    assert later.log_size > first.log_size


def test_empty_registry(registry: Registry, cast: Cast) -> None:
    d = dd.load_dashboard(registry, caller(registry, cast))
    assert d.headline.batteries == 0
    assert d.years == []
    assert d.recovery == []
    assert d.producers == []
    assert all(t == 0 for _, t in d.forecast)
