"""Operations: liveness (``/healthz``), readiness (``/readyz``), Prometheus metrics (``/metrics``),
and the middleware that gives every request an id, one JSON log line and its metrics.

``/healthz`` answers as long as the process does. ``/readyz`` answers 200 only when the database
is reachable, its schema is at the migrations' head, and the log's signing key signs and is one
of the log's listed keys; otherwise 503 with the reason of each failed check. Put both, and
``/metrics``, behind the reverse proxy's internal-only rules (see ``docs/deployment.md``).
"""

from __future__ import annotations

import functools
import inspect
import logging
import re
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from alembic.script import ScriptDirectory
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from batterytrace.domain.permissions import Permission
from batterytrace.ledger.checkpoint import NoteError, Verifier, open_note, sign_note
from batterytrace.services import metrics
from batterytrace.services.registry import Registry
from batterytrace.store import tables as T
from batterytrace.store.migrate import alembic_config, head_revision

PUBLIC = {"x-permission": Permission.PUBLIC_READ.value}
REQUEST_ID_HEADER = "X-Request-ID"
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9.:-]{1,64}$")
UNMATCHED = "unmatched"

request_log = logging.getLogger("batterytrace.request")
ops_log = logging.getLogger("batterytrace.ops")

router = APIRouter(tags=["operations"])


# --- readiness ----------------------------------------------------------------------------------


@dataclass
class Check:
    ok: bool
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": self.ok, **self.details}
        if self.reason is not None:
            out["reason"] = self.reason
        return out


@functools.lru_cache(maxsize=1)
def _head() -> str | None:
    return head_revision()


@functools.lru_cache(maxsize=1)
def _known_revisions() -> frozenset[str]:
    return frozenset(r.revision for r in ScriptDirectory.from_config(alembic_config()).walk_revisions())


def _unreachable(exc: Exception) -> Check:
    # The full message (host, port, database) goes to the log, not to the public answer.
    ops_log.warning("readiness: database unreachable: %s", str(exc).splitlines()[0] if str(exc) else exc)
    return Check(False, f"database unreachable ({type(exc).__name__})")


def _sqlite_revision(path: str, timeout: float) -> tuple[Check, str | None, bool]:
    """Open the database file afresh, never creating it (a vanished file must not come back
    empty), and read the schema revision. Returns (database check, revision, table exists)."""
    uri = Path(path).resolve().as_uri() + "?mode=rw"
    try:
        con = sqlite3.connect(uri, uri=True, timeout=timeout)
    except sqlite3.Error as exc:
        return _unreachable(exc), None, False
    try:
        has_table = (
            con.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
            ).fetchone()
            is not None
        )
        revision = None
        if has_table:
            row = con.execute("SELECT version_num FROM alembic_version").fetchone()
            revision = row[0] if row else None
    except sqlite3.Error as exc:
        return _unreachable(exc), None, False
    finally:
        con.close()
    return Check(True), revision, has_table


def _server_revision(registry: Registry) -> tuple[Check, str | None, bool]:
    try:
        with registry.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            has_table = registry.engine.dialect.has_table(conn, "alembic_version")
            revision = (
                conn.execute(text("SELECT version_num FROM alembic_version")).scalar() if has_table else None
            )
            conn.rollback()
    except SQLAlchemyError as exc:
        return _unreachable(exc), None, False
    return Check(True), revision, has_table


def _signing_key(registry: Registry) -> Check:
    signer = registry.log.signer
    try:
        note = sign_note("batterytrace readiness probe\n", [signer])
        open_note(note, [Verifier.from_key(signer.verifier_key)])
    except NoteError as exc:
        return Check(False, f"the signing key does not sign: {exc}")
    details: dict[str, Any] = {"key_name": signer.name}
    try:
        with registry.engine.connect() as conn:
            size = conn.execute(select(T.log_head.c.size).where(T.log_head.c.id == 1)).scalar() or 0
            listed = conn.execute(
                select(T.log_keys.c.retired_at).where(T.log_keys.c.verifier_key == signer.verifier_key)
            ).first()
            conn.rollback()
    except SQLAlchemyError as exc:
        return Check(False, f"the log's keys could not be read ({type(exc).__name__})", details)
    if size and listed is None:
        return Check(
            False,
            "the signing key is not one of the log's keys: BATTERYTRACE_SIGNING_KEY points at another key "
            "than the one this log was signed with",
            details,
        )
    details["retired"] = listed is not None and listed.retired_at is not None
    return Check(True, None, details)


def readiness(registry: Registry) -> dict[str, Check]:
    """Run the readiness checks (blocking): database, migrations, signing key."""
    url = make_url(registry.settings.database_url)
    timeout = registry.settings.readiness_timeout_seconds
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        database, revision, has_table = _sqlite_revision(url.database, timeout)
    else:
        database, revision, has_table = _server_revision(registry)
    checks = {"database": database}
    head = _head()
    if not database.ok:
        checks["migrations"] = Check(False, "unknown: the database is unreachable", {"head": head})
        checks["signing_key"] = Check(False, "unknown: the database is unreachable")
        return checks
    if not has_table:
        migrations = Check(False, "the schema has not been created: run 'batterytrace db upgrade'")
    elif revision != head and revision in _known_revisions():
        migrations = Check(
            False, f"the schema is at {revision}, the code expects {head}: run 'batterytrace db upgrade'"
        )
    elif revision != head:
        # A revision this code does not know is a newer one: another release has upgraded the
        # database and this worker awaits its restart. Migrations add before they take away, so
        # the worker keeps serving meanwhile (see docs/deployment.md, "Upgrades").
        migrations = Check(True, None, {"ahead": True})
    else:
        migrations = Check(True)
    migrations.details.update({"current": revision, "head": head})
    checks["migrations"] = migrations
    checks["signing_key"] = _signing_key(registry)
    return checks


@router.get("/healthz", tags=["meta"], openapi_extra=PUBLIC)
def healthz() -> dict[str, str]:
    """Liveness: the process answers. Restart it if this fails."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    tags=["meta"],
    openapi_extra=PUBLIC,
    responses={503: {"description": "not ready; `reasons` says why"}},
)
async def readyz(request: Request) -> JSONResponse:
    """Readiness: the database answers, its schema is current and the signing key works. A load
    balancer sends traffic only to workers that answer 200."""
    registry: Registry = request.app.state.registry
    timeout = registry.settings.readiness_timeout_seconds
    checks: dict[str, Check] | None = None
    with anyio.move_on_after(timeout * 2 + 1):
        checks = await anyio.to_thread.run_sync(readiness, registry, abandon_on_cancel=True)
    if checks is None:
        checks = {"database": Check(False, f"no answer within {timeout * 2 + 1:g} s")}
    reasons = [f"{name}: {c.reason}" for name, c in checks.items() if not c.ok]
    body = {
        "status": "not_ready" if reasons else "ready",
        "checks": {name: c.as_json() for name, c in checks.items()},
        "reasons": reasons,
    }
    return JSONResponse(body, status_code=503 if reasons else 200)


@router.get("/metrics", tags=["meta"], openapi_extra=PUBLIC, response_class=Response)
def prometheus_metrics(request: Request) -> Response:
    """Prometheus text exposition: events accepted and refused, request latencies, the log's size
    and checkpoint age, open alerts, import progress."""
    return Response(metrics.exposition(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)


# --- request id, request log and request metrics ----------------------------------------------------


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED


class RequestTelemetry:
    """Outermost application middleware: gives each request an id (the client's ``X-Request-ID``
    when it is a plain token, else a new one), echoes it in the response header, and writes one
    log line and the request metrics when the response is done. An exception no handler took is
    answered here with the application's 500 problem document, so that it too carries the id."""

    def __init__(self, app: ASGIApp, fastapi_app: FastAPI) -> None:
        self.app = app
        self.fastapi_app = fastapi_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = ""
        for name, value in scope.get("headers") or []:
            if name == b"x-request-id":
                offered = value.decode("latin-1")
                break
        rid = offered if _CLIENT_REQUEST_ID.match(offered) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        started = time.perf_counter()
        status = 500
        response_started = False
        sent_bytes = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started, sent_bytes
            if message["type"] == "http.response.start":
                response_started = True
                status = int(message["status"])
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = rid
            elif message["type"] == "http.response.body":
                sent_bytes += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            handler = self.fastapi_app.exception_handlers.get(Exception)
            if response_started or handler is None:
                raise
            response = handler(Request(scope, receive), exc)
            if inspect.isawaitable(response):
                response = await response
            await response(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = route_template(scope)
            method = str(scope.get("method", ""))
            metrics.observe_request(method, route, status, seconds)
            request_log.log(
                logging.ERROR if status >= 500 else logging.INFO,
                "%s %s %d",
                method,
                route,
                status,
                extra={
                    "request_id": rid,
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                    "bytes": sent_bytes,
                    "enterprise": state.get("enterprise"),
                },
            )


def install_middleware(app: FastAPI) -> None:
    """Add the request middleware (call after every other middleware, so it runs first) and count
    the registry's events."""
    metrics.instrument(app.state.registry)
    app.add_middleware(RequestTelemetry, fastapi_app=app)
