"""Every route declares the permission it needs (a route without one is a mistake), and the
OpenAPI document describes the contract's names."""

from __future__ import annotations

from fastapi.routing import APIRoute

from batterytrace.api.app import create_app
from batterytrace.domain.permissions import Permission


def test_every_route_declares_a_known_permission(registry):
    app = create_app(registry)
    known = {p.value for p in Permission}
    unguarded = []
    routes, seen = list(app.routes), 0
    while seen < len(routes):  # included routers may be wrapped: walk into them too
        inner = getattr(routes[seen], "original_router", None)
        if inner is not None:
            routes += list(inner.routes)
        seen += 1
    assert sum(isinstance(r, APIRoute) for r in routes) > 30
    for route in routes:
        if not isinstance(route, APIRoute):
            continue
        declared = (route.openapi_extra or {}).get("x-permission")
        if declared not in known:
            unguarded.append(f"{sorted(route.methods)} {route.path}: {declared!r}")
    assert not unguarded, "routes without a permission:\n" + "\n".join(unguarded)


def test_openapi_names_the_contract(client):
    doc = client.get("/openapi.json").json()
    paths = doc["paths"]
    for path, method in [
        ("/api/v1/enterprises", "post"),
        ("/api/v1/enterprises/{enterprise_id}", "get"),
        ("/api/v1/enterprises/{enterprise_id}/licences", "post"),
        ("/api/v1/enterprises/{enterprise_id}/keys", "post"),
        ("/api/v1/events", "post"),
        ("/api/v1/events/batch", "post"),
        ("/api/v1/batteries/{code}", "get"),
        ("/api/v1/batteries/{code}/events", "get"),
        ("/api/v1/log/checkpoint", "get"),
        ("/api/v1/log/key", "get"),
        ("/api/v1/log/entries/{index}", "get"),
        ("/api/v1/log/proof/inclusion", "get"),
        ("/api/v1/log/proof/consistency", "get"),
    ]:
        assert method in paths.get(path, {}), f"{method.upper()} {path} missing from the OpenAPI document"
    event_schema = doc["components"]["schemas"]["EventBody"]["properties"]
    assert set(event_schema) >= {"id", "type", "battery", "vin", "time", "region", "data"}


def test_unknown_route_and_method_are_problem_documents(client):
    r = client.get("/api/v1/no-such-thing")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "request.not_found"
    r = client.put("/api/v1/events", json={})
    assert r.status_code == 405
    assert r.json()["code"] == "request.method_not_allowed"
