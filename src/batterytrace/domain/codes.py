"""Identifiers the registry reads: battery codes, VINs, credit codes and regions.

One import point for the parsers (each lives in its own module) and :func:`identify`, which
tells from its length what an identifier is and describes it for people.
"""

from __future__ import annotations

from batterytrace.domain.battery_code import (
    BATTERY_TYPES,
    FULL_LENGTH,
    PRODUCT_TYPES,
    SECOND_LIFE_LENGTH,
    BatteryCode,
    CodeAlphabets,
    default_alphabets,
    format_battery_code,
    load_alphabets,
    make_battery_code,
    parse_battery_code,
    set_default_alphabets,
)
from batterytrace.domain.errors import CODE_CHARACTER, CODE_LENGTH, DomainError
from batterytrace.domain.regions import Province, Region, parse_province, parse_region, provinces
from batterytrace.domain.uscc import (
    USCC_ALPHABET,
    UsccInfo,
    describe_uscc,
    make_uscc,
    parse_uscc,
    uscc_check_character,
)
from batterytrace.domain.vin import VIN_ALPHABET, make_vin, parse_vin, vin_check_character

__all__ = [
    "BATTERY_TYPES",
    "FULL_LENGTH",
    "KIND_BATTERY_CODE",
    "KIND_REGION",
    "KIND_USCC",
    "KIND_VIN",
    "PRODUCT_TYPES",
    "SECOND_LIFE_LENGTH",
    "USCC_ALPHABET",
    "VIN_ALPHABET",
    "BatteryCode",
    "CodeAlphabets",
    "Province",
    "Region",
    "UsccInfo",
    "default_alphabets",
    "describe_uscc",
    "format_battery_code",
    "identify",
    "load_alphabets",
    "make_battery_code",
    "make_uscc",
    "make_vin",
    "parse_battery_code",
    "parse_province",
    "parse_region",
    "parse_uscc",
    "parse_vin",
    "provinces",
    "set_default_alphabets",
    "uscc_check_character",
    "vin_check_character",
]

KIND_BATTERY_CODE = "battery code"
KIND_VIN = "VIN"
KIND_USCC = "unified social credit code"
KIND_REGION = "region"


def identify(s: str) -> tuple[str, dict[str, str]]:
    """Tell by its length what ``s`` is, check it, and describe its fields for display.

    24 or 19 characters: a battery code; 17: a VIN; 18: a unified social credit code; 6: a
    region code. Blanks around ``s`` are refused, not stripped. Returns ``(kind, fields)`` with
    the fields in reading order; raises :class:`DomainError` when the identifier is not valid.
    """
    if s != s.strip():
        position = 1 if s[:1].isspace() else len(s.rstrip()) + 1
        raise DomainError(
            CODE_CHARACTER,
            f"position {position} is blank ({s[position - 1]!r}): identifiers are read exactly as given; "
            "remove the blanks around it",
            field="code",
            position=position,
        )
    n = len(s)
    if n in (FULL_LENGTH, SECOND_LIFE_LENGTH):
        return KIND_BATTERY_CODE, _battery_fields(parse_battery_code(s, field="code"))
    if n == 17:
        return KIND_VIN, _vin_fields(parse_vin(s, field="code"))
    if n == 18:
        return KIND_USCC, _uscc_fields(describe_uscc(s, field="code"))
    if n == 6:
        return KIND_REGION, _region_fields(parse_region(s, field="code"))
    raise DomainError(
        CODE_LENGTH,
        f"{n} characters is no identifier the registry knows: a battery code has 24 "
        "(19 for a second-life code), a VIN 17, a unified social credit code 18, a region code 6",
        field="code",
        extra={"allowed_lengths": [24, 19, 18, 17, 6]},
    )


def _battery_fields(code: BatteryCode) -> dict[str, str]:
    fields = {
        "manufacturer": code.manufacturer,
        "level": code.level,
        "chemistry": code.chemistry,
        "specification": code.specification,
        "traceability": code.traceability if code.traceability is not None else "none (second-life code)",
        "production date": code.production_date.isoformat(),
        "serial": str(code.serial),
        "second life": "yes" if code.second_life else "no",
    }
    if code.second_life_marker is not None:
        fields["second-life marker"] = code.second_life_marker
    return fields


def _vin_fields(vin: str) -> dict[str, str]:
    return {
        "world manufacturer identifier": vin[0:3],
        "vehicle descriptor": vin[3:8],
        "check character": vin[8],
        "model year character": vin[9],
        "plant": vin[10],
        "serial": vin[11:17],
    }


def _uscc_fields(info: UsccInfo) -> dict[str, str]:
    if info.region == "100000":
        region = "100000 (national level)"
    else:
        region = _region_label(parse_region(info.region, field="code"))
    return {
        "registration authority": f"{info.authority} ({info.authority_name_en}, {info.authority_name_zh})",
        "entity type": f"{info.entity_type} ({info.entity_type_name_en}, {info.entity_type_name_zh})",
        "region": region,
        "organisation code": info.organisation_code,
        "check character": info.check_character,
    }


def _region_fields(region: Region) -> dict[str, str]:
    return {
        "code": region.code,
        "province": f"{region.province} ({region.province_name_en}, {region.province_name_zh})",
        "province level": "yes" if region.is_province_level else "no",
    }


def _region_label(region: Region) -> str:
    return f"{region.code} ({region.province_name_en}, {region.province_name_zh})"
