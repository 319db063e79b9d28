"""The fleet rollup (``batterytrace.store.fleet``) on a real database (SQLite and PostgreSQL): after
random lives with retractions, after assembly, dismantling, second life and retractions of each, and
after batches that change one battery several times, it equals a scan of the batteries table; the
forecast and the counts by stage read from it give what grouping the batteries table gives;
``verify`` names an altered row, ``batterytrace db rebuild-fleet`` recounts it, and migration 0005
counts the batteries registered before it."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import and_, extract, func, select, update
from typer.testing import CliRunner

from batterytrace.cli.main import app
from batterytrace.domain.policy import get_profile
from batterytrace.services import forecast
from batterytrace.services.registry import Registry
from batterytrace.services.verify import verify
from batterytrace.settings import Settings
from batterytrace.store import fleet
from batterytrace.store import tables as T
from batterytrace.store.migrate import alembic_config, upgrade
from batterytrace.web import dashboard_data
from tests import factories as f
from tests.api.support import Story
from tests.conftest import Cast, Clock
from tests.services.test_alerts import Life, World, at
from tests.services.test_alerts_invariants import random_lives

CST = timezone(timedelta(hours=8))
MODULE = {**f.MANUFACTURED, "capacity_kwh": 20.0, "mass_kg": 100.0}
CELL = {**f.MANUFACTURED, "capacity_kwh": 0.2, "mass_kg": 1.234567, "materials": {"li_kg": 0.02}}


@pytest.fixture
def life(registry: Registry, client: TestClient, cast: Cast, clock: Clock) -> Life:
    return Life(World(registry, clock, client, cast))


def kept_and_scanned(
    registry: Registry,
) -> tuple[dict[fleet.Key, fleet.Counts], dict[fleet.Key, fleet.Counts]]:
    with registry.engine.connect() as conn:
        return fleet.stored(conn), fleet.scan(conn)


def assert_agrees(registry: Registry) -> dict[fleet.Key, fleet.Counts]:
    kept, scanned = kept_and_scanned(registry)
    assert kept == scanned
    return kept


def grouped_from_the_batteries(
    registry: Registry,
) -> tuple[dict[str, int], list[tuple[int, str, int, float, int]]]:
    """What the dashboard and the forecast read before the rollup: batteries by stage, and the
    fleet still in use grouped by year of registration and chemistry."""
    b = T.batteries
    year = extract("year", b.c.registered_at)
    with registry.engine.connect() as conn:
        by_stage = dict(conn.execute(select(b.c.stage, func.count()).group_by(b.c.stage)).all())
        cohorts = conn.execute(
            select(year, b.c.chemistry, func.count(), func.sum(b.c.mass_kg), func.count(b.c.mass_kg))
            .where(
                and_(
                    b.c.stage.in_(forecast.FLEET_STAGES), b.c.attached.is_(False), b.c.second_life.is_(False)
                )
            )
            .group_by(year, b.c.chemistry)
        ).all()
    return by_stage, sorted((int(y), c, int(n), float(kg or 0), int(m)) for y, c, n, kg, m in cohorts)


def test_random_lives_keep_the_rollup_equal_to_a_scan_and_the_forecast_to_grouping_the_batteries(
    life: Life,
) -> None:
    # registered in the first hours of a year in China: the year of registration is UTC's, as before
    life.made(when=datetime(2026, 1, 1, 3, tzinfo=CST))
    life.made(chemistry="B", when=datetime(2026, 1, 1, 9, tzinfo=CST))
    random_lives(life, random.Random(11), steps=120)
    kept = assert_agrees(life.registry)
    assert {2025, 2026} <= {k[0] for k in kept}
    found = [x for x in verify(life.registry.engine, life.registry.log).findings if x.table == "fleet_rollup"]
    assert found == []

    by_stage, cohorts = grouped_from_the_batteries(life.registry)
    now = datetime(2026, 11, 20, 12, tzinfo=UTC)
    report = forecast.from_fleet(life.registry.engine, get_profile(), now)
    profile = get_profile()
    expected: dict[tuple[int, str], list[float]] = {}
    for year, chemistry, n, kg, _ in cohorts:
        cell = expected.setdefault((year, forecast.chemistry_class(profile, chemistry)), [0, 0.0])
        cell[0] += n
        cell[1] += kg / 1000
    assert {c for _, c, _, _, _ in cohorts} == {"ternary", "lfp"}
    assert report.meta["inputs"]["cohorts"] == [
        {"year": y, "chemistry": c, "batteries": int(n), "tonnes": round(t, 6)}
        for (y, c), (n, t) in sorted(expected.items())
    ]
    assert report.meta["inputs"]["batteries_without_mass"] == sum(n - m for _, _, n, _, m in cohorts)
    assert dashboard_data._headline(life.registry, []).by_stage == by_stage


def test_assembly_dismantling_second_life_and_their_retractions_move_batteries_between_keys(
    cast: Cast, registry: Registry
) -> None:
    story = Story(cast)

    def do(*args: Any, **kw: Any) -> dict[str, Any]:
        stored = story.do(*args, **kw)
        assert_agrees(registry)
        return stored

    def retract(actor: Any, code: str, event: dict[str, Any]) -> None:
        do(actor, "retracted", code, {"event": event["id"], "reason": "test"})

    maker, outlet, repurposer = cast.maker, cast.outlet, cast.repurposer
    cells = [f.code(level="C") for _ in range(2)]
    modules = [f.code(level="M") for _ in range(2)]
    pack = f.code(level="P")
    for cell in cells:
        do(maker, "manufactured", cell, CELL)
    for module in modules:
        do(maker, "manufactured", module, MODULE)
    do(maker, "manufactured", pack, f.MANUFACTURED)
    do(maker, "assembled", modules[0], {"children": cells})
    assembled = do(maker, "assembled", pack, {"children": modules})
    attached = {k: v[0] for k, v in assert_agrees(registry).items() if k[3]}
    assert sum(attached.values()) == 4
    retract(maker, pack, assembled)
    assert (
        sum(v[0] for k, v in assert_agrees(registry).items() if k[3]) == 2
    )  # the cells stay in their module
    do(maker, "assembled", pack, {"children": modules})

    story.move(pack, maker, cast.automaker)
    do(cast.automaker, "installed", pack, {"vin": f.vin()})
    do(outlet, "removed", pack, {"reason": "retirement"})
    do(outlet, "retired", pack)
    story.move(pack, outlet, repurposer)
    assert_agrees(registry)
    do(repurposer, "graded", pack, {"soh_percent": 80.0, "decision": "repurpose"})
    dismantled = do(repurposer, "dismantled", pack)
    retract(repurposer, pack, dismantled)
    do(repurposer, "dismantled", pack)
    do(repurposer, "graded", modules[1], {"soh_percent": 80.0, "decision": "repurpose"})
    product = f.second_life_code(level="P")
    repurposed = do(repurposer, "repurposed", modules[1], {"into": product, "capacity_kwh": 15.0})
    second_life = {k: v for k, v in assert_agrees(registry).items() if k[4]}
    assert [(k[2], v[0]) for k, v in second_life.items()] == [("new", 1)]
    retract(repurposer, modules[1], repurposed)  # the product's registration goes with it
    assert not any(k[4] for k in assert_agrees(registry))
    do(repurposer, "repurposed", modules[1], {"into": product, "capacity_kwh": 15.0})
    assert verify(registry.engine, registry.log).ok


def test_one_batch_changing_a_battery_several_times_counts_its_end_state_once(
    life: Life,
) -> None:
    c = life.cast
    code = f.code()
    t = at(2026, 3, 2, 9)

    def body(type_: str, minutes: int, data: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "id": f.eid(),
            "type": type_,
            "battery": code,
            "time": (t + timedelta(minutes=minutes)).isoformat(),
            "region": "310115",
            "data": data or {},
        }

    life.clock.now = (t + timedelta(hours=1)).astimezone(UTC)
    made = body("manufactured", 1, f.MANUFACTURED)
    shipped = body("shipped", 2, {"to": c.automaker.id})
    results = life.registry.record(life.caller(c.maker), [made, shipped])
    assert [r.status for r in results] == ["accepted", "accepted"]
    kept = assert_agrees(life.registry)
    assert [(k[2], v) for k, v in kept.items()] == [("new", (1, 300_000_000, 1))]
    # a receipt and its retraction in one batch: the battery ends as it began
    received = body("received", 3)
    retracted = body("retracted", 4, {"event": received["id"], "reason": "test"})
    results = life.registry.record(life.caller(c.automaker), [received, retracted])
    assert [r.status for r in results] == ["accepted", "accepted"]
    assert assert_agrees(life.registry) == kept


@pytest.fixture
def run(settings: Settings) -> Callable[..., tuple[int, str]]:
    env = {
        "BATTERYTRACE_DATABASE_URL": settings.database_url,
        "BATTERYTRACE_SIGNING_KEY": str(settings.signing_key),
        "BATTERYTRACE_ENV": "test",
    }

    def invoke(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(app, list(args), env=env)
        return result.exit_code, result.output

    return invoke


def test_verify_names_an_altered_row_and_rebuild_fleet_recounts_the_rollup(
    life: Life, run: Callable[..., tuple[int, str]]
) -> None:
    code, _ = life.installed()
    life.made(chemistry="B")
    kept = assert_agrees(life.registry)
    year = life.registry.battery_state(code).registered_at.astimezone(UTC).year
    f_t = T.fleet_rollup
    installed = and_(f_t.c.year == year, f_t.c.chemistry == "ternary", f_t.c.stage == "installed")
    with life.registry.engine.begin() as conn:
        conn.execute(update(f_t).where(installed).values(batteries=5))
        conn.execute(
            f_t.insert().values(
                year=1999,
                chemistry="lfp",
                stage="new",
                attached=False,
                second_life=False,
                batteries=1,
                mass_mg=1,
                with_mass=1,
            )
        )
    found = [(x.kind, x.table, x.key) for x in verify(life.registry.engine, life.registry.log).findings]
    assert found == [
        ("state", "fleet_rollup", "1999/lfp/new/top-level/first-life"),
        ("state", "fleet_rollup", f"{year}/ternary/installed/top-level/first-life"),
    ]
    status, out = run("db", "rebuild-fleet")
    assert status == 0, out
    assert "2 keys" in out
    assert kept_and_scanned(life.registry) == (kept, kept)
    assert verify(life.registry.engine, life.registry.log).ok


def test_migration_0005_counts_the_batteries_registered_before_it(life: Life) -> None:
    life.installed()
    life.removed_at_automaker()
    life.made(chemistry="B")
    kept = assert_agrees(life.registry)
    cfg = alembic_config()
    with life.registry.engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0004")
        conn.commit()
    upgrade(life.registry.engine)
    assert kept_and_scanned(life.registry) == (kept, kept)
