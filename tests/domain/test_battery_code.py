"""GB/T 34014 battery codes: round trips, every kind of rejection and the date alphabets.

The expected alphabets and position rules are written out here independently of the parser,
so that a change to the data file or the parser shows up as a failure.
"""

from __future__ import annotations

import calendar
import dataclasses
import re
import string
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batterytrace.domain.codes import (
    BatteryCode,
    default_alphabets,
    format_battery_code,
    load_alphabets,
    make_battery_code,
    parse_battery_code,
    set_default_alphabets,
)
from batterytrace.domain.errors import CODE_CHARACTER, CODE_DATE, CODE_LENGTH, CODE_SERIAL, DomainError

CATENA_X_EXAMPLE = "X12MCPM27KLPCLX2M2382320"

ALNUM = string.digits + string.ascii_uppercase
DIGITS = string.digits
# Default alphabets: years 2010-2041 (skipping I, O, Q), months 1-12, days 1-30 then '0' = 31.
YEARS = "0123456789ABCDEFGHJKLMNPRSTUVWXY"
MONTHS = "123456789ABC"
DAYS = "123456789ABCDEFGHJKLMNPRSTVWXY0"
LEVELS = {"P": "pack", "M": "module", "C": "cell"}
CHEMISTRIES = {
    "A": "nimh",
    "B": "lfp",
    "C": "lmo",
    "D": "lco",
    "E": "ternary",
    "F": "supercapacitor",
    "G": "lto",
    "Z": "other",
}
PRODUCT = "PMC"
BATTERY = "ABCDEFGZ"

FULL_RULES = (
    [ALNUM] * 3 + [PRODUCT, BATTERY] + [ALNUM] * 2 + [ALNUM] * 7 + [YEARS, MONTHS, DAYS] + [DIGITS] * 7
)
SHORT_RULES = (
    [ALNUM] * 3 + [PRODUCT, BATTERY] + [ALNUM] * 2 + [YEARS, MONTHS, DAYS] + [DIGITS] * 7 + ["R", PRODUCT]
)
FULL_FIELDS = (
    ["manufacturer code"] * 3
    + ["product type", "battery type"]
    + ["specification"] * 2
    + ["traceability"] * 7
    + ["production year", "production month", "production day"]
    + ["serial number"] * 7
)
SHORT_FIELDS = FULL_FIELDS[:7] + FULL_FIELDS[14:] + ["second-life flag", "second-life marker"]

# Characters to corrupt with: all printable ASCII, some look-alikes and non-ASCII letters.
POOL = string.printable + "ıİéÉß０１ＡΑО\u00a0\u200b"


def encode_date(d: date) -> str:
    return YEARS[d.year - 2010] + MONTHS[d.month - 1] + DAYS[d.day - 1]


def expect_error(s: str, code: str, position: int | None) -> DomainError:
    with pytest.raises(DomainError) as info:
        parse_battery_code(s)
    err = info.value
    assert (err.code, err.position) == (code, position), err.message
    if position is not None:
        assert f"position {position}" in err.message or f"positions {position}–" in err.message
    return err


# --- strategies ----------------------------------------------------------------------------

dates = st.dates(min_value=date(2010, 1, 1), max_value=date(2041, 12, 31))


@st.composite
def code_fields(draw: st.DrawFn, second_life: bool | None = None) -> dict[str, object]:
    """Fields of a valid code; ``second_life`` None draws both forms."""
    if second_life is None:
        second_life = draw(st.booleans())
    return {
        "manufacturer": draw(st.text(ALNUM, min_size=3, max_size=3)),
        "product_type": draw(st.sampled_from(PRODUCT)),
        "battery_type": draw(st.sampled_from(BATTERY)),
        "specification": draw(st.text(ALNUM, min_size=2, max_size=2)),
        "traceability": None if second_life else draw(st.text(ALNUM, min_size=7, max_size=7)),
        "production_date": draw(dates),
        "serial": draw(st.integers(1, 9_999_999)),
        "second_life_marker": draw(st.sampled_from(PRODUCT)) if second_life else None,
    }


def write(f: dict[str, object]) -> str:
    """The code for ``f``, written by hand from the layout (not by the code under test)."""
    assert isinstance(f["production_date"], date)
    head = f"{f['manufacturer']}{f['product_type']}{f['battery_type']}{f['specification']}"
    when = encode_date(f["production_date"])
    if f["traceability"] is None:
        return f"{head}{when}{f['serial']:07d}R{f['second_life_marker']}"
    return f"{head}{f['traceability']}{when}{f['serial']:07d}"


valid_codes = code_fields().map(write)


# --- valid codes ---------------------------------------------------------------------------


def test_catena_x_example_parses() -> None:
    code = parse_battery_code(CATENA_X_EXAMPLE)
    assert code == BatteryCode(
        raw=CATENA_X_EXAMPLE,
        manufacturer="X12",
        product_type="M",
        level="module",
        battery_type="C",
        chemistry="lmo",
        specification="PM",
        traceability="27KLPCL",
        production_date=date(2040, 2, 21),
        serial=2382320,
        second_life=False,
        second_life_marker=None,
    )
    assert str(code) == CATENA_X_EXAMPLE


def test_second_life_form_parses() -> None:
    code = parse_battery_code("001PBABG3V0000042RM")
    assert code.second_life is True
    assert code.traceability is None
    assert code.second_life_marker == "M"
    assert (code.manufacturer, code.level, code.chemistry, code.specification) == ("001", "pack", "lfp", "AB")
    assert code.production_date == date(2026, 3, 27)
    assert code.serial == 42


def test_full_form_is_not_second_life() -> None:
    code = parse_battery_code("071PEA1ABCDEF9GC10000001")
    assert (code.second_life, code.second_life_marker) == (False, None)
    assert code.chemistry == "ternary"
    assert code.production_date == date(2026, 12, 1)


def test_battery_code_is_frozen() -> None:
    code = parse_battery_code(CATENA_X_EXAMPLE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        code.serial = 1  # type: ignore[misc]


@pytest.mark.parametrize(("letter", "chemistry"), sorted(CHEMISTRIES.items()))
def test_battery_type_letters(letter: str, chemistry: str) -> None:
    code = parse_battery_code(f"001P{letter}AB1234567G310000001")
    assert (code.battery_type, code.chemistry) == (letter, chemistry)


@pytest.mark.parametrize(("letter", "level"), sorted(LEVELS.items()))
def test_product_type_letters(letter: str, level: str) -> None:
    code = parse_battery_code(f"001{letter}BAB1234567G310000001")
    assert (code.product_type, code.level) == (letter, level)


@given(code_fields())
def test_make_then_parse_round_trips(fields: dict[str, object]) -> None:
    made = make_battery_code(**fields)  # type: ignore[arg-type]
    assert made == write(fields)
    code = parse_battery_code(made)
    got = {name: getattr(code, name) for name in fields}
    assert got == fields
    assert code.raw == made
    assert code.second_life is (fields["traceability"] is None)
    assert code.level == LEVELS[str(fields["product_type"])]
    assert code.chemistry == CHEMISTRIES[str(fields["battery_type"])]


def test_format_battery_code_is_make_battery_code() -> None:
    args = ("001", "C", "B", "AB", "1234567", date(2025, 10, 31), 9_999_999)
    assert format_battery_code(*args) == make_battery_code(*args) == "001CBAB1234567FA09999999"


def test_second_life_marker_defaults_to_product_type() -> None:
    assert make_battery_code("001", "M", "E", "AB", None, date(2026, 1, 1), 7) == "001MEABG110000007RM"
    assert make_battery_code("001", "M", "E", "AB", None, date(2026, 1, 1), 7, "P") == "001MEABG110000007RP"


def test_make_refuses_marker_with_traceability() -> None:
    with pytest.raises(ValueError, match="second_life_marker"):
        make_battery_code("001", "M", "E", "AB", "1234567", date(2026, 1, 1), 7, "P")


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"serial": 0}, CODE_SERIAL),
        ({"serial": 10_000_000}, CODE_SERIAL),
        ({"production_date": date(2009, 12, 31)}, CODE_DATE),
        ({"production_date": date(2042, 1, 1)}, CODE_DATE),
        ({"manufacturer": "0012"}, CODE_LENGTH),
        ({"traceability": "123456"}, CODE_LENGTH),
        ({"manufacturer": "x12"}, CODE_CHARACTER),
        ({"battery_type": "H"}, CODE_CHARACTER),
    ],
)
def test_make_refuses_fields_it_cannot_write(kwargs: dict[str, object], code: str) -> None:
    fields: dict[str, object] = {
        "manufacturer": "001",
        "product_type": "P",
        "battery_type": "B",
        "specification": "AB",
        "traceability": "1234567",
        "production_date": date(2026, 1, 1),
        "serial": 1,
    }
    fields.update(kwargs)
    with pytest.raises(DomainError) as info:
        make_battery_code(**fields)  # type: ignore[arg-type]
    assert info.value.code == code


# --- characters ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "rules", "fields"),
    [
        (CATENA_X_EXAMPLE, FULL_RULES, FULL_FIELDS),
        ("X12MCPMX2M2382320RP", SHORT_RULES, SHORT_FIELDS),
    ],
    ids=["full", "second-life"],
)
def test_every_bad_substitution_names_its_position(code: str, rules: list[str], fields: list[str]) -> None:
    """Exhaustively: each position, each character from the pool that breaks its rule."""
    tried = 0
    for index, allowed in enumerate(rules):
        for ch in POOL:
            if ch in allowed:
                continue
            bad = code[:index] + ch + code[index + 1 :]
            err = expect_error(bad, CODE_CHARACTER, index + 1)
            assert f"position {index + 1} ({fields[index]}" in err.message
            assert f"got {ch!r}" in err.message
            tried += 1
    assert tried > 1000


@given(st.data())
def test_random_corruptions_are_refused_at_their_position(data: st.DataObject) -> None:
    code = data.draw(valid_codes)
    rules = FULL_RULES if len(code) == 24 else SHORT_RULES
    index = data.draw(st.integers(0, len(code) - 1))
    ch = data.draw(st.sampled_from([c for c in POOL if c not in rules[index]]))
    expect_error(code[:index] + ch + code[index + 1 :], CODE_CHARACTER, index + 1)


@given(valid_codes, st.data())
def test_first_offending_character_wins(code: str, data: st.DataObject) -> None:
    rules = FULL_RULES if len(code) == 24 else SHORT_RULES
    first, second = sorted(
        data.draw(st.lists(st.integers(0, len(code) - 1), min_size=2, max_size=2, unique=True))
    )
    bad = list(code)
    bad[first] = "#"
    bad[second] = "-"
    assert "#" not in rules[first]
    assert "-" not in rules[second]
    expect_error("".join(bad), CODE_CHARACTER, first + 1)


@pytest.mark.parametrize(
    ("bad", "position", "message"),
    [
        ("X12MHPM27KLPCLX2M2382320", 5, "position 5 (battery type) must be one of A–G or Z, got 'H'"),
        ("X12XCPM27KLPCLX2M2382320", 4, "position 4 (product type) must be P (pack), M (module) or C (cell)"),
        ("X12MCPM27KLPCLI2M2382320", 15, "position 15 (production year)"),
        ("X12MCPM27KLPCLXDM2382320", 16, "position 16 (production month)"),
        ("X12MCPM27KLPCLX2U2382320", 17, "position 17 (production day)"),
        ("X12MCPM27KLPCLX2Z2382320", 17, "position 17 (production day)"),
        ("X12MCPM27KLPCLX2M238232A", 24, "position 24 (serial number"),
        ("X12MCPMX2M2382320QP", 18, "position 18 (second-life flag) must be R"),
        ("X12MCPMX2M2382320RR", 19, "position 19 (second-life marker) must be P, M or C"),
        ("X12MCPMX2MA382320RP", 11, "position 11 (serial number"),
    ],
)
def test_messages_name_position_field_and_rule(bad: str, position: int, message: str) -> None:
    err = expect_error(bad, CODE_CHARACTER, position)
    assert message in err.message


def test_year_letters_i_o_q_and_z_are_refused() -> None:
    for ch in "IOQZ":
        expect_error(CATENA_X_EXAMPLE[:14] + ch + CATENA_X_EXAMPLE[15:], CODE_CHARACTER, 15)


def test_month_zero_and_d_are_refused() -> None:
    for ch in "0D":
        expect_error(CATENA_X_EXAMPLE[:15] + ch + CATENA_X_EXAMPLE[16:], CODE_CHARACTER, 16)


# --- lower case, spaces and lengths --------------------------------------------------------


def test_lower_case_is_refused_with_the_upper_case_suggestion() -> None:
    err = expect_error(CATENA_X_EXAMPLE.lower(), CODE_CHARACTER, 1)
    assert "upper-case" in err.message
    assert repr(CATENA_X_EXAMPLE) in err.message


@given(valid_codes, st.data())
def test_a_lower_case_letter_anywhere_is_refused_there(code: str, data: st.DataObject) -> None:
    letters = [i for i, ch in enumerate(code) if ch.isalpha()]
    index = data.draw(st.sampled_from(letters))
    bad = code[:index] + code[index].lower() + code[index + 1 :]
    err = expect_error(bad, CODE_CHARACTER, index + 1)
    assert f"did you mean {code!r}" in err.message


@pytest.mark.parametrize("length", [0, 1, 3, 17, 18, 20, 23, 25, 48])
def test_wrong_lengths_say_which_are_allowed(length: int) -> None:
    err = expect_error(("X12MCPM27KLPCLX2M2382320" * 2)[:length], CODE_LENGTH, None)
    assert "24" in err.message
    assert "19" in err.message
    assert f"got {length}" in err.message
    assert err.extra == {"allowed_lengths": [24, 19]}


def test_surrounding_spaces_are_not_stripped() -> None:
    for padded in (f" {CATENA_X_EXAMPLE}", f"{CATENA_X_EXAMPLE}\n", f"\t{CATENA_X_EXAMPLE} "):
        err = expect_error(padded, CODE_LENGTH, None)
        assert "spaces" in err.message


def test_inner_space_is_a_character_error() -> None:
    expect_error("X12MCPM27KLPCL X2M238232", CODE_CHARACTER, 15)


# --- dates and serials ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("date_chars", "ok"),
    [
        ("F2Y", False),  # 30 February 2025
        ("F2X", False),  # 29 February 2025
        ("E2X", True),  # 29 February 2024
        ("G40", False),  # 31 April 2026
        ("G30", True),  # 31 March 2026
        ("GB0", False),  # 31 November 2026
        ("GC0", True),  # 31 December 2026
        ("J2X", True),  # 29 February 2028 (J = 2028, I skipped)
        ("K2X", False),  # 29 February 2029
    ],
)
def test_impossible_dates_are_refused(date_chars: str, ok: bool) -> None:
    code = f"X12MCPM27KLPCL{date_chars}2382320"
    if ok:
        parse_battery_code(code)
    else:
        err = expect_error(code, CODE_DATE, 15)
        assert "positions 15–17" in err.message
        assert "not a real date" in err.message


def test_impossible_date_in_second_life_form_names_positions_8_to_10() -> None:
    err = expect_error("X12MCPMF2Y2382320RP", CODE_DATE, 8)
    assert "positions 8–10" in err.message


@given(st.integers(2010, 2041), st.integers(1, 12), st.integers(29, 31), st.booleans())
def test_every_day_past_the_end_of_its_month_is_refused(year: int, month: int, day: int, short: bool) -> None:
    last = calendar.monthrange(year, month)[1]
    chars = YEARS[year - 2010] + MONTHS[month - 1] + DAYS[day - 1]
    code = f"001PB12{chars}0000001RP" if short else f"001PB121234567{chars}0000001"
    if day <= last:
        assert parse_battery_code(code).production_date == date(year, month, day)
    else:
        expect_error(code, CODE_DATE, 8 if short else 15)


def test_serial_zero_is_refused() -> None:
    err = expect_error("X12MCPM27KLPCLX2M0000000", CODE_SERIAL, 18)
    assert "positions 18–24" in err.message
    expect_error("X12MCPMX2M0000000RP", CODE_SERIAL, 11)


def test_serial_bounds() -> None:
    assert parse_battery_code("X12MCPM27KLPCLX2M0000001").serial == 1
    assert parse_battery_code("X12MCPM27KLPCLX2M9999999").serial == 9_999_999


def test_a_bad_character_is_reported_before_a_bad_date() -> None:
    expect_error("X12MHPM27KLPCLF2Y2382320", CODE_CHARACTER, 5)


# --- alphabets as data ---------------------------------------------------------------------


def test_default_alphabets_match_the_sources() -> None:
    alph = default_alphabets()
    assert {ch: alph.year[ch] for ch in "079AHJPRX"} == {
        "0": 2010,
        "7": 2017,
        "9": 2019,
        "A": 2020,
        "H": 2027,
        "J": 2028,
        "P": 2033,
        "R": 2034,
        "X": 2040,
    }
    assert dict(alph.year) == {ch: 2010 + i for i, ch in enumerate(YEARS)}
    assert dict(alph.month) == {ch: i + 1 for i, ch in enumerate(MONTHS)}
    assert dict(alph.day) == {ch: i + 1 for i, ch in enumerate(DAYS)}
    assert alph.day["0"] == 31
    assert default_alphabets() is alph  # loaded once


ALT_ALPHABETS = """
# Continuous A-Z years (2028 = I), as in one of the public decoders.
[year]
{years}
[month]
{months}
[day]
{days}
"""


def _alt_file(tmp_path: Path, years: str, days: str = DAYS) -> Path:
    path = tmp_path / "alphabets.toml"
    path.write_text(
        ALT_ALPHABETS.format(
            years="\n".join(f'"{ch}" = {2010 + i}' for i, ch in enumerate(years)),
            months="\n".join(f'"{ch}" = {i + 1}' for i, ch in enumerate(MONTHS)),
            days="\n".join(f'"{ch}" = {i + 1}' for i, ch in enumerate(days)),
        ),
        encoding="utf-8",
    )
    return path


def test_an_operator_file_changes_the_reading(tmp_path: Path) -> None:
    alph = load_alphabets(_alt_file(tmp_path, "0123456789ABCDEFGHIJKLMNOPQRSTUV"))
    assert alph.year["I"] == 2028
    code = "X12MCPM27KLPCLI2M2382320"
    assert parse_battery_code(code, alphabets=alph).production_date == date(2028, 2, 21)
    expect_error(code, CODE_CHARACTER, 15)  # the default still refuses I
    made = make_battery_code("X12", "M", "C", "PM", "27KLPCL", date(2028, 2, 21), 2382320, alphabets=alph)
    assert made == code


def test_set_default_alphabets(tmp_path: Path) -> None:
    alph = load_alphabets(_alt_file(tmp_path, "0123456789ABCDEFGHIJKLMNOPQRSTUV"))
    set_default_alphabets(alph)
    try:
        assert parse_battery_code("X12MCPM27KLPCLI2M2382320").production_date == date(2028, 2, 21)
    finally:
        set_default_alphabets(None)
    expect_error("X12MCPM27KLPCLI2M2382320", CODE_CHARACTER, 15)


def test_shared_characters_read_both_ways_and_write_the_first(tmp_path: Path) -> None:
    path = _alt_file(tmp_path, YEARS)
    path.write_text(path.read_text(encoding="utf-8").replace('"J" = 2028', '"J" = 2028\n"I" = 2028'), "utf-8")
    alph = load_alphabets(path)
    assert alph.year["I"] == alph.year["J"] == 2028
    assert alph.year_char(2028) == "J"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[year]\n", "missing or empty table [year]"),
        ('[year]\n"A" = 2020\n', "missing or empty table [month]"),
        ("not toml =", "not valid TOML"),
        ('[year]\n"AB" = 2020\n', "one character"),
        ('[year]\n"a" = 2020\n', "one character"),
        ('[year]\n"A" = "2020"\n', "integer"),
        ('[year]\n"A" = true\n', "integer"),
        ('[weeks]\n"A" = 1\n', "unknown table"),
    ],
)
def test_malformed_alphabet_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        load_alphabets(path)
    assert str(path) in str(info.value)


def test_alphabet_file_must_cover_every_day(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\[day\] has no character for \[31\]"):
        load_alphabets(_alt_file(tmp_path, YEARS, days=DAYS[:-1]))


def test_month_values_are_range_checked(tmp_path: Path) -> None:
    path = _alt_file(tmp_path, YEARS)
    path.write_text(path.read_text(encoding="utf-8").replace('"C" = 12', '"C" = 13', 1), "utf-8")
    with pytest.raises(ValueError, match="from 1 to 12"):
        load_alphabets(path)
