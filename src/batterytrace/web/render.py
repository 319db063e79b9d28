"""Rendering pages: the Jinja2 environment, the per-request page context (language, caller,
form token) and the security headers every page carries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from batterytrace.domain.permissions import Permission
from batterytrace.domain.regions import provinces
from batterytrace.services.registry import Caller, Registry
from batterytrace.web import i18n
from batterytrace.web.charts import number
from batterytrace.web.session import CSRF_FIELD, Signer, caller_for, cookie_names, session_secret

#: No script at all; styles and images from this registry only; forms post only here; never framed.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
#: SVG documents served on their own (QR codes, labels) may not run or load anything.
SVG_CONTENT_SECURITY_POLICY = "default-src 'none'; frame-ancestors 'self'"

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def registry_of(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


def signer_of(request: Request) -> Signer:
    """The app's signer, made on first use from the settings (production needs the secret)."""
    signer: Signer | None = getattr(request.app.state, "web_signer", None)
    if signer is None:
        settings = registry_of(request).settings
        signer = Signer(session_secret(settings), settings.session_hours)
        request.app.state.web_signer = signer
    return signer


def is_secure(request: Request) -> bool:
    return request.url.scheme == "https" or registry_of(request).settings.base_url.startswith("https://")


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("batterytrace.web", "templates"),
        autoescape=select_autoescape(["html", "svg"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = number
    env.filters["day"] = lambda value: str(value)[:10] if value else ""
    return env


@dataclass
class Page:
    """What every page needs to know about its request."""

    request: Request
    registry: Registry
    lang: str
    caller: Caller | None
    secure: bool
    signer: Signer
    session_cookie: str | None
    csrf_nonce: str
    new_nonce: bool
    set_lang: bool
    now: datetime
    cookies_to_clear: list[str] = field(default_factory=list)

    @property
    def t(self) -> i18n.Translator:
        return i18n.Translator(self.lang)

    @property
    def csrf_token(self) -> str:
        return self.signer.csrf_token(self.csrf_nonce, self.session_cookie)

    def can(self, permission: Permission) -> bool:
        return self.caller is not None and permission in self.caller.permissions

    def url_with(self, **params: str | None) -> str:
        """This page's URL with some query parameters replaced (None removes one)."""
        query = dict(self.request.query_params)
        for key, value in params.items():
            if value is None:
                query.pop(key, None)
            else:
                query[key] = value
        path = self.request.url.path
        return f"{path}?{urlencode(query)}" if query else path

    def province_name(self, code: str | None) -> str:
        if not code:
            return ""
        province = provinces().get(code[:2])
        if province is None:
            return code
        return province.name_zh if self.lang == "zh" else province.name_en

    def province_choices(self) -> list[tuple[str, str]]:
        return [(code, self.province_name(code)) for code in provinces()]


def page_for(request: Request) -> Page:
    """The page context of a request: its language, its logged-in caller (if any), its form token."""
    registry = registry_of(request)
    signer = signer_of(request)
    secure = is_secure(request)
    session_name, csrf_name = cookie_names(secure)
    now = registry.clock()
    query_lang = request.query_params.get("lang")
    lang = i18n.choose_language(
        query_lang, request.cookies.get(i18n.LANG_COOKIE), request.headers.get("accept-language")
    )
    session_cookie = request.cookies.get(session_name)
    caller = None
    clear: list[str] = []
    if session_cookie:
        session = signer.read(session_cookie, now)
        caller = caller_for(registry, session, now) if session is not None else None
        if caller is None:
            clear.append(session_name)
            session_cookie = None
    nonce = request.cookies.get(csrf_name)
    fresh = not nonce or len(nonce) > 64
    if fresh:
        nonce = Signer.new_nonce()
    assert nonce is not None
    return Page(
        request=request,
        registry=registry,
        lang=lang,
        caller=caller,
        secure=secure,
        signer=signer,
        session_cookie=session_cookie,
        csrf_nonce=nonce,
        new_nonce=fresh,
        set_lang=query_lang in i18n.LANGUAGES,
        now=now,
        cookies_to_clear=clear,
    )


def finish(page: Page, response: Response, *, private: bool = False) -> Response:
    """Security headers and the cookies the request asked for."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers["Vary"] = "Cookie, Accept-Language"
    if private or page.caller is not None:
        response.headers["Cache-Control"] = "no-store"
    _, csrf_name = cookie_names(page.secure)
    if page.new_nonce:
        response.set_cookie(
            csrf_name, page.csrf_nonce, httponly=True, samesite="strict", secure=page.secure, path="/"
        )
    if page.set_lang:
        response.set_cookie(
            i18n.LANG_COOKIE,
            page.lang,
            max_age=365 * 24 * 3600,
            httponly=True,
            samesite="lax",
            secure=page.secure,
            path="/",
        )
    for name in page.cookies_to_clear:
        response.delete_cookie(name, path="/", secure=page.secure, httponly=True, samesite="lax")
    return response


def render(
    page: Page,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
    private: bool = False,
) -> Response:
    values = {
        "page": page,
        "t": page.t,
        "lang": page.lang,
        "caller": page.caller,
        "csrf_field": CSRF_FIELD,
        "languages": i18n.LANGUAGE_NAMES,
        "Permission": Permission,
        **(context or {}),
    }
    body = environment().get_template(template).render(values)
    return finish(page, HTMLResponse(body, status_code=status), private=private)
