"""``batterytrace alerts`` and ``batterytrace report`` through the CLI runner, on the database the
test's registry uses."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from batterytrace.cli.main import app
from batterytrace.services.registry import Registry
from batterytrace.settings import Settings
from tests import factories as f
from tests.conftest import Cast, Clock
from tests.services.test_alerts import Life, World


@pytest.fixture
def life(registry: Registry, client: TestClient, cast: Cast, clock: Clock) -> Life:
    return Life(World(registry, clock, client, cast))


@pytest.fixture
def run(settings: Settings) -> Callable[..., tuple[int, str]]:
    env = {
        "BATTERYTRACE_DATABASE_URL": settings.database_url,
        "BATTERYTRACE_SIGNING_KEY": str(settings.signing_key),
        "BATTERYTRACE_ENV": "test",
    }
    runner = CliRunner()

    def invoke(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, list(args), env=env)
        return result.exit_code, result.output

    return invoke


def test_alerts_list_act_and_rescan_from_the_console(life: Life, run: Callable[..., tuple[int, str]]) -> None:
    vin = f.vin()
    life.ok(life.cast.dismantler, "vehicle_scrapped", None, vin=vin)
    code, out = run("alerts", "--format", "json")
    assert code == 0, out
    page = json.loads(out)
    (alert,) = [a for a in page["items"] if a["vin"] == vin]
    assert alert["rule"] == "scrapped_vehicle_battery"

    code, out = run("alerts", "--rule", "scrapped_vehicle_battery", "--format", "csv")
    assert code == 0, out
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["vin"] for r in rows] == [vin]
    code, out = run("alerts", "--rule", "scrapped_vehicle_battery")
    assert code == 0
    assert "Alerts (1 open)" in out
    code, out = run("alerts", "--rule", "no_such_rule")
    assert code == 1
    assert "request.invalid" in out

    code, out = run("alerts", "acknowledge", str(alert["id"]), "--by", life.cast.dismantler.id)
    assert code == 1
    assert "not a registered regulator" in out
    code, out = run("alerts", "acknowledge", str(alert["id"]), "--by", life.cast.regulator.id)
    assert code == 0, out
    assert "acknowledged (log index" in out
    code, out = run(
        "alerts", "resolve", str(alert["id"]), "--by", life.cast.regulator.id, "--reason", "old vehicle"
    )
    assert code == 0, out
    code, out = run("alerts", "--status", "closed", "--format", "json")
    assert [a["resolution"] for a in json.loads(out)["items"]] == ["old vehicle"]

    code, out = run("alerts", "rescan")
    assert code == 0, out
    assert "alert(s) raised" in out


def test_reports_from_the_console(life: Life, run: Callable[..., tuple[int, str]], tmp_path: Path) -> None:
    code = life.retired_at_recycler()
    life.ok(
        life.cast.recycler, "recycled", code, {"mass_kg": 300, "recovered": {"li_kg": 5.5, "co_kg": 4.95}}
    )

    status, out = run("report", "statistics", "--format", "csv")
    assert status == 0, out
    (row,) = list(csv.DictReader(io.StringIO(out)))
    assert (row["year"], row["registered"], row["recycled"], row["recycled_tonnes"]) == (
        "2026",
        "1",
        "1",
        "0.3",
    )

    status, out = run("report", "producers", "--responsibility", "automaker", "--format", "json")
    assert status == 0, out
    report = json.loads(out)
    assert {r["responsibility"] for r in report["rows"]} == {"automaker"}

    status, out = run("report", "recovery", "--profile", "CN-2026", "--format", "json")
    assert status == 0, out
    rows = json.loads(out)["rows"]
    assert [r["recycler"] for r in rows] == ["national", life.cast.recycler.id]
    assert rows[0]["li_verdict"] == "meets"  # 5.5 / 6 = 91.7 %

    status, out = run("report", "recovery")
    assert status == 0
    assert "recovery" in out.splitlines()[0]  # a table on its side: one column per row

    sales = tmp_path / "sales.csv"
    sales.write_text("year,vehicles\n2024,12866000\n2025,16490000\n", encoding="utf-8")
    status, out = run("report", "forecast", "--sales", str(sales), "--until", "2030", "--format", "json")
    assert status == 0, out
    forecast = json.loads(out)
    assert forecast["inputs"]["source"] == "sales_csv"
    assert [r["year"] for r in forecast["rows"]] == list(range(2024, 2031))

    status, out = run("report", "forecast", "--format", "csv")
    assert status == 0, out
    assert out.splitlines()[0].startswith("year,batteries,tonnes")
    status, out = run("report", "statistics", "--level", "crate")
    assert status == 1
    assert "request.invalid" in out
