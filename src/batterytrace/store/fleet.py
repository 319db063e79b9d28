"""The fleet rollup: how many batteries there are, and their mass, by year of registration,
chemistry, stage, whether they are attached to a parent and whether they are second-life
products. The dashboard's counts by stage and the retirement forecast read it instead of grouping
the whole ``batteries`` table, so their cost does not grow with the number of batteries.

It is derived from the batteries' current state alone and kept in the transaction that changes
them: the batch context hands over each changed battery as it was before the batch and as it is
after (:meth:`FleetCounts.move`), so a retraction, which puts the battery's snapshot back (or
deletes a registration), takes back exactly what the event had added. :func:`rebuild` recounts it
from the ``batteries`` table; ``verify`` compares it with the batteries replayed from the log.

Mass is counted in whole milligrams (the finest unit a declared mass is given in), so adding and
taking back never drift and the sums round exactly as the sum of the masses does.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, delete, select

from batterytrace.domain.model import BatteryState
from batterytrace.store import tables as T
from batterytrace.store.counters import add_counts

#: The rollup's key columns, in order.
KEY = ("year", "chemistry", "stage", "attached", "second_life")
#: (year of registration in UTC, chemistry, stage, attached, second_life)
Key = tuple[int, str, str, bool, bool]
#: batteries, milligrams of mass, batteries whose mass is known
Counts = tuple[int, int, int]
_STREAM = 10_000


def milligrams(kg: Any) -> int:
    """A mass in kilograms as whole milligrams; 0 when it is not given."""
    if isinstance(kg, bool) or not isinstance(kg, int | float):
        return 0
    return round(kg * 1_000_000)


def key_of(registered_at: datetime, chemistry: str, stage: str, attached: bool, second_life: bool) -> Key:
    """The rollup key of a battery. The year is the registration's year in UTC, as the database
    keeps the time."""
    moment = registered_at.astimezone(UTC) if registered_at.tzinfo is not None else registered_at
    return (moment.year, chemistry, str(stage), bool(attached), bool(second_life))


class FleetCounts:
    """Counts by key, added up in memory before they are written: a batch's changes (some of
    them negative) or a whole recount."""

    def __init__(self) -> None:
        self.cells: defaultdict[Key, list[int]] = defaultdict(lambda: [0, 0, 0])

    def count(self, key: Key, mass_kg: Any, sign: int = 1) -> None:
        cell = self.cells[key]
        cell[0] += sign
        cell[1] += sign * milligrams(mass_kg)
        cell[2] += sign * (mass_kg is not None)

    def add(self, state: BatteryState, sign: int = 1) -> None:
        key = key_of(state.registered_at, state.chemistry, state.stage, state.attached, state.second_life)
        self.count(key, state.mass_kg, sign)

    def move(self, before: BatteryState | None, after: BatteryState | None) -> None:
        """One battery changed from ``before`` to ``after`` (None: not registered)."""
        if before is not None:
            self.add(before, -1)
        if after is not None:
            self.add(after, +1)

    def nonzero(self) -> dict[Key, Counts]:
        return {k: (v[0], v[1], v[2]) for k, v in sorted(self.cells.items()) if any(v)}


def of_states(states: Iterable[BatteryState]) -> dict[Key, Counts]:
    counts = FleetCounts()
    for state in states:
        counts.add(state)
    return counts.nonzero()


def write(conn: Connection, counts: FleetCounts) -> None:
    """Add ``counts`` to the rollup, in the caller's transaction (one bulk upsert)."""
    add_counts(conn, T.fleet_rollup, KEY, counts.cells)


def stored(conn: Connection) -> dict[Key, Counts]:
    """The rollup as stored, without the keys no battery has any more."""
    f = T.fleet_rollup
    out: dict[Key, Counts] = {}
    for r in conn.execute(select(f)):
        if r.batteries or r.mass_mg or r.with_mass:
            key = (int(r.year), str(r.chemistry), str(r.stage), bool(r.attached), bool(r.second_life))
            out[key] = (int(r.batteries), int(r.mass_mg), int(r.with_mass))
    return out


def _battery_rows(conn: Connection) -> Iterator[Any]:
    b = T.batteries
    stmt = select(b.c.registered_at, b.c.chemistry, b.c.stage, b.c.attached, b.c.second_life, b.c.mass_kg)
    result = conn.execute(stmt.execution_options(stream_results=True, yield_per=_STREAM))
    try:
        yield from result
    finally:
        result.close()


def scan(conn: Connection) -> dict[Key, Counts]:
    """The rollup as a scan of the ``batteries`` table gives it."""
    counts = FleetCounts()
    for r in _battery_rows(conn):
        counts.count(key_of(r.registered_at, r.chemistry, r.stage, r.attached, r.second_life), r.mass_kg)
    return counts.nonzero()


def rebuild(conn: Connection) -> int:
    """Recount the rollup from the ``batteries`` table, in the caller's (write) transaction;
    returns the number of keys written."""
    counted = scan(conn)
    conn.execute(delete(T.fleet_rollup))
    if counted:
        conn.execute(
            T.fleet_rollup.insert(),
            [
                dict(zip(KEY, key, strict=True)) | {"batteries": n, "mass_mg": mg, "with_mass": known}
                for key, (n, mg, known) in counted.items()
            ],
        )
    return len(counted)


def differences(
    expected: Mapping[Key, Counts], actual: Mapping[Key, Counts]
) -> list[tuple[Key, Counts, Counts]]:
    """Keys whose counts differ: (key, expected, actual), absent counting as zero."""
    zero = (0, 0, 0)
    return [
        (key, expected.get(key, zero), actual.get(key, zero))
        for key in sorted(set(expected) | set(actual))
        if expected.get(key, zero) != actual.get(key, zero)
    ]


def key_text(key: Key) -> str:
    year, chemistry, stage, attached, second_life = key
    return "/".join(
        (
            str(year),
            chemistry,
            stage,
            "attached" if attached else "top-level",
            "second-life" if second_life else "first-life",
        )
    )
