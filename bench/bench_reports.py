"""Benchmark: monitoring at national scale. Prints a table of timings.

1. **Cost on the write path**: the same battery lives recorded through ``Registry.record`` with
   and without monitoring installed (``--ingest`` batteries of ten events each).
2. **Keeping up**: ``--batteries`` synthetic battery lives of ``--events-per-battery`` events
   (default 1 M batteries, 10 M events) are fed, in batches of 500 lives, through the same
   monitoring code that runs inside each committed batch (``EventBatch``), so the rollups, deadline
   watches and alerts are the ones the registry would hold. The batteries' current-state rows
   are written too, with the fleet rollup the batch context keeps for them (the forecast reads
   it). The event and log tables are not filled: no report or re-scan reads them.
3. **Reading**: statistics, producer responsibility and recovery reports, the fleet forecast and
   the first page of alerts, each timed five times (median).
4. **Full re-scan** of every running deadline (before the reports, so it finds every passed
   deadline), then again at the end (nothing left to raise).

    python -m bench.bench_reports                               # SQLite in a temporary directory
    python -m bench.bench_reports --batteries 100000            # a quicker run
    python -m bench.bench_reports --database-url postgresql+psycopg://user@host/db   # an empty database
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import func, insert, select

from batterytrace.domain.codes import make_battery_code, make_uscc, make_vin
from batterytrace.domain.model import BatteryState, Enterprise, Stage, VehicleState
from batterytrace.domain.snapshots import battery_to_dict
from batterytrace.services import forecast, reports
from batterytrace.services.monitoring import monitoring_for
from batterytrace.services.monitoring.observer import EventBatch
from batterytrace.services.registry import Caller, Registry
from batterytrace.settings import Settings
from batterytrace.store import fleet, repo
from batterytrace.store import tables as T
from batterytrace.store.db import write_transaction

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
PROVINCES = ["11", "12", "13", "31", "32", "33", "34", "35", "37", "41", "42", "43", "44", "50", "51", "61"]
MAKERS, AUTOMAKERS, RECYCLERS = 40, 30, 12
LIVES_PER_BATCH = 500
MATERIALS = {
    "B": {"li_kg": 5.0, "cu_kg": 30.3},
    "E": {"li_kg": 6.0, "ni_kg": 39.5, "co_kg": 5.0, "mn_kg": 4.6, "cu_kg": 22.2},
}

console = Console()


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


# --- the cast ----------------------------------------------------------------------------------


def enterprises(registry: Registry) -> dict[str, list[Enterprise]]:
    regulator_id = make_uscc("91110000000000000")
    registry.bootstrap(regulator_id, "Regulator")
    with registry.engine.connect() as conn:
        regulator = repo.load_enterprise(conn, regulator_id)
    assert regulator is not None
    caller = Caller(enterprise=regulator, key_id="bench")
    made: dict[str, list[str]] = {"maker": [], "automaker": [], "recycler": [], "outlet": []}
    n = 0

    def create(kind: str, roles: list[str], province: str, **extra: Any) -> str:
        nonlocal n
        n += 1
        uid = make_uscc(f"91{province}0100{n:09d}")
        body = {"id": uid, "name": f"{kind} {n}", "roles": roles, "region": f"{province}0100", **extra}
        registry.create_enterprise(caller, body)
        made[kind].append(uid)
        return uid

    for i in range(MAKERS):
        create("maker", ["battery_maker"], PROVINCES[i % len(PROVINCES)], manufacturer_codes=[f"B{i:02d}"])
    for i in range(AUTOMAKERS):
        automaker = create("automaker", ["automaker"], PROVINCES[i % len(PROVINCES)])
        for j in range(3):
            outlet = create(
                "outlet", ["service_outlet"], PROVINCES[(i + j) % len(PROVINCES)], network_of=automaker
            )
            registry.grant_licence(
                caller, outlet, {"scope": "collection", "valid_from": "2015-01-01", "valid_to": "2035-12-31"}
            )
    for i in range(RECYCLERS):
        recycler = create("recycler", ["recycler"], PROVINCES[i % len(PROVINCES)])
        registry.grant_licence(
            caller, recycler, {"scope": "recycling", "valid_from": "2015-01-01", "valid_to": "2035-12-31"}
        )
    with registry.engine.connect() as conn:
        loaded = repo.load_enterprises(conn, [i for ids in made.values() for i in ids])
    out = {kind: [loaded[i] for i in ids] for kind, ids in made.items()}
    out["regulator"] = [regulator]
    return out


# --- synthetic lives ---------------------------------------------------------------------------


class Life:
    """The events of one battery, with the state before each (as the registry's undo keeps it)."""

    def __init__(self, state: BatteryState) -> None:
        self.state = state
        self.rows: list[dict[str, Any]] = []
        self.vehicle: VehicleState | None = None

    def add(
        self, kind: str, actor: str, when: datetime, region: str, data: dict[str, Any], **after: Any
    ) -> None:
        before = battery_to_dict(self.state) if kind != "manufactured" else None
        self.state = replace(self.state, last_event_time=when, **after)
        self.rows.append(
            {
                "id": str(uuid.uuid4()),
                "type": kind,
                "battery": self.state.code,
                "vin": None,
                "time_text": when.isoformat(),
                "time_utc": when,
                "recorded_at": when + timedelta(days=2),
                "actor": actor,
                "region": region,
                "data": data,
                "undo": {"batteries": {self.state.code: before}},
            }
        )


def life_of(i: int, cast: dict[str, list[Enterprise]], events: int, rnd: random.Random) -> Life:
    maker = cast["maker"][i % MAKERS]
    automaker = cast["automaker"][(i // 7) % AUTOMAKERS]
    recycler = cast["recycler"][(i // 11) % RECYCLERS]
    chem = "B" if rnd.random() < 0.75 else "E"
    year = 2018 + i % 9
    made = datetime(year, 1, 1, 2, tzinfo=UTC) + timedelta(days=rnd.randrange(300), minutes=i % 1000)
    code = make_battery_code(
        sorted(maker.manufacturer_codes)[0], "P", chem, "01", "A1B2C3D", made.date(), i // MAKERS + 1
    )
    mass = 366.0 if chem == "B" else 300.0
    region = maker.region
    spec = {"capacity_kwh": 55.0, "voltage_v": 400.0, "mass_kg": mass, "materials": MATERIALS[chem]}
    life = Life(
        BatteryState(
            code=code,
            level="pack",
            chemistry="lfp" if chem == "B" else "ternary",
            manufacturer=code[:3],
            producer=maker.id,
            stage=Stage.NEW,
            holder=maker.id,
            registered_at=made,
            last_event_time=made,
            last_event_id="",
            capacity_kwh=55.0,
            mass_kg=mass,
            spec=spec,
        )
    )
    t = made
    life.add("manufactured", maker.id, t, region, spec)

    def later(days: int) -> datetime:
        nonlocal t
        t = min(t + timedelta(days=days), NOW - timedelta(days=3))
        return t

    life.add("shipped", maker.id, later(5), region, {"to": automaker.id}, in_transit_to=automaker.id)
    life.add(
        "received", automaker.id, later(3), automaker.region, {}, holder=automaker.id, in_transit_to=None
    )
    vin = make_vin("LSVAU2A3", f"P{i:07d}")
    life.add(
        "installed",
        automaker.id,
        later(20),
        automaker.region,
        {"vin": vin},
        stage=Stage.INSTALLED,
        vin=vin,
        installer=automaker.id,
    )
    life.vehicle = VehicleState(vin=vin, automaker=automaker.id, status="in_service", last_event_id="")
    fate = i % 10
    ending = 6 if fate in (4, 5, 6, 7) else 3 if fate in (8, 9) else 0
    for _ in range(max(events - len(life.rows) - ending, 0)):
        life.add("maintained", automaker.id, later(120), automaker.region, {"soh_percent": 90.0})
    if fate in (4, 5, 6, 7, 8, 9):
        life.add(
            "removed",
            automaker.id,
            later(30),
            automaker.region,
            {"reason": "retirement"},
            stage=Stage.REMOVED,
            vin=None,
        )
        life.vehicle = None
        retired = later(1)
        life.add(
            "retired", automaker.id, retired, automaker.region, {}, stage=Stage.RETIRED, retired_at=retired
        )
        if fate == 9:  # shipped to a recycler, never received
            life.add(
                "shipped",
                automaker.id,
                later(2),
                automaker.region,
                {"to": recycler.id},
                in_transit_to=recycler.id,
            )
        elif fate != 8:  # fate 8: kept at the automaker, never collected
            life.add(
                "shipped",
                automaker.id,
                later(2 + fate * 9),
                automaker.region,
                {"to": recycler.id},
                in_transit_to=recycler.id,
            )
            life.add(
                "received", recycler.id, later(2), recycler.region, {}, holder=recycler.id, in_transit_to=None
            )
            mats = MATERIALS[chem]
            recovered = {k: round(v * rnd.uniform(0.86, 0.995), 3) for k, v in mats.items()}
            life.add(
                "recycled",
                recycler.id,
                later(20),
                recycler.region,
                {"mass_kg": mass, "recovered": recovered},
                stage=Stage.RECYCLED,
            )
    return life


class StubContext:
    """What ``EventBatch`` reads from the batch context: the batteries after the batch, vehicles,
    enterprises."""

    def __init__(self, enterprises: dict[str, Enterprise]) -> None:
        self.enterprises = enterprises
        self.batteries: dict[str, BatteryState] = {}
        self.vehicles: dict[str, VehicleState] = {}

    def battery(self, code: str) -> BatteryState | None:
        return self.batteries.get(code)

    def vehicle(self, vin: str) -> VehicleState | None:
        return self.vehicles.get(vin)

    def enterprise(self, enterprise_id: str) -> Enterprise | None:
        return self.enterprises.get(enterprise_id)


def feed(
    registry: Registry, cast: dict[str, list[Enterprise]], batteries: int, events: int
) -> tuple[int, float]:
    monitoring = monitoring_for(registry)
    everyone = {e.id: e for group in cast.values() for e in group}
    rnd = random.Random(7)
    total = 0
    spent = 0.0
    columns = [c.name for c in T.batteries.columns]
    for first in range(0, batteries, LIVES_PER_BATCH):
        lives = [life_of(i, cast, events, rnd) for i in range(first, min(first + LIVES_PER_BATCH, batteries))]
        ctx = StubContext(everyone)
        rows: list[dict[str, Any]] = []
        for life in lives:
            ctx.batteries[life.state.code] = life.state
            if life.vehicle is not None:
                ctx.vehicles[life.vehicle.vin] = life.vehicle
            rows += life.rows
        rows.sort(key=lambda r: r["time_utc"])
        with write_transaction(registry.engine) as conn:  # the current-state rows, not timed
            states = [repo._battery_row(life.state) for life in lives]
            conn.execute(insert(T.batteries), [{c: s[c] for c in columns} for s in states])
            counts = fleet.FleetCounts()
            for life in lives:
                counts.add(life.state)
            fleet.write(conn, counts)
        started = time.perf_counter()
        with write_transaction(registry.engine) as conn:
            EventBatch(monitoring.profile, conn, ctx, rows).run()  # type: ignore[arg-type]
        spent += time.perf_counter() - started
        total += len(rows)
        if (first // LIVES_PER_BATCH) % 20 == 0:
            rate = total / spent
            console.print(
                f"  {first + len(lives):>9,} lives, {total:>11,} events, {rate:,.0f} events/s",
                highlight=False,
            )
    return total, spent


# --- the write path ------------------------------------------------------------------------------


def record_lives(
    registry: Registry, cast: dict[str, list[Enterprise]], n: int, offset: int
) -> tuple[int, float]:
    """Battery lives through the registry's own use case, ten events each, a batch per step."""
    callers = {e.id: Caller(enterprise=e, key_id="bench") for group in cast.values() for e in group}
    maker, automaker, recycler = cast["maker"][0], cast["automaker"][0], cast["recycler"][0]
    t0 = NOW - timedelta(days=200)
    codes = [
        make_battery_code(
            sorted(maker.manufacturer_codes)[0], "P", "E", "01", "Z9Z9Z9Z", date(2026, 5, 1), offset + k + 1
        )
        for k in range(n)
    ]
    vins = [make_vin("LSVAU2A3", f"XB{offset + k:06d}") for k in range(n)]
    steps: list[tuple[Enterprise, str, Callable[[int], dict[str, Any]]]] = [
        (
            maker,
            "manufactured",
            lambda k: {"capacity_kwh": 55, "voltage_v": 400, "mass_kg": 300, "materials": MATERIALS["E"]},
        ),
        (maker, "shipped", lambda k: {"to": automaker.id}),
        (automaker, "received", lambda k: {}),
        (automaker, "installed", lambda k: {"vin": vins[k]}),
        (automaker, "maintained", lambda k: {"soh_percent": 88}),
        (automaker, "removed", lambda k: {"reason": "retirement"}),
        (automaker, "retired", lambda k: {}),
        (automaker, "shipped", lambda k: {"to": recycler.id}),
        (recycler, "received", lambda k: {}),
        (recycler, "recycled", lambda k: {"mass_kg": 300, "recovered": {"li_kg": 5.5, "ni_kg": 39.0}}),
    ]
    clock = registry.clock
    started = time.perf_counter()
    count = 0
    for step, (actor, kind, data) in enumerate(steps):
        moment = t0 + timedelta(days=step * 2)
        clock.now = moment + timedelta(hours=1)  # recorded when it happens: no late reports
        when = moment.isoformat()
        for first in range(0, n, 1000):
            batch = [
                {
                    "id": str(uuid.uuid4()),
                    "type": kind,
                    "battery": codes[k],
                    "time": when,
                    "region": actor.region,
                    "data": data(k),
                }
                for k in range(first, min(first + 1000, n))
            ]
            results = registry.record(callers[actor.id], batch)
            bad = [r for r in results if r.status != "accepted"]
            assert not bad, bad[0].error
            count += len(batch)
    clock.now = NOW
    return count, time.perf_counter() - started


# --- timing ----------------------------------------------------------------------------------------


def timed(fn: Callable[[], Any], repeat: int = 5) -> tuple[float, Any]:
    times = []
    result = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batteries", type=int, default=1_000_000)
    parser.add_argument("--events-per-battery", type=int, default=10)
    parser.add_argument("--ingest", type=int, default=2_000, help="lives recorded through Registry.record")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.sqlite'}"
        settings = Settings(database_url=url, signing_key=Path(tmp) / "log.key", env="test")
        from batterytrace.services.factory import build_registry

        registry = build_registry(settings)
        registry.clock = Clock(NOW)
        cast = enterprises(registry)
        table = Table(title=f"monitoring at {args.batteries:,} batteries ({registry.engine.dialect.name})")
        table.add_column("what")
        table.add_column("time", justify="right")
        table.add_column("note")

        if args.ingest:
            console.print(f"write path: {args.ingest:,} lives through Registry.record with monitoring …")
            n, secs = record_lives(registry, cast, args.ingest, 0)
            table.add_row("record with monitoring", f"{secs:.1f} s", f"{n / secs:,.0f} events/s")
            observers, refusal = list(registry.observers), list(registry.refusal_observers)
            registry.observers.clear()
            registry.refusal_observers.clear()
            console.print("… and without")
            n2, secs2 = record_lives(registry, cast, args.ingest, args.ingest)
            registry.observers[:] = observers
            registry.refusal_observers[:] = refusal
            table.add_row(
                "record without monitoring",
                f"{secs2:.1f} s",
                f"{n2 / secs2:,.0f} events/s; monitoring adds {100 * (secs - secs2) / secs2:.0f} %",
            )

        console.print(f"feeding {args.batteries:,} lives ({args.events_per_battery} events each) …")
        events, secs = feed(registry, cast, args.batteries, args.events_per_battery)
        table.add_row(
            "monitoring of the events", f"{secs:.0f} s", f"{events:,} events, {events / secs:,.0f} events/s"
        )
        with registry.engine.connect() as conn:
            sizes = {
                t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
                for t in (
                    T.batteries,
                    T.stat_rollup,
                    T.producer_rollup,
                    T.recovery_rollup,
                    T.alert_watches,
                    T.alerts,
                )
            }
            by_rule = dict(
                conn.execute(select(T.alerts.c.rule, func.count()).group_by(T.alerts.c.rule)).all()
            )
        table.add_row("rows", "", ", ".join(f"{k} {v:,}" for k, v in sizes.items()))
        table.add_row(
            "alerts raised on write", "", ", ".join(f"{k} {v:,}" for k, v in sorted(by_rule.items()))
        )

        started = time.perf_counter()
        result = monitoring_for(registry).rescan(NOW)
        secs = time.perf_counter() - started
        table.add_row(
            "full re-scan of running deadlines",
            f"{secs:.1f} s",
            f"{result['overdue']:,} overdue, {result['raised']:,} raised, {result['running_deadlines']:,} running",
        )

        engine = registry.engine
        cases: list[tuple[str, Callable[[], Any]]] = [
            ("statistics by year", lambda: reports.statistics(engine)),
            (
                "statistics 2025 by province and chemistry",
                lambda: reports.statistics(engine, year=2025, group_by=["province", "chemistry"]),
            ),
            ("statistics by producer", lambda: reports.statistics(engine, group_by=["producer"])),
            ("statistics, one province", lambda: reports.statistics(engine, province="44")),
            ("producer responsibility", lambda: reports.producers(engine, NOW)),
            ("producer responsibility, 2024", lambda: reports.producers(engine, NOW, year=2024)),
            ("recovery, every profile", lambda: reports.recovery(engine)),
            (
                "alerts, first page",
                lambda: monitoring_for(registry).list_alerts(None, operator=True, limit=100),
            ),
            (
                "forecast from the fleet",
                lambda: forecast.from_fleet(engine, monitoring_for(registry).profile, NOW),
            ),
        ]
        for name, fn in cases:
            secs, result = timed(fn)
            rows = len(result.rows) if hasattr(result, "rows") else len(result["items"])
            table.add_row(name, f"{secs * 1000:.0f} ms", f"{rows} rows")

        started = time.perf_counter()
        result = monitoring_for(registry).rescan(NOW)
        table.add_row(
            "re-scan again (nothing new)",
            f"{(time.perf_counter() - started) * 1000:.0f} ms",
            f"{result['raised']} raised",
        )
        console.print(table)
        registry.engine.dispose()


if __name__ == "__main__":
    main()
