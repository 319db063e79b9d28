"""The standards endpoints: EPCIS capture (schema errors, partial documents, rollback and proceed,
recorders, a missing schema), EPCIS queries (filters, tiers, pages) and exports, passports."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from batterytrace.api.app import create_app
from batterytrace.interop import epcis
from tests import factories as f
from tests.api.support import Story, assert_problem, security_codes, tree_size
from tests.interop import support as s
from tests.interop.conftest import World, world  # noqa: F401  (the shared registry fixture)

CAPTURE = "/api/v1/epcis/capture"
QUERY = "/api/v1/epcis/events"


def document(*events: dict[str, Any]) -> dict[str, Any]:
    return {
        "@context": epcis.context(),
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-11-20T00:00:00Z",
        "epcisBody": {"eventList": list(events)},
    }


def shipping(code: str, to: str, minutes: int) -> dict[str, Any]:
    return {
        "type": "ObjectEvent",
        "eventID": f"urn:uuid:{f.eid()}",
        "eventTime": f.at(minutes),
        "eventTimeZoneOffset": "+08:00",
        "action": "OBSERVE",
        "bizStep": "shipping",
        "disposition": "in_transit",
        "epcList": [epcis.battery_uri(code)],
        "bizLocation": {"id": "urn:batterytrace:region:320500"},
        "destinationList": [{"type": "possessing_party", "destination": epcis.enterprise_uri(to)}],
    }


GS1_EVENT = {
    "type": "ObjectEvent",
    "eventTime": "2026-03-02T10:00:00+08:00",
    "eventTimeZoneOffset": "+08:00",
    "action": "OBSERVE",
    "bizStep": "receiving",
    "epcList": ["urn:epc:id:sgtin:0614141.107346.2018"],
}


@pytest.fixture
def story(world: World) -> Story:  # noqa: F811
    out = Story(world.cast)
    out.minutes = 200_000
    return out


def test_capture_needs_a_key_and_json(world: World) -> None:  # noqa: F811
    assert_problem(world.client.post(CAPTURE, json=document(GS1_EVENT)), 401, "auth.required")
    r = world.client.post(
        CAPTURE,
        content=b"{not json",
        headers={**world.cast.maker.headers, "Content-Type": "application/ld+json"},
    )
    assert_problem(r, 400, "request.malformed")
    r = world.client.post(
        CAPTURE,
        json=document(GS1_EVENT),
        headers={**world.cast.maker.headers, "GS1-Capture-Error-Behaviour": "maybe"},
    )
    assert_problem(r, 422, "request.invalid", "GS1-Capture-Error-Behaviour")


def test_schema_violations_are_listed(world: World) -> None:  # noqa: F811
    bad = dict(GS1_EVENT)
    del bad["eventTime"]
    odd = {**GS1_EVENT, "batteryHealth": 90}  # an extension field must be namespaced
    r = world.client.post(CAPTURE, json=document(GS1_EVENT, bad, odd), headers=world.cast.maker.headers)
    body = assert_problem(r, 422, "epcis.invalid")
    paths = [e["path"] for e in body["errors"]]
    assert any(p.startswith("/epcisBody/eventList/1") for p in paths)
    assert any(p.startswith("/epcisBody/eventList/2") for p in paths)
    assert not any(p.startswith("/epcisBody/eventList/0") for p in paths)
    r = world.client.post(CAPTURE, json={"type": "Thing"}, headers=world.cast.maker.headers)
    assert_problem(r, 422, "epcis.invalid")
    no_context = document(GS1_EVENT)
    del no_context["@context"]
    assert_problem(
        world.client.post(CAPTURE, json=no_context, headers=world.cast.maker.headers), 422, "epcis.invalid"
    )


def test_rollback_and_proceed(world: World, story: Story) -> None:  # noqa: F811
    cast = world.cast
    code = s.manufacture(story, declared=False)
    doc = document(shipping(code, cast.automaker.id, story.minutes + 1), GS1_EVENT)
    size = tree_size(world.client)
    r = world.client.post(CAPTURE, json=doc, headers=cast.maker.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["captureErrorBehaviour"] == "rollback"
    assert body["success"] is False
    assert [e["error"]["code"] for e in body["results"]] == ["batch.aborted", "epcis.unmappable"]
    assert tree_size(world.client) == size
    r = world.client.post(
        CAPTURE, json=doc, headers={**cast.maker.headers, "GS1-Capture-Error-Behaviour": "proceed"}
    )
    body = r.json()
    assert [e["status"] for e in body["results"]] == ["accepted", "rejected"]
    assert body["accepted"] == 1
    assert body["results"][0]["recorded"][0]["type"] == "shipped"
    assert tree_size(world.client) == size + 1
    assert cast.regulator.get(f"/api/v1/batteries/{code}").json()["in_transit_to"] == cast.automaker.id


def test_lifecycle_refusals_are_reported_per_event(world: World, story: Story) -> None:  # noqa: F811
    cast = world.cast
    code = s.manufacture(story, declared=False)
    event = shipping(code, cast.automaker.id, story.minutes + 1)
    event["bizStep"] = "receiving"  # not in transit to anyone
    r = world.client.post(CAPTURE, json=document(event), headers=cast.stranger.headers)
    assert r.status_code == 200, r.text
    (entry,) = r.json()["results"]
    assert entry["error"]["code"] == "lifecycle.not_addressee"
    event_id = entry["recorded"][0]["id"]
    assert security_codes(cast.regulator)[event_id] == "lifecycle.not_addressee"
    # naming another enterprise as the recorder is for regulators only
    named = shipping(code, cast.automaker.id, story.minutes + 2)
    named["bt:recordedBy"] = epcis.enterprise_uri(cast.maker.id)
    r = world.client.post(CAPTURE, json=document(named), headers=cast.automaker.headers)
    (entry,) = r.json()["results"]
    assert entry["error"]["code"] == "permission.denied"
    assert entry["error"]["field"] == "actor"


def test_capture_refuses_clearly_without_the_schema(
    world: World,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
) -> None:
    monkeypatch.setenv("BATTERYTRACE_REFERENCE_DIR", str(tmp_path))
    with TestClient(create_app(world.registry), raise_server_exceptions=False) as client:
        r = client.post(CAPTURE, json=document(GS1_EVENT), headers=world.cast.maker.headers)
        body = assert_problem(r, 503, "interop.schema_unavailable")
        assert "BATTERYTRACE_REFERENCE_DIR" in body["detail"]
        # exports and passports do not need it
        code = world.lives.installed_pack
        assert client.get(f"/api/v1/batteries/{code}/epcis").status_code == 200
        assert client.get(f"/api/v1/batteries/{code}/passport").status_code == 200


def query(actor: Any, *, validate: bool = False, **params: Any) -> tuple[dict[str, Any], Any]:
    r = actor.get(QUERY, **params)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["type"] == "EPCISQueryDocument"
    if validate:
        assert s.epcis_errors(doc) == []
    return doc, r


def events(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return doc["epcisBody"]["queryResults"]["resultsBody"]["eventList"]


def test_query_by_step_time_enterprise_and_battery(world: World) -> None:  # noqa: F811
    cast, lives = world.cast, world.lives
    doc, _ = query(cast.regulator, validate=True, bizStep="shipping", perPage=1000)
    assert events(doc)
    assert {e["bizStep"] for e in events(doc)} == {"shipping"}
    same, _ = query(cast.regulator, EQ_bizStep="https://ref.gs1.org/cbv/BizStep-shipping", perPage=1000)
    assert events(same) == events(doc)
    recycling, _ = query(cast.regulator, bizStep="urn:batterytrace:bizstep:recycling")
    assert [e["inputEPCList"] for e in events(recycling)] == [[epcis.battery_uri(lives.recycled_pack)]]
    by_outlet, _ = query(cast.regulator, enterprise=cast.outlet.id, perPage=1000)
    assert {e["bt:recordedBy"] for e in events(by_outlet)} == {epcis.enterprise_uri(cast.outlet.id)}
    everything, _ = query(cast.regulator, validate=True, perPage=1000)
    times = sorted(e["eventTime"] for e in events(everything))
    middle = times[len(times) // 2]
    early, _ = query(cast.regulator, LT_eventTime=middle, perPage=1000)
    late, _ = query(cast.regulator, GE_eventTime=middle, perPage=1000)
    assert len(events(early)) + len(events(late)) == len(events(everything))
    # by battery: its own events and those naming it (the module is named by its pack's assembly)
    module = lives.modules[0]
    mine, _ = query(cast.regulator, MATCH_anyEPC=epcis.battery_uri(module))
    steps = [e["bizStep"] for e in events(mine)]
    assert steps[0] == "commissioning"
    assert "assembling" in steps
    assert any(e.get("parentID") == epcis.battery_uri(lives.recycled_pack) for e in events(mine))
    assert mine == query(cast.regulator, battery=module)[0]


def test_query_pages(world: World) -> None:  # noqa: F811
    regulator = world.cast.regulator
    everything, _ = query(regulator, perPage=1000)
    seen: list[str] = []
    params: dict[str, Any] = {"perPage": 25}
    while True:
        doc, response = query(regulator, **params)
        seen += [e["eventID"] for e in events(doc)]
        token = doc.get("bt:nextPageToken")
        if token is None:
            assert "Link" not in response.headers
            break
        assert 'rel="next"' in response.headers["Link"]
        assert "nextPageToken=" in response.headers["Link"]
        params = {"perPage": 25, "nextPageToken": token}
    assert seen == [e["eventID"] for e in events(everything)]
    assert_problem(regulator.get(QUERY, nextPageToken="garbage!"), 422, "request.bad_page", "nextPageToken")
    assert_problem(regulator.get(QUERY, perPage=10**6), 422, "request.bad_page", "perPage")
    assert_problem(regulator.get(QUERY, GE_eventTime="yesterday"), 422, "event.bad_time", "from")


def test_query_is_cut_to_the_caller(world: World) -> None:  # noqa: F811
    cast, lives = world.cast, world.lives
    assert_problem(cast.regulator.client.get(QUERY), 401, "auth.required")
    own, _ = query(cast.outlet, perPage=1000)
    assert events(own)
    assert {e["bt:recordedBy"] for e in events(own)} == {epcis.enterprise_uri(cast.outlet.id)}
    assert_problem(cast.outlet.get(QUERY, enterprise=cast.maker.id), 403, "permission.denied", "enterprise")
    # an unrelated automaker sees a battery's events at the public tier
    public, _ = query(cast.stranger, validate=True, battery=lives.installed_pack)
    assert events(public)
    assert "bt:recordedBy" not in str(public)
    assert "urn:batterytrace:vin:" not in str(public)
    full, _ = query(cast.regulator, battery=lives.installed_pack)
    assert len(events(full)) == len(events(public))
    assert "urn:batterytrace:vin:" in str(full)


def test_exports_of_unknown_batteries(world: World) -> None:  # noqa: F811
    client = world.client
    assert_problem(client.get(f"/api/v1/batteries/{f.code()}/epcis"), 404, "battery.unknown", "code")
    assert_problem(client.get("/api/v1/batteries/XYZ/epcis"), 422, "code.bad_length", "code")
    assert_problem(client.get(f"/api/v1/batteries/{f.code()}/traction-battery-code"), 404, "battery.unknown")
    assert_problem(world.cast.regulator.get(QUERY, battery=f.code()), 404, "battery.unknown")


def test_openapi_describes_the_standards_routes(world: World) -> None:  # noqa: F811
    paths = world.client.get("/openapi.json").json()["paths"]
    for path, method, permission in [
        ("/api/v1/epcis/capture", "post", "battery:event:record"),
        ("/api/v1/epcis/events", "get", "battery:read"),
        ("/api/v1/batteries/{code}/epcis", "get", "public:read"),
        ("/api/v1/batteries/{code}/passport", "get", "public:read"),
        ("/api/v1/batteries/{code}/traction-battery-code", "get", "public:read"),
    ]:
        assert paths[path][method]["x-permission"] == permission
