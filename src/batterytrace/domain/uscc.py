"""Unified social credit codes of legal entities and other organisations (GB 32100-2015).

Eighteen characters from a 31-character alphabet (no I, O, Z, S, V):

====  ===========================================================================
1     registration authority (登记管理部门代码)
2     entity type within that authority (机构类别代码)
3–8   region of the registering office, GB/T 2260 digits (``100000`` for national level)
9–17  organisation code (主体标识码, GB 11714)
18    check character: 31 − (Σ value × weight mod 31), per GB/T 17710 (ISO 7064)
====  ===========================================================================

Some codes issued early in pilot regions are reported not to satisfy the check character;
they are refused here like any mistyped code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from batterytrace.domain.errors import REGION_INVALID, USCC_CHARACTER, USCC_CHECK, USCC_LENGTH, DomainError
from batterytrace.domain.regions import province_of

__all__ = [
    "USCC_ALPHABET",
    "UsccInfo",
    "describe_uscc",
    "make_uscc",
    "parse_uscc",
    "uscc_check_character",
]

#: GB 32100-2015 code characters, in value order 0-30.
USCC_ALPHABET: Final = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_VALUE: Final = {ch: i for i, ch in enumerate(USCC_ALPHABET)}
# Weights W_i = 3^(i-1) mod 31 for positions 1-17 (GB 32100-2015); all non-zero mod 31, so
# any single changed character changes the check character.
_WEIGHTS: Final = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_NATIONAL_REGION: Final = "100000"
_DIGITS: Final = frozenset("0123456789")
_FIELD_NAMES: Final = (
    ("registration authority", "entity type")
    + ("region",) * 6
    + ("organisation code",) * 9
    + ("check character",)
)

# Registration authorities (position 1) and the entity types each assigns (position 2):
# (English, Chinese) names. GB 32100-2015 itself names 1, 5, 9 and Y; the other authorities were
# assigned afterwards. Table as published for the unified code and reproduced, identically, by
# several independent public implementations.
_Names = tuple[str, str]
_AUTHORITIES: Final[dict[str, tuple[_Names, dict[str, _Names]]]] = {
    "1": (
        ("institutional staffing", "机构编制"),
        {
            "1": ("government organ", "机关"),
            "2": ("public institution", "事业单位"),
            "3": (
                "mass organisation staffed by the central staffing office",
                "中央编办直接管理机构编制的群众团体",
            ),
            "9": ("other", "其他"),
        },
    ),
    "2": (
        ("foreign affairs", "外交"),
        {"1": ("resident foreign news agency", "外国常驻新闻机构"), "9": ("other", "其他")},
    ),
    "3": (
        ("justice", "司法行政"),
        {
            "1": ("law firm", "律师执业机构"),
            "2": ("notary office", "公证处"),
            "3": ("grassroots legal service office", "基层法律服务所"),
            "4": ("forensic appraisal institution", "司法鉴定机构"),
            "5": ("arbitration commission", "仲裁委员会"),
            "9": ("other", "其他"),
        },
    ),
    "4": (
        ("culture", "文化"),
        {"1": ("foreign cultural centre in China", "外国在华文化中心"), "9": ("other", "其他")},
    ),
    "5": (
        ("civil affairs", "民政"),
        {
            "1": ("social organisation", "社会团体"),
            "2": ("private non-enterprise unit", "民办非企业单位"),
            "3": ("foundation", "基金会"),
            "9": ("other", "其他"),
        },
    ),
    "6": (
        ("tourism", "旅游"),
        {
            "1": ("resident office of a foreign tourism authority", "外国旅游部门常驻代表机构"),
            "2": (
                "resident office of a Hong Kong, Macao or Taiwan tourism authority",
                "港澳台地区旅游部门常驻内地（大陆）代表机构",
            ),
            "9": ("other", "其他"),
        },
    ),
    "7": (
        ("religious affairs", "宗教"),
        {
            "1": ("religious venue", "宗教活动场所"),
            "2": ("religious school", "宗教院校"),
            "9": ("other", "其他"),
        },
    ),
    "8": (("trade union", "工会"), {"1": ("grassroots trade union", "基层工会"), "9": ("other", "其他")}),
    "9": (
        ("market regulation", "工商"),
        {
            "1": ("enterprise", "企业"),
            "2": ("individual business", "个体工商户"),
            "3": ("farmers' specialised cooperative", "农民专业合作社"),
        },
    ),
    "A": (
        ("Central Military Commission reform and staffing office", "中央军委改革和编制办公室"),
        {"1": ("military public institution", "军队事业单位"), "9": ("other", "其他")},
    ),
    "N": (
        ("agriculture", "农业"),
        {
            "1": ("group-level collective economic organisation", "组级集体经济组织"),
            "2": ("village-level collective economic organisation", "村级集体经济组织"),
            "3": ("township-level collective economic organisation", "乡镇级集体经济组织"),
            "9": ("other", "其他"),
        },
    ),
    "Y": (("other", "其他"), {"1": ("other", "其他")}),
}


@dataclass(frozen=True, slots=True)
class UsccInfo:
    """A checked unified social credit code, split into its parts with readable names."""

    code: str
    authority: str
    authority_name_en: str
    authority_name_zh: str
    entity_type: str
    entity_type_name_en: str
    entity_type_name_zh: str
    region: str
    organisation_code: str
    check_character: str


def uscc_check_character(first17: str) -> str:
    """The check character (position 18) for the first 17 characters of a code."""
    if len(first17) != 17:
        raise DomainError(
            USCC_LENGTH,
            f"the check character is computed from 17 characters, got {len(first17)}",
            field="uscc",
        )
    _check_alphabet(first17, "uscc")
    return _compute(first17)


def make_uscc(first17: str) -> str:
    """A complete, checked code: ``first17`` followed by its check character."""
    code = first17 + uscc_check_character(first17)
    return parse_uscc(code)


def parse_uscc(s: str, *, field: str = "uscc") -> str:
    """Check a unified social credit code and return it unchanged; raise naming the position."""
    describe_uscc(s, field=field)
    return s


def describe_uscc(s: str, *, field: str = "uscc") -> UsccInfo:
    """Check a code like :func:`parse_uscc` and return its parts with their names."""
    if len(s) != 18:
        hint = " (remove the spaces around it)" if len(s.strip()) == 18 else ""
        raise DomainError(
            USCC_LENGTH, f"a unified social credit code has 18 characters, got {len(s)}{hint}", field=field
        )
    authority = _AUTHORITIES.get(s[0])
    if authority is None:
        rule = f"must be one of {', '.join(_AUTHORITIES)}"
        raise _bad(s, 1, rule, field, USCC_CHARACTER)
    authority_names, entity_types = authority
    entity_names = entity_types.get(s[1])
    if entity_names is None:
        allowed = ", ".join(entity_types)
        rule = f"must be one of {allowed} for registration authority {s[0]} ({authority_names[0]})"
        raise _bad(s, 2, rule, field, USCC_CHARACTER)
    for position in range(3, 9):
        if s[position - 1] not in _DIGITS:
            raise _bad(s, position, "must be a digit 0–9 (GB/T 2260)", field, USCC_CHARACTER)
    region = s[2:8]
    if region != _NATIONAL_REGION and province_of(region) is None:
        raise DomainError(
            REGION_INVALID,
            f"positions 3–8 (region) {region!r} do not start with a province-level code of GB/T 2260 "
            f"(nor are they {_NATIONAL_REGION}, national level): unknown province {region[:2]!r}",
            field=field,
            position=3,
        )
    _check_alphabet(s, field, start=9)
    expected = _compute(s)
    if s[17] != expected:
        raise DomainError(
            USCC_CHECK,
            f"position 18 (check character) should be {expected!r} for the first 17 characters, "
            f"got {s[17]!r}: one of the characters is mistyped",
            field=field,
            position=18,
        )
    return UsccInfo(
        code=s,
        authority=s[0],
        authority_name_en=authority_names[0],
        authority_name_zh=authority_names[1],
        entity_type=s[1],
        entity_type_name_en=entity_names[0],
        entity_type_name_zh=entity_names[1],
        region=region,
        organisation_code=s[8:17],
        check_character=s[17],
    )


def _compute(s: str) -> str:
    total = sum(_VALUE[ch] * weight for ch, weight in zip(s, _WEIGHTS, strict=False))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def _check_alphabet(s: str, field: str, *, start: int = 1) -> None:
    for position in range(start, len(s) + 1):
        if s[position - 1] not in _VALUE:
            rule = "must be a digit or an upper-case letter other than I, O, S, V and Z"
            raise _bad(s, position, rule, field, USCC_CHARACTER)


def _bad(s: str, position: int, rule: str, field: str, code: str) -> DomainError:
    ch = s[position - 1]
    hint = f"; letters are upper-case: did you mean {s.upper()!r}?" if ch.islower() else ""
    name = _FIELD_NAMES[position - 1]
    return DomainError(
        code, f"position {position} ({name}) {rule}, got {ch!r}{hint}", field=field, position=position
    )
