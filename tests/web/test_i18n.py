"""The two message catalogues stay in step with each other and with the templates, and the
language is chosen as documented."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from batterytrace.domain.model import EventType, Role, Scope, Stage
from batterytrace.web import i18n


def template_keys() -> set[str]:
    """Message keys the templates name literally: t('key') and t.get('key', …)."""
    keys: set[str] = set()
    folder = resources.files("batterytrace.web").joinpath("templates")
    for item in folder.iterdir():
        if item.name.endswith(".html"):
            found = re.findall(r"\bt(?:\.get)?\(\s*'([a-z_.]+)'", item.read_text(encoding="utf-8"))
            keys |= {k for k in found if not k.endswith(".")}  # a prefix is completed at run time
    return keys


def test_both_catalogues_have_the_same_keys_and_fields() -> None:
    en, zh = i18n.catalogue("en"), i18n.catalogue("zh")
    assert set(en) == set(zh), set(en) ^ set(zh)
    for key in en:
        assert i18n.placeholders(en[key]) == i18n.placeholders(zh[key]), key
        assert en[key].strip(), key
        assert zh[key].strip(), key


def test_every_key_the_templates_name_exists() -> None:
    missing = sorted(template_keys() - set(i18n.catalogue("en")))
    assert not missing, missing
    assert len(template_keys()) > 80


@pytest.mark.parametrize(
    ("prefix", "names"),
    [
        ("status.", [s.value for s in Stage]),
        ("stage.", [s.value for s in Stage]),
        ("event.", [e.value for e in EventType]),
        ("role.", [r.value for r in Role]),
        ("scope.", [s.value for s in Scope]),
        ("level.", ["pack", "module", "cell"]),
    ],
)
def test_every_word_of_the_model_is_translated(prefix: str, names: list[str]) -> None:
    for lang in i18n.LANGUAGES:
        missing = [n for n in names if f"{prefix}{n}" not in i18n.catalogue(lang)]
        assert not missing, (lang, missing)


def test_every_battery_type_and_alert_rule_has_a_name() -> None:
    from batterytrace.domain.codes import BATTERY_TYPES

    for lang in i18n.LANGUAGES:
        assert all(f"chemistry.{c}" in i18n.catalogue(lang) for c in BATTERY_TYPES.values())
    try:
        from batterytrace.services.monitoring import RULES
    except ModuleNotFoundError:
        pytest.fail("the monitoring service is part of the product")
    for lang in i18n.LANGUAGES:
        assert all(f"rule.{r}" in i18n.catalogue(lang) for r in RULES), lang


def test_translator_formats_and_refuses_unknown_keys() -> None:
    t = i18n.Translator("en")
    assert t("status.recycled", date="2026-05-01") == "Recycled on 2026-05-01"
    assert i18n.Translator("zh")("status.recycled", date="2026-05-01") == "已于 2026-05-01 再生利用"
    assert t.get("event.no_such_event", "no_such_event") == "no_such_event"
    assert t.other == "zh"
    with pytest.raises(KeyError, match="no message"):
        t("no.such.key")
    with pytest.raises(ValueError, match="no message catalogue"):
        i18n.catalogue("fr")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh"),
        ("en-US,en;q=0.9", "en"),
        ("fr-FR,fr;q=0.9,en;q=0.5,zh;q=0.4", "en"),
        ("fr, de", None),
        ("zh-Hant-TW", "zh"),
        ("en;q=0, zh;q=0.1", "zh"),
        ("en;q=abc, zh", "zh"),
        ("EN_gb", "en"),
        ("", None),
        (None, None),
    ],
)
def test_accept_language(header: str | None, expected: str | None) -> None:
    assert i18n.parse_accept_language(header) == expected


def test_query_beats_cookie_beats_header() -> None:
    assert i18n.choose_language("en", "zh", "zh") == "en"
    assert i18n.choose_language(None, "en", "zh") == "en"
    assert i18n.choose_language("xx", "yy", "en-GB") == "en"
    assert i18n.choose_language(None, None, None) == i18n.DEFAULT_LANGUAGE == "zh"
