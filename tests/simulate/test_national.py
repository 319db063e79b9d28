"""The national simulator: the same seed gives the same events, every stage of life appears,
the events are well formed and in time order, and memory stays flat however many packs are made."""

from __future__ import annotations

import hashlib
import json
import tracemalloc
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from batterytrace.domain.codes import parse_battery_code, parse_region, parse_uscc, parse_vin
from batterytrace.domain.events import parse_event
from batterytrace.simulate.national import (
    SAMPLES,
    NationalSimulation,
    SimConfig,
    build_cast,
    write_jsonl,
)

END = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def digest(config: SimConfig) -> str:
    h = hashlib.sha256()
    for actor, event in NationalSimulation(config).iter_events():
        h.update(actor.encode())
        h.update(json.dumps(event, sort_keys=True).encode())
    return h.hexdigest()


def test_the_same_seed_gives_the_same_events_and_another_seed_others():
    config = SimConfig(batteries=300, seed=11, end=END)
    assert digest(config) == digest(SimConfig(batteries=300, seed=11, end=END))
    assert digest(config) != digest(SimConfig(batteries=300, seed=12, end=END))


def test_the_same_seed_gives_the_same_import_file_even_when_the_sort_spills_to_disk(tmp_path: Path):
    config = SimConfig(batteries=300, seed=3, end=END)
    in_memory = write_jsonl(config, tmp_path / "a.jsonl")
    spilled = write_jsonl(
        SimConfig(batteries=300, seed=3, end=END, spill_bytes=16_384), tmp_path / "b.jsonl", workdir=tmp_path
    )
    assert in_memory.events == spilled.events > 3000
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "b.jsonl"]  # spill files removed


def test_every_stage_has_a_sample_and_the_public_figures_shape_the_set():
    sim = NationalSimulation(SimConfig(batteries=3000, seed=5, end=END))
    types: Counter[str] = Counter()
    years: Counter[int] = Counter()
    chemistry: Counter[str] = Counter()
    for _, event in sim.iter_events():
        types[event["type"]] += 1
        if event["type"] == "vehicle_sold":
            years[int(event["time"][:4])] += 1
        if event["type"] == "manufactured" and event["battery"][3] == "P":
            chemistry[event["battery"][4]] += 1
    assert set(sim.samples) == set(SAMPLES)
    assert all(t in types for t in ("maintained", "repurposed", "dismantled", "recycled", "exported"))
    assert all(t in types for t in ("vehicle_scrapped", "reported_missing", "assembled", "graded"))
    # sales grow year by year as the public figures do (2021 more than double 2020, 2025 the most)
    assert years[2025] > years[2024] > years[2023] > years[2022] > years[2021] > 2 * years[2020]
    # LFP (type B) outnumbers ternary (type E) overall, as in recent years
    assert chemistry["B"] > chemistry["E"] > 0
    assert sim.stats.refused >= 1  # the offered-to-an-unlicensed-party story at least


def test_events_are_well_formed_in_time_order_per_battery_and_never_after_the_end():
    sim = NationalSimulation(SimConfig(batteries=200, seed=9, end=END, cells=True, leak_share=0.5))
    cast_ids = {p.id for p in sim.cast.parties}
    last: dict[str, datetime] = {}
    ids: set[str] = set()
    for actor, raw in sim.iter_events():
        assert actor in cast_ids
        event = parse_event(raw, now=END)
        assert event.time <= END
        assert event.id not in ids
        ids.add(event.id)
        parse_region(raw["region"])
        subject = event.battery or event.vin
        assert subject is not None
        if event.vin:
            parse_vin(event.vin)
        if event.battery:
            code = parse_battery_code(event.battery)
            assert code.level in ("pack", "module", "cell")
        assert event.time >= last.get(subject, event.time)
        last[subject] = event.time
        for child in event.data.get("children", []):
            assert parse_battery_code(child).level in ("module", "cell")
        if "into" in event.data:
            assert parse_battery_code(event.data["into"]).second_life
        if "vin" in event.data:
            parse_vin(event.data["vin"])
        if event.type.value == "recycled":
            assert sum(event.data["recovered"].values()) <= event.data["mass_kg"]
    assert sim.stats.events == len(ids)
    assert sum(sim.stats.leaks.values()) >= 3


def test_the_cast_grows_with_the_size_and_keeps_its_named_core():
    small = build_cast(100, 1)
    large = build_cast(2_000_000, 1)
    for cast in (small, large):
        for party in cast.parties:
            parse_uscc(party.id)
            parse_region(party.region)
        assert cast.by_name["recycler_a"].display == "Jingmen Materials Recovery"
        assert cast.by_name["scrap_dealer"].licences == ()
    assert len(small.parties) == 12
    roles = Counter(r for p in large.parties for r in p.roles)
    assert roles["service_outlet"] == 2000
    assert roles["battery_maker"] == 12 and roles["automaker"] == 16
    assert roles["recycler"] > 50 and roles["dismantler"] > 100
    assert sum(1 for p in large.parties if p.below_threshold) >= 2
    codes = [c for p in large.parties for c in p.manufacturer_codes]
    assert len(codes) == len(set(codes))
    assert len({p.id for p in large.parties}) == len(large.parties)


def _peak_generating(batteries: int) -> int:
    sim = NationalSimulation(SimConfig(batteries=batteries, seed=4, end=END))
    tracemalloc.start()
    try:
        for _ in sim.iter_events():
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_stays_flat_while_generating():
    small = _peak_generating(300)
    large = _peak_generating(3_000)
    assert large < 2 * small + 256 * 1024, (small, large)
