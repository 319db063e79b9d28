"""The regulator's reports: statistics, producer responsibility and recovery.

Every report reads the rollup tables that monitoring keeps current as events arrive
(:mod:`batterytrace.services.monitoring.observer`), so its cost depends on the number of
distinct years, provinces, chemistries and enterprises, not on the number of batteries or events.
Each report is a :class:`Report`: named columns and flat rows, shown as JSON by the API and as
CSV or a table by the CLI.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, func, select

from batterytrace.domain import errors as E
from batterytrace.domain.errors import DomainError
from batterytrace.domain.model import Role
from batterytrace.domain.policy import METALS, Profile, get_profile, load_profiles
from batterytrace.domain.workdays import CHINA_STANDARD_TIME
from batterytrace.services.monitoring import rules as R
from batterytrace.services.monitoring.observer import RESPONSIBILITIES, STAT_METRICS
from batterytrace.store import repo
from batterytrace.store import tables as T
from batterytrace.store.db import read_transaction

STAT_GROUPS = ("province", "chemistry", "producer", "level")
LEVELS = ("pack", "module", "cell", "all")


@dataclass
class Report:
    """A report: its name, the columns of its rows, the rows, and what it was made from."""

    name: str
    columns: list[str]
    rows: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"report": self.name, **self.meta, "columns": self.columns, "rows": self.rows}

    def as_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(self.columns)
        for row in self.rows:
            writer.writerow([cell_text(row.get(c)) for c in self.columns])
        return buf.getvalue()


def cell_text(value: Any) -> str:
    """A value as one CSV or table cell (a mapping as ``key=value`` pairs)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return ";".join(f"{k}={cell_text(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.6g}" if abs(value) < 1e15 else str(value)
    return str(value)


def tonnes(grams: int | float) -> float:
    return round(grams / 1_000_000, 6)


def change_pct(current: float, previous: float) -> float | None:
    """Change on the year before, in percent; None when there is nothing to compare with."""
    if not previous:
        return None
    return round((current - previous) / previous * 100, 2)


def _enterprise_names(conn: Any, ids: Iterable[str]) -> dict[str, str]:
    e = T.enterprises
    wanted = sorted({i for i in ids if i})
    out: dict[str, str] = {}
    for part in repo.chunks(wanted):
        for r in conn.execute(select(e.c.id, e.c.name).where(e.c.id.in_(part))):
            out[r.id] = r.name
    return out


# --- statistics ---------------------------------------------------------------------------------


def statistics(
    engine: Engine,
    *,
    year: int | None = None,
    province: str | None = None,
    chemistry: str | None = None,
    producer: str | None = None,
    level: str = "pack",
    group_by: Sequence[str] = (),
) -> Report:
    """Batteries and tonnes registered, installed (first time), retired, collected through
    licensed channels, repurposed, dismantled and recycled, by year (and the chosen groups), with
    the change on the year before."""
    groups = [g for g in STAT_GROUPS if g in group_by]
    unknown = sorted(set(group_by) - set(STAT_GROUPS))
    if unknown:
        raise DomainError(
            E.REQUEST_INVALID,
            f"'group_by' may name {', '.join(STAT_GROUPS)}; not {unknown[0]!r}",
            field="group_by",
        )
    if level not in LEVELS:
        raise DomainError(E.REQUEST_INVALID, f"'level' must be one of {', '.join(LEVELS)}", field="level")
    _check_province(province)
    _check_filters(year, chemistry=chemistry, producer=producer)
    s = T.stat_rollup
    conds: list[ColumnElement[bool]] = []
    if year is not None:
        conds.append(s.c.year.in_((year, year - 1)))
    for name, value in (("province", province), ("chemistry", chemistry), ("producer", producer)):
        if value is not None:
            conds.append(s.c[name] == value)
    if level != "all":
        conds.append(s.c.level == level)
    keys = [s.c.year, *(s.c[g] for g in groups)]
    stmt = select(*keys, s.c.metric, func.sum(s.c.batteries), func.sum(s.c.mass_g)).group_by(
        *keys, s.c.metric
    )
    if conds:
        stmt = stmt.where(and_(*conds))
    cells: dict[tuple[Any, ...], dict[str, tuple[int, int]]] = defaultdict(dict)
    with read_transaction(engine) as conn:
        for r in conn.execute(stmt):
            values = tuple(r)
            key = values[: 1 + len(groups)]
            cells[key][values[1 + len(groups)]] = (int(values[-2] or 0), int(values[-1] or 0))
        names = (
            _enterprise_names(conn, [k[1 + groups.index("producer")] for k in cells])
            if "producer" in groups
            else {}
        )
    columns = ["year", *groups]
    if "producer" in groups:
        columns.append("producer_name")
    for m in STAT_METRICS:
        columns += [m, f"{m}_tonnes", f"{m}_change_pct", f"{m}_tonnes_change_pct"]
    rows = []
    for key in sorted(cells, key=lambda k: tuple("" if v is None else v for v in k)):
        if year is not None and key[0] != year:
            continue
        previous = cells.get((key[0] - 1, *key[1:]), {})
        row: dict[str, Any] = {"year": key[0]}
        for i, group in enumerate(groups):
            row[group] = key[1 + i]
        if "producer" in groups:
            row["producer_name"] = names.get(row["producer"])
        for m in STAT_METRICS:
            n, g = cells[key].get(m, (0, 0))
            pn, pg = previous.get(m, (0, 0))
            row[m] = n
            row[f"{m}_tonnes"] = tonnes(g)
            row[f"{m}_change_pct"] = change_pct(n, pn)
            row[f"{m}_tonnes_change_pct"] = change_pct(g, pg)
        rows.append(row)
    filters = {
        "year": year,
        "province": province,
        "chemistry": chemistry,
        "producer": producer,
        "level": level,
    }
    return Report("statistics", columns, rows, {"filters": filters, "group_by": groups})


def _check_filters(year: int | None, **texts: str | None) -> None:
    """Refuse a year out of range and text no database column can hold, naming the field."""
    if year is not None and not 1990 <= year <= 2100:
        raise DomainError(E.REQUEST_INVALID, "'year' must be a year from 1990 to 2100", field="year")
    for name, value in texts.items():
        if value is not None and (len(value) > 64 or "\x00" in value):
            raise DomainError(E.REQUEST_INVALID, f"'{name}' is not a valid value", field=name)


def _check_province(province: str | None) -> None:
    if province is not None and not (len(province) == 2 and province.isdigit()):
        raise DomainError(E.REQUEST_INVALID, "'province' must be a 2-digit province code", field="province")


# --- producer responsibility ---------------------------------------------------------------------


def producers(
    engine: Engine,
    now: datetime,
    *,
    year: int | None = None,
    enterprise: str | None = None,
    responsibility: str | None = None,
) -> Report:
    """For each battery maker and automaker: its retired batteries (by year of retirement), how
    many reached a licensed facility within the collection deadline, late, still outstanding and
    overdue, and its collection points (outlets of its network) by province.

    ``in_time_share`` is collected in time over the batteries already due: collected (in time or
    late) or past their deadline. A battery retired recently and not yet due does not count
    against its producer."""
    if responsibility is not None and responsibility not in RESPONSIBILITIES:
        raise DomainError(
            E.REQUEST_INVALID,
            f"'responsibility' must be one of {', '.join(RESPONSIBILITIES)}",
            field="responsibility",
        )
    _check_filters(year, enterprise=enterprise)
    p = T.producer_rollup
    w = T.alert_watches
    e = T.enterprises
    conds: list[ColumnElement[bool]] = []
    if year is not None:
        conds.append(p.c.year == year)
    if enterprise is not None:
        conds.append(p.c.enterprise_id == enterprise)
    stmt = select(
        p.c.enterprise_id,
        p.c.responsibility,
        func.sum(p.c.retired),
        func.sum(p.c.retired_g),
        func.sum(p.c.collected_in_time),
        func.sum(p.c.collected_late),
    ).group_by(p.c.enterprise_id, p.c.responsibility)
    if conds:
        stmt = stmt.where(and_(*conds))
    wconds = [w.c.rule == R.COLLECTION_OVERDUE, w.c.deadline < now]
    if year is not None:
        wconds += [
            w.c.since >= datetime(year, 1, 1, tzinfo=CHINA_STANDARD_TIME),
            w.c.since < datetime(year + 1, 1, 1, tzinfo=CHINA_STANDARD_TIME),
        ]
    figures: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    points: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    with read_transaction(engine) as conn:
        for r in conn.execute(stmt):
            figures[(r[0], r[1])][:4] = [int(v or 0) for v in r[2:]]
        overdue_q = (
            select(w.c.producer, w.c.installer, func.count())
            .where(and_(*wconds))
            .group_by(w.c.producer, w.c.installer)
        )
        for producer, installer, n in conn.execute(overdue_q):  # one pass over the overdue deadlines
            if producer is not None:
                figures[(producer, "producer")][4] += int(n)
            if installer is not None:
                figures[(installer, "automaker")][4] += int(n)
        rows_e = list(conn.execute(select(e.c.id, e.c.name, e.c.roles, e.c.region, e.c.network_of)))
    names = {ent.id: ent.name for ent in rows_e}
    for ent in rows_e:
        roles = set(ent.roles or [])
        if Role.BATTERY_MAKER.value in roles:
            figures.setdefault((ent.id, "producer"), [0, 0, 0, 0, 0])
        if Role.AUTOMAKER.value in roles:
            figures.setdefault((ent.id, "automaker"), [0, 0, 0, 0, 0])
        if Role.SERVICE_OUTLET.value in roles and ent.network_of:
            points[ent.network_of][ent.region[:2]] += 1
    columns = [
        "enterprise",
        "name",
        "responsibility",
        "retired",
        "retired_tonnes",
        "collected_in_time",
        "collected_late",
        "outstanding",
        "overdue",
        "in_time_share",
        "collection_points",
        "collection_points_by_province",
    ]
    rows: list[dict[str, Any]] = []
    for (who, resp), (retired, retired_g, in_time, late, overdue) in sorted(figures.items()):
        if enterprise is not None and who != enterprise:
            continue
        if responsibility is not None and resp != responsibility:
            continue
        due = in_time + late + overdue
        by_province = dict(sorted(points.get(who, {}).items()))
        rows.append(
            {
                "enterprise": who,
                "name": names.get(who),
                "responsibility": resp,
                "retired": retired,
                "retired_tonnes": tonnes(retired_g),
                "collected_in_time": in_time,
                "collected_late": late,
                "outstanding": retired - in_time - late,
                "overdue": overdue,
                "in_time_share": round(in_time / due, 6) if due else None,
                "collection_points": sum(by_province.values()),
                "collection_points_by_province": by_province,
            }
        )
    filters = {"year": year, "enterprise": enterprise, "responsibility": responsibility}
    return Report("producers", columns, rows, {"filters": filters, "as_of": now.isoformat()})


# --- recovery --------------------------------------------------------------------------------------


def recovery(
    engine: Engine,
    *,
    profiles: Sequence[str] | None = None,
    year: int | None = None,
    recycler: str | None = None,
) -> Report:
    """Li, Co, Ni, Mn and Cu recovered against what the recycled batteries contained (their
    declared materials), per recycler and nationally, judged against each policy profile's
    recovery thresholds. One row per recycler (``national`` first) and profile."""
    _check_filters(year, recycler=recycler)
    chosen = _profiles(profiles)
    r = T.recovery_rollup
    conds: list[ColumnElement[bool]] = []
    if year is not None:
        conds.append(r.c.year == year)
    if recycler is not None:
        conds.append(r.c.recycler == recycler)
    stmt = select(
        r.c.recycler,
        r.c.metal,
        func.sum(r.c.batteries),
        func.sum(r.c.contained_g),
        func.sum(r.c.recovered_g),
        func.sum(r.c.unmatched_g),
    ).group_by(r.c.recycler, r.c.metal)
    if conds:
        stmt = stmt.where(and_(*conds))
    sums: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0, 0]))
    with read_transaction(engine) as conn:
        for found in conn.execute(stmt):
            values = [int(v or 0) for v in found[2:]]
            for who in (found[0], "national"):
                acc = sums[who][found[1]]
                for i, v in enumerate(values):
                    acc[i] += v
        names = _enterprise_names(conn, [k for k in sums if k != "national"])
    columns = ["recycler", "name", "profile", "batteries", "input_tonnes", "recovered_tonnes"]
    for m in METALS:
        columns += [
            f"{m}_contained_kg",
            f"{m}_recovered_kg",
            f"{m}_unmatched_kg",
            f"{m}_rate",
            f"{m}_threshold",
            f"{m}_verdict",
        ]
    columns += ["verdict", "mass_balance"]
    order = (["national"] if "national" in sums and recycler is None else []) + sorted(
        k for k in sums if k != "national"
    )
    rows: list[dict[str, Any]] = []
    for who in order:
        metals = sums[who]
        star = metals.get("*", [0, 0, 0, 0])
        for profile in chosen:
            row: dict[str, Any] = {
                "recycler": who,
                "name": names.get(who),
                "profile": profile.name,
                "batteries": star[0],
                "input_tonnes": tonnes(star[1]),
                "recovered_tonnes": tonnes(star[2]),
            }
            verdicts = []
            balance = "ok"
            for m in METALS:
                _, contained, recovered, unmatched = metals.get(m, [0, 0, 0, 0])
                rate = recovered / contained if contained else None
                threshold = profile.recovery_thresholds.get(m)
                verdict = metal_verdict(rate, threshold)
                if verdict == "exceeds_content":
                    balance = "violated"
                if threshold is not None:
                    verdicts.append(verdict)
                row[f"{m}_contained_kg"] = contained / 1000
                row[f"{m}_recovered_kg"] = recovered / 1000
                row[f"{m}_unmatched_kg"] = unmatched / 1000
                row[f"{m}_rate"] = round(rate, 6) if rate is not None else None
                row[f"{m}_threshold"] = threshold
                row[f"{m}_verdict"] = verdict
            row["verdict"] = overall_verdict(verdicts)
            row["mass_balance"] = balance
            rows.append(row)
    filters = {"year": year, "recycler": recycler}
    return Report(
        "recovery",
        columns,
        rows,
        {
            "filters": filters,
            "profiles": {p.name: dict(p.recovery_thresholds) for p in chosen},
        },
    )


def metal_verdict(rate: float | None, threshold: float | None) -> str:
    """``meets`` or ``below`` the threshold; ``exceeds_content`` when more was recovered than
    contained (a mass-balance violation); ``no_threshold`` or ``no_data`` otherwise."""
    if rate is None:
        return "no_data"
    if rate > 1:
        return "exceeds_content"
    if threshold is None:
        return "no_threshold"
    return "meets" if rate >= threshold else "below"


def overall_verdict(verdicts: Sequence[str]) -> str:
    if "below" in verdicts:
        return "below"
    if "exceeds_content" in verdicts:
        return "exceeds_content"
    if "meets" in verdicts:
        return "meets"
    return "no_data"


def _profiles(names: Sequence[str] | None) -> list[Profile]:
    if not names:
        return [load_profiles()[n] for n in sorted(load_profiles())]
    return [get_profile(n) for n in dict.fromkeys(names)]
