"""The REST API under /api/v1 (FastAPI)."""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from batterytrace.api import limits, problems
from batterytrace.api.routes.ops import install_middleware
from batterytrace.domain import errors as E
from batterytrace.domain.errors import DomainError, catalog
from batterytrace.domain.permissions import Permission
from batterytrace.services import log as logsvc
from batterytrace.services.registry import Caller, EventResult, Registry, require

API = "/api/v1"


# --- request bodies (documented in the OpenAPI document) -------------------------------------


class EventBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "id": "6f1c2b9e-3d4a-4e5f-8a7b-9c0d1e2f3a4b",
                "type": "manufactured",
                "battery": "0ABPE01A1B2C3DGBL0000001",
                "time": "2026-05-01T09:30:00+08:00",
                "region": "320500",
                "data": {
                    "capacity_kwh": 60,
                    "voltage_v": 400,
                    "mass_kg": 300,
                    "materials": {"li_kg": 6.0, "ni_kg": 39.5, "co_kg": 5.0, "mn_kg": 4.6, "cu_kg": 22.2},
                },
            }
        },
    )

    id: str = Field(description="UUID chosen by the client; resending it is idempotent")
    type: str = Field(description="event type, e.g. manufactured, shipped, received …")
    battery: str | None = Field(default=None, description="GB/T 34014 battery code (battery events)")
    vin: str | None = Field(default=None, description="VIN (vehicle events)")
    time: str = Field(description="RFC 3339 date-time with UTC offset")
    region: str = Field(description="6-digit GB/T 2260 division of the site")
    data: dict[str, Any] = Field(default_factory=dict, description="type-specific data")


class BatchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[Any] = Field(description="events, processed in order")
    atomic: bool = Field(
        default=False, description="all-or-nothing: if any event is rejected, none is recorded"
    )


class EnterpriseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(description="18-character unified social credit code")
    name: str
    roles: list[str]
    region: str
    manufacturer_codes: list[str] = Field(default_factory=list)
    network_of: str | None = None


class LicenceBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scope: str = Field(description="collection | dismantling | second_life | recycling")
    valid_from: str
    valid_to: str
    region: str | None = Field(default=None, description="province (2 digits) or null for nationwide")


class KeyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str | None = None
    expires_at: str | None = None


class Problem(BaseModel):
    """An RFC 9457 problem document, as every error is answered (``application/problem+json``)."""

    model_config = ConfigDict(extra="allow")
    type: str = Field(description="a page of this registry that explains the code: /problems/{code}")
    title: str
    status: int
    detail: str = Field(description="what went wrong and what to do")
    code: str = Field(description="stable dotted error code, e.g. lifecycle.not_holder")
    field: str | None = Field(default=None, description="the input at fault, e.g. data.capacity_kwh")
    position: int | None = Field(default=None, description="1-based position inside an identifier")
    instance: str | None = None
    request_id: str | None = None


#: Every route answers its errors as problem documents: declared once for the whole document.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    kind: {
        "model": Problem,
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    for kind, description in (("4XX", "refused: a problem document"), ("5XX", "failed: a problem document"))
}


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def permission(p: Permission) -> dict[str, Any]:
    """Marks a route with the permission it needs (checked by a test over every route)."""
    return {"x-permission": p.value}


def result_json(res: EventResult) -> dict[str, Any]:
    return {
        "id": res.id,
        "status": res.status,
        "error": problems.problem_body(res.error) if res.error is not None else None,
        "event": res.event,
    }


def current_caller(request: Request) -> Caller | None:
    """The enterprise behind the request's API key, or None for a public request."""
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise DomainError(E.AUTH_INVALID_KEY, "use the header 'Authorization: Bearer <api key>'")
    registry: Registry = request.app.state.registry
    caller = registry.authenticate(token.strip())
    request.state.enterprise = caller.id  # for the request log
    limits.admit(request, caller.key_id)
    return caller


CallerDep = Annotated[Caller | None, Depends(current_caller)]


def extra_routers() -> list[APIRouter]:
    """Routers of the other parts of the product (monitoring, standards, web pages, operations).
    Each module exposes ``router``; routes read the registry from ``request.app.state.registry``."""
    import importlib

    out = []
    for name in ROUTER_MODULES:
        out.append(importlib.import_module(name).router)
    return out


ROUTER_MODULES: list[str] = [
    "batterytrace.api.routes.ops",
    "batterytrace.web.pages",
    "batterytrace.api.routes.interop",
    "batterytrace.api.routes.monitoring",
    "batterytrace.api.routes.circularity",
]


def create_app(registry: Registry) -> FastAPI:
    settings = registry.settings
    app = FastAPI(
        title="batterytrace",
        version="1.0.0",
        description=(
            "National registry of electric-vehicle traction batteries: GB/T 34014 codes, the life of each "
            "battery with its custody, and a tamper-evident Merkle log. Authenticate with "
            "`Authorization: Bearer <api key>`. Errors are RFC 9457 problem documents with a stable `code`."
        ),
    )
    app.state.registry = registry
    app.add_exception_handler(DomainError, problems.on_domain_error)
    app.add_exception_handler(RequestValidationError, problems.on_validation_error)
    app.add_exception_handler(StarletteHTTPException, problems.on_http_error)
    app.add_exception_handler(Exception, problems.on_unexpected)

    v1 = APIRouter(prefix=API, responses=PROBLEM_RESPONSES)

    # --- enterprises ------------------------------------------------------------------------
    @v1.post(
        "/enterprises",
        status_code=201,
        tags=["enterprises"],
        openapi_extra=permission(Permission.ENTERPRISE_CREATE),
    )
    def create_enterprise(body: EnterpriseBody, who: CallerDep) -> dict[str, Any]:
        return registry.create_enterprise(require(who, Permission.ENTERPRISE_CREATE), body.model_dump())

    @v1.get(
        "/enterprises/{enterprise_id}",
        tags=["enterprises"],
        openapi_extra=permission(Permission.ENTERPRISE_READ),
    )
    def get_enterprise(enterprise_id: str, who: CallerDep) -> dict[str, Any]:
        return registry.get_enterprise(who, enterprise_id)

    @v1.post(
        "/enterprises/{enterprise_id}/licences",
        status_code=201,
        tags=["enterprises"],
        openapi_extra=permission(Permission.LICENCE_GRANT),
    )
    def grant_licence(enterprise_id: str, body: LicenceBody, who: CallerDep) -> dict[str, Any]:
        return registry.grant_licence(
            require(who, Permission.LICENCE_GRANT), enterprise_id, body.model_dump()
        )

    @v1.post(
        "/enterprises/{enterprise_id}/keys",
        status_code=201,
        tags=["enterprises"],
        openapi_extra=permission(Permission.KEY_CREATE_OWN),
    )
    def create_key(enterprise_id: str, who: CallerDep, body: KeyBody | None = None) -> dict[str, Any]:
        from batterytrace.domain.events import parse_event_time

        expires = parse_event_time(body.expires_at, "expires_at") if body and body.expires_at else None
        return registry.create_key(
            require(who, Permission.KEY_CREATE_OWN),
            enterprise_id,
            label=body.label if body else None,
            expires_at=expires,
        )

    @v1.delete(
        "/enterprises/{enterprise_id}/keys/{key_id}",
        tags=["enterprises"],
        openapi_extra=permission(Permission.KEY_CREATE_OWN),
    )
    def revoke_key(enterprise_id: str, key_id: str, who: CallerDep) -> dict[str, Any]:
        return registry.revoke_key(require(who, Permission.KEY_CREATE_OWN), enterprise_id, key_id)

    @v1.get("/facilities", tags=["enterprises"], openapi_extra=permission(Permission.PUBLIC_READ))
    def facilities(
        province: Annotated[
            str | None, Query(pattern=r"^\d{2}$", description="2-digit province code")
        ] = None,
    ) -> dict[str, Any]:
        """Licensed facilities and collection outlets, optionally in one province (public)."""
        items = [
            e
            for e in registry.list_enterprises(province=province)
            if e["licensed_scopes"] or "service_outlet" in e["roles"]
        ]
        return {"items": items}

    # --- events -------------------------------------------------------------------------------
    @v1.post("/events", status_code=201, tags=["events"], openapi_extra=permission(Permission.EVENT_RECORD))
    def record_event(body: EventBody, who: CallerDep) -> Any:
        raw = body.model_dump(exclude_unset=True)
        (res,) = registry.record(require(who, Permission.EVENT_RECORD), [raw])
        if res.error is not None:
            raise res.error
        return res.event

    @v1.post("/events/batch", tags=["events"], openapi_extra=permission(Permission.EVENT_RECORD))
    def record_batch(body: BatchBody, who: CallerDep) -> dict[str, Any]:
        if len(body.events) > settings.max_batch:
            raise DomainError(
                E.BATCH_TOO_LARGE,
                f"a batch holds at most {settings.max_batch} events; this one has {len(body.events)}",
                field="events",
            )
        results = registry.record(require(who, Permission.EVENT_RECORD), body.events, atomic=body.atomic)
        accepted = sum(1 for r in results if r.status == "accepted")
        return {
            "accepted": accepted,
            "rejected": len(results) - accepted,
            "results": [result_json(r) for r in results],
        }

    # --- batteries ------------------------------------------------------------------------------
    @v1.get("/batteries", tags=["batteries"], openapi_extra=permission(Permission.BATTERY_READ))
    def list_batteries(
        who: CallerDep,
        stage: str | None = None,
        holder: str | None = None,
        producer: str | None = None,
        level: str | None = None,
        chemistry: str | None = None,
        manufacturer: str | None = None,
        in_transit_to: str | None = None,
        vin: str | None = None,
        parent: str | None = None,
        limit: Annotated[int, Query(ge=1)] = 100,
        after: Annotated[str | None, Query(description="cursor: the last code of the previous page")] = None,
    ) -> dict[str, Any]:
        filters = {
            "stage": stage,
            "holder": holder,
            "producer": producer,
            "level": level,
            "chemistry": chemistry,
            "manufacturer": manufacturer,
            "in_transit_to": in_transit_to,
            "vin": vin,
            "parent": parent,
        }
        return registry.list_batteries(who, filters=filters, limit=limit, after=after)

    @v1.get("/batteries/{code}", tags=["batteries"], openapi_extra=permission(Permission.PUBLIC_READ))
    def get_battery(code: str, who: CallerDep) -> dict[str, Any]:
        return registry.get_battery(who, code)

    @v1.get("/batteries/{code}/events", tags=["batteries"], openapi_extra=permission(Permission.PUBLIC_READ))
    def battery_events(code: str, who: CallerDep) -> dict[str, Any]:
        return registry.battery_events(who, code)

    @v1.get("/security-events", tags=["regulator"], openapi_extra=permission(Permission.SECURITY_READ))
    def security_events(
        who: CallerDep,
        enterprise: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        return {"items": registry.security_events(require(who, Permission.SECURITY_READ), limit, enterprise)}

    # --- the log ---------------------------------------------------------------------------------
    @v1.get(
        "/log/checkpoint",
        tags=["log"],
        response_class=PlainTextResponse,
        openapi_extra=permission(Permission.PUBLIC_READ),
    )
    def checkpoint() -> PlainTextResponse:
        note = logsvc.latest_checkpoint(registry.engine)
        if note is None:
            raise DomainError(E.LOG_UNAVAILABLE, "the log is empty: no checkpoint has been signed yet")
        return PlainTextResponse(note, media_type="text/plain; charset=utf-8")

    @v1.get(
        "/log/key",
        tags=["log"],
        response_class=PlainTextResponse,
        openapi_extra=permission(Permission.PUBLIC_READ),
    )
    def log_key() -> PlainTextResponse:
        return PlainTextResponse(
            registry.log.signer.verifier_key + "\n", media_type="text/plain; charset=utf-8"
        )

    @v1.get("/log/entries/{index}", tags=["log"], openapi_extra=permission(Permission.PUBLIC_READ))
    def log_entry(index: int) -> dict[str, Any]:
        item = logsvc.entry(registry.engine, index)
        from batterytrace.ledger.merkle import leaf_hash

        item["leaf_hash"] = _b64(leaf_hash(logsvc.entry_text(registry.engine, index).encode("utf-8")))
        return item

    @v1.get("/log/proof/inclusion", tags=["log"], openapi_extra=permission(Permission.PUBLIC_READ))
    def inclusion(
        index: Annotated[int, Query(ge=0)], size: Annotated[int | None, Query(ge=1)] = None
    ) -> dict[str, Any]:
        p = logsvc.prove_inclusion(registry.engine, index, size)
        return {
            "index": p["index"],
            "size": p["size"],
            "leaf_hash": _b64(p["leaf_hash"]),
            "root": _b64(p["root"]),
            "hashes": [_b64(h) for h in p["hashes"]],
        }

    @v1.get("/log/proof/consistency", tags=["log"], openapi_extra=permission(Permission.PUBLIC_READ))
    def consistency(
        first: Annotated[int, Query(ge=1)], second: Annotated[int | None, Query(ge=1)] = None
    ) -> dict[str, Any]:
        p = logsvc.prove_consistency(registry.engine, first, second)
        return {
            "first": p["first"],
            "second": p["second"],
            "first_root": _b64(p["first_root"]),
            "second_root": _b64(p["second_root"]),
            "hashes": [_b64(h) for h in p["hashes"]],
        }

    app.include_router(v1)
    for router in extra_routers():
        app.include_router(router, responses=PROBLEM_RESPONSES)

    @app.get("/problems/{code}", tags=["meta"], openapi_extra=permission(Permission.PUBLIC_READ))
    def problem_page(code: str) -> JSONResponse:
        spec = catalog().get(code)
        if spec is None:
            raise DomainError(E.NOT_FOUND, f"no problem type {code}")
        return JSONResponse({"code": spec.code, "title": spec.title, "status": problems.STATUS[spec.kind]})

    limits.install(app, settings)  # body size, per-key limits, busy-store answers
    install_middleware(app)  # outermost: request id, request log and metrics
    return app
