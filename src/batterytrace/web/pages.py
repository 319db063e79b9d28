"""The web pages: the public passport behind each label's QR code, printable labels, logging in,
the regulator's dashboard and each enterprise's own view.

Every page is rendered on the server; nothing is loaded from elsewhere and no script runs (see
the Content-Security-Policy in :mod:`batterytrace.web.render`). Every route declares the
permission it needs in ``openapi_extra``, as the API's routes do.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import RedirectResponse, Response

from batterytrace.domain import errors as E
from batterytrace.domain.codes import parse_battery_code
from batterytrace.domain.errors import DomainError, ErrorKind
from batterytrace.domain.permissions import Permission
from batterytrace.domain.regions import provinces
from batterytrace.web import charts, dashboard_data, enterprise_view, labels
from batterytrace.web.passport import ENTERPRISE_FIELDS, facilities, load_passport
from batterytrace.web.render import (
    SECURITY_HEADERS,
    SVG_CONTENT_SECURITY_POLICY,
    Page,
    finish,
    page_for,
    registry_of,
    render,
)
from batterytrace.web.session import CSRF_FIELD, cookie_names, session_secret


@asynccontextmanager
async def _check_settings(app: FastAPI) -> AsyncIterator[None]:
    """At start-up: the pages need a session secret in production."""
    session_secret(app.state.registry.settings)
    yield


router = APIRouter(lifespan=_check_settings)

#: Files served from ``web/static`` and their types; nothing else is.
STATIC_FILES = {
    "style.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
#: Errors for which a code's page says the battery may not be genuine.
_NOT_FOUND_CODES = frozenset({E.BATTERY_UNKNOWN, E.CODE_LENGTH, E.CODE_CHARACTER, E.CODE_DATE, E.CODE_SERIAL})
#: Most codes on one sheet request.
MAX_SHEET_CODES = 500


def permission(p: Permission) -> dict[str, Any]:
    """Marks a route with the permission it needs (checked by a test over every route)."""
    return {"x-permission": p.value}


def _page_route(p: Permission) -> dict[str, Any]:
    return {"include_in_schema": False, "openapi_extra": permission(p)}


# --- helpers --------------------------------------------------------------------------------------


def _redirect(page: Page, url: str) -> Response:
    return finish(page, RedirectResponse(url, status_code=303))


def _login_redirect(page: Page) -> Response:
    target = page.request.url.path
    if page.request.url.query:
        target += "?" + page.request.url.query
    return _redirect(page, "/login?next=" + quote(target, safe=""))


def _forbidden(page: Page, permission_needed: Permission) -> Response:
    return render(
        page,
        "message.html",
        {
            "heading": page.t("forbidden.title"),
            "message": page.t("forbidden.message", permission=permission_needed.value),
            "link": ("/enterprise", page.t("nav.enterprise")),
        },
        status=403,
        private=True,
    )


def _gate(page: Page, needed: Permission) -> Response | None:
    """A response that stops the request if the caller is not logged in or lacks ``needed``."""
    if page.caller is None:
        return _login_redirect(page)
    if needed not in page.caller.permissions:
        return _forbidden(page, needed)
    return None


def _csrf_failed(page: Page, token: str, back: str) -> Response | None:
    """A response that stops a form whose token does not match the visitor's cookies; ``back``
    is the page that holds the form."""
    if page.signer.csrf_ok(page.csrf_nonce if not page.new_nonce else None, page.session_cookie, token):
        return None
    return render(
        page,
        "message.html",
        {
            "heading": page.t("csrf.title"),
            "message": page.t("csrf.message"),
            "link": (back, page.t("csrf.back")),
        },
        status=403,
        private=True,
    )


def _safe_next(target: str | None) -> str | None:
    """A local path to go to after logging in (never another site)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    return target


def _svg(body: str, filename: str) -> Response:
    response = Response(body, media_type="image/svg+xml")
    response.headers["Content-Security-Policy"] = SVG_CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Disposition"] = f'inline; filename="{filename}"'
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


def _not_genuine(page: Page, code: str, error: DomainError) -> Response:
    malformed = error.kind == ErrorKind.INVALID
    return render(
        page,
        "not_genuine.html",
        {
            "code": code,
            "malformed": malformed,
            "position": error.position,
            "detail": error.message,
        },
        status=404,
    )


# --- home and the public passport ------------------------------------------------------------------


@router.get("/", **_page_route(Permission.PUBLIC_READ))
def home(request: Request) -> Response:
    return render(page_for(request), "home.html")


def _typed_code(code: str) -> str:
    """A code as typed into a form: blanks removed, upper case, ready for a URL path."""
    return quote("".join(code.split()).upper(), safe="")


@router.get("/b", **_page_route(Permission.PUBLIC_READ))
def lookup(request: Request, code: str = "") -> Response:
    cleaned = _typed_code(code)
    return _redirect(page_for(request), f"/b/{cleaned}" if cleaned else "/")


@router.get("/b/{code}", **_page_route(Permission.PUBLIC_READ))
def passport(
    request: Request,
    code: str,
    province: str | None = None,
) -> Response:
    """The public passport: what the caller's access tier may see of the battery, its status in
    plain words, its lineage, and where to hand it in."""
    page = page_for(request)
    try:
        p = load_passport(page.registry, page.caller, code)
    except DomainError as exc:
        if exc.code in _NOT_FOUND_CODES:
            return _not_genuine(page, code, exc)
        raise
    chosen = province if province in provinces() else None
    return render(
        page,
        "passport.html",
        {
            "p": p,
            "province": chosen,
            "facilities": facilities(page.registry, chosen) if chosen else [],
            "enterprise_fields": ENTERPRISE_FIELDS,
        },
    )


@router.get("/b/{code}/qr.svg", tags=["labels"], openapi_extra=permission(Permission.PUBLIC_READ))
def qr_code(request: Request, code: str) -> Response:
    """The QR code of a registered battery's passport URL (SVG)."""
    registry = registry_of(request)
    registry.battery_state(code)  # a problem document for a malformed or unregistered code
    return _svg(labels.qr_svg(labels.passport_url(registry.settings.base_url, code)), f"{code}-qr.svg")


@router.get("/b/{code}/label.svg", tags=["labels"], openapi_extra=permission(Permission.PUBLIC_READ))
def label(request: Request, code: str) -> Response:
    """A printable 100 mm x 50 mm label for a registered battery: QR code of the passport URL,
    Code 128 of the code, and the code in writing (SVG)."""
    registry = registry_of(request)
    battery = registry.get_battery(None, code)
    body = labels.label_svg(code, registry.settings.base_url, lines=_label_lines(battery))
    return _svg(body, f"{code}.svg")


def _label_lines(battery: dict[str, Any]) -> list[str]:
    chemistry = {"lfp": "LFP", "ternary": "NCM/NCA"}.get(str(battery["chemistry"]), str(battery["chemistry"]))
    lines = [f"{str(battery['level']).capitalize()} · {chemistry}"]
    if battery.get("capacity_kwh") is not None:
        lines.append(f"{charts.number(float(battery['capacity_kwh']))} kWh")
    lines.append(f"Made {battery['production_date']}")
    return lines


# --- label sheets for makers ---------------------------------------------------------------------


@router.get("/labels", **_page_route(Permission.EVENT_RECORD))
def label_form(request: Request) -> Response:
    page = page_for(request)
    stop = _gate(page, Permission.EVENT_RECORD)
    if stop is not None:
        return stop
    return render(
        page, "labels.html", {"codes": "", "errors": [], "pages": [], "page_size": "A4"}, private=True
    )


@router.post("/labels", **_page_route(Permission.EVENT_RECORD))
def label_sheet(
    request: Request,
    codes: Annotated[str, Form(max_length=MAX_SHEET_CODES * 30)] = "",
    page_size: Annotated[str, Form()] = "A4",
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD)] = "",
) -> Response:
    """Pages of labels for the codes given, one per line; a maker may print only codes under the
    manufacturer codes it holds (registered or not yet), a regulator any."""
    page = page_for(request)
    stop = _gate(page, Permission.EVENT_RECORD) or _csrf_failed(page, csrf_token, "/labels")
    if stop is not None:
        return stop
    assert page.caller is not None
    wanted = [c for c in (line.strip().upper() for line in codes.splitlines()) if c]
    errors: list[str] = []
    good: list[str] = []
    own = page.caller.enterprise.manufacturer_codes
    for line_no, code in enumerate(wanted, start=1):
        try:
            parsed = parse_battery_code(code)
        except DomainError as exc:
            errors.append(page.t("labels.bad_code", line=line_no, code=code, detail=exc.message))
            continue
        if not page.caller.enterprise.is_regulator and parsed.manufacturer not in own:
            errors.append(
                page.t("labels.not_yours", line=line_no, code=code, manufacturer=parsed.manufacturer)
            )
            continue
        if code not in good:
            good.append(code)
    if len(good) > MAX_SHEET_CODES:
        errors.append(page.t("labels.too_many", limit=MAX_SHEET_CODES))
        good = []
    if page_size not in labels.PAGE_SIZES_MM:
        page_size = "A4"
    sheets = (
        labels.label_sheet_svg(good, page.registry.settings.base_url, page=page_size) if not errors else []
    )
    return render(
        page,
        "labels.html",
        {"codes": codes, "errors": errors, "pages": sheets, "page_size": page_size, "count": len(good)},
        status=422 if errors else 200,
        private=True,
    )


# --- logging in and out -----------------------------------------------------------------------------


def _home_for(page: Page) -> str:
    return "/dashboard" if page.can(Permission.REPORT_READ) else "/enterprise"


@router.get("/login", **_page_route(Permission.PUBLIC_READ))
def login_form(request: Request, next: str | None = None) -> Response:
    page = page_for(request)
    return render(page, "login.html", {"error": None, "next_path": _safe_next(next) or ""}, private=True)


@router.post("/login", **_page_route(Permission.PUBLIC_READ))
def login(
    request: Request,
    api_key: Annotated[str, Form(max_length=200)] = "",
    next_path: Annotated[str, Form(alias="next", max_length=2000)] = "",
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD)] = "",
) -> Response:
    """Log in with an API key: the session cookie names the key, never holds it."""
    page = page_for(request)
    stop = _csrf_failed(page, csrf_token, "/login")
    if stop is not None:
        return stop
    try:
        caller = page.registry.authenticate(api_key)
    except DomainError:
        return render(
            page,
            "login.html",
            {"error": page.t("login.failed"), "next_path": _safe_next(next_path) or ""},
            private=True,
        )
    page.caller = caller
    session_name, _ = cookie_names(page.secure)
    response = _redirect(page, _safe_next(next_path) or _home_for(page))
    response.set_cookie(
        session_name,
        page.signer.issue(caller, page.now),
        max_age=int(page.signer.lifetime.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=page.secure,
        path="/",
    )
    return response


@router.post("/logout", **_page_route(Permission.PUBLIC_READ))
def logout(request: Request, csrf_token: Annotated[str, Form(alias=CSRF_FIELD)] = "") -> Response:
    page = page_for(request)
    stop = _csrf_failed(page, csrf_token, "/")
    if stop is not None:
        return stop
    session_name, _ = cookie_names(page.secure)
    page.cookies_to_clear.append(session_name)
    return _redirect(page, "/")


# --- the regulator's dashboard ------------------------------------------------------------------------


@router.get("/dashboard", **_page_route(Permission.REPORT_READ))
def dashboard(request: Request) -> Response:
    """Headline figures, yearly tonnage with growth, recovery against thresholds, alerts by rule
    and province, producer compliance, the retirement forecast, and the open alerts."""
    page = page_for(request)
    stop = _gate(page, Permission.REPORT_READ)
    if stop is not None:
        return stop
    assert page.caller is not None
    data = dashboard_data.load_dashboard(page.registry, page.caller)
    return render(page, "dashboard.html", {"d": data, "charts": _dashboard_charts(page, data)}, private=True)


def _dashboard_charts(page: Page, d: dashboard_data.Dashboard) -> dict[str, Any]:
    t = page.t
    out: dict[str, Any] = dict.fromkeys(
        ("years", "recovery", "alerts_by_rule", "alerts_by_province", "provinces", "producers", "forecast")
    )
    if d.years:
        out["years"] = charts.bar_chart(
            [str(r.year) for r in d.years],
            [
                charts.Series(t("dash.series.registered"), [r.registered_t for r in d.years]),
                charts.Series(t("dash.series.retired"), [r.retired_t for r in d.years]),
                charts.Series(t("dash.series.recycled"), [r.recycled_t for r in d.years]),
                charts.Series(t("dash.series.repurposed"), [r.repurposed_t for r in d.years]),
            ],
            title=t("dash.years"),
            unit=t("unit.tonnes"),
            notes=[
                f"{r.registered_change_pct:+.0f}%" if r.registered_change_pct is not None else None
                for r in d.years
            ],
            css_class="chart-years",
        )
    metals = [m for m in d.recovery if m.rate is not None]
    if metals:
        out["recovery"] = charts.hbar_chart(
            [t.get(f"metal.{m.metal}_kg", m.metal) for m in metals],
            [100 * (m.rate or 0.0) for m in metals],
            title=t("dash.recovery"),
            unit="%",
            maximum=100.0,
            markers={
                name: [100 * v if (v := m.thresholds.get(name)) is not None else None for m in metals]
                for name in dashboard_data.RECOVERY_PROFILES
            },
            fmt=lambda v: f"{v:.1f}",
            css_class="chart-recovery",
        )
    if d.alerts_by_rule:
        out["alerts_by_rule"] = charts.hbar_chart(
            [t.get("rule." + rule, rule) for rule, _ in d.alerts_by_rule],
            [float(n) for _, n in d.alerts_by_rule],
            title=t("dash.alerts_by_rule"),
            css_class="chart-alert-rules",
        )
    if d.alerts_by_province:
        out["alerts_by_province"] = charts.hbar_chart(
            [page.province_name(p) or t("dash.unknown_province") for p, _ in d.alerts_by_province],
            [float(n) for _, n in d.alerts_by_province],
            title=t("dash.alerts_by_province"),
            css_class="chart-alert-provinces",
        )
    if d.provinces:
        top = d.provinces[:15]
        out["provinces"] = charts.hbar_chart(
            [page.province_name(r.province) for r in top],
            [r.retired_t for r in top],
            title=t("dash.provinces"),
            unit=t("unit.tonnes"),
            fmt=lambda v: charts.number(v, 2),
            css_class="chart-provinces",
        )
    if d.producers:
        worst = d.producers[:15]
        out["producers"] = charts.hbar_chart(
            [f"{r.name} ({t('responsibility.' + r.responsibility)})" for r in worst],
            [100 * (r.in_time_share or 0.0) for r in worst],
            title=t("dash.producers"),
            unit="%",
            maximum=100.0,
            fmt=lambda v: f"{v:.0f}",
            css_class="chart-producers",
        )
    if d.forecast:
        out["forecast"] = charts.line_chart(
            [str(y) for y, _ in d.forecast],
            [charts.Series(t("dash.series.forecast"), [v for _, v in d.forecast])],
            title=t("dash.forecast", year=d.forecast[-1][0]),
            unit=t("unit.tonnes"),
            css_class="chart-forecast",
        )
    return out


@router.get("/dashboard/battery", **_page_route(Permission.REPORT_READ))
def dashboard_lookup(request: Request, code: str = "") -> Response:
    cleaned = _typed_code(code)
    return _redirect(page_for(request), f"/dashboard/battery/{cleaned}" if cleaned else "/dashboard")


@router.get("/dashboard/battery/{code}", **_page_route(Permission.REPORT_READ))
def dashboard_battery(request: Request, code: str) -> Response:
    """One battery's full history as the authority sees it, each event with its log proof."""
    page = page_for(request)
    stop = _gate(page, Permission.REPORT_READ)
    if stop is not None:
        return stop
    assert page.caller is not None
    try:
        history = dashboard_data.battery_history(page.registry, page.caller, code)
    except DomainError as exc:
        if exc.code in _NOT_FOUND_CODES:
            return _not_genuine(page, code, exc)
        raise
    return render(
        page, "dashboard_battery.html", {"h": history, "enterprise_fields": ENTERPRISE_FIELDS}, private=True
    )


@router.post("/dashboard/alerts/{alert_id}/acknowledge", **_page_route(Permission.ALERT_MANAGE))
def acknowledge(
    request: Request,
    alert_id: int,
    note: Annotated[str, Form(max_length=2000)] = "",
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD)] = "",
) -> Response:
    """Acknowledge an alert through the monitoring service (which records it in the log), then
    back to the dashboard."""
    page = page_for(request)
    stop = _gate(page, Permission.ALERT_MANAGE) or _csrf_failed(page, csrf_token, "/dashboard#alerts")
    if stop is not None:
        return stop
    assert page.caller is not None
    try:
        dashboard_data.acknowledge_alert(page.registry, page.caller, alert_id, note.strip() or None)
    except DomainError as exc:
        return render(
            page,
            "message.html",
            {
                "heading": page.t("dash.alerts"),
                "message": exc.message,
                "link": ("/dashboard#alerts", page.t("nav.dashboard")),
            },
            status=404 if exc.kind == ErrorKind.NOT_FOUND else 409,
            private=True,
        )
    return _redirect(page, "/dashboard#alerts")


# --- an enterprise's own view --------------------------------------------------------------------------


@router.get("/enterprise", **_page_route(Permission.BATTERY_READ))
def enterprise(request: Request, after: str | None = None) -> Response:
    """The logged-in enterprise's batteries, the shipments waiting for it to receive them, and
    its own alerts and deadlines."""
    page = page_for(request)
    stop = _gate(page, Permission.BATTERY_READ)
    if stop is not None:
        return stop
    assert page.caller is not None
    view = enterprise_view.load(page.registry, page.caller, after=after)
    return render(page, "enterprise.html", {"v": view}, private=True)


# --- static files ----------------------------------------------------------------------------------------


@router.get("/static/{name}", **_page_route(Permission.PUBLIC_READ))
def static(name: str) -> Response:
    media_type = STATIC_FILES.get(name)
    if media_type is None:
        raise DomainError(E.NOT_FOUND, f"no static file {name}")
    body = resources.files("batterytrace.web").joinpath("static", name).read_bytes()
    response = Response(body, media_type=media_type)
    response.headers["Cache-Control"] = "public, max-age=3600"
    response.headers["X-Content-Type-Options"] = SECURITY_HEADERS["X-Content-Type-Options"]
    return response


__all__ = ["router"]
