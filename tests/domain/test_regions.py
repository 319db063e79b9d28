"""GB/T 2260 region codes and the 34 province-level units."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batterytrace.domain.codes import parse_province, parse_region, provinces
from batterytrace.domain.errors import REGION_INVALID, DomainError

# The table of reference/notes/figures.md §4: code, English, Chinese, abbreviation.
EXPECTED = {
    "11": ("Beijing", "北京市", "BJ"),
    "12": ("Tianjin", "天津市", "TJ"),
    "13": ("Hebei", "河北省", "HE"),
    "14": ("Shanxi", "山西省", "SX"),
    "15": ("Inner Mongolia", "内蒙古自治区", "NM"),
    "21": ("Liaoning", "辽宁省", "LN"),
    "22": ("Jilin", "吉林省", "JL"),
    "23": ("Heilongjiang", "黑龙江省", "HL"),
    "31": ("Shanghai", "上海市", "SH"),
    "32": ("Jiangsu", "江苏省", "JS"),
    "33": ("Zhejiang", "浙江省", "ZJ"),
    "34": ("Anhui", "安徽省", "AH"),
    "35": ("Fujian", "福建省", "FJ"),
    "36": ("Jiangxi", "江西省", "JX"),
    "37": ("Shandong", "山东省", "SD"),
    "41": ("Henan", "河南省", "HA"),
    "42": ("Hubei", "湖北省", "HB"),
    "43": ("Hunan", "湖南省", "HN"),
    "44": ("Guangdong", "广东省", "GD"),
    "45": ("Guangxi", "广西壮族自治区", "GX"),
    "46": ("Hainan", "海南省", "HI"),
    "50": ("Chongqing", "重庆市", "CQ"),
    "51": ("Sichuan", "四川省", "SC"),
    "52": ("Guizhou", "贵州省", "GZ"),
    "53": ("Yunnan", "云南省", "YN"),
    "54": ("Tibet (Xizang)", "西藏自治区", "XZ"),
    "61": ("Shaanxi", "陕西省", "SN"),
    "62": ("Gansu", "甘肃省", "GS"),
    "63": ("Qinghai", "青海省", "QH"),
    "64": ("Ningxia", "宁夏回族自治区", "NX"),
    "65": ("Xinjiang", "新疆维吾尔自治区", "XJ"),
    "71": ("Taiwan", "台湾省", "TW"),
    "81": ("Hong Kong", "香港特别行政区", "HK"),
    "82": ("Macao", "澳门特别行政区", "MO"),
}
UNKNOWN = [f"{n:02d}" for n in range(100) if f"{n:02d}" not in EXPECTED]


def expect_error(s: str, position: int | None, *, province: bool = False) -> DomainError:
    with pytest.raises(DomainError) as info:
        parse_province(s) if province else parse_region(s)
    assert (info.value.code, info.value.position) == (REGION_INVALID, position), info.value.message
    return info.value


def test_the_table_has_the_34_units_of_the_fact_sheet() -> None:
    table = provinces()
    assert len(table) == 34
    assert {code: (p.name_en, p.name_zh, p.abbreviation) for code, p in table.items()} == EXPECTED
    assert sum(p.type == "municipality" for p in table.values()) == 4
    assert sum(p.type == "autonomous region" for p in table.values()) == 5


def test_shanxi_and_shaanxi_are_not_confused() -> None:
    assert parse_province("14").name_en == "Shanxi"
    assert parse_province("61").name_en == "Shaanxi"


@pytest.mark.parametrize(
    ("code", "province", "name_en", "name_zh", "province_level"),
    [
        ("310115", "31", "Shanghai", "上海市", False),
        ("310000", "31", "Shanghai", "上海市", True),
        ("110000", "11", "Beijing", "北京市", True),
        ("350100", "35", "Fujian", "福建省", False),
        ("820000", "82", "Macao", "澳门特别行政区", True),
    ],
)
def test_valid_regions(code: str, province: str, name_en: str, name_zh: str, province_level: bool) -> None:
    region = parse_region(code)
    assert (region.code, region.province, region.province_name_en, region.province_name_zh) == (
        code,
        province,
        name_en,
        name_zh,
    )
    assert region.is_province_level is province_level


@pytest.mark.parametrize("two", UNKNOWN)
def test_every_unknown_province_is_refused(two: str) -> None:
    err = expect_error(two + "0000", 1)
    assert f"unknown province {two!r}" in err.message
    err = expect_error(two, 1, province=True)
    assert f"unknown province {two!r}" in err.message


@pytest.mark.parametrize(("code", "position"), [("31011A", 6), ("a10115", 1), ("31 115", 3), ("3１0115", 2)])
def test_non_digits_are_refused_at_their_position(code: str, position: int) -> None:
    assert f"position {position}" in expect_error(code, position).message


@pytest.mark.parametrize("code", ["", "31", "3101150", "31011"])
def test_region_length(code: str) -> None:
    assert "6 digits" in expect_error(code, None).message


def test_region_spaces_are_not_stripped() -> None:
    assert "spaces" in expect_error(" 310115", None).message


def test_province_codes() -> None:
    shanghai = parse_province("31")
    assert (shanghai.code, shanghai.name_en, shanghai.name_zh, shanghai.abbreviation) == (
        "31",
        "Shanghai",
        "上海市",
        "SH",
    )
    assert shanghai.region_code == "310000"


@pytest.mark.parametrize("code", ["310000", "3", ""])
def test_province_length(code: str) -> None:
    assert "2 digits" in expect_error(code, None, province=True).message


def test_province_non_digit() -> None:
    expect_error("3A", 2, province=True)


@given(st.sampled_from(sorted(EXPECTED)), st.from_regex(r"[0-9]{4}", fullmatch=True))
def test_any_code_under_a_known_province_is_accepted(two: str, rest: str) -> None:
    assert parse_region(two + rest).province_name_en == EXPECTED[two][0]
