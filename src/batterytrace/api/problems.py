"""RFC 9457 problem details: one table from error kind to HTTP status, one response shape."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from batterytrace.domain import errors as E
from batterytrace.domain.errors import DomainError, ErrorKind

PROBLEM_JSON = "application/problem+json"

STATUS: dict[ErrorKind, int] = {
    ErrorKind.INVALID: 422,
    ErrorKind.BAD_REQUEST: 400,
    ErrorKind.UNAUTHORIZED: 401,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.CONFLICT: 409,
    ErrorKind.TOO_LARGE: 413,
    ErrorKind.RATE_LIMITED: 429,
    ErrorKind.UNAVAILABLE: 503,
}


def problem_type(code: str) -> str:
    """The problem type URI: a page of this registry that explains the code."""
    return f"/problems/{code}"


def problem_body(error: DomainError, instance: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": problem_type(error.code),
        "title": error.spec.title,
        "status": STATUS[error.kind],
        "detail": error.message,
        "code": error.code,
    }
    if error.field is not None:
        body["field"] = error.field
    if error.position is not None:
        body["position"] = error.position
    for key, value in error.extra.items():
        body.setdefault(key, value)
    if instance:
        body["instance"] = instance
    return body


def problem_response(
    error: DomainError, request: Request | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = problem_body(error, request.url.path if request is not None else None)
    rid = getattr(request.state, "request_id", None) if request is not None else None
    if rid:
        body["request_id"] = rid
    hdrs = dict(headers or {})
    if error.kind == ErrorKind.UNAUTHORIZED:
        hdrs.setdefault("WWW-Authenticate", 'Bearer realm="batterytrace"')
    return JSONResponse(body, status_code=body["status"], media_type=PROBLEM_JSON, headers=hdrs)


def _field_from_loc(loc: tuple[Any, ...]) -> str:
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out or "body"


def validation_error(exc: RequestValidationError) -> DomainError:
    errors = exc.errors()
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request", "type": "value_error"}
    loc = tuple(first.get("loc", ()))
    field = _field_from_loc(loc)
    kind = first.get("type", "")
    if kind == "json_invalid":
        return DomainError(
            E.REQUEST_MALFORMED, "the request body is not valid JSON: " + str(first.get("msg")), field="body"
        )
    if kind == "missing":
        message = f"'{field}' is required"
    else:
        message = f"'{field}': {first.get('msg', 'invalid value')}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    where = loc[0] if loc else "body"
    return DomainError(E.REQUEST_INVALID, message, field=field, extra={"in": where})


async def on_domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    return problem_response(exc, request)


async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return problem_response(validation_error(exc), request)


async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        err = DomainError(E.NOT_FOUND, f"no resource at {request.url.path}")
    elif exc.status_code == 405:
        err = DomainError(E.METHOD_NOT_ALLOWED, f"{request.method} is not allowed on {request.url.path}")
        response = problem_response(err, request)
        response.status_code = 405
        return response
    else:
        err = DomainError(E.REQUEST_MALFORMED, str(exc.detail))
        response = problem_response(err, request)
        response.status_code = exc.status_code
        return response
    return problem_response(err, request)


async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    import logging

    logging.getLogger("batterytrace.api").exception("unexpected error on %s", request.url.path)
    err = DomainError(
        E.INTERNAL,
        "the registry could not complete the request; nothing was recorded. Retry with the same event ids",
    )
    response = problem_response(err, request)
    response.status_code = 500
    return response
