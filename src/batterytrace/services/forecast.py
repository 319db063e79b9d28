"""Retirement forecast: tonnes of traction batteries expected to retire each year.

One model, two kinds of input:

* **the registered fleet** (default): batteries still in use or in stock (stage new, installed or
  removed; top-level units only, so a pack is not counted again through its modules and cells;
  second-life products excluded), grouped by year of registration and chemistry (read from the
  fleet rollup, :mod:`batterytrace.store.fleet`, not from the batteries one by one). Each group is
  aged from the middle of its registration year and retires along the policy profile's lifetime
  distribution for its chemistry, *given that it has survived until now*.
* **annual sales** (a CSV of public figures): each year's new batteries, aged from the middle of
  their year of sale and retired along the same distributions, unconditionally, to project
  national totals.

The report lists the inputs it used: the cohorts, the lifetime parameters, and for sales every
value that was given or assumed.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, func, select

from batterytrace.domain import errors as E
from batterytrace.domain.errors import DomainError
from batterytrace.domain.model import Stage
from batterytrace.domain.policy import Profile
from batterytrace.services.reports import Report
from batterytrace.store import tables as T
from batterytrace.store.db import read_transaction

DEFAULT_UNTIL = 2035
LAST_YEAR = 2100
#: Stages of a battery still in use or in stock: the fleet that will retire.
FLEET_STAGES = (Stage.NEW.value, Stage.INSTALLED.value, Stage.REMOVED.value)

#: Mean pack mass per vehicle sold, kg, when the sales file gives neither ``tonnes`` nor
#: ``pack_kg``. Derived from reference/notes/figures.md: a 55 kWh LFP BEV pack ≈ 366 kg and a
#: 25 kWh PHEV pack ≈ 166 kg (§1.4), weighted 62 % BEV / 38 % PHEV (the 2025 split, §2.2):
#: 0.62 × 366 + 0.38 × 166 ≈ 290 kg.
DEFAULT_PACK_KG = 290.0
#: Share of LFP in the batteries of a year when the file gives no ``lfp_share``: 81.2 % of the
#: traction batteries installed in China in 2025 (CABIA, figures.md §2.3); the rest ternary.
DEFAULT_LFP_SHARE = 0.812
SALES_COLUMNS = ("year", "vehicles", "tonnes", "pack_kg", "lfp_share")


@dataclass(frozen=True)
class Cohort:
    """Batteries that entered service in one year, of one chemistry class."""

    year: int
    chemistry: str  # a key of the profile's lifetime table (lfp, ternary, other)
    batteries: float
    tonnes: float


def chemistry_class(profile: Profile, chemistry: str) -> str:
    return chemistry if chemistry in profile.lifetime else "other"


def decimal_year(moment: datetime) -> float:
    start = datetime(moment.year, 1, 1, tzinfo=moment.tzinfo)
    end = datetime(moment.year + 1, 1, 1, tzinfo=moment.tzinfo)
    return moment.year + (moment - start) / (end - start)


def project(
    cohorts: list[Cohort], profile: Profile, years: range, survived_to: float | None = None
) -> list[dict[str, Any]]:
    """Expected retirements per year. With ``survived_to`` (a decimal year), each cohort is known
    to be in service then: retirements before it are not counted and the rest are conditional on
    survival until then."""
    chemistries = sorted({c.chemistry for c in cohorts})
    rows = []
    for year in years:
        row: dict[str, Any] = {"year": year, "batteries": 0.0, "tonnes": 0.0}
        for chem in chemistries:
            row[f"tonnes_{chem}"] = 0.0
        for c in cohorts:
            life = profile.lifetime[c.chemistry]
            born = c.year + 0.5
            start, end = float(year), float(year + 1)
            if survived_to is not None:
                start = max(start, survived_to)
                alive = life.survival(max(survived_to - born, 0.0))
            else:
                alive = 1.0
            if end <= start or alive <= 0:
                continue
            share = (life.survival(max(start - born, 0.0)) - life.survival(max(end - born, 0.0))) / alive
            row["batteries"] += c.batteries * share
            row["tonnes"] += c.tonnes * share
            row[f"tonnes_{c.chemistry}"] += c.tonnes * share
        for key, value in row.items():
            if key != "year":
                row[key] = round(value, 3)
        rows.append(row)
    return rows


def _years(first: int, until: int) -> range:
    if not first <= until <= LAST_YEAR:
        raise DomainError(
            E.REQUEST_INVALID,
            f"'until' must be a year from {first} to {LAST_YEAR}",
            field="until",
        )
    return range(first, until + 1)


def _lifetimes(profile: Profile, used: set[str]) -> dict[str, dict[str, float]]:
    return {
        c: {
            "shape": profile.lifetime[c].shape,
            "scale_years": profile.lifetime[c].scale,
            "mean_years": round(profile.lifetime[c].mean, 3),
        }
        for c in sorted(used)
    }


def _report(rows: list[dict[str, Any]], chemistries: set[str], meta: dict[str, Any]) -> Report:
    columns = ["year", "batteries", "tonnes", *(f"tonnes_{c}" for c in sorted(chemistries))]
    return Report("forecast", columns, rows, meta)


def from_fleet(engine: Engine, profile: Profile, now: datetime, until: int = DEFAULT_UNTIL) -> Report:
    """Forecast from the batteries registered and still in use or in stock."""
    years = _years(now.year, until)
    f = T.fleet_rollup  # kept as batteries change, so this reads years × chemistries, not the fleet
    stmt = (
        select(
            f.c.year, f.c.chemistry, func.sum(f.c.batteries), func.sum(f.c.mass_mg), func.sum(f.c.with_mass)
        )
        .where(and_(f.c.stage.in_(FLEET_STAGES), f.c.attached.is_(False), f.c.second_life.is_(False)))
        .group_by(f.c.year, f.c.chemistry)
    )
    grouped: dict[tuple[int, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    without_mass = 0
    with read_transaction(engine) as conn:
        for year, chemistry, n, mg, with_mass in conn.execute(stmt):
            if not n:
                continue  # every battery of the group has moved on
            key = (int(year), chemistry_class(profile, chemistry))
            grouped[key][0] += int(n)
            grouped[key][1] += int(mg or 0) / 1_000_000_000
            without_mass += int(n) - int(with_mass)
    cohorts = [Cohort(y, c, n, t) for (y, c), (n, t) in sorted(grouped.items())]
    rows = project(cohorts, profile, years, survived_to=decimal_year(now))
    used = {c.chemistry for c in cohorts}
    meta = {
        "profile": profile.name,
        "until": until,
        "inputs": {
            "source": "registered_fleet",
            "as_of": now.isoformat(),
            "cohorts": [
                {
                    "year": c.year,
                    "chemistry": c.chemistry,
                    "batteries": int(c.batteries),
                    "tonnes": round(c.tonnes, 6),
                }
                for c in cohorts
            ],
            "batteries_without_mass": without_mass,
            "lifetime": _lifetimes(profile, used),
            "assumptions": [
                "batteries in stage new, installed or removed, top-level units only, second-life products excluded",
                "each cohort enters service in the middle of its year of registration",
                "retirements are conditional on being in service at the report's date; none are counted before it",
                "lifetime by chemistry from the policy profile (Weibull); chemistries without their own use 'other'",
            ],
        },
    }
    return _report(rows, used, meta)


def from_sales(text: str, profile: Profile, now: datetime, until: int = DEFAULT_UNTIL) -> Report:
    """Forecast of national totals from a CSV of annual sales.

    Columns (a header row is required): ``year`` and either ``tonnes`` (battery tonnes put on
    the market that year) or ``vehicles`` (vehicles sold); optionally ``pack_kg`` (mean pack
    mass, used with ``vehicles``) and ``lfp_share`` (0..1, the rest is ternary)."""
    inputs, cohorts = parse_sales(text, profile)
    first = min(r["year"] for r in inputs)
    years = _years(first, until)
    rows = project(cohorts, profile, years)
    used = {c.chemistry for c in cohorts}
    meta = {
        "profile": profile.name,
        "until": until,
        "inputs": {
            "source": "sales_csv",
            "as_of": now.isoformat(),
            "sales": inputs,
            "lifetime": _lifetimes(profile, used),
            "defaults": {"pack_kg": DEFAULT_PACK_KG, "lfp_share": DEFAULT_LFP_SHARE},
            "assumptions": [
                "each year's batteries enter service in the middle of the year of sale",
                "every battery sold retires along the profile's lifetime distribution (Weibull), none before",
                "no sales are assumed for years the file does not give",
            ],
        },
    }
    return _report(rows, used, meta)


def parse_sales(text: str, profile: Profile) -> tuple[list[dict[str, Any]], list[Cohort]]:
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if "year" not in header or not ({"vehicles", "tonnes"} & set(header)):
        raise DomainError(
            E.REQUEST_INVALID,
            "the sales CSV needs a header with 'year' and 'vehicles' or 'tonnes' "
            f"(optional: 'pack_kg', 'lfp_share'); got {', '.join(header) or 'nothing'}",
            field="sales",
        )
    unknown = [h for h in header if h not in SALES_COLUMNS]
    if unknown:
        raise DomainError(
            E.REQUEST_INVALID,
            f"the sales CSV has an unknown column '{unknown[0]}'; columns are {', '.join(SALES_COLUMNS)}",
            field="sales",
        )
    inputs: list[dict[str, Any]] = []
    cohorts: list[Cohort] = []
    seen: set[int] = set()
    for line, raw in enumerate(reader, start=2):
        row = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None}
        if not any(row.values()):
            continue

        def number(name: str, *, line: int = line, row: dict[str, str] = row) -> float | None:
            value = row.get(name, "")
            if value == "":
                return None
            try:
                out = float(value.replace(",", "").replace("_", ""))
            except ValueError:
                raise DomainError(
                    E.REQUEST_INVALID,
                    f"sales CSV line {line}: '{name}' is not a number: {value!r}",
                    field="sales",
                ) from None
            if not out >= 0 or out == float("inf"):
                raise DomainError(
                    E.REQUEST_INVALID, f"sales CSV line {line}: '{name}' must be zero or more", field="sales"
                )
            return out

        year_value = number("year")
        if year_value is None or year_value != int(year_value) or not 1990 <= year_value <= LAST_YEAR:
            raise DomainError(
                E.REQUEST_INVALID,
                f"sales CSV line {line}: 'year' must be a year from 1990 to {LAST_YEAR}",
                field="sales",
            )
        year = int(year_value)
        if year in seen:
            raise DomainError(
                E.REQUEST_INVALID, f"sales CSV line {line}: year {year} appears twice", field="sales"
            )
        seen.add(year)
        vehicles = number("vehicles")
        given_tonnes = number("tonnes")
        pack_kg = number("pack_kg")
        lfp_share = number("lfp_share")
        if lfp_share is not None and lfp_share > 1:
            raise DomainError(
                E.REQUEST_INVALID,
                f"sales CSV line {line}: 'lfp_share' must be between 0 and 1",
                field="sales",
            )
        if given_tonnes is None and vehicles is None:
            raise DomainError(
                E.REQUEST_INVALID, f"sales CSV line {line}: give 'vehicles' or 'tonnes'", field="sales"
            )
        assumed = []
        if given_tonnes is None:
            if pack_kg is None:
                pack_kg = DEFAULT_PACK_KG
                assumed.append("pack_kg")
            total = (vehicles or 0.0) * pack_kg / 1000
        else:
            total = given_tonnes
        if lfp_share is None:
            lfp_share = DEFAULT_LFP_SHARE
            assumed.append("lfp_share")
        count = vehicles if vehicles is not None else 0.0
        inputs.append(
            {
                "year": year,
                "vehicles": vehicles,
                "tonnes": round(total, 6),
                "pack_kg": pack_kg,
                "lfp_share": lfp_share,
                "assumed": assumed,
            }
        )
        for chem, share in (("lfp", lfp_share), ("ternary", 1 - lfp_share)):
            if share > 0:
                cohorts.append(Cohort(year, chemistry_class(profile, chem), count * share, total * share))
    if not inputs:
        raise DomainError(E.REQUEST_INVALID, "the sales CSV has no rows", field="sales")
    return inputs, cohorts
