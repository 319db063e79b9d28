"""A small demonstration registry: a few enterprises of every role and a few hundred batteries
taken through every stage of life, recorded through the same use cases as the API."""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from batterytrace.domain.codes import make_battery_code, make_uscc, make_vin
from batterytrace.services.registry import Caller, Registry

Step = tuple[str, dict[str, Any]]  # (actor name, event)


@dataclass
class DemoResult:
    keys: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # name -> (id, roles, key)
    batteries: int = 0
    events: int = 0
    rejected: int = 0
    samples: dict[str, str] = field(default_factory=dict)  # story -> battery code


ENTERPRISES: list[tuple[str, str, list[str], str, list[str], list[str], str | None]] = [
    # name, display name, roles, region, manufacturer codes, licence scopes, network of (name)
    ("regulator", "National Battery Traceability Office", ["regulator"], "110000", [], [], None),
    ("maker_a", "Ningde Cell Works", ["battery_maker"], "350900", ["0AB"], [], None),
    ("maker_b", "Changzhou Pack Systems", ["battery_maker"], "320400", ["01C"], [], None),
    ("automaker_a", "Shenzhen Motors", ["automaker"], "440300", [], [], None),
    ("automaker_b", "Shanghai EV Auto", ["automaker"], "310115", [], [], None),
    (
        "outlet_a",
        "Shenzhen Motors Service Centre Futian",
        ["service_outlet"],
        "440304",
        [],
        ["collection"],
        "automaker_a",
    ),
    (
        "outlet_b",
        "Shanghai EV Auto Collection Point Pudong",
        ["service_outlet"],
        "310115",
        [],
        ["collection"],
        "automaker_b",
    ),
    (
        "dismantler",
        "Hubei End-of-Life Vehicle Recycling",
        ["dismantler"],
        "420100",
        [],
        ["dismantling"],
        None,
    ),
    ("repurposer", "Jiangsu Second Life Storage", ["repurposer"], "320500", ["9RP"], ["second_life"], None),
    ("recycler_a", "Jingmen Materials Recovery", ["recycler"], "420800", [], ["recycling"], None),
    ("recycler_b", "Hunan Hydromet Recycling", ["recycler"], "430100", [], ["recycling"], None),
    ("scrap_dealer", "Roadside Scrap Trading", ["dismantler"], "440300", [], [], None),
]

STORIES = (
    "in_service",
    "maintained",
    "repaired",
    "recycled",
    "repurposed",
    "scrapped_dismantled",
    "missing",
    "exported",
    "in_transit_waste",
    "new_in_stock",
)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def load_demo(
    registry: Registry,
    *,
    batteries: int = 300,
    seed: int = 2026,
    progress: Callable[[int], None] | None = None,
) -> DemoResult:
    """Fill an empty registry with the demo data set and return the demo API keys."""
    rng = random.Random(seed)  # noqa: S311 - reproducible demo data, not secrets
    result = DemoResult()
    ids: dict[str, str] = {}
    callers: dict[str, Caller] = {}
    for n, (name, display, roles, region, codes, scopes, network) in enumerate(ENTERPRISES, start=1):
        uid = make_uscc(f"91{region}{n:09d}")
        ids[name] = uid
        if name == "regulator":
            _, key = registry.bootstrap(uid, display, region)
            callers[name] = registry.authenticate(key)
        else:
            body = {
                "id": uid,
                "name": display,
                "roles": roles,
                "region": region,
                "manufacturer_codes": codes,
                "network_of": ids[network] if network else None,
            }
            registry.create_enterprise(callers["regulator"], body)
            for scope in scopes:
                registry.grant_licence(
                    callers["regulator"],
                    uid,
                    {"scope": scope, "valid_from": "2024-01-01", "valid_to": "2030-12-31", "region": None},
                )
            key = registry.create_key(callers["regulator"], uid, label="demo")["key"]
            callers[name] = registry.authenticate(key)
        result.keys[name] = (uid, ",".join(roles), key)

    now = registry.clock()
    start = now - timedelta(days=1000)
    sequences: list[list[Step]] = []
    serial = 0
    for i in range(batteries):
        story = STORIES[i % len(STORIES)]
        maker = "maker_a" if i % 2 == 0 else "maker_b"
        automaker = "automaker_a" if i % 3 else "automaker_b"
        outlet = "outlet_a" if automaker == "automaker_a" else "outlet_b"
        recycler = "recycler_a" if i % 4 else "recycler_b"
        chem = "E" if i % 3 == 0 else "B"
        t = start + timedelta(days=rng.randint(0, 200), minutes=i)
        day = t.astimezone(UTC).date()
        serial += 1
        mcode = "0AB" if maker == "maker_a" else "01C"
        pack = make_battery_code(mcode, "P", chem, "01", "D" + f"{i:06d}", day, serial)
        capacity = round(rng.uniform(40, 80), 1) if chem == "E" else round(rng.uniform(45, 75), 1)
        per_kwh = {
            "E": {"li_kg": 0.10, "ni_kg": 0.658, "co_kg": 0.083, "mn_kg": 0.077, "cu_kg": 0.37},
            "B": {"li_kg": 0.091, "cu_kg": 0.551},
        }[chem]
        mass = round(capacity * (4.99 if chem == "E" else 6.66), 1)
        steps: list[Step] = []
        clock = [t]

        def ev(
            actor: str,
            kind: str,
            code: str | None,
            data: dict[str, Any],
            days: float = 0,
            vin: str | None = None,
            region: str | None = None,
            _clock: list[datetime] = clock,
            _steps: list[Step] = steps,
        ) -> None:
            _clock[0] = _clock[0] + timedelta(days=days)
            body: dict[str, Any] = {
                "id": _uuid(rng),
                "type": kind,
                "time": _clock[0].isoformat(),
                "region": region or ENTERPRISES_BY_NAME[actor][3],
                "data": data,
            }
            if code is not None:
                body["battery"] = code
            if vin is not None:
                body["vin"] = vin
            _steps.append((actor, body))

        ev(
            maker,
            "manufactured",
            pack,
            {
                "capacity_kwh": capacity,
                "voltage_v": 400.0 if chem == "E" else 350.0,
                "mass_kg": mass,
                "materials": {k: round(v * capacity, 2) for k, v in per_kwh.items()},
                "carbon_kgco2e_per_kwh": 74.0 if chem == "E" else 62.0,
            },
        )
        modules: list[str] = []
        if i % 5 == 0:
            for _ in range(4):
                serial += 1
                mod = make_battery_code(mcode, "M", chem, "01", "D" + f"{i:06d}", day, serial)
                modules.append(mod)
                ev(
                    maker,
                    "manufactured",
                    mod,
                    {
                        "capacity_kwh": round(capacity / 4, 2),
                        "voltage_v": 100.0,
                        "mass_kg": round(mass / 5, 1),
                    },
                )
            ev(maker, "assembled", pack, {"children": modules})
        result.batteries += 1 + len(modules)
        if story == "new_in_stock":
            sequences.append(steps)
            result.samples.setdefault(story, pack)
            continue
        ev(maker, "shipped", pack, {"to": ids[automaker]}, days=rng.uniform(1, 5))
        ev(automaker, "received", pack, {}, days=rng.uniform(1, 3))
        if story == "exported":
            ev(automaker, "exported", pack, {"country": "DE"}, days=10)
            sequences.append(steps)
            result.samples.setdefault(story, pack)
            continue
        vin = make_vin("LDEMV" + ("A" if automaker == "automaker_a" else "B") + "2A", f"D{i:07d}")
        ev(automaker, "installed", pack, {"vin": vin}, days=rng.uniform(1, 10))
        ev(automaker, "vehicle_sold", None, {}, days=rng.uniform(5, 30), vin=vin)
        if story in ("maintained", "repaired", "recycled", "repurposed"):
            ev(
                outlet,
                "maintained",
                pack,
                {"soh_percent": round(rng.uniform(85, 98), 1)},
                days=rng.uniform(90, 200),
            )
        if story == "repaired":
            ev(outlet, "removed", pack, {"reason": "repair"}, days=1)
            ev(outlet, "installed", pack, {"vin": vin}, days=3)
        if story == "missing":
            ev(automaker, "reported_missing", pack, {}, days=rng.uniform(100, 300))
        if story in ("recycled", "repurposed", "in_transit_waste"):
            ev(outlet, "removed", pack, {"reason": "retirement"}, days=rng.uniform(200, 400))
            ev(outlet, "retired", pack, {}, days=1)
            if story == "in_transit_waste":
                ev(outlet, "shipped", pack, {"to": ids[recycler]}, days=2)
            elif story == "recycled":
                ev(outlet, "shipped", pack, {"to": ids[recycler]}, days=2)
                ev(recycler, "received", pack, {}, days=3)
                ev(
                    recycler,
                    "graded",
                    pack,
                    {"soh_percent": round(rng.uniform(50, 65), 1), "decision": "recycle"},
                    days=2,
                )
                rec = {k: round(v * capacity * rng.uniform(0.9, 0.985), 2) for k, v in per_kwh.items()}
                ev(recycler, "recycled", pack, {"mass_kg": mass, "recovered": rec}, days=10)
            else:
                ev(outlet, "shipped", pack, {"to": ids["repurposer"]}, days=2)
                ev("repurposer", "received", pack, {}, days=3)
                ev(
                    "repurposer",
                    "graded",
                    pack,
                    {"soh_percent": round(rng.uniform(70, 82), 1), "decision": "repurpose"},
                    days=2,
                )
                serial += 1
                product = make_battery_code(
                    "9RP", "P", chem, "02", None, (clock[0] + timedelta(days=5)).date(), serial
                )
                ev(
                    "repurposer",
                    "repurposed",
                    pack,
                    {"into": product, "capacity_kwh": round(capacity * 0.75, 1)},
                    days=5,
                )
                ev(
                    "repurposer",
                    "installed",
                    product,
                    {"system": f"ESS-{i:04d} Suzhou industrial park", "application": "stationary"},
                    days=10,
                )
                result.batteries += 1
                result.samples.setdefault("second_life_product", product)
        if story == "scrapped_dismantled":
            ev("dismantler", "vehicle_scrapped", None, {}, days=rng.uniform(300, 500), vin=vin)
            ev("dismantler", "removed", pack, {"reason": "vehicle_scrapped"}, days=3)
            ev("dismantler", "retired", pack, {}, days=1)
            if modules:
                ev("dismantler", "dismantled", pack, {}, days=5)
                for mod in modules:
                    ev("dismantler", "shipped", mod, {"to": ids[recycler]}, days=1)
            else:
                ev("dismantler", "shipped", pack, {"to": ids[recycler]}, days=2)
                ev(recycler, "received", pack, {}, days=2)
        result.samples.setdefault(story, pack)
        sequences.append(steps)

    # Step k of every battery is independent of the others: submit round by round, one batch
    # per enterprise, so each battery's events stay in order.
    longest = max(len(s) for s in sequences)
    for k in range(longest):
        by_actor: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for seq in sequences:
            if k < len(seq):
                actor, body = seq[k]
                by_actor[actor].append(body)
        for actor, bodies in by_actor.items():
            results = registry.record(callers[actor], bodies)
            result.events += sum(1 for r in results if r.status == "accepted")
            result.rejected += sum(1 for r in results if r.status == "rejected")
        if progress:
            progress(k + 1)
    return result


ENTERPRISES_BY_NAME = {e[0]: e for e in ENTERPRISES}


def demo_day() -> date:
    return datetime.now(UTC).date()
