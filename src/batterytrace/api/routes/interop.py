"""Standards: GS1 EPCIS 2.0 capture, export and queries; the EU battery passport (Battery Pass
data model 1.2) and the Catena-X TractionBatteryCode aspect."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Body, Header, Query, Request
from fastapi.responses import JSONResponse

from batterytrace.api import problems
from batterytrace.api.app import CallerDep
from batterytrace.domain import errors as E
from batterytrace.domain.errors import DomainError
from batterytrace.domain.permissions import Permission
from batterytrace.interop import epcis
from batterytrace.services.interop import (
    CaptureReport,
    EventQuery,
    Interop,
    parse_query_time,
    read_page_token,
    step_types,
)
from batterytrace.services.registry import require

router = APIRouter(prefix="/api/v1", tags=["standards"])

LD_JSON = "application/ld+json"
GS1_HEADERS = {"GS1-EPCIS-Version": "2.0.0", "GS1-CBV-Version": "2.0.0"}


def _permission(p: Permission) -> dict[str, Any]:
    return {"x-permission": p.value}


def interop_of(request: Request) -> Interop:
    """The standards use cases over the application's registry (made once, on first use)."""
    state = request.app.state
    found = getattr(state, "interop", None)
    if found is None or found.registry is not state.registry:
        found = Interop.from_environment(state.registry)
        state.interop = found
    return found


def _problem_or_none(error: DomainError | None) -> dict[str, Any] | None:
    return problems.problem_body(error) if error is not None else None


def report_json(report: CaptureReport) -> dict[str, Any]:
    results = []
    for entry in report.entries:
        recorded = []
        for res, raw in entry.recorded:
            item: dict[str, Any] = {"id": res.id, "type": raw.get("type")}
            for key in ("battery", "vin"):
                if raw.get(key):
                    item[key] = raw[key]
            item["status"] = res.status
            item["replay"] = res.replay
            item["error"] = _problem_or_none(res.error)
            recorded.append(item)
        results.append(
            {
                "index": entry.index,
                "eventID": entry.event_id,
                "status": "accepted" if entry.accepted else "rejected",
                "error": _problem_or_none(entry.error),
                "recorded": recorded,
            }
        )
    accepted = report.accepted
    return {
        "captureErrorBehaviour": "rollback" if report.rollback else "proceed",
        "success": accepted == len(report.entries),
        "events": len(report.entries),
        "accepted": accepted,
        "rejected": len(report.entries) - accepted,
        "results": results,
    }


@router.post(
    "/epcis/capture",
    summary="Capture an EPCIS 2.0 document",
    openapi_extra=_permission(Permission.EVENT_RECORD),
)
def capture(
    request: Request,
    who: CallerDep,
    document: Annotated[Any, Body(media_type=LD_JSON, description="an EPCISDocument (JSON or JSON-LD)")],
    behaviour: Annotated[
        str | None,
        Header(
            alias="GS1-Capture-Error-Behaviour",
            description="rollback (default): all events or none; proceed: record every event that can be",
        ),
    ] = None,
) -> JSONResponse:
    """Checks the document against the official EPCIS 2.0 JSON schema, maps each event to the
    registry's events (see docs/interop.md) and records them as the caller. Synchronous: the answer
    gives, per event, what was recorded or why not. A document that breaks the schema is refused
    with `epcis.invalid` (422) listing the violations; one none of whose events can be mapped with
    `epcis.unmappable` (422) giving the reason for each event."""
    caller = require(who, Permission.EVENT_RECORD)
    mode = (behaviour or "rollback").strip().lower()
    if mode not in ("rollback", "proceed"):
        raise DomainError(
            E.REQUEST_INVALID,
            "GS1-Capture-Error-Behaviour must be 'rollback' or 'proceed'",
            field="GS1-Capture-Error-Behaviour",
        )
    report = interop_of(request).capture(caller, document, rollback=mode == "rollback")
    body = report_json(report)
    if report.nothing_mapped:
        raise DomainError(
            E.EPCIS_UNMAPPABLE,
            f"none of the document's {len(report.entries)} event(s) has a counterpart in the registry; "
            "'results' gives the reason for each",
            extra={"results": body["results"]},
        )
    return JSONResponse(body, headers=GS1_HEADERS)


@router.get(
    "/batteries/{code}/epcis",
    summary="A battery's whole life as an EPCIS document",
    openapi_extra=_permission(Permission.PUBLIC_READ),
    response_class=JSONResponse,
)
def battery_epcis(code: str, request: Request, who: CallerDep) -> JSONResponse:
    """The events of the battery, its components and (for a second-life product) its origins, in
    the order the registry accepted them, as an EPCISDocument that validates against the EPCIS 2.0
    schema. Fields are cut to the caller's access tier, as in `/batteries/{code}/events`."""
    doc = interop_of(request).battery_epcis(who, code)
    return JSONResponse(doc, media_type=LD_JSON, headers=GS1_HEADERS)


@router.get(
    "/epcis/events",
    summary="Query events as an EPCIS query document",
    openapi_extra=_permission(Permission.BATTERY_READ),
    response_class=JSONResponse,
)
def query_events(
    request: Request,
    who: CallerDep,
    battery: Annotated[str | None, Query(description="a battery code: events about it")] = None,
    match_any_epc: Annotated[
        str | None, Query(alias="MATCH_anyEPC", description="EPCIS form of 'battery' (its URI)")
    ] = None,
    biz_step: Annotated[
        str | None, Query(alias="bizStep", description="a CBV business step or the registry's step URI")
    ] = None,
    eq_biz_step: Annotated[
        str | None, Query(alias="EQ_bizStep", description="EPCIS form of 'bizStep'")
    ] = None,
    since: Annotated[str | None, Query(alias="from", description="event time at or after (RFC 3339)")] = None,
    ge_event_time: Annotated[
        str | None, Query(alias="GE_eventTime", description="EPCIS form of 'from'")
    ] = None,
    until: Annotated[str | None, Query(alias="to", description="event time before (RFC 3339)")] = None,
    lt_event_time: Annotated[
        str | None, Query(alias="LT_eventTime", description="EPCIS form of 'to'")
    ] = None,
    enterprise: Annotated[
        str | None, Query(description="the recording enterprise (a regulator may name any)")
    ] = None,
    per_page: Annotated[int, Query(alias="perPage", ge=1)] = 100,
    next_page_token: Annotated[str | None, Query(alias="nextPageToken")] = None,
) -> JSONResponse:
    """Events by battery, business step, time range and recording enterprise, in the order the
    registry accepted them, as an EPCISQueryDocument. A regulator reads all events; another
    enterprise the events it recorded, or the events about one battery at its access tier for that
    battery. The next page is linked in the `Link` header (and `bt:nextPageToken`)."""
    code = battery
    if match_any_epc:
        code = epcis.parse_battery_uri(match_any_epc, interop_of(request).passport_base) or match_any_epc
    query = EventQuery(
        battery=code or None,
        types=step_types(biz_step or eq_biz_step),
        since=parse_query_time(since or ge_event_time, "from"),
        until=parse_query_time(until or lt_event_time, "to"),
        enterprise=enterprise or None,
        after=read_page_token(next_page_token) if next_page_token else None,
    )
    doc, token = interop_of(request).query_epcis(who, query, per_page)
    headers = dict(GS1_HEADERS)
    if token is not None:
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "nextPageToken"]
        params.append(("nextPageToken", token))
        headers["Link"] = f'<{request.url.path}?{urlencode(params)}>; rel="next"'
    return JSONResponse(doc, media_type=LD_JSON, headers=headers)


@router.get(
    "/batteries/{code}/passport",
    summary="The EU battery passport (Battery Pass data model 1.2)",
    openapi_extra=_permission(Permission.PUBLIC_READ),
)
def battery_passport(code: str, request: Request, who: CallerDep) -> dict[str, Any]:
    """The battery's passport: the seven aspects of the Battery Pass data model 1.2, each valid
    against its schema, cut to the caller's access tier (Annex XIII: public; legitimate interest;
    authorities). Withheld fields are named in `withheld`; fields the model requires that nobody
    declared in `undeclared`. A second-life product has its own passport, linked to its origins'."""
    return interop_of(request).passport(who, code)


@router.get(
    "/batteries/{code}/traction-battery-code",
    summary="The Catena-X TractionBatteryCode aspect",
    openapi_extra=_permission(Permission.PUBLIC_READ),
)
def traction_battery_code(code: str, request: Request, who: CallerDep) -> dict[str, Any]:
    """The battery's GB/T 34014 code with its modules and cells, in the Catena-X
    TractionBatteryCode 2.0.0 aspect (urn:samm:io.catenax.traction_battery_code:2.0.0)."""
    return interop_of(request).traction_battery_code(who, code)
