"""A simulated data set recorded through the real rules, on SQLite and PostgreSQL: nothing is
refused but the shipments offered to unlicensed parties on purpose, every sample battery ends in
the stage of its story, the alerts the leaks should raise are open, reports were made on time, and
the log verifies. The same data set as an import file, and the demo that ``serve`` loads."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import func, select
from typer.testing import CliRunner

from batterytrace.cli.main import app
from batterytrace.domain.model import Stage
from batterytrace.services.registry import Registry
from batterytrace.services.verify import verify
from batterytrace.settings import Settings
from batterytrace.simulate.demo import load_demo
from batterytrace.simulate.national import (
    KEYED,
    SAMPLES,
    STORIES,
    SimConfig,
    build_cast,
    load,
    open_alerts_by_rule,
)
from batterytrace.store import tables as T

STAGE_OF = {
    "in_service": Stage.INSTALLED,
    "maintained": Stage.INSTALLED,
    "repaired": Stage.INSTALLED,
    "recycled": Stage.RECYCLED,
    "repurposed": Stage.REPURPOSED,
    "second_life_product": Stage.INSTALLED,
    "scrapped_dismantled": Stage.DISMANTLED,
    "missing": Stage.MISSING,
    "exported": Stage.EXPORTED,
    "in_transit_waste": Stage.RETIRED,
    "new_in_stock": Stage.NEW,
    "offered_to_unlicensed": Stage.RETIRED,
    "retired_not_collected": Stage.RETIRED,
    "recycled_below_threshold": Stage.RECYCLED,
}
runner = CliRunner()


def battery_rows(registry: Registry) -> int:
    with registry.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(T.batteries)).scalar_one())


def test_a_simulated_data_set_passes_the_real_rules(registry, clock):
    config = SimConfig(batteries=200, seed=21, end=clock.now, leak_share=0.3)
    result = load(registry, config)

    assert result.unexpected == []
    assert result.unexpected_count == 0
    assert result.rejected == result.refused_leaks == result.stats.refused >= 1
    assert result.events == result.stats.events - result.stats.refused
    assert result.batteries == result.stats.codes == battery_rows(registry)
    assert registry.clock is clock  # put back after recording at each window's end

    cast = build_cast(200, 21)
    for story, code in result.samples.items():
        state = registry.battery_state(code)
        assert state.stage == STAGE_OF[story], (story, state)
    product = registry.battery_state(result.samples["second_life_product"])
    assert product.second_life and product.application == "stationary"
    waiting = registry.battery_state(result.samples["in_transit_waste"])
    assert waiting.in_transit_to == cast.by_name["recycler_b"].id
    assert registry.battery_state(result.samples["maintained"]).soh_percent is not None
    assert registry.battery_state(result.samples["repaired"]).holder == cast.by_name["outlet_a"].id

    alerts = open_alerts_by_rule(registry.engine)
    assert alerts.get("unlicensed_receiver", 0) >= 1
    assert alerts.get("collection_overdue", 0) >= 1
    assert alerts.get("shipment_overdue", 0) >= 1
    assert alerts.get("recovery_below_threshold", 0) >= 1
    assert "late_report" not in alerts  # each window is recorded at its end, within every deadline
    report = verify(registry.engine, registry.log)
    assert report.ok, report.findings[:5]


def test_the_demo_has_every_stage_and_keys_for_the_named_enterprises(registry, clock):
    demo = load_demo(registry, batteries=40)
    assert set(demo.samples) == set(SAMPLES)
    assert set(demo.keys) == set(KEYED)
    assert demo.batteries == battery_rows(registry)
    assert demo.rejected >= 1  # the battery offered to the scrap dealer
    caller = registry.authenticate(demo.keys["recycler_b"][2])
    assert caller.enterprise.name == "Hunan Hydromet Recycling"
    for story in STORIES:
        assert registry.battery_state(demo.samples[story]).stage == STAGE_OF[story]


def env_for(settings: Settings) -> dict[str, str]:
    return {
        "BATTERYTRACE_DATABASE_URL": settings.database_url,
        "BATTERYTRACE_SIGNING_KEY": str(settings.signing_key),
        "BATTERYTRACE_ENV": "test",
        "BATTERYTRACE_LOG_ORIGIN": settings.log_origin,
    }


def test_cli_writes_an_import_file_that_imports_after_setup(settings, tmp_path: Path):
    env = env_for(settings)
    path = tmp_path / "national.jsonl"
    args = ["simulate", "--batteries", "60", "--seed", "8", "--until", "2026-11-19"]
    written = runner.invoke(app, [*args, "--out", str(path), "--quiet"], env=env)
    assert written.exit_code == 0, written.output
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) > 600
    assert all(json.loads(line)["actor"] for line in lines)
    assert "--setup" in written.output

    set_up = runner.invoke(app, ["simulate", "--batteries", "60", "--seed", "8", "--setup"], env=env)
    assert set_up.exit_code == 0, set_up.output
    key = set_up.output.strip().splitlines()[-1]
    assert key.startswith("bt_")

    imported = runner.invoke(app, ["import", str(path), "--key", key, "--quiet"], env=env)
    assert imported.exit_code == 1, imported.output  # the refused offers to an unlicensed party
    rejects = [json.loads(x) for x in (tmp_path / "national.jsonl.rejects.jsonl").read_text().splitlines()]
    assert rejects
    assert {r["code"] for r in rejects} == {"lifecycle.unlicensed_receiver"}


def test_cli_loads_into_an_empty_database_and_refuses_a_second_time(settings):
    env = env_for(settings)
    args = ["simulate", "--batteries", "30", "--seed", "2", "--until", "2026-11-19", "--load", "--quiet"]
    loaded = runner.invoke(app, args, env=env)
    assert loaded.exit_code == 0, loaded.output
    assert "events recorded" in loaded.output
    assert "recycler_b" in loaded.output
    again = runner.invoke(app, args, env=env)
    assert again.exit_code == 1
    assert "empty registry" in again.output
    neither = runner.invoke(app, ["simulate", "--batteries", "10"], env=env)
    assert neither.exit_code == 2
