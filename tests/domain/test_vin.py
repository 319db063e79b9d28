"""VINs (ISO 3779 / GB 16735): check character, characters, lengths and corruptions."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batterytrace.domain.codes import make_vin, parse_vin, vin_check_character
from batterytrace.domain.errors import VIN_CHARACTER, VIN_CHECK, VIN_LENGTH, DomainError

ALPHABET = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"
# Transliteration, written out once more by hand: letter -> value.
VALUES = dict(
    zip(
        ALPHABET,
        [*range(10), 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 7, 9, 2, 3, 4, 5, 6, 7, 8, 9],
        strict=True,
    )
)

VALID = [
    "1M8GDM9AXKP042788",  # the textbook example: weighted sum 351, 351 mod 11 = 10 -> X
    "1HGCM82633A004352",  # widely cited Honda example, check 3
    "LVSHCAMB1CE054249",  # Chinese WMI (L...), check computed by hand: 1
    "LSGPC52U6AF102554",  # Chinese WMI (L...), check computed by hand: 6
]


def expect_error(s: str, code: str, position: int | None) -> DomainError:
    with pytest.raises(DomainError) as info:
        parse_vin(s)
    assert (info.value.code, info.value.position) == (code, position), info.value.message
    return info.value


@pytest.mark.parametrize("vin", VALID)
def test_known_vins_are_valid(vin: str) -> None:
    assert parse_vin(vin) == vin
    assert vin_check_character(vin) == vin[8]
    assert make_vin(vin[:8], vin[9:]) == vin


def test_textbook_check_character_by_hand() -> None:
    weights = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2]
    total = sum(VALUES[ch] * w for ch, w in zip("1M8GDM9AXKP042788", weights, strict=True))
    assert total == 351
    assert vin_check_character("1M8GDM9A0KP042788") == "X"


def test_wrong_check_character_names_position_9() -> None:
    err = expect_error("1M8GDM9A5KP042788", VIN_CHECK, 9)
    assert "'X'" in err.message


def test_european_vin_without_check_character_is_refused() -> None:
    err = expect_error("WP0ZZZ99ZTS392124", VIN_CHARACTER, 9)
    assert "digit 0–9 or X" in err.message


@pytest.mark.parametrize(("ch", "position"), [("I", 1), ("O", 5), ("Q", 17)])
def test_i_o_q_are_refused(ch: str, position: int) -> None:
    vin = "1M8GDM9AXKP042788"
    err = expect_error(vin[: position - 1] + ch + vin[position:], VIN_CHARACTER, position)
    assert "I, O or Q" in err.message


def test_lower_case_is_refused_with_suggestion() -> None:
    err = expect_error("1m8GDM9AXKP042788", VIN_CHARACTER, 2)
    assert "upper-case" in err.message
    assert "'1M8GDM9AXKP042788'" in err.message


@pytest.mark.parametrize("length", [0, 16, 18, 24])
def test_wrong_length(length: int) -> None:
    err = expect_error(("1M8GDM9AXKP042788" * 2)[:length], VIN_LENGTH, None)
    assert "17" in err.message


def test_spaces_are_not_stripped() -> None:
    assert "spaces" in expect_error(" 1M8GDM9AXKP042788", VIN_LENGTH, None).message


def test_make_vin_refuses_bad_parts() -> None:
    with pytest.raises(DomainError) as info:
        make_vin("1M8GDM9", "KP042788")
    assert info.value.code == VIN_LENGTH
    with pytest.raises(DomainError) as info:
        make_vin("1M8GDMIA", "KP042788")
    assert (info.value.code, info.value.position) == (VIN_CHARACTER, 7)


def test_check_character_needs_17_characters() -> None:
    with pytest.raises(DomainError) as info:
        vin_check_character("1M8GDM9AXKP04278")
    assert info.value.code == VIN_LENGTH


# --- property tests ------------------------------------------------------------------------

parts = st.text(ALPHABET, min_size=8, max_size=8)
valid_vins = st.builds(make_vin, parts, parts)


@given(parts, parts)
def test_made_vins_parse(wmi_vds: str, vis: str) -> None:
    vin = make_vin(wmi_vds, vis)
    assert vin[:8] == wmi_vds
    assert vin[9:] == vis
    assert vin[8] in "0123456789X"
    assert parse_vin(vin) == vin


@given(valid_vins, st.data())
def test_changing_the_check_character_is_refused(vin: str, data: st.DataObject) -> None:
    other = data.draw(st.sampled_from([c for c in "0123456789X" if c != vin[8]]))
    expect_error(vin[:8] + other + vin[9:], VIN_CHECK, 9)


@given(valid_vins, st.data())
def test_substitution_elsewhere_changes_the_check_unless_values_match(vin: str, data: st.DataObject) -> None:
    """Every weight is non-zero mod 11, so only a character of the same value goes unnoticed."""
    index = data.draw(st.sampled_from([i for i in range(17) if i != 8]))
    ch = data.draw(st.sampled_from([c for c in ALPHABET if c != vin[index]]))
    bad = vin[:index] + ch + vin[index + 1 :]
    if VALUES[ch] == VALUES[vin[index]]:
        assert parse_vin(bad) == bad  # e.g. A, J and 1 are all worth 1
    else:
        expect_error(bad, VIN_CHECK, 9)


def test_same_value_substitution_is_a_known_blind_spot() -> None:
    assert parse_vin("1M8GDM9AXKP042788".replace("A", "J")) == "1M8GDM9JXKP042788"


@given(valid_vins, st.data())
def test_foreign_characters_are_refused_at_their_position(vin: str, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, 16))
    allowed = "0123456789X" if index == 8 else ALPHABET
    ch = data.draw(st.sampled_from([c for c in string.printable + "ıéＡ" if c not in allowed]))
    expect_error(vin[:index] + ch + vin[index + 1 :], VIN_CHARACTER, index + 1)
