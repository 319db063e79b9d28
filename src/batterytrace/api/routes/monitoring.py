"""Monitoring routes: alerts (list, read, acknowledge, resolve, rescan) and the regulator's
reports (statistics, producer responsibility, recovery, retirement forecast)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from batterytrace.api.app import CallerDep
from batterytrace.domain import errors as E
from batterytrace.domain.errors import DomainError
from batterytrace.domain.permissions import Permission
from batterytrace.domain.policy import DEFAULT_PROFILE, get_profile
from batterytrace.services import forecast, reports
from batterytrace.services.monitoring import monitoring_for
from batterytrace.services.registry import Registry, require

router = APIRouter(prefix="/api/v1")

#: Largest sales CSV accepted by the forecast, in bytes.
MAX_SALES_BYTES = 1_000_000


def _permission(p: Permission) -> dict[str, Any]:
    return {"x-permission": p.value}


def _registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


def _out(report: reports.Report, fmt: str) -> Any:
    if fmt == "csv":
        return PlainTextResponse(report.as_csv(), media_type="text/csv; charset=utf-8")
    return report.as_json()


class ReasonBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(default=None, max_length=2000, description="why (required to resolve)")


Format = Annotated[Literal["json", "csv"], Query(description="json (default) or csv")]
#: Alert ids are 32-bit integers on every database.
AlertId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the alert's id")]
Year = Annotated[int | None, Query(ge=1990, le=2100)]


# --- alerts ------------------------------------------------------------------------------------


@router.get("/alerts", tags=["monitoring"], openapi_extra=_permission(Permission.ALERT_READ))
def list_alerts(
    request: Request,
    who: CallerDep,
    rule: Annotated[str | None, Query(description="an alert rule, e.g. shipment_overdue")] = None,
    province: Annotated[str | None, Query(description="2-digit province code")] = None,
    enterprise: Annotated[str | None, Query(description="responsible party or counterparty (USCC)")] = None,
    battery: str | None = None,
    vin: str | None = None,
    status: Literal["open", "closed", "all"] = "open",
    limit: Annotated[int, Query(ge=1)] = 100,
    after: Annotated[
        int | None, Query(ge=1, le=2**31 - 1, description="cursor: the last id of the previous page")
    ] = None,
    refresh: Annotated[bool, Query(description="re-scan running deadlines first")] = False,
) -> dict[str, Any]:
    """Alerts, newest first. A regulator sees every alert; an enterprise the alerts about itself."""
    return monitoring_for(_registry(request)).list_alerts(
        who,
        rule=rule,
        province=province,
        enterprise=enterprise,
        battery=battery,
        vin=vin,
        status=status,
        limit=limit,
        after=after,
        refresh=refresh,
    )


@router.post("/alerts/rescan", tags=["monitoring"], openapi_extra=_permission(Permission.ALERT_MANAGE))
def rescan_alerts(request: Request, who: CallerDep) -> dict[str, Any]:
    """Raise the alerts of every running deadline that has passed."""
    require(who, Permission.ALERT_MANAGE)
    return monitoring_for(_registry(request)).rescan()


@router.get("/alerts/{alert_id}", tags=["monitoring"], openapi_extra=_permission(Permission.ALERT_READ))
def get_alert(request: Request, alert_id: AlertId, who: CallerDep) -> dict[str, Any]:
    return monitoring_for(_registry(request)).get_alert(who, alert_id)


@router.post(
    "/alerts/{alert_id}/acknowledge", tags=["monitoring"], openapi_extra=_permission(Permission.ALERT_MANAGE)
)
def acknowledge_alert(
    request: Request, alert_id: AlertId, who: CallerDep, body: ReasonBody | None = None
) -> dict[str, Any]:
    """A regulator has seen the alert (kept in the log); it stays open while its condition holds."""
    caller = require(who, Permission.ALERT_MANAGE)
    return monitoring_for(_registry(request)).acknowledge(caller, alert_id, body.reason if body else None)


@router.post(
    "/alerts/{alert_id}/resolve", tags=["monitoring"], openapi_extra=_permission(Permission.ALERT_MANAGE)
)
def resolve_alert(request: Request, alert_id: AlertId, who: CallerDep, body: ReasonBody) -> dict[str, Any]:
    """A regulator settles the alert with a reason (kept in the log)."""
    caller = require(who, Permission.ALERT_MANAGE)
    return monitoring_for(_registry(request)).resolve(caller, alert_id, body.reason or "")


# --- reports -----------------------------------------------------------------------------------


@router.get("/reports/statistics", tags=["reports"], openapi_extra=_permission(Permission.REPORT_READ))
def statistics_report(
    request: Request,
    who: CallerDep,
    year: Year = None,
    province: str | None = None,
    chemistry: str | None = None,
    producer: str | None = None,
    level: Literal["pack", "module", "cell", "all"] = "pack",
    group_by: Annotated[
        str | None, Query(description="comma-separated: province, chemistry, producer, level")
    ] = None,
    format: Format = "json",
) -> Any:
    require(who, Permission.REPORT_READ)
    groups = [g.strip() for g in (group_by or "").split(",") if g.strip()]
    report = reports.statistics(
        _registry(request).engine,
        year=year,
        province=province,
        chemistry=chemistry,
        producer=producer,
        level=level,
        group_by=groups,
    )
    return _out(report, format)


@router.get("/reports/producers", tags=["reports"], openapi_extra=_permission(Permission.REPORT_READ))
def producers_report(
    request: Request,
    who: CallerDep,
    year: Annotated[int | None, Query(ge=1990, le=2100, description="year of retirement")] = None,
    enterprise: str | None = None,
    responsibility: Literal["producer", "automaker"] | None = None,
    format: Format = "json",
) -> Any:
    require(who, Permission.REPORT_READ)
    registry = _registry(request)
    report = reports.producers(
        registry.engine, registry.clock(), year=year, enterprise=enterprise, responsibility=responsibility
    )
    return _out(report, format)


@router.get("/reports/recovery", tags=["reports"], openapi_extra=_permission(Permission.REPORT_READ))
def recovery_report(
    request: Request,
    who: CallerDep,
    profile: Annotated[list[str] | None, Query(description="policy profile(s); default: all")] = None,
    year: Year = None,
    recycler: str | None = None,
    format: Format = "json",
) -> Any:
    require(who, Permission.REPORT_READ)
    report = reports.recovery(_registry(request).engine, profiles=profile, year=year, recycler=recycler)
    return _out(report, format)


@router.get("/reports/forecast", tags=["reports"], openapi_extra=_permission(Permission.REPORT_READ))
def forecast_report(
    request: Request,
    who: CallerDep,
    profile: str = DEFAULT_PROFILE,
    until: Annotated[int, Query(ge=1990, le=forecast.LAST_YEAR)] = forecast.DEFAULT_UNTIL,
    format: Format = "json",
) -> Any:
    """Retirements in tonnes a year from the registered fleet."""
    require(who, Permission.REPORT_READ)
    registry = _registry(request)
    report = forecast.from_fleet(registry.engine, get_profile(profile), registry.clock(), until)
    return _out(report, format)


@router.post(
    "/reports/forecast",
    tags=["reports"],
    openapi_extra={
        **_permission(Permission.REPORT_READ),
        "requestBody": {
            "required": True,
            "description": "annual sales: CSV with year and vehicles or tonnes (optional pack_kg, lfp_share)",
            "content": {"text/csv": {"schema": {"type": "string"}}},
        },
    },
)
async def forecast_from_sales(
    request: Request,
    who: CallerDep,
    profile: str = DEFAULT_PROFILE,
    until: Annotated[int, Query(ge=1990, le=forecast.LAST_YEAR)] = forecast.DEFAULT_UNTIL,
    format: Format = "json",
) -> Any:
    """National retirements in tonnes a year projected from a CSV of annual sales."""
    require(who, Permission.REPORT_READ)
    raw = await request.body()
    if len(raw) > MAX_SALES_BYTES:
        raise DomainError(E.REQUEST_TOO_LARGE, f"the sales CSV may be at most {MAX_SALES_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DomainError(E.REQUEST_INVALID, "the sales CSV must be UTF-8 text", field="sales") from None
    registry = _registry(request)
    report = forecast.from_sales(text, get_profile(profile), registry.clock(), until)
    return _out(report, format)
