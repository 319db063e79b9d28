"""identify(): telling identifiers apart by length and describing them."""

from __future__ import annotations

import pytest

from batterytrace.domain.codes import identify
from batterytrace.domain.errors import (
    CODE_CHARACTER,
    CODE_LENGTH,
    REGION_INVALID,
    USCC_CHECK,
    VIN_CHECK,
    DomainError,
)


def test_full_battery_code() -> None:
    kind, fields = identify("X12MCPM27KLPCLX2M2382320")
    assert kind == "battery code"
    assert fields == {
        "manufacturer": "X12",
        "level": "module",
        "chemistry": "lmo",
        "specification": "PM",
        "traceability": "27KLPCL",
        "production date": "2040-02-21",
        "serial": "2382320",
        "second life": "no",
    }
    assert next(iter(fields)) == "manufacturer"


def test_second_life_battery_code() -> None:
    kind, fields = identify("001PBABG3V0000042RM")
    assert kind == "battery code"
    assert fields["second life"] == "yes"
    assert fields["second-life marker"] == "M"
    assert fields["traceability"].startswith("none")
    assert fields["chemistry"] == "lfp"


def test_vin() -> None:
    kind, fields = identify("1M8GDM9AXKP042788")
    assert kind == "VIN"
    assert fields["world manufacturer identifier"] == "1M8"
    assert fields["check character"] == "X"


def test_uscc() -> None:
    kind, fields = identify("91350100M000100Y43")
    assert kind == "unified social credit code"
    assert fields["registration authority"].startswith("9 ")
    assert fields["entity type"] == "1 (enterprise, 企业)"
    assert fields["region"] == "350100 (Fujian, 福建省)"
    assert identify("51100000500002862F")[1]["region"] == "100000 (national level)"


def test_region() -> None:
    kind, fields = identify("310115")
    assert kind == "region"
    assert fields["province"] == "31 (Shanghai, 上海市)"


@pytest.mark.parametrize(
    ("s", "code", "position"),
    [
        ("X12MHPM27KLPCLX2M2382320", CODE_CHARACTER, 5),
        ("1M8GDM9A5KP042788", VIN_CHECK, 9),
        ("91110000600037341N", USCC_CHECK, 18),
        ("160000", REGION_INVALID, 1),
        ("", CODE_LENGTH, None),
        ("12345", CODE_LENGTH, None),
        (" 1M8GDM9AXKP042788", CODE_CHARACTER, 1),
        ("1M8GDM9AXKP042788\n", CODE_CHARACTER, 18),
    ],
)
def test_invalid_identifiers_raise(s: str, code: str, position: int | None) -> None:
    with pytest.raises(DomainError) as info:
        identify(s)
    assert (info.value.code, info.value.position) == (code, position)
    assert info.value.field == "code"


def test_unknown_length_lists_the_lengths() -> None:
    with pytest.raises(DomainError) as info:
        identify("ABCDEFGHIJ")
    for n in ("24", "19", "17", "18", "6"):
        assert n in info.value.message


def test_blanks_are_named() -> None:
    with pytest.raises(DomainError) as info:
        identify("310115 ")
    assert "remove the blanks" in info.value.message
