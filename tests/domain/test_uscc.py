"""Unified social credit codes (GB 32100-2015): check character, structure and corruptions."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batterytrace.domain.codes import describe_uscc, make_uscc, parse_uscc, uscc_check_character
from batterytrace.domain.errors import REGION_INVALID, USCC_CHARACTER, USCC_CHECK, USCC_LENGTH, DomainError

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"

# Published codes; each check character was also recomputed by hand from the weights.
VALID = [
    "91350100M000100Y43",  # commonly cited example (Fuzhou, Fujian)
    "91110000600037341L",  # Beijing enterprise, python-stdnum's example
    "91310115MA1K3BTP2B",  # Shanghai Pudong
    "9144030071526726XG",  # Shenzhen
    "121200004013590816",  # authority 1 (staffing), type 2 (public institution), Tianjin
    "92340602MA2PBMEM24",  # individual business, Huaibei
    "12440300455752807L",  # public institution, Shenzhen
    "51100000500002862F",  # national-level social organisation (region 100000)
]

AUTHORITY_TYPES = {
    "1": "1239",
    "2": "19",
    "3": "123459",
    "4": "19",
    "5": "1239",
    "6": "129",
    "7": "129",
    "8": "19",
    "9": "123",
    "A": "19",
    "N": "1239",
    "Y": "1",
}
PROVINCES = [
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37", "41", "42",
    "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65", "71", "81", "82",
]  # fmt: skip


def expect_error(s: str, code: str, position: int | None) -> DomainError:
    with pytest.raises(DomainError) as info:
        parse_uscc(s)
    assert (info.value.code, info.value.position) == (code, position), info.value.message
    return info.value


@pytest.mark.parametrize("code", VALID)
def test_published_codes_are_valid(code: str) -> None:
    assert parse_uscc(code) == code
    assert uscc_check_character(code[:17]) == code[17]
    assert make_uscc(code[:17]) == code


def test_check_character_by_hand() -> None:
    weights = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]
    total = sum(ALPHABET.index(ch) * w for ch, w in zip("91350100M000100Y4", weights, strict=True))
    assert ALPHABET[(31 - total % 31) % 31] == "3"


def test_describe_names_the_parts() -> None:
    info = describe_uscc("91350100M000100Y43")
    assert (info.authority, info.authority_name_zh, info.entity_type, info.entity_type_name_en) == (
        "9",
        "工商",
        "1",
        "enterprise",
    )
    assert (info.region, info.organisation_code, info.check_character) == ("350100", "M000100Y4", "3")


def test_wrong_check_character() -> None:
    err = expect_error("91110000600037341N", USCC_CHECK, 18)
    assert "'L'" in err.message


def test_letters_outside_the_alphabet_are_refused() -> None:
    # stdnum's bad example: I, O, Z, S and V are not used; the first is at position 14.
    expect_error("9111000060003IOZSV", USCC_CHARACTER, 14)


@pytest.mark.parametrize(
    ("code", "position", "message"),
    [
        ("B1350100M000100Y43", 1, "position 1 (registration authority)"),
        ("01350100M000100Y43", 1, "position 1 (registration authority)"),
        (
            "94350100M000100Y43",
            2,
            "position 2 (entity type) must be one of 1, 2, 3 for registration authority 9",
        ),
        ("Y2350100M000100Y43", 2, "position 2 (entity type)"),
        ("913A0100M000100Y43", 4, "position 4 (region) must be a digit"),
        ("91350I00M000100Y43", 6, "position 6 (region)"),
    ],
)
def test_structure_is_checked(code: str, position: int, message: str) -> None:
    err = expect_error(code, USCC_CHARACTER, position)
    assert message in err.message


def test_unknown_province_in_region() -> None:
    err = expect_error("91160100M000100Y43", REGION_INVALID, 3)
    assert "'16'" in err.message


def test_national_region_is_accepted() -> None:
    code = make_uscc("51100000500002862")
    assert describe_uscc(code).region == "100000"


def test_structure_error_before_later_bad_character() -> None:
    expect_error("94350100M00010IY43", USCC_CHARACTER, 2)


def test_lower_case_is_refused_with_suggestion() -> None:
    err = expect_error("91350100m000100Y43", USCC_CHARACTER, 9)
    assert "'91350100M000100Y43'" in err.message


@pytest.mark.parametrize("length", [0, 17, 19, 24])
def test_wrong_length(length: int) -> None:
    err = expect_error(("91350100M000100Y43" * 2)[:length], USCC_LENGTH, None)
    assert "18" in err.message


def test_spaces_are_not_stripped() -> None:
    assert "spaces" in expect_error("91350100M000100Y43 ", USCC_LENGTH, None).message


# --- property tests ------------------------------------------------------------------------


@st.composite
def valid_codes(draw: st.DrawFn) -> str:
    authority = draw(st.sampled_from(sorted(AUTHORITY_TYPES)))
    entity = draw(st.sampled_from(AUTHORITY_TYPES[authority]))
    region = draw(st.sampled_from([*PROVINCES, "10"])) + draw(st.text(string.digits, min_size=4, max_size=4))
    if region.startswith("10"):
        region = "100000"
    body = draw(st.text(ALPHABET, min_size=9, max_size=9))
    return make_uscc(authority + entity + region + body)


@given(valid_codes())
def test_made_codes_parse(code: str) -> None:
    assert parse_uscc(code) == code
    assert code[17] == uscc_check_character(code[:17])


@given(valid_codes(), st.data())
def test_any_substitution_is_refused(code: str, data: st.DataObject) -> None:
    """The weights are all non-zero mod 31, so every single change moves the check."""
    index = data.draw(st.integers(0, 17))
    ch = data.draw(st.sampled_from([c for c in ALPHABET if c != code[index]]))
    with pytest.raises(DomainError) as info:
        parse_uscc(code[:index] + ch + code[index + 1 :])
    err = info.value
    if index >= 8:
        assert (err.code, err.position) == (USCC_CHECK, 18)
    elif err.code == USCC_CHECK:
        assert err.position == 18
    elif err.code == REGION_INVALID:
        # the region is positions 3-8; any digit of it can make it unknown
        assert err.position == 3
        assert 2 <= index <= 7
    elif index == 0:
        # a new registration authority can make the entity type (position 2) invalid instead
        assert err.code == USCC_CHARACTER
        assert err.position in (1, 2)
    else:
        assert (err.code, err.position) == (USCC_CHARACTER, index + 1)


@given(valid_codes(), st.data())
def test_foreign_characters_are_refused_at_their_position(code: str, data: st.DataObject) -> None:
    index = data.draw(st.integers(8, 17))
    ch = data.draw(st.sampled_from([c for c in string.printable + "ıéＡ" if c not in ALPHABET]))
    expect_error(code[:index] + ch + code[index + 1 :], USCC_CHARACTER, index + 1)
