"""Administrative division codes (GB/T 2260) and the province-level units they start with.

A region code has six digits; the first two name one of the 34 province-level units listed in
``batterytrace/data/provinces.toml``. Only the province part is checked: prefecture and county
codes change too often to freeze here.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import MappingProxyType

from batterytrace.domain.errors import REGION_INVALID, DomainError

__all__ = ["Province", "Region", "parse_province", "parse_region", "provinces"]

_DIGITS = frozenset("0123456789")


@dataclass(frozen=True, slots=True)
class Province:
    """A province-level unit: ``code`` is its two digits, e.g. ``"31"`` for Shanghai."""

    code: str
    name_en: str
    name_zh: str
    type: str
    abbreviation: str

    @property
    def region_code(self) -> str:
        """The six-digit code of the province itself (``"310000"``)."""
        return self.code + "0000"


@dataclass(frozen=True, slots=True)
class Region:
    """A six-digit administrative division code and the province it belongs to."""

    code: str
    province: str
    province_name_en: str
    province_name_zh: str

    @property
    def is_province_level(self) -> bool:
        """True for the province itself (``"310000"``), false for a prefecture or county."""
        return self.code.endswith("0000")


@cache
def provinces() -> Mapping[str, Province]:
    """The province-level units by two-digit code, read once from the package data."""
    text = resources.files("batterytrace").joinpath("data", "provinces.toml").read_text(encoding="utf-8")
    table: dict[str, Province] = {}
    for row in tomllib.loads(text)["province"]:
        province = Province(
            code=str(row["code"]),
            name_en=str(row["name_en"]),
            name_zh=str(row["name_zh"]),
            type=str(row["type"]),
            abbreviation=str(row["abbreviation"]),
        )
        if len(province.code) != 2 or not _DIGITS.issuperset(province.code) or province.code in table:
            raise ValueError(f"provinces.toml: bad or repeated province code {province.code!r}")
        table[province.code] = province
    return MappingProxyType(table)


def parse_region(s: str, *, field: str = "region") -> Region:
    """Check a six-digit GB/T 2260 code such as ``"310115"`` and name its province."""
    if len(s) != 6:
        raise DomainError(
            REGION_INVALID,
            f"a region code has 6 digits (GB/T 2260, e.g. 310115), got {len(s)} characters"
            f"{_space_hint(s, 6)}",
            field=field,
        )
    _check_digits(s, field)
    province = _province_or_error(s[:2], field, "positions 1–2 (province) of region code")
    return Region(
        code=s, province=province.code, province_name_en=province.name_en, province_name_zh=province.name_zh
    )


def parse_province(s: str, *, field: str = "region") -> Province:
    """Check a two-digit province code such as ``"31"`` (Shanghai)."""
    if len(s) != 2:
        raise DomainError(
            REGION_INVALID,
            f"a province code has 2 digits (GB/T 2260, e.g. 31 for Shanghai), got {len(s)} characters"
            f"{_space_hint(s, 2)}",
            field=field,
        )
    _check_digits(s, field)
    return _province_or_error(s, field, "province code")


def province_of(code: str) -> Province | None:
    """The province whose two digits start ``code``, or None. Does not raise."""
    return provinces().get(code[:2])


def _check_digits(s: str, field: str) -> None:
    for position, ch in enumerate(s, start=1):
        if ch not in _DIGITS:
            raise DomainError(
                REGION_INVALID,
                f"position {position} of a region code must be a digit 0–9, got {ch!r}",
                field=field,
                position=position,
            )


def _province_or_error(two: str, field: str, what: str) -> Province:
    province = provinces().get(two)
    if province is None:
        known = ", ".join(provinces())
        raise DomainError(
            REGION_INVALID,
            f"unknown province {two!r}: {what} must be a province-level code of GB/T 2260 ({known})",
            field=field,
            position=1,
        )
    return province


def _space_hint(s: str, length: int) -> str:
    return " (remove the spaces around it)" if len(s.strip()) == length else ""
