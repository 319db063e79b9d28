"""Synthetic national data: the enterprises of a national registry and the life of every traction
battery, made to pass the registry's real rules.

The shape follows the public figures in ``reference/notes`` (figures.md §1–§2, china.md §5):
NEV sales per year (CAAM), the LFP and ternary shares of installed batteries (CABIA), BEV and PHEV
pack sizes, BatPaC material content per kWh, the policy profile's Weibull battery lifetimes, the
battery makers' market shares. Each pack is made (with its modules, and optionally its cells),
shipped to an automaker, installed in a vehicle and sold; it is maintained and sometimes repaired
by outlets of the automaker's network; it retires or its vehicle is scrapped; retired packs go to
licensed recyclers (whole, or dismantled into modules) or to repurposers that make second-life
storage products. A configurable share of retirements leaks: a shipment offered to an unlicensed
scrap dealer (refused by the registry: ``lifecycle.unlicensed_receiver``), a pack retired by a
party without a licence and never collected, a scrapped vehicle whose pack is never taken out.
Some recyclers recover a little less than the thresholds, so recovery alerts fire too.

Everything streams: :meth:`NationalSimulation.groups` yields one pack's events at a time (constant
memory); :meth:`NationalSimulation.windows` sorts them into time windows through spill files
(memory bounded by ``spill_bytes``) and hands out, per window, rounds of one-enterprise batches in
which every battery's events keep their order. :func:`load` records those batches through
:meth:`Registry.record` with the registry's clock at the end of each window (so reports are made
on time, as a live system would have them); :func:`write_jsonl` writes the same order as an import
file. The same seed gives the same events, byte for byte.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import math
import os
import random
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from batterytrace.domain import errors as E
from batterytrace.domain.codes import default_alphabets, make_uscc, make_vin, provinces
from batterytrace.domain.policy import get_profile

CST = timezone(timedelta(hours=8), "CST")
DAY = 86_400
YEAR = 365.25 * DAY

# --- reference figures ------------------------------------------------------------------------------

#: NEV sales in China, millions (CAAM, wholesale incl. exports). 2024 and 2025 from china.md §5 [V];
#: 2018-2023 are CAAM's published yearly totals as commonly quoted [M]; 2026 assumes the 2025
#: growth slows to about 9 % [A]. Years outside the table extend the nearest one.
SALES_MILLIONS = {
    2018: 1.256,
    2019: 1.206,
    2020: 1.367,
    2021: 3.521,
    2022: 6.887,
    2023: 9.495,
    2024: 12.866,
    2025: 16.49,
    2026: 18.0,
}
#: Share of each month in a year's sales (weak start around the Spring Festival, strong year end) [A].
MONTH_WEIGHTS = (0.8, 0.6, 0.9, 0.85, 0.9, 1.0, 0.95, 1.0, 1.1, 1.15, 1.25, 1.4)
#: LFP share of installed traction batteries (CABIA): 2024 74.6 %, 2025 81.2 % (figures.md §2.3) [V];
#: earlier years from CABIA's yearly releases as remembered [M].
LFP_SHARE = {2018: 0.39, 2019: 0.33, 2020: 0.38, 2021: 0.52, 2022: 0.62, 2023: 0.67, 2024: 0.746, 2025: 0.812}
#: BEV share of NEV sales (the rest PHEV/EREV): about 60 % in 2024 and 62 % in 2025 (figures.md §2.2)
#: [V]/[A]; earlier years about 80 % [M].
BEV_SHARE = {2018: 0.79, 2019: 0.81, 2020: 0.82, 2021: 0.82, 2022: 0.78, 2023: 0.70, 2024: 0.60, 2025: 0.62}
#: Share of NEVs exported: 1.284 M of 12.866 M in 2024 and 2.615 M of 16.49 M in 2025 (china.md §5,
#: figures.md §2.2) [V]; earlier years [M].
EXPORT_SHARE = {
    2018: 0.02,
    2019: 0.02,
    2020: 0.05,
    2021: 0.09,
    2022: 0.10,
    2023: 0.13,
    2024: 0.10,
    2025: 0.159,
}
#: Mean BEV and PHEV pack capacity, kWh: BEV about 55 kWh in 2024-2025 (CABIA), PHEV about 26 kWh
#: (figures.md §2.1) [V]/[D]; the rise from 2018 is an assumption [A].
BEV_KWH = {2018: 45.0, 2019: 48.0, 2020: 50.0, 2021: 52.0, 2022: 54.0, 2023: 55.0, 2024: 55.6, 2025: 55.0}
PHEV_KWH = {2018: 13.0, 2019: 14.0, 2020: 15.0, 2021: 17.0, 2022: 19.0, 2023: 22.0, 2024: 24.0, 2025: 26.0}
#: Share of packs built from modules rather than cell-to-pack [A]: nearly all in 2018, about a third
#: by 2025 as blade and CTP designs spread (figures.md §5 of china.md: CTP packs have no modules).
MODULE_SHARE = {2018: 0.95, 2019: 0.9, 2020: 0.85, 2021: 0.75, 2022: 0.6, 2023: 0.5, 2024: 0.4, 2025: 0.35}
#: Mix within ternary packs (figures.md §2.3 suggested mix [M]).
TERNARY_MIX = (("ncm811", 0.45), ("ncm622", 0.30), ("ncm523", 0.20), ("nca", 0.05))
#: Metal content, kg per kWh of pack, BatPaC 5.1 (figures.md §1.1) [V].
MATERIALS_PER_KWH: dict[str, dict[str, float]] = {
    "lfp": {"li_kg": 0.091, "cu_kg": 0.551},
    "ncm811": {"li_kg": 0.100, "ni_kg": 0.658, "co_kg": 0.083, "mn_kg": 0.077, "cu_kg": 0.370},
    "ncm622": {"li_kg": 0.110, "ni_kg": 0.546, "co_kg": 0.183, "mn_kg": 0.170, "cu_kg": 0.388},
    "ncm523": {"li_kg": 0.113, "ni_kg": 0.465, "co_kg": 0.187, "mn_kg": 0.261, "cu_kg": 0.392},
    "nca": {"li_kg": 0.107, "ni_kg": 0.710, "co_kg": 0.134, "cu_kg": 0.378},
}
#: Pack-level specific energy, Wh/kg: Chinese LFP 140-165, NCM 170-210 (figures.md §1.3) [M].
WH_PER_KG = {"lfp": (140.0, 165.0), "ternary": (170.0, 210.0)}
#: Cradle-to-gate footprint, kg CO2e per kWh (figures.md §3.1 central values) [A].
CARBON_PER_KWH = {"lfp": 62.0, "ncm811": 74.0, "ncm622": 80.0, "ncm523": 80.0, "nca": 75.0}
#: Battery makers' shares of installed GWh in 2024: CATL-like 45.2 %, BYD-like 25.1 % (CABIA, via
#: figures.md §2.3's source) [V]; the rest is spread over the other makers.
CORE_MAKER_SHARES = (0.452, 0.251)
#: Mean vehicle lifetime by sale year, passenger cars (figures.md §2.4, Weibull k = 3.5) [V].
VEHICLE_MEAN_YEARS = {2018: 9.0, 2019: 10.0, 2020: 11.0, 2021: 12.0, 2022: 13.0}
VEHICLE_SHAPE = 3.5
#: Rates per vehicle-year [A]: total losses (accidents), thefts, battery inspections at an outlet,
#: repairs that take the pack out and put it back.
ACCIDENT_RATE = 0.003
THEFT_RATE = 0.0005
FOUND_SHARE = 0.3
INSPECTION_RATE = 0.5
REPAIR_RATE = 0.015
#: A vehicle whose pack retires gets a new one while it is under 12 years old, in 60 % of cases
#: (figures.md §2.4: Busch et al. replace packs in vehicles up to 12 years old) [A].
REPLACEMENT_SHARE = 0.6
REPLACEMENT_MAX_AGE_YEARS = 12.0
#: Retirement state of health U(70, 85) % (figures.md §2.4 suggested default) [A]; share of retired
#: packs that go to second life (LFP, ternary) when their state of health allows it [A] (Busch et al.
#: send 50 % of available packs to repurposing).
RETIREMENT_SOH = (70.0, 85.0)
REPURPOSE_SHARE = {"lfp": 0.45, "ternary": 0.1}
#: Where NEVs are, by province (rough shares of the national fleet) [A]; provinces not listed get
#: the smallest weight. Taiwan, Hong Kong and Macao are outside the registry.
PROVINCE_WEIGHTS = {
    "44": 11.0, "33": 9.0, "32": 7.0, "37": 7.0, "41": 6.0, "31": 5.0, "51": 5.0, "11": 4.0,
    "13": 4.0, "42": 3.5, "43": 3.5, "34": 3.5, "45": 3.5, "35": 3.0, "12": 2.5, "50": 2.5,
    "61": 2.5, "53": 2.0, "36": 2.0, "46": 1.5, "21": 1.5, "14": 1.5, "52": 1.5, "15": 0.8,
    "22": 0.8, "23": 0.8, "62": 0.8, "65": 0.8, "64": 0.4, "63": 0.3, "54": 0.2,
}  # fmt: skip
EXPORT_COUNTRIES = (("BE", 3), ("GB", 3), ("TH", 3), ("BR", 2), ("AU", 2), ("DE", 2), ("ES", 1), ("IL", 1))
#: Vehicle model-year characters (ISO 3779) by year.
VIN_YEARS = dict(zip(range(2010, 2031), "ABCDEFGHJKLMNPRSTVWXY", strict=True))
VIN_PLANTS = "ABCDEFGHJKLMNPRSTUVWXYZ123456789"

#: How the first packs of a data set live, one story each: (automaker, days before the end the
#: vehicle is sold, how its life ends, at what age in days).
_PLANS: dict[str, tuple[str, int, str | None, int]] = {
    "in_service": ("automaker_a", 400, None, 0),
    "maintained": ("automaker_a", 900, None, 0),
    "repaired": ("automaker_a", 1200, None, 0),
    "recycled": ("automaker_a", 2500, "retire", 2000),
    "repurposed": ("automaker_a", 2600, "retire", 2200),
    "scrapped_dismantled": ("automaker_b", 2000, "scrap", 1700),
    "missing": ("automaker_a", 800, "theft", 600),
    "exported": ("automaker_b", 300, None, 0),
    "in_transit_waste": ("automaker_a", 2400, "retire", 2340),
    "new_in_stock": ("automaker_b", -40, None, 0),
    "offered_to_unlicensed": ("automaker_a", 2300, "retire", 2200),
    "retired_not_collected": ("automaker_b", 2200, "retire", 2100),
    "recycled_below_threshold": ("automaker_b", 2400, "retire", 2000),
}
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
#: Leaks and a recycler below the thresholds, so that the regulator's alerts show from the start.
ALERT_STORIES = ("offered_to_unlicensed", "retired_not_collected", "recycled_below_threshold")
#: Sample names a data set reports (one battery each): the stories, and the second-life product.
SAMPLES = (*STORIES, "second_life_product", *ALERT_STORIES)


def _by_year(table: dict[int, float], year: int) -> float:
    if year in table:
        return table[year]
    return table[min(table)] if year < min(table) else table[max(table)]


# --- configuration -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimConfig:
    """What to simulate. ``batteries`` counts vehicle packs; their modules, cells, replacement packs
    and second-life products come on top. The same values give the same events."""

    batteries: int = 1000
    seed: int = 2026
    #: Last moment of the simulation (no event after it); default: now, to the second.
    end: datetime | None = None
    #: First sales; default: 2018-01-01 (CST).
    start: datetime | None = None
    #: Share of end-of-life packs that leak to unlicensed channels.
    leak_share: float = 0.05
    #: Register every pack's cells (100–200 a pack) as well.
    cells: bool = False
    #: Share of recyclers that recover a little less than the policy thresholds.
    below_threshold_share: float = 0.25
    #: Size of the enterprise cast as for this many packs (default: ``batteries``); a second data
    #: set for the same registry (e.g. live traffic after a history) passes the first one's size.
    cast_for: int | None = None
    #: One character that keeps the codes and VINs of several data sets apart on one registry.
    series: str = "A"
    #: The first packs walk every story (in service, recycled, repurposed, missing …), so even a
    #: small set shows every stage.
    stories: bool = True
    #: Width of the time windows events are recorded in (days). Within a window every battery's
    #: events keep their order and each batch holds one enterprise's events; reports are made at
    #: the window's end, so keep it under the 15 working-day reporting deadline.
    window_days: float = 14.0
    #: Events per batch at most.
    batch_size: int = 5000
    #: Memory the time sort may hold before it spills to disk, in bytes of event text.
    spill_bytes: int = 64 * 1024 * 1024
    profile: str = "CN-2026"

    def __post_init__(self) -> None:
        if self.batteries < 0:
            raise ValueError("batteries must be 0 or more")
        if not 0 <= self.leak_share <= 1 or not 0 <= self.below_threshold_share <= 1:
            raise ValueError("shares must be between 0 and 1")
        if len(self.series) != 1 or self.series not in VIN_PLANTS:
            raise ValueError(f"series must be one of {VIN_PLANTS}")
        if self.window_days <= 0 or self.batch_size < 1:
            raise ValueError("window_days and batch_size must be positive")

    def resolved_end(self) -> datetime:
        end = self.end or datetime.now(UTC).replace(microsecond=0)
        if end.tzinfo is None:
            raise ValueError("end must carry a UTC offset")
        return end

    def resolved_start(self) -> datetime:
        start = self.start or datetime(2018, 1, 1, tzinfo=CST)
        if start.tzinfo is None:
            raise ValueError("start must carry a UTC offset")
        return start


# --- the enterprises -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Party:
    """One simulated enterprise."""

    name: str  # stable short name: "maker_a", "outlet_0042"
    id: str  # unified social credit code
    display: str
    roles: tuple[str, ...]
    region: str
    manufacturer_codes: tuple[str, ...] = ()
    network_of: str | None = None
    licences: tuple[str, ...] = ()
    share: float = 1.0  # market share (makers, automakers) or capacity weight
    wmi: str = ""  # automakers: positions 1-3 of their VINs
    below_threshold: bool = False  # recyclers recovering less than the thresholds

    @property
    def province(self) -> str:
        return self.region[:2]

    def body(self) -> dict[str, Any]:
        """The enterprise as ``POST /api/v1/enterprises`` takes it."""
        return {
            "id": self.id,
            "name": self.display,
            "roles": list(self.roles),
            "region": self.region,
            "manufacturer_codes": list(self.manufacturer_codes),
            "network_of": self.network_of,
        }


#: The named cast every data set starts with (the demo shows these).
_CORE: tuple[tuple[str, str, tuple[str, ...], str, tuple[str, ...], tuple[str, ...], str | None], ...] = (
    # name, display name, roles, region, manufacturer codes, licences, network of (name)
    ("regulator", "National Battery Traceability Office", ("regulator",), "110000", (), (), None),
    ("maker_a", "Ningde Cell Works", ("battery_maker",), "350900", ("0AB",), (), None),
    ("maker_b", "Changzhou Pack Systems", ("battery_maker",), "320400", ("01C",), (), None),
    ("automaker_a", "Shenzhen Motors", ("automaker",), "440300", (), (), None),
    ("automaker_b", "Shanghai EV Auto", ("automaker",), "310115", (), (), None),
    ("outlet_a", "Shenzhen Motors Service Centre Futian", ("service_outlet",), "440304", (), ("collection",), "automaker_a"),
    ("outlet_b", "Shanghai EV Auto Collection Point Pudong", ("service_outlet",), "310115", (), ("collection",), "automaker_b"),
    ("dismantler", "Hubei End-of-Life Vehicle Recycling", ("dismantler",), "420100", (), ("dismantling",), None),
    ("repurposer", "Jiangsu Second Life Storage", ("repurposer",), "320500", ("9RP",), ("second_life",), None),
    ("recycler_a", "Jingmen Materials Recovery", ("recycler",), "420800", (), ("recycling",), None),
    ("recycler_b", "Hunan Hydromet Recycling", ("recycler",), "430100", (), ("recycling",), None),
    ("scrap_dealer", "Roadside Scrap Trading", ("dismantler",), "440300", (), (), None),
)  # fmt: skip
_CORE_AUTOMAKER_SHARES = {"automaker_a": 0.30, "automaker_b": 0.10}
_CORE_WMI = {"automaker_a": "LDA", "automaker_b": "LDB"}
_PLACES = (
    "Hefei", "Huizhou", "Yibin", "Liyang", "Xi'an", "Wuhan", "Changsha", "Chongqing", "Tianjin", "Qingdao",
    "Nanjing", "Suzhou", "Ningbo", "Guangzhou", "Chengdu", "Zhengzhou", "Jinan", "Shijiazhuang", "Fuzhou",
    "Nanchang", "Kunming", "Nanning", "Guiyang", "Taiyuan", "Shenyang", "Harbin", "Changchun", "Lanzhou",
)  # fmt: skip
_KINDS = {
    "battery_maker": "Battery Co.",
    "automaker": "Automotive",
    "service_outlet": "Service Outlet",
    "dismantler": "Vehicle Dismantling",
    "repurposer": "Energy Storage Reuse",
    "recycler": "Resource Recycling",
}


@dataclass
class Cast:
    parties: list[Party]
    by_name: dict[str, Party]

    def role(self, role: str) -> list[Party]:
        return [p for p in self.parties if role in p.roles]

    @property
    def regulator(self) -> Party:
        return self.by_name["regulator"]

    @property
    def core(self) -> list[Party]:
        return [self.by_name[c[0]] for c in _CORE]


def _region_of(province: str, k: int) -> str:
    """A six-digit division in ``province``: its capital city (``XX0100``) or the k-th prefecture."""
    return f"{province}{1 + k % 5:02d}00"


def build_cast(packs: int, seed: int, below_threshold_share: float = 0.25) -> Cast:
    """The enterprises for a data set of ``packs`` vehicle packs: the named core cast, and more of
    every role as the size grows (over 10,000 collection outlets at national size, as in 2023)."""
    rng = random.Random(f"cast:{seed}")  # noqa: S311 - reproducible synthetic data, not secrets
    serial = iter(range(1, 10**9))
    parties: list[Party] = []
    by_name: dict[str, Party] = {}

    def uid(region: str) -> str:
        return make_uscc(f"91{region}{next(serial):09d}")

    def add(party: Party) -> Party:
        parties.append(party)
        by_name[party.name] = party
        return party

    for name, display, roles, region, codes, scopes, network in _CORE:
        share = 1.0
        if name in ("maker_a", "maker_b"):
            share = CORE_MAKER_SHARES[0 if name == "maker_a" else 1]
        elif name in _CORE_AUTOMAKER_SHARES:
            share = _CORE_AUTOMAKER_SHARES[name]
        add(
            Party(
                name=name,
                id=uid(region),
                display=display,
                roles=roles,
                region=region,
                manufacturer_codes=codes,
                network_of=by_name[network].id if network else None,
                licences=scopes,
                share=share,
                wmi=_CORE_WMI.get(name, ""),
                below_threshold=name == "recycler_b",
            )
        )
    weights = [
        (p.code, PROVINCE_WEIGHTS.get(p.code, 0.2))
        for p in provinces().values()
        if p.code not in ("71", "81", "82")
    ]
    codes_, cum = _cumulative(weights)

    def province() -> str:
        return codes_[bisect.bisect_right(cum, rng.random() * cum[-1])]

    def place(i: int) -> str:
        return _PLACES[i % len(_PLACES)]

    extra_makers = min(10, packs // 20_000)
    rest = 1.0 - sum(CORE_MAKER_SHARES)
    weights_m = [1.0 / (i + 1) for i in range(extra_makers)]
    for i in range(extra_makers):
        prov = province()
        add(
            Party(
                name=f"maker_{i + 1:02d}",
                id=uid(_region_of(prov, i)),
                display=f"{place(i)} {_KINDS['battery_maker']} {i + 1}",
                roles=("battery_maker",),
                region=_region_of(prov, i),
                manufacturer_codes=(f"M{i + 1:02d}",),
                share=rest * weights_m[i] / sum(weights_m),
            )
        )
    extra_automakers = min(14, packs // 10_000)
    rest = 1.0 - sum(_CORE_AUTOMAKER_SHARES.values())
    weights_a = [1.0 / (i + 1) for i in range(extra_automakers)]
    wmi_letters = "CEFGHJKMNPRSTUVWXYZ"
    for i in range(extra_automakers):
        prov = province()
        add(
            Party(
                name=f"automaker_{i + 1:02d}",
                id=uid(_region_of(prov, i)),
                display=f"{place(i + 3)} {_KINDS['automaker']} {i + 1}",
                roles=("automaker",),
                region=_region_of(prov, i),
                share=rest * weights_a[i] / sum(weights_a),
                wmi="LD" + wmi_letters[i],
            )
        )
    automakers = [p for p in parties if "automaker" in p.roles]
    outlets = max(0, min(12_000, packs // 1_000) - 2)
    a_names, a_cum = _cumulative([(a.name, a.share) for a in automakers])
    for i in range(outlets):
        # every automaker gets an outlet first, then they go by market share
        owner = (
            automakers[i]
            if i < len(automakers)
            else by_name[a_names[bisect.bisect_right(a_cum, rng.random() * a_cum[-1])]]
        )
        prov = province()
        region = _region_of(prov, i)
        add(
            Party(
                name=f"outlet_{i + 1:05d}",
                id=uid(region),
                display=f"{owner.display} Service Outlet {provinces()[prov].name_en} {i + 1}",
                roles=("service_outlet",),
                region=region,
                network_of=owner.id,
                licences=("collection",),
            )
        )
    for role, count, scope in (
        ("dismantler", min(300, packs // 10_000), "dismantling"),
        ("repurposer", min(60, packs // 50_000), "second_life"),
        ("recycler", min(100, packs // 20_000), "recycling"),
    ):
        for i in range(count):
            prov = province()
            region = _region_of(prov, i)
            add(
                Party(
                    name=f"{role}_{i + 1:03d}",
                    id=uid(region),
                    display=f"{provinces()[prov].name_en} {_KINDS[role]} {i + 1}",
                    roles=(role,),
                    region=region,
                    manufacturer_codes=(f"R{i + 1:02d}",) if role == "repurposer" else (),
                    licences=(scope,),
                    share=rng.uniform(0.5, 2.0),
                    below_threshold=role == "recycler" and rng.random() < below_threshold_share,
                )
            )
    for i in range(min(50, packs // 100_000)):
        prov = province()
        region = _region_of(prov, i)
        add(
            Party(
                name=f"scrap_dealer_{i + 1:02d}",
                id=uid(region),
                display=f"{provinces()[prov].name_en} Scrap Trading {i + 1}",
                roles=("recycler",) if i % 2 else ("dismantler",),
                region=region,
            )
        )
    return Cast(parties, by_name)


def _cumulative(items: list[tuple[str, float]]) -> tuple[list[str], list[float]]:
    names: list[str] = []
    cum: list[float] = []
    total = 0.0
    for name, weight in items:
        total += weight
        names.append(name)
        cum.append(total)
    return names, cum


class _Picker:
    """Weighted choice by bisection over cumulative weights."""

    def __init__(self, items: list[tuple[Any, float]]) -> None:
        self.items = [i for i, _ in items]
        self.cum: list[float] = []
        total = 0.0
        for _, w in items:
            total += w
            self.cum.append(total)

    def __call__(self, rng: random.Random) -> Any:
        return self.items[bisect.bisect_right(self.cum, rng.random() * self.cum[-1])]


# --- one pack's life ------------------------------------------------------------------------------------

Step = tuple[int, str, dict[str, Any]]  # (epoch seconds, recording enterprise id, event)
#: About how many events a pack brings, without cells, and how many events a time window should
#: hold on average at most (memory: one window is sorted at a time).
EVENTS_PER_PACK = 12.5
WINDOW_EVENTS = 60_000


class _EndError(Exception):
    """The next event would fall after the end of the simulation."""


class _Pack:
    """Codes and figures of one battery: a pack and its parts."""

    __slots__ = ("capacity", "cathode", "chem", "code", "mass", "materials", "parts", "voltage")

    def __init__(self) -> None:
        self.code = ""
        self.chem = "lfp"
        self.cathode = "lfp"
        self.capacity = 0.0
        self.mass = 0.0
        self.voltage = 0.0
        self.materials: dict[str, float] = {}
        self.parts: list[tuple[str, float, dict[str, float]]] = []  # modules: (code, mass, materials)


@dataclass
class Stats:
    """Counts of what a data set holds, by what the generator intended."""

    packs: int = 0
    codes: int = 0  # every code registered: packs, modules, cells, second-life products
    events: int = 0
    refused: int = 0  # shipments offered to unlicensed parties (refused by the rules)
    leaks: Counter[str] = field(default_factory=Counter)
    stories: Counter[str] = field(default_factory=Counter)


class NationalSimulation:
    """The data set for one :class:`SimConfig`."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.end = config.resolved_end()
        self.start = config.resolved_start()
        self.end_s = int(self.end.timestamp())
        self.start_s = int(self.start.timestamp())
        if self.end_s <= self.start_s:
            raise ValueError("the simulation must end after it starts")
        self.cast = build_cast(config.cast_for or config.batteries, config.seed, config.below_threshold_share)
        self.profile = get_profile(config.profile)
        self.stats = Stats()
        self.samples: dict[str, str] = {}
        cast = self.cast
        self.makers = _Picker([(p, p.share) for p in cast.role("battery_maker")])
        self.automakers = _Picker([(p, p.share) for p in cast.role("automaker")])
        self.provinces = _Picker(
            [(c, PROVINCE_WEIGHTS.get(c, 0.2)) for c in provinces() if c not in ("71", "81", "82")]
        )
        self.outlets: dict[tuple[str, str], list[Party]] = {}
        self.outlets_any: dict[str, list[Party]] = {}
        for p in cast.role("service_outlet"):
            assert p.network_of is not None
            self.outlets.setdefault((p.network_of, p.province), []).append(p)
            self.outlets_any.setdefault(p.network_of, []).append(p)
        self.dismantlers = [p for p in cast.role("dismantler") if p.licences]
        self.recyclers = [p for p in cast.role("recycler") if p.licences]
        self.repurposers = [p for p in cast.role("repurposer") if p.licences]
        self.dealers = [
            p for p in cast.parties if not p.licences and {"dismantler", "recycler"} & set(p.roles)
        ]
        self.recycler_pick = _Picker([(p, p.share) for p in self.recyclers])
        self.rates: dict[str, dict[str, float]] = {p.id: self._recovery_profile(p) for p in self.recyclers}
        self.counters: Counter[str] = Counter()
        self._dates: dict[int, str] = {}
        self._sales = self._sales_table()
        self._systems = 0
        self.rng = random.Random(0)  # noqa: S311 - replaced by the seeded one in groups()

    # --- identifiers ------------------------------------------------------------------------------

    def _date_chars(self, t: int) -> tuple[str, date]:
        day = datetime.fromtimestamp(t, CST).date()
        key = day.toordinal()
        chars = self._dates.get(key)
        if chars is None:
            alph = default_alphabets()
            y, m, d = alph.year_char(day.year), alph.month_char(day.month), alph.day_char(day.day)
            if y is None or m is None or d is None:
                raise ValueError(f"{day} cannot be written in a battery code's date field")
            chars = self._dates[key] = y + m + d
        return chars, day

    def _code(self, maker: Party, level: str, chem: str, spec: str, t: int) -> str:
        """A GB/T 34014 code under the maker's manufacturer code; unique by a per-maker counter."""
        mfr = maker.manufacturer_codes[0]
        n = self.counters[mfr]
        self.counters[mfr] = n + 1
        chars, _ = self._date_chars(t)
        batch, serial = divmod(n, 9_999_999)
        trace = f"{self.config.series}{_base36(batch, 6)}"
        letter = "B" if chem == "lfp" else "E"
        return f"{mfr}{level}{letter}{spec}{trace}{chars}{serial + 1:07d}"

    def _second_life_code(self, repurposer: Party, chem: str, t: int) -> str:
        mfr = repurposer.manufacturer_codes[0]
        n = self.counters[mfr]
        self.counters[mfr] = n + 1
        if n >= 9_999_999:
            raise ValueError(f"repurposer {repurposer.name} ran out of second-life serials")
        chars, _ = self._date_chars(t)
        letter = "B" if chem == "lfp" else "E"
        spec = f"{self.config.series}1"
        return f"{mfr}P{letter}{spec}{chars}{n + 1:07d}RP"

    def _vin(self, automaker: Party, t: int) -> str:
        year = datetime.fromtimestamp(t, CST).year
        key = f"vin:{automaker.id}:{year}"
        n = self.counters[key]
        self.counters[key] = n + 1
        plant = VIN_PLANTS[(n // 1_000_000) % len(VIN_PLANTS)]
        vds = f"E{self.config.series}{VIN_PLANTS[(n // 32_000_000) % len(VIN_PLANTS)]}2A"
        vis = f"{VIN_YEARS.get(year, 'Y')}{plant}{n % 1_000_000:06d}"
        return make_vin(automaker.wmi + vds, vis)

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    # --- sampling ---------------------------------------------------------------------------------

    def _sales_table(self) -> tuple[list[tuple[int, int]], list[float]]:
        """Months from the start to the end, each with its weight in the sales."""
        months: list[tuple[int, int]] = []
        weights: list[float] = []
        first = datetime.fromtimestamp(self.start_s, CST)
        y, m = first.year, first.month
        while True:
            lo = datetime(y, m, 1, tzinfo=CST)
            hi = datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=CST)
            a, b = max(int(lo.timestamp()), self.start_s), min(int(hi.timestamp()), self.end_s)
            if a >= self.end_s:
                break
            if b > a:
                per_month = _sales_of(y) * MONTH_WEIGHTS[m - 1] / sum(MONTH_WEIGHTS)
                months.append((a, b))
                weights.append(per_month * (b - a) / (hi.timestamp() - lo.timestamp()))
            y, m = y + (m == 12), m % 12 + 1
        cum: list[float] = []
        total = 0.0
        for w in weights:
            total += w
            cum.append(total)
        return months, cum

    def _sale_time(self) -> int:
        months, cum = self._sales
        a, b = months[bisect.bisect_right(cum, self.rng.random() * cum[-1])]
        return self.rng.randrange(a, b)

    def _daytime(self, t: int) -> int:
        """``t`` moved into working hours (08:30-18:00 CST) of its day."""
        local = (t + 8 * 3600) % DAY
        if 30_600 <= local < 64_800:
            return t
        return t - local + 30_600 + self.rng.randrange(0, 34_200)

    def _recovery_profile(self, recycler: Party) -> dict[str, float]:
        rng = random.Random(f"recovery:{self.config.seed}:{recycler.id}")  # noqa: S311
        thresholds = self.profile.recovery_thresholds
        out: dict[str, float] = {}
        for metal in ("li", "ni", "co", "mn", "cu"):
            floor = thresholds.get(metal, 0.9)
            if recycler.below_threshold:
                out[metal] = floor - rng.uniform(0.01, 0.04)
            else:
                out[metal] = min(0.998, floor + rng.uniform(0.002, (1 - floor) * 0.8 + 0.002))
        return out

    # --- the generator ----------------------------------------------------------------------------

    def groups(self) -> Iterator[tuple[int, list[Step]]]:
        """Each vehicle pack's events (with its parts, replacement and second-life product), in
        time order, one pack at a time: ``(group number, [(epoch seconds, actor id, event)])``."""
        self.rng = random.Random(f"events:{self.config.seed}:{self.config.series}")  # noqa: S311
        self.stats = Stats()
        self.samples = {}
        self.counters = Counter()
        forced = [*STORIES, *ALERT_STORIES] if self.config.stories else []
        for g in range(self.config.batteries):
            story = forced[g] if g < len(forced) else None
            line = _Line(self, g)
            with contextlib.suppress(_EndError):
                self._pack_life(line, story)
            self.stats.packs += 1
            self.stats.events += len(line.steps)
            if line.steps:
                yield g, line.steps

    def iter_events(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every event with its recording enterprise, pack by pack (not in global time order)."""
        for _, steps in self.groups():
            for _, actor, event in steps:
                yield actor, event

    def _pack_life(self, line: _Line, story: str | None) -> None:
        rng = self.rng
        cast = self.cast.by_name
        end = self.end_s
        plan = _PLANS.get(story) if story is not None else None
        if story is not None and plan is not None:
            self.stats.stories[story] += 1
            automaker = cast[plan[0]]
            maker = cast["maker_a"] if line.g % 2 == 0 else cast["maker_b"]
            t_sale = end - plan[1] * DAY
        else:
            automaker = self.automakers(rng)
            maker = self.makers(rng)
            t_sale = self._sale_time()
        year = datetime.fromtimestamp(t_sale, CST).year
        bev = rng.random() < _by_year(BEV_SHARE, year)
        lfp = rng.random() < _by_year(LFP_SHARE, year)
        if story in ("repurposed", "in_service"):
            lfp = story == "repurposed"  # a ternary pack in service, an LFP pack in second life
        with_modules = rng.random() < _by_year(MODULE_SHARE, year)
        if story == "scrapped_dismantled":
            with_modules = True
        elif story is not None:
            with_modules = False
        exported = rng.random() < _by_year(EXPORT_SHARE, year)
        exported = story == "exported" or (story is None and exported)
        province = self.provinces(rng)
        if story is not None:
            province = automaker.province
        outlet = self._outlet(automaker, province)

        # made, shipped and received before the sale
        t_install = t_sale - rng.randrange(3 * DAY, 30 * DAY)
        t_received = t_install - rng.randrange(DAY, 10 * DAY)
        t_shipped = t_received - rng.randrange(DAY, 5 * DAY)
        t_made = t_shipped - rng.randrange(2 * DAY, 30 * DAY)
        if story == "new_in_stock":
            t_made = end - 20 * DAY
        pack = self._make_pack(line, maker, lfp, bev, with_modules, t_made, year)
        line.sample(story, pack.code)
        if story == "new_in_stock":
            return
        line.at(t_shipped, maker, "shipped", pack.code, {"to": automaker.id})
        line.at(t_received, automaker, "received", pack.code, {})
        vin = self._vin(automaker, t_install)
        line.at(t_install, automaker, "installed", pack.code, {"vin": vin})
        if exported:
            country = _weighted(rng, EXPORT_COUNTRIES)
            line.at(t_sale, automaker, "exported", pack.code, {"country": country})
            return
        line.at(t_sale, automaker, "vehicle_sold", None, {}, vin=vin, region=self._region(province))

        # how the vehicle's life goes
        chem = "lfp" if lfp else "ternary"
        weibull = self.profile.lifetime_for(chem)
        scale = weibull.scale + (0.0 if bev else 1.0)  # PHEV packs last a year longer (figures.md §2.4)
        battery_years = rng.weibullvariate(scale, weibull.shape)
        vehicle_mean = _by_year(VEHICLE_MEAN_YEARS, year)
        vehicle_years = rng.weibullvariate(vehicle_mean / math.gamma(1 + 1 / VEHICLE_SHAPE), VEHICLE_SHAPE)
        vehicle_years = min(vehicle_years, rng.expovariate(ACCIDENT_RATE))
        theft_years = rng.expovariate(THEFT_RATE)
        soh_end = rng.uniform(*RETIREMENT_SOH)
        holder = automaker
        if plan is not None:
            battery_years = vehicle_years = theft_years = 99.0
            if plan[2] == "retire":
                battery_years = plan[3] / 365.25
            elif plan[2] == "scrap":
                vehicle_years = plan[3] / 365.25
            elif plan[2] == "theft":
                theft_years = plan[3] / 365.25
        eol_years = min(battery_years, vehicle_years, theft_years)
        t_eol = t_sale + int(eol_years * YEAR)

        # in service: inspections and repairs at outlets of the automaker's network
        service: list[tuple[int, str]] = []
        t = t_sale
        if story == "maintained":
            service = [(t_sale + 200 * DAY, "inspect"), (t_sale + 560 * DAY, "inspect")]
        elif story == "repaired":
            service = [(t_sale + 300 * DAY, "inspect"), (t_sale + 900 * DAY, "repair")]
        elif story is None:
            rate = INSPECTION_RATE + REPAIR_RATE
            while True:
                t += int(rng.expovariate(rate) * YEAR)
                if t >= min(t_eol, end):
                    break
                service.append((t, "repair" if rng.random() < REPAIR_RATE / rate else "inspect"))
        fade = (100.0 - soh_end) / max(battery_years, 0.5)
        for when, kind in service:
            soh = round(max(soh_end, 100.0 - fade * (when - t_sale) / YEAR + rng.uniform(-0.5, 0.5)), 1)
            when = self._daytime(when)
            if kind == "inspect":
                line.at(when, outlet, "maintained", pack.code, {"soh_percent": min(soh, 100.0)})
            else:
                line.at(when, outlet, "removed", pack.code, {"reason": "repair"})
                line.after(rng.randrange(DAY, 10 * DAY), outlet, "installed", pack.code, {"vin": vin})
                holder = outlet
        if t_eol >= end:
            return
        t_eol = self._daytime(t_eol)
        leak = story is None and rng.random() < self.config.leak_share

        if theft_years == eol_years:
            line.at(t_eol, holder, "reported_missing", pack.code, {})
            if story is None and rng.random() < FOUND_SHARE:
                regulator = self.cast.regulator
                line.after(rng.randrange(5 * DAY, 120 * DAY), regulator, "found", pack.code, {})
            return

        if vehicle_years == eol_years:
            dismantler = self._near(self.dismantlers, province)
            line.at(t_eol, dismantler, "vehicle_scrapped", None, {}, vin=vin)
            if leak:
                # the pack is sold off the record: it is never taken out of the scrapped vehicle
                self.stats.leaks["scrapped_not_collected"] += 1
                return
            line.after(
                rng.randrange(DAY, 8 * DAY), dismantler, "removed", pack.code, {"reason": "vehicle_scrapped"}
            )
            line.after(rng.randrange(3600, 2 * DAY), dismantler, "retired", pack.code, {})
            if pack.parts and (story == "scrapped_dismantled" or rng.random() < 0.5):
                line.after(rng.randrange(DAY, 10 * DAY), dismantler, "dismantled", pack.code, {})
                recycler = cast["recycler_a"] if story else self._near_recycler(province)
                for code, _, _ in pack.parts:
                    line.after(rng.randrange(600, DAY), dismantler, "shipped", code, {"to": recycler.id})
                for code, _, _ in pack.parts:
                    line.after(rng.randrange(600, 3 * DAY), recycler, "received", code, {})
                for code, mass, materials in pack.parts:
                    self._recycle(line, recycler, code, mass, materials, rng.randrange(DAY, 20 * DAY))
                return
            self._collect(line, dismantler, pack, soh_end, province, story)
            return

        # the pack retires in service
        replacement = (
            story is None
            and (t_eol - t_sale) / YEAR < REPLACEMENT_MAX_AGE_YEARS
            and rng.random() < REPLACEMENT_SHARE
        )
        how = {"offered_to_unlicensed": "offered", "retired_not_collected": "kept"}.get(story or "")
        if leak:
            how = "kept" if holder is automaker and rng.random() < 0.5 else "offered"
        if how == "kept":
            # taken out and retired by the automaker itself, which holds no licence, and never collected
            line.at(t_eol, automaker, "removed", pack.code, {"reason": "retirement"})
            line.after(rng.randrange(3600, 3 * DAY), automaker, "retired", pack.code, {})
            self.stats.leaks["retired_not_collected"] += 1
            if replacement:
                self._replace(line, outlet, maker, lfp, bev, with_modules, vin, year)
            return
        line.at(t_eol, outlet, "removed", pack.code, {"reason": "retirement"})
        line.after(rng.randrange(3600, 2 * DAY), outlet, "retired", pack.code, {})
        if replacement:
            self._replace(line, outlet, maker, lfp, bev, with_modules, vin, year)
        if how == "offered":
            # offered to a scrap dealer without a licence: the registry refuses the shipment
            dealer = cast["scrap_dealer"] if story else self._near(self.dealers, province)
            line.after(rng.randrange(DAY, 20 * DAY), outlet, "shipped", pack.code, {"to": dealer.id})
            self.stats.refused += 1
            self.stats.leaks["offered_to_unlicensed"] += 1
            if story or rng.random() < 0.5:
                return  # it stays in the outlet's store
            line.pause(rng.randrange(20 * DAY, 120 * DAY))
        if story == "in_transit_waste":
            line.after(20 * DAY, outlet, "shipped", pack.code, {"to": cast["recycler_b"].id})
            return
        self._collect(line, outlet, pack, soh_end, province, story)

    # --- parts of a life ------------------------------------------------------------------------------

    def _make_pack(
        self, line: _Line, maker: Party, lfp: bool, bev: bool, with_modules: bool, t_made: int, year: int
    ) -> _Pack:
        rng = self.rng
        pack = _Pack()
        pack.chem = "lfp" if lfp else "ternary"
        pack.cathode = "lfp" if lfp else _weighted(rng, TERNARY_MIX)
        mean = _by_year(BEV_KWH if bev else PHEV_KWH, year)
        spread, low, high = (12.0, 25.0, 110.0) if bev else (6.0, 8.0, 50.0)
        pack.capacity = round(min(high, max(low, rng.gauss(mean, spread))), 1)
        pack.mass = round(pack.capacity * 1000 / rng.uniform(*WH_PER_KG[pack.chem]), 1)
        pack.voltage = float(rng.choice((350, 380, 400))) if lfp else float(rng.choice((400, 400, 400, 800)))
        pack.materials = {k: _floor3(v * pack.capacity) for k, v in MATERIALS_PER_KWH[pack.cathode].items()}
        t = self._daytime(t_made)
        spec = "01" if bev else "02"
        cells_total = rng.randrange(100, 201) if self.config.cells else 0
        modules = rng.randrange(4, 17) if with_modules else 0
        pack.code = self._code(maker, "P", pack.chem, spec, t)
        cell_voltage = 3.2 if lfp else 3.7

        def cells(n: int, capacity: float, mass: float, materials: dict[str, float]) -> list[str]:
            out = []
            for _ in range(n):
                code = self._code(maker, "C", pack.chem, "C1", t)
                data = {
                    "capacity_kwh": round(capacity / n, 4),
                    "voltage_v": cell_voltage,
                    "mass_kg": round(mass * 0.8 / n, 3),
                    "materials": {k: _floor4(v / n) for k, v in materials.items()},
                }
                line.at(t, maker, "manufactured", code, data)
                out.append(code)
            return out

        if modules:
            per_cells = max(1, cells_total // modules) if cells_total else 0
            module_mass = round(pack.mass * 0.85 / modules, 2)
            module_materials = {k: _floor3(v / modules) for k, v in pack.materials.items()}
            codes = []
            for _ in range(modules):
                children = (
                    cells(per_cells, pack.capacity / modules, module_mass, module_materials)
                    if per_cells
                    else []
                )
                code = self._code(maker, "M", pack.chem, "M1", t)
                data = {
                    "capacity_kwh": round(pack.capacity / modules, 2),
                    "voltage_v": round(pack.voltage / modules, 1),
                    "mass_kg": module_mass,
                    "materials": module_materials,
                }
                line.at(t, maker, "manufactured", code, data)
                if children:
                    line.at(t, maker, "assembled", code, {"children": children})
                codes.append(code)
                pack.parts.append((code, module_mass, module_materials))
            children = codes
        else:
            children = cells(cells_total, pack.capacity, pack.mass, pack.materials) if cells_total else []
        data = {
            "capacity_kwh": pack.capacity,
            "voltage_v": pack.voltage,
            "mass_kg": pack.mass,
            "materials": pack.materials,
            "carbon_kgco2e_per_kwh": CARBON_PER_KWH[pack.cathode],
            "cathode": pack.cathode,
        }
        line.at(t, maker, "manufactured", pack.code, data)
        if children:
            line.at(t, maker, "assembled", pack.code, {"children": children})
        return pack

    def _replace(
        self,
        line: _Line,
        outlet: Party,
        maker: Party,
        lfp: bool,
        bev: bool,
        with_modules: bool,
        vin: str,
        year: int,
    ) -> None:
        """A new pack for the same vehicle: ordered from the maker, fitted by the outlet."""
        rng = self.rng
        t = line.t + rng.randrange(DAY, 10 * DAY)
        line.check(t)
        new = self._make_pack(
            line, maker, lfp, bev, with_modules, t, max(year, datetime.fromtimestamp(t, CST).year)
        )
        line.after(rng.randrange(DAY, 5 * DAY), maker, "shipped", new.code, {"to": outlet.id})
        line.after(rng.randrange(DAY, 4 * DAY), outlet, "received", new.code, {})
        line.after(rng.randrange(3600, 3 * DAY), outlet, "installed", new.code, {"vin": vin})

    def _collect(
        self, line: _Line, holder: Party, pack: _Pack, soh: float, province: str, story: str | None
    ) -> None:
        """A retired pack goes from its (licensed) holder to a repurposer or a recycler."""
        rng = self.rng
        soh = round(soh, 1)
        repurpose = self.repurposers and (
            story == "repurposed"
            or (
                story is None
                and rng.random() < REPURPOSE_SHARE[pack.chem]
                and self.profile.repurpose_allowed(soh)
            )
        )
        if repurpose:
            firm = self.cast.by_name["repurposer"] if story else self._near(self.repurposers, province)
            line.after(rng.randrange(DAY, 20 * DAY), holder, "shipped", pack.code, {"to": firm.id})
            line.after(rng.randrange(DAY, 5 * DAY), firm, "received", pack.code, {})
            line.after(
                rng.randrange(DAY, 10 * DAY),
                firm,
                "graded",
                pack.code,
                {"soh_percent": soh, "decision": "repurpose"},
            )
            t = line.t + rng.randrange(DAY, 20 * DAY)
            line.check(t)
            product = self._second_life_code(firm, pack.chem, t)
            capacity = round(pack.capacity * soh / 100, 1)
            line.at(t, firm, "repurposed", pack.code, {"into": product, "capacity_kwh": capacity})
            line.sample("second_life_product", product)
            self._systems += 1
            system = f"ESS-{firm.region}-{self._systems:07d}"
            line.after(
                rng.randrange(5 * DAY, 40 * DAY),
                firm,
                "installed",
                product,
                {"system": system, "application": "stationary"},
            )
            return
        if story is None:
            recycler = self._near_recycler(province)
        else:
            recycler = self.cast.by_name[
                "recycler_b" if story == "recycled_below_threshold" else "recycler_a"
            ]
        line.after(rng.randrange(DAY, 20 * DAY), holder, "shipped", pack.code, {"to": recycler.id})
        line.after(rng.randrange(DAY, 5 * DAY), recycler, "received", pack.code, {})
        line.after(
            rng.randrange(DAY, 10 * DAY),
            recycler,
            "graded",
            pack.code,
            {"soh_percent": soh, "decision": "recycle"},
        )
        if pack.parts and rng.random() < 0.5:
            line.after(rng.randrange(DAY, 10 * DAY), recycler, "dismantled", pack.code, {})
            for code, mass, materials in pack.parts:
                self._recycle(line, recycler, code, mass, materials, rng.randrange(600, 5 * DAY))
            return
        self._recycle(line, recycler, pack.code, pack.mass, pack.materials, rng.randrange(5 * DAY, 40 * DAY))

    def _recycle(
        self, line: _Line, recycler: Party, code: str, mass: float, materials: dict[str, float], delay: int
    ) -> None:
        rates = self.rates[recycler.id]
        recovered: dict[str, float] = {}
        for key, contained in materials.items():
            rate = min(0.999, rates[key[:-3]] + self.rng.uniform(-0.004, 0.004))
            recovered[key] = _floor3(contained * rate)
        line.after(delay, recycler, "recycled", code, {"mass_kg": mass, "recovered": recovered})

    def _outlet(self, automaker: Party, province: str) -> Party:
        here = self.outlets.get((automaker.id, province))
        if here:
            return here[0] if len(here) == 1 else self.rng.choice(here)
        anywhere = self.outlets_any[automaker.id]
        return anywhere[0] if len(anywhere) == 1 else self.rng.choice(anywhere)

    def _near(self, parties: list[Party], province: str) -> Party:
        here = [p for p in parties if p.province == province] if len(parties) > 1 else []
        pool = here or parties
        return pool[0] if len(pool) == 1 else self.rng.choice(pool)

    def _near_recycler(self, province: str) -> Party:
        if self.rng.random() < 0.6:
            return self._near(self.recyclers, province)
        return self.recycler_pick(self.rng)  # type: ignore[no-any-return]

    def _region(self, province: str) -> str:
        return f"{province}0100"

    # --- time windows ------------------------------------------------------------------------------

    def window_seconds(self) -> int:
        expected = self.config.batteries * (EVENTS_PER_PACK + (160 if self.config.cells else 0))
        days = (self.end_s - self.start_s) / DAY
        narrow = days * WINDOW_EVENTS / max(expected, 1)
        return int(max(1.0, min(self.config.window_days, narrow)) * DAY)

    def windows(self, workdir: Path | None = None, progress: Progress | None = None) -> Iterator[Window]:
        """The events in time windows, each as rounds of one-enterprise batches (see the module
        docstring). Every pack is made first (spilled to ``workdir`` beyond ``spill_bytes``), then
        the windows follow in time order. Memory is bounded by ``spill_bytes`` plus one window;
        for very large sets the windows narrow (down to a day) to hold about ``WINDOW_EVENTS``
        events each on average."""
        width = self.window_seconds()
        origin = self.start_s - 400 * DAY
        spill = _Spill(workdir, self.config.spill_bytes)
        total = self.config.batteries
        try:
            for g, steps in self.groups():
                for t, actor, event in steps:
                    spill.add((t - origin) // width, f"{g}\t{actor}\t{_dumps(event)}\n")
                if progress is not None and g % 1000 == 999:
                    progress("generating", g + 1, total)
            if progress is not None:
                progress("generating", total, total)
            for index, lines in spill.buckets():
                clock = datetime.fromtimestamp(min(origin + (index + 1) * width, self.end_s), UTC)
                yield Window(index, clock, _rounds(lines, self.config.batch_size))
        finally:
            spill.close()


@dataclass
class Batch:
    """Events recorded by one enterprise in one request: JSON texts without the ``actor`` field."""

    actor: str
    events: list[str]
    #: The pack (its group number) each event belongs to: events of different packs in one batch
    #: are independent of each other.
    packs: list[str] = field(default_factory=list)

    def with_actor(self) -> Iterator[str]:
        """The events as import-file lines, each naming its recording enterprise."""
        tail = f',"actor":"{self.actor}"}}'
        for text in self.events:
            yield text[:-1] + tail


@dataclass
class Window:
    """The events of one time window: record the rounds in order (the batches of one round are
    independent of each other), with the registry's clock at ``clock``."""

    index: int
    clock: datetime
    rounds: list[list[Batch]]

    @property
    def events(self) -> int:
        return sum(len(b.events) for r in self.rounds for b in r)


def _rounds(lines: Iterator[str], batch_size: int) -> list[list[Batch]]:
    """Batches for one window's events, fewest first: again and again, the enterprise with the
    most packs whose next event is its own records, for each of them, the run of its events up to
    the next one by someone else. Each batch then sits in the round after the last batch holding
    an earlier event of one of its packs, so the batches of one round are independent."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for raw in lines:
        g, actor, text = raw.rstrip("\n").split("\t", 2)
        groups.setdefault(g, []).append((actor, text))
    seqs = list(groups.values())
    names = list(groups)
    position = [0] * len(seqs)
    level = [0] * len(seqs)  # round of the last batch that held an event of the pack, plus one
    ready: dict[str, list[int]] = {}
    for i, seq in enumerate(seqs):
        ready.setdefault(seq[0][0], []).append(i)
    rounds: list[list[Batch]] = []
    while ready:
        actor = max(ready, key=lambda a: len(ready[a]))
        waiting = ready.pop(actor)
        chunk: list[str] = []
        packs: list[str] = []
        members: list[int] = []
        for n, i in enumerate(waiting):
            seq = seqs[i]
            p = position[i]
            while p < len(seq) and seq[p][0] == actor:
                chunk.append(seq[p][1])
                packs.append(names[i])
                p += 1
            position[i] = p
            members.append(i)
            if len(chunk) >= batch_size or n == len(waiting) - 1:
                r = max(level[j] for j in members)
                while len(rounds) <= r:
                    rounds.append([])
                rounds[r].append(Batch(actor, chunk, packs))
                for j in members:
                    level[j] = r + 1
                    if position[j] < len(seqs[j]):
                        ready.setdefault(seqs[j][position[j]][0], []).append(j)
                chunk, packs, members = [], [], []
    return rounds


class _Spill:
    """Lines sorted into numbered buckets, kept in memory up to a bound and spilled to files."""

    def __init__(self, workdir: Path | None, limit: int) -> None:
        self.workdir = workdir
        self.limit = limit
        self.held: dict[int, list[str]] = {}
        self.size = 0
        self.dir: Path | None = None
        self.spilled: set[int] = set()

    def add(self, bucket: int, line: str) -> None:
        self.held.setdefault(bucket, []).append(line)
        self.size += len(line)
        if self.size > self.limit:
            self.flush()

    def flush(self) -> None:
        if self.dir is None:
            self.dir = Path(tempfile.mkdtemp(prefix="batterytrace-sim-", dir=self.workdir))
        for bucket, lines in self.held.items():
            with open(self.dir / f"{bucket:07d}", "a", encoding="utf-8") as fh:
                fh.writelines(lines)
            self.spilled.add(bucket)
        self.held = {}
        self.size = 0

    def buckets(self) -> Iterator[tuple[int, Iterator[str]]]:
        if self.dir is not None:
            self.flush()
        for bucket in sorted(self.spilled | set(self.held)):
            if self.dir is not None:
                path = self.dir / f"{bucket:07d}"
                with open(path, encoding="utf-8") as fh:
                    yield bucket, iter(fh)
                path.unlink()
            else:
                yield bucket, iter(self.held.pop(bucket))

    def close(self) -> None:
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


class _Line:
    """One pack's events as they are made: a time cursor that only moves forward, stopping at the
    end of the simulation."""

    __slots__ = ("g", "sim", "steps", "t")

    def __init__(self, sim: NationalSimulation, g: int) -> None:
        self.sim = sim
        self.g = g
        self.steps: list[Step] = []
        self.t = 0

    def check(self, t: int) -> None:
        if t > self.sim.end_s:
            raise _EndError

    def at(
        self,
        t: int,
        actor: Party,
        kind: str,
        code: str | None,
        data: dict[str, Any],
        *,
        vin: str | None = None,
        region: str | None = None,
    ) -> None:
        t = max(t, self.t)
        self.check(t)
        self.t = t
        event: dict[str, Any] = {"id": self.sim._uuid(), "type": kind}
        if code is not None:
            event["battery"] = code
        if vin is not None:
            event["vin"] = vin
        event["time"] = datetime.fromtimestamp(t, CST).isoformat()
        event["region"] = region or actor.region
        event["data"] = data
        self.steps.append((t, actor.id, event))
        if kind == "manufactured" or kind == "repurposed":
            self.sim.stats.codes += 1

    def after(self, delay: int, actor: Party, kind: str, code: str | None, data: dict[str, Any]) -> None:
        self.at(self.t + delay, actor, kind, code, data)

    def pause(self, delay: int) -> None:
        self.t += delay
        self.check(self.t)

    def sample(self, name: str | None, code: str) -> None:
        if name is not None:
            self.sim.samples.setdefault(name, code)


def _sales_of(year: int) -> float:
    if year in SALES_MILLIONS:
        return SALES_MILLIONS[year]
    last = max(SALES_MILLIONS)
    if year > last:
        return SALES_MILLIONS[last] * 1.09 ** (year - last)
    return SALES_MILLIONS[min(SALES_MILLIONS)]


def _weighted(rng: random.Random, items: tuple[tuple[str, float], ...]) -> str:
    total = sum(w for _, w in items)
    x = rng.random() * total
    for value, w in items:
        x -= w
        if x < 0:
            return value
    return items[-1][0]


def _floor3(x: float) -> float:
    return math.floor(x * 1000) / 1000


def _floor4(x: float) -> float:
    return math.floor(x * 10000) / 10000


def _base36(n: int, width: int) -> str:
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out.rjust(width, "0")[-width:]


_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _dumps(obj: Any) -> str:
    return _encoder.encode(obj)


# --- writing and loading ---------------------------------------------------------------------------------

#: Enterprises that get an API key when a data set is set up (the named core cast).
KEYED = tuple(c[0] for c in _CORE)
LICENCE_FROM = "2015-01-01"
LICENCE_TO = "2035-12-31"
#: Setup happens this long before the first sale (before any event).
SETUP_LEAD = timedelta(days=100)

Progress = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass
class LoadResult:
    """What a load recorded. ``keys``: name → (enterprise id, roles, API key) for the core cast."""

    keys: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    packs: int = 0
    batteries: int = 0  # codes registered: packs, modules, cells, second-life products
    events: int = 0  # accepted
    rejected: int = 0
    refused_leaks: int = 0  # rejected as intended: waste offered to an unlicensed party
    unexpected: list[dict[str, str]] = field(default_factory=list)  # other rejections (first 50)
    unexpected_count: int = 0
    samples: dict[str, str] = field(default_factory=dict)
    windows: int = 0
    batches: int = 0
    seconds: float = 0.0
    stats: Stats = field(default_factory=Stats)


def setup(
    registry: Any, sim: NationalSimulation, keyed: tuple[str, ...] = KEYED
) -> dict[str, tuple[str, str, str]]:
    """Register the cast on an empty registry: the regulator first (bootstrap), then every
    enterprise with its licences; API keys for the ``keyed`` names. Returns those keys."""
    cast = sim.cast
    reg = cast.regulator
    _, key = registry.bootstrap(reg.id, reg.display, reg.region)
    regulator = registry.authenticate(key)
    keys = {reg.name: (reg.id, ",".join(reg.roles), key)}
    for party in cast.parties:
        if party is reg:
            continue
        registry.create_enterprise(regulator, party.body())
        for scope in party.licences:
            registry.grant_licence(
                regulator,
                party.id,
                {"scope": scope, "valid_from": LICENCE_FROM, "valid_to": LICENCE_TO, "region": None},
            )
        if party.name in keyed:
            made = registry.create_key(regulator, party.id, label="simulated data set")["key"]
            keys[party.name] = (party.id, ",".join(party.roles), made)
    return keys


def callers(registry: Any, sim: NationalSimulation, key: str) -> dict[str, Any]:
    """Every enterprise of the cast as a caller, acting under the regulator's ``key`` (as a
    regulator-run migration records events on behalf of the enterprises named in them)."""
    from batterytrace.services.registry import Caller
    from batterytrace.store import repo
    from batterytrace.store.db import read_transaction

    regulator = registry.authenticate(key)
    with read_transaction(registry.engine) as conn:
        found = repo.load_enterprises(conn, [p.id for p in sim.cast.parties])
    return {eid: Caller(enterprise=ent, key_id=regulator.key_id) for eid, ent in found.items()}


def load(
    registry: Any,
    config: SimConfig,
    *,
    progress: Progress | None = None,
    workdir: Path | None = None,
    rescan_days: float = 30.0,
) -> LoadResult:
    """Set up the cast on an empty registry and record the data set through
    :meth:`Registry.record`, window by window, with the registry's clock at each window's end.
    Deadlines that pass are re-scanned every ``rescan_days`` of simulated time and at the end.
    The registry's own clock is put back afterwards."""
    from batterytrace.services.monitoring import monitoring_for
    from batterytrace.store import repo
    from batterytrace.store.db import read_transaction

    started = time.perf_counter()
    sim = NationalSimulation(config)
    with read_transaction(registry.engine) as conn:
        if repo.count_enterprises(conn) > 0:
            raise ValueError("a simulated data set is loaded into an empty registry only")
    saved_clock = registry.clock
    result = LoadResult()
    try:
        setup_time = (sim.start - SETUP_LEAD).astimezone(UTC)
        registry.clock = lambda: setup_time
        result.keys = setup(registry, sim)
        acting = callers(registry, sim, result.keys["regulator"][2])
        monitoring = monitoring_for(registry)
        last_scan = setup_time
        total = 0
        for window in sim.windows(workdir, progress=progress):
            if not total:
                total = sim.stats.events
            clock = window.clock
            registry.clock = lambda c=clock: c
            for batches in window.rounds:
                for batch in batches:
                    _record(registry, acting[batch.actor], batch, result)
            result.windows += 1
            if (clock - last_scan).total_seconds() >= rescan_days * DAY:
                monitoring.rescan(clock)
                last_scan = clock
            if progress is not None:
                progress("recording", result.events + result.rejected, total)
        end = sim.end.astimezone(UTC)
        registry.clock = lambda: end
        monitoring.rescan(end)
    finally:
        registry.clock = saved_clock
    result.packs = sim.stats.packs
    result.samples = dict(sim.samples)
    result.stats = sim.stats
    result.seconds = time.perf_counter() - started
    return result


def _record(registry: Any, caller: Any, batch: Batch, result: LoadResult) -> None:
    events = [json.loads(text) for text in batch.events]
    results = registry.record(caller, events)
    result.batches += 1
    for event, res in zip(events, results, strict=True):
        if res.status == "accepted":
            if not res.replay:
                result.events += 1
                if event["type"] in ("manufactured", "repurposed"):
                    result.batteries += 1
            continue
        result.rejected += 1
        if res.error is not None and res.error.code == E.WASTE_UNLICENSED:
            result.refused_leaks += 1
            continue
        result.unexpected_count += 1
        if len(result.unexpected) < 50:
            result.unexpected.append(
                {
                    "id": str(event.get("id")),
                    "type": str(event.get("type")),
                    "battery": str(event.get("battery") or event.get("vin")),
                    "code": res.error.code if res.error else "",
                    "message": res.error.message if res.error else "",
                }
            )


@dataclass
class WriteResult:
    path: Path
    events: int = 0
    packs: int = 0
    batteries: int = 0
    refused: int = 0  # lines that the registry will refuse on purpose (leaks)
    samples: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    stats: Stats = field(default_factory=Stats)


def write_jsonl(
    config: SimConfig,
    path: Path,
    *,
    progress: Progress | None = None,
    workdir: Path | None = None,
    limit: int | None = None,
) -> WriteResult:
    """Write the data set as a JSON Lines import file (one event per line, naming its recording
    enterprise in ``actor``), in an order the importer can record line by line. ``limit`` stops
    after that many events (a prefix of the data set, ending early in time)."""
    started = time.perf_counter()
    sim = NationalSimulation(config)
    result = WriteResult(path)
    written = 0
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "w", encoding="utf-8") as fh:
        total = 0
        for window in sim.windows(workdir, progress=progress):
            if not total:
                total = sim.stats.events if limit is None else min(limit, sim.stats.events)
            for batches in window.rounds:
                for batch in batches:
                    for line in batch.with_actor():
                        if limit is not None and written >= limit:
                            break
                        fh.write(line)
                        fh.write("\n")
                        written += 1
            if progress is not None:
                progress("writing", written, total)
            if limit is not None and written >= limit:
                break
    os.replace(tmp, path)
    result.events = written
    result.packs = sim.stats.packs
    result.batteries = sim.stats.codes
    result.refused = sim.stats.refused
    result.samples = dict(sim.samples)
    result.stats = sim.stats
    result.seconds = time.perf_counter() - started
    return result


def open_alerts_by_rule(engine: Any) -> dict[str, int]:
    """Open (or acknowledged) alerts by rule."""
    from sqlalchemy import func, select

    from batterytrace.store import tables as T
    from batterytrace.store.db import read_transaction

    a = T.alerts
    stmt = (
        select(a.c.rule, func.count().label("n"))
        .where(a.c.status.in_(("open", "acknowledged")))
        .group_by(a.c.rule)
    )
    with read_transaction(engine) as conn:
        return {str(r.rule): int(r.n) for r in conn.execute(stmt)}
