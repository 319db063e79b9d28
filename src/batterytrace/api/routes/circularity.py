"""Circularity over the API: a battery's lineage and greenhouse-gas figures (public, cut to the
caller's tier), and the regulator's reports on second life, repurposed versus recycled, recycled
content and greenhouse gas."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from batterytrace.api.app import CallerDep
from batterytrace.domain.permissions import Permission
from batterytrace.services import circularity
from batterytrace.services.lineage import battery_lineage
from batterytrace.services.registry import Registry

router = APIRouter(prefix="/api/v1")

Year = Annotated[
    int | None,
    Query(
        ge=circularity.FIRST_YEAR, le=circularity.LAST_YEAR, description="calendar year (China Standard Time)"
    ),
]
Province = Annotated[str | None, Query(pattern=r"^\d{2}$", description="2-digit province code of the site")]


def _registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


def _needs(p: Permission) -> dict[str, Any]:
    return {"x-permission": p.value}


@router.get("/batteries/{code}/lineage", tags=["batteries"], openapi_extra=_needs(Permission.PUBLIC_READ))
def lineage(code: str, request: Request, who: CallerDep) -> dict[str, Any]:
    """Ancestors and descendants of the battery: components (pack → module → cell), origins and
    second-life products, and for recycled ones the recycling; every node cut to the caller's tier."""
    return battery_lineage(_registry(request), who, code)


@router.get("/batteries/{code}/ghg", tags=["batteries"], openapi_extra=_needs(Permission.PUBLIC_READ))
def battery_ghg(code: str, request: Request, who: CallerDep) -> dict[str, Any]:
    """The battery's manufacturing footprint (declared and estimated) and the emissions its second
    life or its recycling avoids, with the policy profile's factors."""
    return circularity.battery_ghg(_registry(request), who, code)


@router.get("/reports/second-life", tags=["reports"], openapi_extra=_needs(Permission.REPORT_READ))
def second_life(
    request: Request, who: CallerDep, year: Year = None, province: Province = None
) -> dict[str, Any]:
    """Second-life products registered, batteries repurposed into them, and second-life products
    installed, retired and recycled, by year and province."""
    return circularity.second_life_report(_registry(request), who, year=year, province=province)


@router.get("/reports/circularity", tags=["reports"], openapi_extra=_needs(Permission.REPORT_READ))
def outcomes(
    request: Request, who: CallerDep, year: Year = None, province: Province = None
) -> dict[str, Any]:
    """Retired batteries repurposed versus recycled (shares of mass and of count), gradings, and the
    retired batteries awaiting either now."""
    return circularity.circularity_report(_registry(request), who, year=year, province=province)


@router.get("/reports/recycled-content", tags=["reports"], openapi_extra=_needs(Permission.REPORT_READ))
def recycled_content(
    request: Request,
    who: CallerDep,
    year: Year = None,
    maker: Annotated[str | None, Query(description="USCC of one battery maker")] = None,
) -> dict[str, Any]:
    """Recycled content of new batteries by maker against the EU-2031 minimums, and each
    recycler's balance of recovered material."""
    return circularity.recycled_content_report(_registry(request), who, year=year, maker=maker)


@router.get("/reports/ghg", tags=["reports"], openapi_extra=_needs(Permission.REPORT_READ))
def ghg(
    request: Request,
    who: CallerDep,
    year: Year = None,
    province: Province = None,
    profile: Annotated[str | None, Query(description="policy profile, default CN-2026")] = None,
) -> dict[str, Any]:
    """Manufacturing footprints declared and estimated, and emissions avoided by second life and by
    recycling, with the factors used."""
    return circularity.ghg_report(_registry(request), who, year=year, province=province, profile=profile)
