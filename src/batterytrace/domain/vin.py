"""Vehicle identification numbers (ISO 3779, GB 16735): 17 characters, check character at 9.

The check character is mandatory in China (GB 16735) and North America; a European VIN with
``Z`` or another letter in position 9 is refused. The weighted sum catches every change of one
character into a character with a different transliterated value, but not, for example, ``A``
for ``J`` or ``1`` (all worth 1): such VINs stay valid.
"""

from __future__ import annotations

from typing import Final

from batterytrace.domain.errors import VIN_CHARACTER, VIN_CHECK, VIN_LENGTH, DomainError

__all__ = ["VIN_ALPHABET", "make_vin", "parse_vin", "vin_check_character"]

#: Digits and upper-case letters without I, O and Q (too easily read as 1 and 0).
VIN_ALPHABET: Final = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"

# Transliteration of ISO 3779 Annex / GB 16735 Appendix: letters take the values below, digits
# their own value.
_VALUE: Final[dict[str, int]] = {str(d): d for d in range(10)} | {
    **dict(zip("ABCDEFGH", range(1, 9), strict=True)),
    **dict(zip("JKLMN", range(1, 6), strict=True)),
    "P": 7,
    "R": 9,
    **dict(zip("STUVWXYZ", range(2, 10), strict=True)),
}
# Weights by position 1-17; position 9 (the check character itself) weighs 0.
_WEIGHTS: Final = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
_CHECK_POSITION: Final = 9
_FIELDS: Final = ("WMI",) * 3 + ("VDS",) * 5 + ("check character",) + ("VIS",) * 8


def vin_check_character(vin17: str) -> str:
    """The check character ('0'–'9' or 'X') for a 17-character VIN; its position 9 is ignored."""
    if len(vin17) != 17:
        raise DomainError(VIN_LENGTH, f"a VIN has 17 characters, got {len(vin17)}", field="vin")
    _check_characters(vin17, "vin", skip_check_position=True)
    return _compute(vin17)


def parse_vin(s: str, *, field: str = "vin") -> str:
    """Check a VIN and return it unchanged; raise :class:`DomainError` naming the position."""
    if len(s) != 17:
        hint = " (remove the spaces around it)" if len(s.strip()) == 17 else ""
        raise DomainError(VIN_LENGTH, f"a VIN has 17 characters, got {len(s)}{hint}", field=field)
    _check_characters(s, field, skip_check_position=False)
    expected = _compute(s)
    if s[_CHECK_POSITION - 1] != expected:
        raise DomainError(
            VIN_CHECK,
            f"position 9 (check character) should be {expected!r} for the other 16 characters, "
            f"got {s[_CHECK_POSITION - 1]!r}: one of the characters is mistyped",
            field=field,
            position=_CHECK_POSITION,
        )
    return s


def make_vin(wmi_vds: str, vis: str) -> str:
    """Build a valid VIN from positions 1–8 (WMI and VDS) and 10–17 (VIS), adding the check character."""
    if len(wmi_vds) != 8 or len(vis) != 8:
        raise DomainError(
            VIN_LENGTH,
            f"a VIN is built from 8 characters (WMI and VDS) and 8 (VIS), got {len(wmi_vds)} and {len(vis)}",
            field="vin",
        )
    draft = wmi_vds + "0" + vis
    _check_characters(draft, "vin", skip_check_position=True)
    return wmi_vds + _compute(draft) + vis


def _compute(vin: str) -> str:
    remainder = sum(_VALUE[ch] * weight for ch, weight in zip(vin, _WEIGHTS, strict=True)) % 11
    return "X" if remainder == 10 else str(remainder)


def _check_characters(s: str, field: str, *, skip_check_position: bool) -> None:
    for position, ch in enumerate(s, start=1):
        if position == _CHECK_POSITION:
            if skip_check_position or ch in "0123456789X":
                continue
            rule = "must be a digit 0–9 or X"
        elif ch in _VALUE:
            continue
        elif ch in "IOQ":
            rule = "cannot be I, O or Q (VINs use 1 and 0 instead)"
        else:
            rule = "must be a digit or an upper-case letter other than I, O and Q"
        if ch.islower():
            rule += f"; letters are upper-case: did you mean {s.upper()!r}?"
        raise DomainError(
            VIN_CHARACTER,
            f"position {position} ({_FIELDS[position - 1]}) {rule}, got {ch!r}",
            field=field,
            position=position,
        )
