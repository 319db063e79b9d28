"""Benchmark: the regulator dashboard's first load at national scale.

Builds a registry with ``--batteries`` current-state rows (default one million) spread over the
stages of life, 31 provinces, a few hundred enterprises and ten years of registrations, with the
report rollups that monitoring would have kept for them, the fleet rollup that the batch context
would have kept and ``--alerts`` open alerts, then times ``GET /dashboard`` for a logged-in
regulator: the first load (nothing cached) and the next ones (the reports cached until the log
grows; alerts read every time). The machine's 1-minute load average is printed before and after:
on shared cores it says how much of a timing is the machine's.

The rows are written straight into the tables: the benchmark is about reading, and a million
batteries through the use cases would take far longer than the reading it measures.

    python -m bench.bench_dashboard                       # SQLite in a temporary directory
    python -m bench.bench_dashboard --batteries 200000
    python -m bench.bench_dashboard --database-url postgresql+psycopg://user@host/db   # an empty database
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from rich.console import Console
from rich.table import Table
from sqlalchemy import insert

from batterytrace.api.app import create_app
from batterytrace.domain.codes import make_battery_code, make_uscc
from batterytrace.domain.policy import get_profile
from batterytrace.domain.regions import provinces
from batterytrace.services import forecast, reports
from batterytrace.services.factory import build_registry
from batterytrace.services.monitoring import monitoring_for
from batterytrace.services.registry import Registry
from batterytrace.settings import Settings
from batterytrace.store import fleet
from batterytrace.store import tables as T
from batterytrace.store.db import write_transaction
from batterytrace.web import dashboard_data

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
STAGES = [  # (stage, share of the fleet)
    ("new", 0.08),
    ("installed", 0.62),
    ("removed", 0.02),
    ("retired", 0.06),
    ("repurposed", 0.04),
    ("dismantled", 0.02),
    ("recycled", 0.12),
    ("missing", 0.02),
    ("exported", 0.02),
]
CHUNK = 20_000


def enterprises(registry: Registry, rng: random.Random) -> tuple[str, dict[str, list[str]]]:
    """A regulator and, in every province, makers, automakers, outlets and licensed recyclers.
    Returns the regulator's key and the enterprise ids by role."""
    n = 0

    def uid(region: str) -> str:
        nonlocal n
        n += 1
        return make_uscc(f"91{region}{n:09d}")

    regulator_id = uid("110000")
    _, key = registry.bootstrap(regulator_id, "National Battery Traceability Office")
    regulator = registry.authenticate(key)
    by_role: dict[str, list[str]] = {
        "battery_maker": [],
        "automaker": [],
        "service_outlet": [],
        "recycler": [],
    }
    maker_codes = iter(f"{a}{b}{c}" for a in "0123456789" for b in "ABCDEFGH" for c in "0123456789")
    for province in list(provinces())[:31]:
        region = province + "0100"
        for role, count in (("battery_maker", 1), ("automaker", 2), ("recycler", 2)):
            for _ in range(count):
                eid = uid(region)
                body: dict[str, Any] = {
                    "id": eid,
                    "name": f"{role} {province}-{len(by_role[role])}",
                    "roles": [role],
                    "region": region,
                }
                if role == "battery_maker":
                    body["manufacturer_codes"] = [next(maker_codes)]
                registry.create_enterprise(regulator, body)
                if role == "recycler":
                    registry.grant_licence(
                        regulator,
                        eid,
                        {"scope": "recycling", "valid_from": "2020-01-01", "valid_to": "2035-12-31"},
                    )
                by_role[role].append(eid)
        for automaker in by_role["automaker"][-2:]:
            for _ in range(3):
                eid = uid(region)
                registry.create_enterprise(
                    regulator,
                    {
                        "id": eid,
                        "name": f"outlet {province}-{len(by_role['service_outlet'])}",
                        "roles": ["service_outlet"],
                        "region": region,
                        "network_of": automaker,
                    },
                )
                registry.grant_licence(
                    regulator,
                    eid,
                    {"scope": "collection", "valid_from": "2020-01-01", "valid_to": "2035-12-31"},
                )
                by_role["service_outlet"].append(eid)
    return key, by_role


class Rollups:
    """The report counters monitoring would have kept for the synthetic batteries, and the fleet
    counts the batch context would have kept."""

    def __init__(self) -> None:
        self.stats: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0])
        self.producers: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        self.recovery: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        self.fleet = fleet.FleetCounts()

    def add(
        self, row: dict[str, Any], sites: dict[str, str], recycler: str | None, rng: random.Random
    ) -> None:
        """``sites``: the province of each step (registered, installed, retired, end)."""
        grams = int(row["mass_kg"] * 1000)
        key = fleet.key_of(
            row["registered_at"], row["chemistry"], row["stage"], row["attached"], row["second_life"]
        )
        self.fleet.count(key, row["mass_kg"])

        def key(step: str) -> tuple[str, str, str, str]:
            return (sites[step], row["chemistry"], row["producer"], "pack")

        self._stat(row["registered_at"].year, key("registered"), "registered", grams)
        if row["installer"]:
            self._stat(row["registered_at"].year, key("installed"), "installed", grams)
        if row["retired_at"] is not None:
            year = row["retired_at"].year
            for metric in ("retired", "collected"):
                self._stat(year, key("retired"), metric, grams)
            for who, responsibility in ((row["producer"], "producer"), (row["installer"], "automaker")):
                p = self.producers[(who, responsibility, year)]
                in_time = rng.random() < 0.93
                p[0], p[1], p[2], p[3] = p[0] + 1, p[1] + grams, p[2] + in_time, p[3] + (not in_time)
        if row["stage"] in ("recycled", "repurposed", "dismantled"):
            self._stat(row["last_event_time"].year, key("end"), row["stage"], grams)
        if row["stage"] == "recycled" and recycler is not None:
            year = row["last_event_time"].year
            star = self.recovery[(recycler, year, "*")]
            star[0] += 1
            star[1] += grams
            for name, kg in row["spec"]["materials"].items():
                metal = name.removesuffix("_kg")
                contained = int(kg * 1000)
                recovered = int(contained * rng.uniform(0.85, 0.99))
                r = self.recovery[(recycler, year, metal)]
                r[0], r[1], r[2] = r[0] + 1, r[1] + contained, r[2] + recovered
                star[2] += recovered

    def _stat(self, year: int, key: tuple[str, ...], metric: str, grams: int) -> None:
        cell = self.stats[(year, *key, metric)]
        cell[0] += 1
        cell[1] += grams

    def write(self, registry: Registry) -> None:
        with write_transaction(registry.engine) as conn:
            conn.execute(
                insert(T.stat_rollup),
                [
                    dict(
                        zip(("year", "province", "chemistry", "producer", "level", "metric"), k, strict=True)
                    )
                    | {"batteries": v[0], "mass_g": v[1]}
                    for k, v in self.stats.items()
                ],
            )
            conn.execute(
                insert(T.producer_rollup),
                [
                    {
                        "enterprise_id": k[0],
                        "responsibility": k[1],
                        "year": k[2],
                        "retired": v[0],
                        "retired_g": v[1],
                        "collected_in_time": v[2],
                        "collected_late": v[3],
                    }
                    for k, v in self.producers.items()
                ],
            )
            conn.execute(
                insert(T.recovery_rollup),
                [
                    {
                        "recycler": k[0],
                        "year": k[1],
                        "metal": k[2],
                        "batteries": v[0],
                        "contained_g": v[1],
                        "recovered_g": v[2],
                        "unmatched_g": v[3],
                    }
                    for k, v in self.recovery.items()
                ],
            )
            fleet.write(conn, self.fleet)


def battery_rows(
    count: int,
    rng: random.Random,
    by_role: dict[str, list[str]],
    makers: dict[str, str],
    regions: dict[str, str],
    rollups: Rollups,
) -> Iterator[dict[str, Any]]:
    """``count`` battery rows, counted into ``rollups`` on the way."""
    stages = [s for s, _ in STAGES]
    weights = [w for _, w in STAGES]
    maker_ids = list(makers)
    for i in range(count):
        stage = rng.choices(stages, weights)[0]
        maker = rng.choice(maker_ids)
        born = date(2016, 1, 1) + timedelta(days=rng.randrange(0, 3900))
        registered = datetime(born.year, born.month, born.day, 9, tzinfo=UTC)
        chem = rng.choice("BBBEE")
        capacity = rng.uniform(40, 90)
        mass = capacity * (6.6 if chem == "B" else 5.0)
        materials = {
            "li_kg": 0.1 * capacity,
            "ni_kg": 0.6 * capacity if chem == "E" else 0.0,
            "cu_kg": 0.4 * capacity,
        }
        code = make_battery_code(makers[maker], "P", chem, "01", "BENCH00", born, i + 1)
        automaker = rng.choice(by_role["automaker"])
        recycler = rng.choice(by_role["recycler"])
        holder = {
            "new": maker,
            "installed": automaker,
            "removed": rng.choice(by_role["service_outlet"]),
            "retired": rng.choice(by_role["service_outlet"]),
            "missing": automaker,
            "exported": automaker,
        }.get(stage, recycler)
        ended = min(registered + timedelta(days=rng.randrange(300, 3000)), NOW - timedelta(days=1))
        retired_at = (
            ended - timedelta(days=30)
            if stage in ("retired", "repurposed", "dismantled", "recycled")
            else None
        )
        row = {
            "code": code,
            "level": "pack",
            "chemistry": "lfp" if chem == "B" else "ternary",
            "manufacturer": makers[maker],
            "producer": maker,
            "stage": stage,
            "holder": holder,
            "in_transit_to": None,
            "vin": None,
            "system": None,
            "application": None,
            "parent": None,
            "attached": False,
            "second_life": False,
            "stage_before_missing": "installed" if stage == "missing" else None,
            "grade": None,
            "soh_percent": None,
            "installer": automaker if stage != "new" else None,
            "retired_at": retired_at,
            "capacity_kwh": capacity,
            "mass_kg": mass,
            "spec": {"materials": materials, "voltage_v": 400.0},
            "registered_at": registered,
            "last_event_time": ended if stage != "new" else registered,
            "last_event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        }
        outlet = holder if stage in ("removed", "retired") else rng.choice(by_role["service_outlet"])
        sites = {
            "registered": regions[maker][:2],
            "installed": regions[automaker][:2],
            "retired": regions[outlet][:2],
            "end": regions[holder][:2],
        }
        rollups.add(row, sites, recycler if stage == "recycled" else None, rng)
        yield row


RULES = (
    "shipment_overdue",
    "collection_overdue",
    "late_report",
    "scrapped_vehicle_battery",
    "suspected_clone",
)


def alerts(registry: Registry, count: int, by_role: dict[str, list[str]], rng: random.Random) -> None:
    province_codes = list(provinces())[:31]
    rows = []
    for i in range(count):
        since = NOW - timedelta(days=rng.randrange(1, 400))
        rows.append(
            {
                "rule": rng.choice(RULES),
                "status": "open" if rng.random() < 0.8 else "acknowledged",
                "condition_key": f"bench:{i}",
                "enterprise_id": rng.choice(by_role["service_outlet"]),
                "province": rng.choice(province_codes),
                "since": since,
                "deadline": since + timedelta(days=14),
                "deadline_basis": "official",
                "detail": "synthetic alert",
                "evidence": {},
                "opened_at": since + timedelta(days=14),
                "updated_at": since + timedelta(days=14),
            }
        )
    with write_transaction(registry.engine) as conn:
        conn.execute(insert(T.alerts), rows)


def fill(registry: Registry, count: int, alert_count: int, seed: int) -> str:
    rng = random.Random(seed)
    key, by_role = enterprises(registry, rng)
    with write_transaction(registry.engine) as conn:
        makers = {r.enterprise_id: r.code for r in conn.execute(T.manufacturer_codes.select())}
        regions = {r.id: r.region for r in conn.execute(T.enterprises.select())}
    rollups = Rollups()
    batch: list[dict[str, Any]] = []
    for row in battery_rows(count, rng, by_role, makers, regions, rollups):
        batch.append(row)
        if len(batch) >= CHUNK:
            _write(registry, batch)
            batch = []
    _write(registry, batch)
    rollups.write(registry)
    alerts(registry, alert_count, by_role, rng)
    return key


def _write(registry: Registry, batteries: list[dict[str, Any]]) -> None:
    if batteries:
        with write_transaction(registry.engine) as conn:
            conn.execute(insert(T.batteries), batteries)


def parts(registry: Registry, key: str) -> list[tuple[str, float]]:
    """Seconds each source of the dashboard takes on its own."""
    caller = registry.authenticate(key)
    engine, now = registry.engine, registry.clock()
    profile = get_profile(registry.settings.monitoring_profile)
    steps: list[tuple[str, Any]] = [
        ("batteries by stage (fleet rollup)", lambda: dashboard_data._headline(registry, [])),
        ("statistics report (by province)", lambda: reports.statistics(engine, group_by=["province"])),
        ("producers report", lambda: reports.producers(engine, now)),
        ("recovery report", lambda: reports.recovery(engine, profiles=dashboard_data.RECOVERY_PROFILES)),
        ("forecast from the fleet (fleet rollup)", lambda: forecast.from_fleet(engine, profile, now)),
        ("alerts listed", lambda: monitoring_for(registry).list_alerts(caller, status="open", limit=50)),
        ("alerts counted by rule and province", lambda: dashboard_data._alert_counts(registry)),
    ]
    out = []
    for name, step in steps:
        t0 = time.perf_counter()
        step()
        out.append((name, time.perf_counter() - t0))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batteries", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=None, help="an empty database (default: SQLite)")
    parser.add_argument("--alerts", type=int, default=20_000, help="open alerts")
    parser.add_argument("--loads", type=int, default=5, help="cached loads to time after the first")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--keep", type=Path, default=None, help="keep the data in this directory and reuse it on the next run"
    )
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        url = args.database_url or f"sqlite:///{folder / 'bench.sqlite'}"
        settings = Settings(database_url=url, signing_key=folder / "log.key", env="test")
        registry = build_registry(settings)
        registry.clock = lambda: NOW
        key_file = folder / "regulator.key"
        if key_file.exists():
            key = key_file.read_text(encoding="ascii").strip()
            console.print(f"reusing the data in {folder}")
        else:
            started = time.perf_counter()
            key = fill(registry, args.batteries, args.alerts, args.seed)
            key_file.write_text(key, encoding="ascii")
            console.print(
                f"filled {args.batteries:,} batteries in {time.perf_counter() - started:.1f} s ({url.split(':')[0]})"
            )
        client = TestClient(create_app(registry))
        token = client.get("/login").text.split('name="csrf_token" value="')[1].split('"')[0]
        login = client.post("/login", data={"api_key": key, "csrf_token": token}, follow_redirects=False)
        assert login.status_code == 303, login.text
        timings = []
        loads = [os.getloadavg()[0]]
        for _ in range(1 + args.loads):
            t0 = time.perf_counter()
            response = client.get("/dashboard")
            timings.append(time.perf_counter() - t0)
            assert response.status_code == 200, response.text[:500]
        loads.append(os.getloadavg()[0])
        table = Table(title=f"GET /dashboard, {args.batteries:,} batteries ({registry.engine.dialect.name})")
        table.add_column("load")
        table.add_column("seconds", justify="right")
        table.add_row("first (nothing cached)", f"{timings[0]:.3f}")
        if len(timings) > 1:
            table.add_row(f"next {len(timings) - 1} (median)", f"{statistics.median(timings[1:]):.3f}")
        for name, seconds in parts(registry, key):
            table.add_row(f"  of which: {name}", f"{seconds:.3f}")
        console.print(table)
        console.print(f"load average (1 min) {loads[0]:.2f} before the loads, {loads[1]:.2f} after")
        client.close()
        registry.engine.dispose()


if __name__ == "__main__":
    main()
