"""Random lives, retractions included: afterwards the deadline watches and the rollups (the
report rollups and the fleet rollup) must agree with the batteries' current state, whatever
happened in between."""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from batterytrace.domain.model import Stage
from batterytrace.services.registry import Registry
from batterytrace.store import fleet, repo
from batterytrace.store import tables as T
from tests import factories as f
from tests.conftest import Actor, Cast, Clock
from tests.services.test_alerts import Life, World, at


@pytest.fixture
def life(registry: Registry, client: TestClient, cast: Cast, clock: Clock) -> Life:
    return Life(World(registry, clock, client, cast))


def random_lives(life: Life, rnd: random.Random, steps: int) -> Counter[tuple[str, str]]:
    """Batteries taken along their life by whoever holds them, with random detours: a receipt
    left undone, waste offered to an unlicensed party, a retirement kept at an unlicensed holder,
    and one time in five the last accepted event of the battery retracted instead."""
    c = life.cast
    by_id = {a.id: a for a in (c.maker, c.automaker, c.outlet, c.dismantler, c.recycler, c.unlicensed)}
    history: dict[str, list[tuple[Actor, str]]] = {}
    counts: Counter[tuple[str, str]] = Counter()
    recovered = {"li_kg": 5.5, "ni_kg": 39.0, "co_kg": 4.95, "mn_kg": 4.55}
    for _ in range(steps):
        life.t += timedelta(hours=rnd.choice([1, 30, 400]))
        open_codes = [code for code in history if not life.registry.battery_state(code).is_final]
        if not open_codes or rnd.random() < 0.12:
            code = life.made()
            history[code] = []
            continue
        code = rnd.choice(open_codes)
        st = life.registry.battery_state(code)
        holder = by_id.get(st.holder or "", c.maker)
        if history[code] and rnd.random() < 0.2:
            actor, target = history[code][-1]
            kind, data = "retracted", {"event": target, "reason": "test"}
        elif st.in_transit_to:
            if rnd.random() < 0.3:
                continue  # the receipt is late, or never comes
            actor, kind, data = by_id[st.in_transit_to], "received", {}
        elif st.stage == Stage.NEW:
            if holder is c.maker:
                actor, kind, data = holder, "shipped", {"to": c.automaker.id}
            else:
                actor, kind, data = holder, "installed", {"vin": f.vin()}
        elif st.stage == Stage.INSTALLED:
            actor = rnd.choice([c.automaker, c.outlet])
            kind, data = "removed", {"reason": "retirement"}
        elif st.stage == Stage.REMOVED:
            actor, kind, data = holder, "retired", {}
        elif st.stage == Stage.RETIRED and holder is c.recycler:
            actor, kind, data = holder, "recycled", {"mass_kg": 300, "recovered": recovered}
        elif st.stage == Stage.RETIRED:
            to = rnd.choice([c.recycler, c.recycler, c.outlet, c.unlicensed])
            actor, kind, data = holder, "shipped", {"to": to.id}
        else:
            continue
        res = life.send(actor, kind, code, data)
        counts[(kind, res.status)] += 1
        if res.status == "accepted":
            assert res.id is not None
            if kind == "retracted":
                history[code].pop()
            else:
                history[code].append((actor, res.id))
    return counts


def check_invariants(life: Life) -> None:
    with life.registry.engine.connect() as conn:
        batteries = [dict(r._mapping) for r in conn.execute(select(T.batteries))]
        watches = {(r.battery, r.rule) for r in conn.execute(select(T.alert_watches))}
        ents = repo.load_enterprises(conn, {b["holder"] for b in batteries if b["holder"]})
        stats = dict(
            conn.execute(
                select(T.stat_rollup.c.metric, func.sum(T.stat_rollup.c.batteries)).group_by(
                    T.stat_rollup.c.metric
                )
            ).all()
        )
        fleet_kept, fleet_scanned = fleet.stored(conn), fleet.scan(conn)
    assert fleet_kept == fleet_scanned
    assert sum(n for n, _, _ in fleet_kept.values()) == len(batteries)
    in_transit = {(b["code"], "shipment_overdue") for b in batteries if b["in_transit_to"]}
    assert {w for w in watches if w[1] == "shipment_overdue"} == in_transit

    def unlicensed(b: dict[str, Any]) -> bool:
        holder = ents.get(b["holder"])
        return holder is None or not holder.licensed_any(b["last_event_time"].date())

    waiting = {
        (b["code"], "collection_overdue") for b in batteries if b["stage"] == Stage.RETIRED and unlicensed(b)
    }
    assert {w for w in watches if w[1] == "collection_overdue"} == waiting

    originals = [b for b in batteries if not b["second_life"]]
    assert int(stats.get("registered", 0)) == len(originals)
    assert int(stats.get("recycled", 0)) == sum(1 for b in batteries if b["stage"] == Stage.RECYCLED)
    retired_ever = sum(1 for b in batteries if b["retired_at"] is not None)
    assert int(stats.get("retired", 0)) == retired_ever


@pytest.mark.parametrize("seed", [3])
def test_watches_and_rollups_agree_with_the_state_after_random_lives(life: Life, seed: int) -> None:
    life.t = at(2026, 3, 2, 9)
    counts = random_lives(life, random.Random(seed), steps=150)
    # the walk went everywhere the invariants speak of
    for kind in ("shipped", "received", "retired", "recycled", "retracted"):
        assert counts[(kind, "accepted")] > 0, counts
    assert counts[("shipped", "rejected")] > 0, counts  # waste offered to the unlicensed recycler
    check_invariants(life)
