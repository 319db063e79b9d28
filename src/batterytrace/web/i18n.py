"""The pages' two languages: message catalogues kept as data (``web/i18n/<lang>.toml``) and the
choice of language for a request.

A message is looked up by its dotted key (``status.recycled``) and formatted with
:meth:`str.format` fields. The language comes from ``?lang=`` first, then the ``bt_lang``
cookie that the switch sets, then the browser's ``Accept-Language``; Chinese when none of them
names a language the pages have.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from string import Formatter
from typing import Any

LANGUAGES = ("zh", "en")
DEFAULT_LANGUAGE = "zh"
LANG_COOKIE = "bt_lang"
#: Each language's name in itself, for the switch.
LANGUAGE_NAMES = {"zh": "中文", "en": "English"}


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, name + "."))
        elif isinstance(value, str):
            out[name] = value
        else:
            raise ValueError(f"message {name!r} must be a string, not {type(value).__name__}")
    return out


@cache
def catalogue(lang: str) -> Mapping[str, str]:
    """The messages of ``lang`` by dotted key, read once from the package data."""
    if lang not in LANGUAGES:
        raise ValueError(f"no message catalogue for {lang!r}; languages: {', '.join(LANGUAGES)}")
    text = resources.files("batterytrace.web").joinpath("i18n", f"{lang}.toml").read_text(encoding="utf-8")
    return _flatten(tomllib.loads(text))


def placeholders(message: str) -> frozenset[str]:
    """The ``str.format`` field names in ``message``."""
    return frozenset(name for _, name, _, _ in Formatter().parse(message) if name)


@dataclass(frozen=True)
class Translator:
    """Messages of one language; calling it formats a message."""

    lang: str

    def __call__(self, key: str, **fields: Any) -> str:
        messages = catalogue(self.lang)
        try:
            message = messages[key]
        except KeyError:
            raise KeyError(f"no message {key!r} in the {self.lang} catalogue") from None
        return message.format(**fields) if fields else message

    def has(self, key: str) -> bool:
        return key in catalogue(self.lang)

    def get(self, key: str, default: str) -> str:
        """The message, or ``default`` when the catalogue has none (e.g. an unknown event type)."""
        return catalogue(self.lang).get(key, default)

    @property
    def other(self) -> str:
        """The language the switch offers."""
        return next(lang for lang in LANGUAGES if lang != self.lang)


def _match(tag: str) -> str | None:
    primary = tag.strip().lower().replace("_", "-").split("-", 1)[0]
    return primary if primary in LANGUAGES else None


def parse_accept_language(header: str | None) -> str | None:
    """The first language of ours in an ``Accept-Language`` header, by quality then order."""
    if not header:
        return None
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")):
        tag, _, params = part.partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        lang = _match(tag)
        if lang is not None and quality > 0:
            ranked.append((-quality, position, lang))
    return min(ranked)[2] if ranked else None


def choose_language(query: str | None, cookie: str | None, accept_language: str | None) -> str:
    """``?lang=`` beats the cookie, which beats ``Accept-Language``; Chinese by default."""
    for candidate in (query, cookie):
        if candidate and candidate in LANGUAGES:
            return candidate
    return parse_accept_language(accept_language) or DEFAULT_LANGUAGE
