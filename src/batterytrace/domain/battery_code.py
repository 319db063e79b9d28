"""GB/T 34014-2017 traction-battery codes: parse, check and build.

Full form, 24 characters::

    pos 1-3 manufacturer | 4 product type | 5 battery type | 6-7 specification
        8-14 traceability | 15-17 production date (year, month, day) | 18-24 serial

Second-life (echelon-use) products are re-coded without the traceability field; the Catena-X
TractionBatteryCode 2.0.0 model writes them as 19 characters ending in ``R`` and a product-type
letter: ``^[A-Z0-9]{3}[PMC][A-GZ][A-Z0-9]{2}<Y><M><D>[0-9]{7}R[PMC]$``, so the date sits at
positions 8-10 and the serial at 11-17.

The date alphabets are data (``batterytrace/data/code_alphabets.toml``) because the sources
disagree from 2028 on. Every rejection is a :class:`DomainError` naming the 1-based position of
the first offending character, the field and the rule. Input is never upper-cased or stripped.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal, cast

from batterytrace.domain.errors import CODE_CHARACTER, CODE_DATE, CODE_LENGTH, CODE_SERIAL, DomainError

__all__ = [
    "BATTERY_TYPES",
    "FULL_LENGTH",
    "PRODUCT_TYPES",
    "SECOND_LIFE_LENGTH",
    "BatteryCode",
    "CodeAlphabets",
    "default_alphabets",
    "format_battery_code",
    "load_alphabets",
    "make_battery_code",
    "parse_battery_code",
    "set_default_alphabets",
]

FULL_LENGTH: Final = 24
SECOND_LIFE_LENGTH: Final = 19

ProductType = Literal["P", "M", "C"]
Level = Literal["pack", "module", "cell"]

#: Product-type letter (position 4) to level.
PRODUCT_TYPES: Final[Mapping[str, Level]] = MappingProxyType({"P": "pack", "M": "module", "C": "cell"})

#: Battery-type letter (position 5) to chemistry. A-G and Z, B = LFP and E = ternary (NCM/NCA) are
#: confirmed by the Catena-X regex, the NIO generator and the wenxiaobai explainer; the other
#: meanings are from memory in reference/notes/china.md and still to be checked against the
#: standard's table.
BATTERY_TYPES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "A": "nimh",
        "B": "lfp",
        "C": "lmo",
        "D": "lco",
        "E": "ternary",
        "F": "supercapacitor",
        "G": "lto",
        "Z": "other",
    }
)

_ALNUM: Final = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_DIGITS: Final = frozenset("0123456789")
_SERIAL_MAX: Final = 9_999_999


# --- date alphabets --------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CodeAlphabets:
    """Characters of the production date: year, month and day character to number."""

    year: Mapping[str, int]
    month: Mapping[str, int]
    day: Mapping[str, int]
    source: str = "<memory>"

    def year_char(self, year: int) -> str | None:
        """The character written for ``year``, or None if the alphabet has none."""
        return self._encoders[0].get(year)

    def month_char(self, month: int) -> str | None:
        """The character written for ``month``."""
        return self._encoders[1].get(month)

    def day_char(self, day: int) -> str | None:
        """The character written for ``day``."""
        return self._encoders[2].get(day)

    @cached_property
    def _encoders(self) -> tuple[dict[int, str], dict[int, str], dict[int, str]]:
        # The first character listed for a value is the one written.
        def invert(table: Mapping[str, int]) -> dict[int, str]:
            out: dict[int, str] = {}
            for ch, value in table.items():
                out.setdefault(value, ch)
            return out

        return invert(self.year), invert(self.month), invert(self.day)

    @cached_property
    def _layouts(self) -> dict[int, _Layout]:
        return {
            FULL_LENGTH: _Layout.build(self, second_life=False),
            SECOND_LIFE_LENGTH: _Layout.build(self, second_life=True),
        }


def load_alphabets(path: Path | None = None) -> CodeAlphabets:
    """Read date alphabets from a TOML file; without ``path``, the packaged default.

    The file has three tables, ``[year]``, ``[month]`` and ``[day]``, each mapping one character
    (0-9, A-Z) to its number; months must cover 1-12 and days 1-31. A malformed file raises
    ``ValueError`` naming the file and the problem.
    """
    if path is None:
        resource = resources.files("batterytrace").joinpath("data", "code_alphabets.toml")
        text, source = resource.read_text(encoding="utf-8"), "batterytrace/data/code_alphabets.toml"
    else:
        text, source = Path(path).read_text(encoding="utf-8"), str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{source}: not valid TOML: {exc}") from exc
    unknown = set(data) - {"year", "month", "day"}
    if unknown:
        raise ValueError(f"{source}: unknown table(s) {sorted(unknown)}; expected [year], [month] and [day]")
    year = _read_table(data, "year", source, 1900, 2199)
    month = _read_table(data, "month", source, 1, 12)
    day = _read_table(data, "day", source, 1, 31)
    for name, table, top in (("month", month, 12), ("day", day, 31)):
        missing = sorted(set(range(1, top + 1)) - set(table.values()))
        if missing:
            raise ValueError(f"{source}: [{name}] has no character for {missing}")
    return CodeAlphabets(
        year=MappingProxyType(year), month=MappingProxyType(month), day=MappingProxyType(day), source=source
    )


def _read_table(data: dict[str, Any], name: str, source: str, low: int, high: int) -> dict[str, int]:
    raw = data.get(name)
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{source}: missing or empty table [{name}]")
    table: dict[str, int] = {}
    for key, value in cast(dict[str, Any], raw).items():
        if len(key) != 1 or key not in _ALNUM:
            raise ValueError(f"{source}: [{name}] key {key!r} must be one character 0-9 or A-Z")
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ValueError(
                f"{source}: [{name}] {key!r} = {value!r} must be an integer from {low} to {high}"
            )
        table[key] = value
    return table


_default: CodeAlphabets | None = None


def default_alphabets() -> CodeAlphabets:
    """The alphabets used when none are passed: the packaged file, read on first use."""
    global _default
    if _default is None:
        _default = load_alphabets()
    return _default


def set_default_alphabets(alphabets: CodeAlphabets | None) -> None:
    """Replace the process-wide default (e.g. with an operator's file); None restores the packaged one."""
    global _default
    _default = alphabets


# --- layout ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Slot:
    """What one position may hold: the field it belongs to, its characters, the rule in words."""

    field: str
    first: int  # first position of the field, 1-based
    last: int
    allowed: frozenset[str]
    rule: str


@dataclass(frozen=True, slots=True)
class _Layout:
    slots: tuple[_Slot, ...]
    pattern: re.Pattern[str]
    date_at: int  # 0-based index of the year character
    serial_at: int

    @staticmethod
    def build(alphabets: CodeAlphabets, *, second_life: bool) -> _Layout:
        alnum_rule = "must be an upper-case letter or digit"
        fields: list[tuple[str, int, frozenset[str], str]] = [
            ("manufacturer code", 3, _ALNUM, alnum_rule),
            ("product type", 1, frozenset(PRODUCT_TYPES), "must be P (pack), M (module) or C (cell)"),
            ("battery type", 1, frozenset(BATTERY_TYPES), "must be one of A–G or Z"),
            ("specification", 2, _ALNUM, alnum_rule),
        ]
        if not second_life:
            fields.append(("traceability", 7, _ALNUM, alnum_rule))
        fields += [
            ("production year", 1, frozenset(alphabets.year), _alphabet_rule(alphabets.year, "a year")),
            ("production month", 1, frozenset(alphabets.month), _alphabet_rule(alphabets.month, "a month")),
            ("production day", 1, frozenset(alphabets.day), _alphabet_rule(alphabets.day, "a day")),
            ("serial number", 7, _DIGITS, "must be a digit"),
        ]
        if second_life:
            fields += [
                ("second-life flag", 1, frozenset("R"), "must be R in a 19-character (second-life) code"),
                ("second-life marker", 1, frozenset(PRODUCT_TYPES), "must be P, M or C"),
            ]
        slots: list[_Slot] = []
        for name, width, allowed, rule in fields:
            first = len(slots) + 1
            slot = _Slot(name, first, first + width - 1, allowed, rule)
            slots.extend([slot] * width)
        regex = "".join("[" + "".join(re.escape(c) for c in sorted(s.allowed)) + "]" for s in slots)
        date_at = next(i for i, s in enumerate(slots) if s.field == "production year")
        serial_at = next(i for i, s in enumerate(slots) if s.field == "serial number")
        return _Layout(tuple(slots), re.compile(regex), date_at, serial_at)


def _alphabet_rule(table: Mapping[str, int], what: str) -> str:
    chars = sorted(table)
    ranges: list[str] = []
    start = prev = chars[0]
    for ch in [*chars[1:], ""]:
        if ch and ord(ch) == ord(prev) + 1:
            prev = ch
            continue
        ranges.append(start if start == prev else f"{start}–{prev}")
        start = prev = ch
    values = sorted(table.values())
    return f"must be {what} character ({', '.join(ranges)} for {values[0]}–{values[-1]})"


# --- the code --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatteryCode:
    """A checked GB/T 34014 code, split into its fields.

    ``traceability`` is None and ``second_life`` true for the 19-character second-life form,
    whose trailing product-type letter is ``second_life_marker``.
    """

    raw: str
    manufacturer: str
    product_type: ProductType
    level: Level
    battery_type: str
    chemistry: str
    specification: str
    traceability: str | None
    production_date: date
    serial: int
    second_life: bool
    second_life_marker: ProductType | None

    def __str__(self) -> str:
        return self.raw


def parse_battery_code(
    s: str, *, alphabets: CodeAlphabets | None = None, field: str = "battery"
) -> BatteryCode:
    """Check a 24- or 19-character battery code and split it into its fields.

    Raises :class:`DomainError` (``code.bad_length``, ``code.bad_character``, ``code.bad_date``
    or ``code.bad_serial``) whose ``position`` is the first offending character.
    """
    alph = alphabets if alphabets is not None else default_alphabets()
    layout = alph._layouts.get(len(s))
    if layout is None:
        hint = " (remove the spaces around it)" if len(s.strip()) in alph._layouts else ""
        raise DomainError(
            CODE_LENGTH,
            f"a battery code has {FULL_LENGTH} characters, or {SECOND_LIFE_LENGTH} for a second-life code, "
            f"got {len(s)}{hint}",
            field=field,
            extra={"allowed_lengths": [FULL_LENGTH, SECOND_LIFE_LENGTH]},
        )
    if layout.pattern.fullmatch(s) is None:
        raise _first_bad_character(s, layout, field)

    d = layout.date_at
    year, month, day = alph.year[s[d]], alph.month[s[d + 1]], alph.day[s[d + 2]]
    try:
        produced = date(year, month, day)
    except ValueError:
        raise DomainError(
            CODE_DATE,
            f"positions {d + 1}–{d + 3} (production date) {s[d : d + 3]!r} read as year {year}, "
            f"month {month}, day {day}, which is not a real date",
            field=field,
            position=d + 1,
        ) from None

    n = layout.serial_at
    serial = int(s[n : n + 7])
    if serial == 0:
        raise DomainError(
            CODE_SERIAL,
            f"positions {n + 1}–{n + 7} (serial number) must be 0000001–9999999, got {s[n : n + 7]!r}",
            field=field,
            position=n + 1,
        )

    second_life = len(s) == SECOND_LIFE_LENGTH
    product_type = cast(ProductType, s[3])
    return BatteryCode(
        raw=s,
        manufacturer=s[0:3],
        product_type=product_type,
        level=PRODUCT_TYPES[product_type],
        battery_type=s[4],
        chemistry=BATTERY_TYPES[s[4]],
        specification=s[5:7],
        traceability=None if second_life else s[7:14],
        production_date=produced,
        serial=serial,
        second_life=second_life,
        second_life_marker=cast(ProductType, s[18]) if second_life else None,
    )


def _first_bad_character(s: str, layout: _Layout, field: str) -> DomainError:
    for index, (ch, slot) in enumerate(zip(s, layout.slots, strict=True)):
        if ch in slot.allowed:
            continue
        position = index + 1
        where = f"position {position} ({slot.field}"
        if slot.last > slot.first:
            where += f", positions {slot.first}–{slot.last}"
        message = f"{where}) {slot.rule}, got {ch!r}"
        if ch.islower():
            message += f"; codes are upper-case: did you mean {s.upper()!r}?"
        return DomainError(CODE_CHARACTER, message, field=field, position=position)
    raise AssertionError("pattern and slots disagree")  # pragma: no cover


def make_battery_code(
    manufacturer: str,
    product_type: str,
    battery_type: str,
    specification: str,
    traceability: str | None,
    production_date: date,
    serial: int,
    second_life_marker: str | None = None,
    *,
    alphabets: CodeAlphabets | None = None,
) -> str:
    """Write a valid code from its fields; ``parse_battery_code`` gives the fields back.

    ``traceability=None`` makes the 19-character second-life form, ending in ``R`` and
    ``second_life_marker`` (default: ``product_type``). Any field that cannot be written raises
    :class:`DomainError` with the same codes as parsing.
    """
    alph = alphabets if alphabets is not None else default_alphabets()
    if traceability is not None and second_life_marker is not None:
        raise ValueError("second_life_marker belongs to the second-life form: pass traceability=None")
    for name, value, width in (
        ("manufacturer", manufacturer, 3),
        ("product_type", product_type, 1),
        ("battery_type", battery_type, 1),
        ("specification", specification, 2),
        ("traceability", traceability, 7),
        ("second_life_marker", second_life_marker, 1),
    ):
        if value is not None and len(value) != width:
            raise DomainError(CODE_LENGTH, f"{name} must be {width} character(s), got {value!r}", field=name)
    if not 1 <= serial <= _SERIAL_MAX:
        raise DomainError(CODE_SERIAL, f"serial must be 1–{_SERIAL_MAX}, got {serial}", field="serial")
    y = alph.year_char(production_date.year)
    m = alph.month_char(production_date.month)
    d = alph.day_char(production_date.day)
    if y is None or m is None or d is None:
        years = sorted(alph.year.values())
        raise DomainError(
            CODE_DATE,
            f"{production_date.isoformat()} cannot be written with the date alphabets of {alph.source} "
            f"(years {years[0]}–{years[-1]})",
            field="production_date",
        )
    if traceability is None:
        tail = f"{y}{m}{d}{serial:07d}R{second_life_marker or product_type}"
        code = f"{manufacturer}{product_type}{battery_type}{specification}{tail}"
    else:
        code = f"{manufacturer}{product_type}{battery_type}{specification}{traceability}{y}{m}{d}{serial:07d}"
    parse_battery_code(code, alphabets=alph)
    return code


#: Alias of :func:`make_battery_code`.
format_battery_code = make_battery_code
