"""Bad input through the API: every rejection is an RFC 9457 problem document with a stable code and
the offending field, never a 500, and nothing is written (no battery, no log entry)."""

from __future__ import annotations

import json
from typing import Any

from tests import factories as f
from tests.api.support import BATCH, EVENTS, assert_problem, battery_path, security_codes, tree_size
from tests.conftest import Cast


def assert_nothing_written(cast: Cast, size: int, *codes: str) -> None:
    assert tree_size(cast.regulator.client) == size, "a rejected request grew the log"
    for code in codes:
        r = cast.regulator.get(battery_path(code))
        assert r.status_code == 404, f"battery {code} was registered by a rejected request: {r.text}"


def manufacture(code: str, **changes: Any) -> dict[str, Any]:
    body = f.event("manufactured", code, 0, f.MANUFACTURED)
    body.update(changes)
    return body


BAD_EVENTS: list[tuple[dict[str, Any], int, str, str]] = [
    # identifiers
    ({"battery": "0ABPE01A1B2C3Dx310000001"}, 422, "code.bad_character", "battery"),
    ({"battery": "0ABPE01A1B2C3DG31000000"}, 422, "code.bad_length", "battery"),
    ({"battery": 42}, 422, "request.invalid", "battery"),
    ({"region": "999999"}, 422, "region.invalid", "region"),
    ({"region": 310115}, 422, "request.invalid", "region"),
    ({"id": "not-a-uuid"}, 422, "request.invalid", "id"),
    # envelope
    ({"type": "melted"}, 422, "event.unknown_type", "type"),
    ({"time": "2026-03-02T09:00:00"}, 422, "event.bad_time", "time"),
    ({"time": "2026-03-02 09:00"}, 422, "event.bad_time", "time"),
    ({"time": "yesterday"}, 422, "event.bad_time", "time"),
    ({"time": "2026-02-30T09:00:00+08:00"}, 422, "event.bad_time", "time"),
    ({"time": "2026-11-20T21:00:00+08:00"}, 422, "event.time_in_future", "time"),
    ({"time": "2027-01-01T00:00:00Z"}, 422, "event.time_in_future", "time"),
    ({"vin": "LSVAU2A31PN000001"}, 422, "request.invalid", "vin"),
    ({"colour": "blue"}, 422, "request.invalid", "colour"),
    ({"data": [1, 2]}, 422, "request.invalid", "data"),
    # data
    ({"data": {**f.MANUFACTURED, "capacity_kwh": True}}, 422, "request.invalid", "data.capacity_kwh"),
    ({"data": {**f.MANUFACTURED, "voltage_v": None}}, 422, "request.invalid", "data.voltage_v"),
    ({"data": {**f.MANUFACTURED, "materials": [6.0]}}, 422, "request.invalid", "data.materials"),
    (
        {"data": {**f.MANUFACTURED, "materials": {"li_kg": "6"}}},
        422,
        "request.invalid",
        "data.materials.li_kg",
    ),
    ({"data": {"capacity_kwh": 60.0, "voltage_v": 400.0}}, 422, "request.invalid", "data.mass_kg"),
]


def test_bad_events_are_rejected_with_the_field_named(cast: Cast) -> None:
    size = tree_size(cast.regulator.client)
    # the problem document: RFC 9457 fields, a stable code, the field, and a type URI that explains it
    code = f.code()
    r = cast.maker.event(manufacture(code, data={**f.MANUFACTURED, "capacity_kwh": "sixty"}))
    problem = assert_problem(r, 422, "request.invalid", "data.capacity_kwh")
    assert problem["type"] == "/problems/request.invalid"
    assert problem["title"] == "The request does not have the expected shape"
    assert "capacity_kwh" in problem["detail"]
    assert problem["instance"] == EVENTS
    # the type URI explains the code
    r = cast.maker.client.get(problem["type"])
    assert r.status_code == 200
    assert r.json() == {"code": "request.invalid", "title": problem["title"], "status": 422}
    batteries = [code]
    for change, status, error, field in BAD_EVENTS:
        battery = f.code()
        batteries.append(battery)
        r = cast.maker.event(manufacture(battery, **change))
        assert r.status_code == status, (change, r.text)
        assert_problem(r, status, error, field)
    for missing in ("id", "type", "time", "region", "battery"):
        battery = f.code()
        batteries.append(battery)
        body = manufacture(battery)
        del body[missing]
        assert_problem(cast.maker.event(body), 422, "request.invalid", missing)
    # a malformed code is rejected at its position
    good = f.code()
    batteries.append(good)
    for position, char in ((1, "a"), (4, "X"), (5, "Q"), (18, "A")):
        bad = good[: position - 1] + char + good[position:]
        r = cast.maker.event(manufacture(bad))
        problem = assert_problem(r, 422, "code.bad_character", "battery")
        assert problem["position"] == position, problem
        assert f"position {position}" in problem["detail"]
    r = cast.regulator.get(battery_path(good[:4] + "X" + good[5:]))
    assert_problem(r, 422, "code.bad_character", "code")
    assert_nothing_written(cast, size, *batteries)


def test_unknown_references_and_events_out_of_order(cast: Cast) -> None:
    code = f.code()
    assert cast.maker.event(f.event("manufactured", code, 0, f.MANUFACTURED)).status_code == 201
    size = tree_size(cast.regulator.client)
    for to, expected in ((f.uscc(), "enterprise.unknown"), (12, "request.invalid"), ("", "request.invalid")):
        r = cast.maker.event(f.event("shipped", code, 10, {"to": to}))
        assert_problem(r, 404 if expected == "enterprise.unknown" else 422, expected, "data.to")
    assert tree_size(cast.regulator.client) == size
    assert cast.regulator.get(battery_path(code)).json()["in_transit_to"] is None
    # an event earlier than the battery's last one
    code = f.code()
    assert cast.maker.event(f.event("manufactured", code, 100, f.MANUFACTURED)).status_code == 201
    r = cast.maker.event(f.event("shipped", code, 50, {"to": cast.automaker.id}))
    assert_problem(r, 409, "lifecycle.time_before_previous", "time")


def test_refused_attempts_are_kept_as_security_events(cast: Cast) -> None:
    malformed = manufacture(f.code(), type="melted")
    assert cast.maker.event(malformed).status_code == 422
    code = f.code()
    assert cast.maker.event(manufacture(code)).status_code == 201
    refused = f.event("shipped", code, 10, {"to": cast.stranger.id})
    assert cast.stranger.event(refused).status_code == 403
    r = cast.regulator.get("/api/v1/security-events")
    assert r.status_code == 200, r.text
    items = {i["event_id"]: i for i in r.json()["items"] if i["event_id"]}
    assert items[malformed["id"]]["code"] == "event.unknown_type"
    assert items[malformed["id"]]["enterprise_id"] == cast.maker.id
    item = items[refused["id"]]
    assert (item["code"], item["enterprise_id"], item["battery"], item["event_type"]) == (
        "lifecycle.not_holder",
        cast.stranger.id,
        code,
        "shipped",
    )
    assert item["detail"]
    # filtered by enterprise
    r = cast.regulator.get("/api/v1/security-events", enterprise=cast.stranger.id)
    assert {i["enterprise_id"] for i in r.json()["items"]} == {cast.stranger.id}
    # for the regulator only
    assert_problem(cast.recycler.get("/api/v1/security-events"), 403, "permission.denied")
    assert_problem(cast.recycler.client.get("/api/v1/security-events"), 401, "auth.required")


def test_requests_that_are_not_events(cast: Cast) -> None:
    size = tree_size(cast.regulator.client)
    json_headers = {**cast.maker.headers, "content-type": "application/json"}
    # not JSON
    for path in (EVENTS, BATCH):
        r = cast.maker.client.post(path, content=b'{"id": "x", "type": ', headers=json_headers)
        assert_problem(r, 400, "request.malformed", "body")
        r = cast.maker.client.post(path, content=b"\xff\xfe not json", headers=json_headers)
        assert_problem(r, 400, "request.malformed")
    assert_problem(
        cast.maker.client.post(EVENTS, content=b"[1, 2, 3]", headers=json_headers), 422, "request.invalid"
    )
    # not a batch
    assert_problem(cast.maker.post(BATCH, {"events": "all"}), 422, "request.invalid", "events")
    assert_problem(cast.maker.post(BATCH, {}), 422, "request.invalid", "events")
    assert_problem(
        cast.maker.post(BATCH, {"events": [], "atomic": "maybe"}), 422, "request.invalid", "atomic"
    )
    r = cast.maker.post(BATCH, {"events": [42, None, "x"]})
    assert r.status_code == 200, r.text
    assert [(x["status"], x["error"]["code"], x["error"]["field"]) for x in r.json()["results"]] == [
        ("rejected", "request.invalid", "event")
    ] * 3
    # no key, or not a key
    body = manufacture(f.code())
    assert_problem(cast.maker.client.post(EVENTS, json=body), 401, "auth.required")
    bad_key = {"Authorization": "Bearer bt_000000000000_" + "x" * 40}
    assert_problem(cast.maker.client.post(EVENTS, json=body, headers=bad_key), 401, "auth.invalid_key")
    basic = {"Authorization": "Basic abc"}
    assert_problem(cast.maker.client.post(EVENTS, json=body, headers=basic), 401, "auth.invalid_key")
    assert_nothing_written(cast, size, body["battery"])


def test_oversized_requests_are_refused_before_processing(cast: Cast) -> None:
    size = tree_size(cast.regulator.client)
    # a 20 MB body
    code = f.code()
    body = manufacture(code, data={**f.MANUFACTURED, "model": "x" * (20 * 1024 * 1024)})
    r = cast.maker.client.post(
        EVENTS,
        content=json.dumps(body).encode(),
        headers={**cast.maker.headers, "content-type": "application/json"},
    )
    assert_problem(r, 413, "request.too_large")
    # the same without a declared length, streamed in chunks
    payload = json.dumps(body).encode()
    chunks = (payload[i : i + (1 << 20)] for i in range(0, len(payload), 1 << 20))
    r = cast.maker.client.post(
        EVENTS, content=chunks, headers={**cast.maker.headers, "content-type": "application/json"}
    )
    assert "content-length" not in r.request.headers
    assert_problem(r, 413, "request.too_large")
    # a batch of 10,001 events
    events = [f.event("manufactured", f.code(), 0, f.MANUFACTURED) for _ in range(10_001)]
    r = cast.maker.post(BATCH, {"events": events, "atomic": False})
    assert_problem(r, 413, "batch.too_large", "events")
    assert_nothing_written(cast, size, code, events[0]["battery"], events[-1]["battery"])
    # the largest batch allowed is read
    r = cast.maker.post(BATCH, {"events": events[:2]})
    assert [x["status"] for x in r.json()["results"]] == ["accepted", "accepted"]


def test_values_the_store_cannot_hold_are_rejected_not_a_server_error(cast: Cast) -> None:
    # data fields that no rule reads are still written to the log, whose canonical JSON stops at 2^53
    vin, code = f.vin(), f.code()
    size = tree_size(cast.regulator.client)
    for value in (1e300, 2.0**60, 10**30):
        r = cast.automaker.event(f.event("vehicle_sold", None, 0, {"price_cny": value}, vin_=vin))
        problem = assert_problem(r, 422, "request.invalid")
        assert "data.price_cny" in problem["detail"]
    assert tree_size(cast.regulator.client) == size
    # in a batch, the others are still recorded
    events = [
        f.event("manufactured", code, 0, {**f.MANUFACTURED, "batch_no": 1e300}),
        f.event("manufactured", code, 1, f.MANUFACTURED),
    ]
    r = cast.maker.post(BATCH, {"events": events})
    assert r.status_code == 200, r.text
    assert [x["status"] for x in r.json()["results"]] == ["rejected", "accepted"]
    assert r.json()["results"][0]["error"]["code"] == "request.invalid"
    assert tree_size(cast.regulator.client) == size + 1

    # PostgreSQL text cannot hold U+0000: such input is refused cleanly, and the refusal kept
    for event in (f.event("shipped", code, 2, {"to": cast.automaker.id}), f.event("received", code, 3)):
        actor = cast.maker if event["type"] == "shipped" else cast.automaker
        assert actor.event(event).status_code == 201
    cases = [
        (cast.maker, manufacture(f.code(), type="melt\u0000ed"), 422, "event.unknown_type", "type"),
        (cast.maker, manufacture("0ABPE01A1B2C3DG31000000\u0000"), 422, "code.bad_character", "battery"),
        (cast.maker, manufacture(f.code(), id="\u0000"), 422, "request.invalid", "id"),
        (
            cast.maker,
            manufacture(f.code(), time="2026-03-02T09:00:00+08:00\u0000"),
            422,
            "event.bad_time",
            "time",
        ),
        (
            cast.maker,
            manufacture(f.code(), data={**f.MANUFACTURED, "model": "A\u00001"}),
            422,
            "request.invalid",
            "data.model",
        ),
        (
            cast.automaker,
            f.event("shipped", code, 5, {"to": "91310115000000\u00001X"}),
            422,
            "request.invalid",
            "data.to",
        ),
        (
            cast.automaker,
            f.event("installed", code, 5, {"system": "ESS\u00007"}),
            422,
            "request.invalid",
            "data.system",
        ),
        (
            cast.automaker,
            f.event("exported", code, 5, {"country": "D\u0000"}),
            422,
            "request.invalid",
            "data.country",
        ),
    ]
    size = tree_size(cast.regulator.client)
    for actor, body, status, error, field in cases:
        assert_problem(actor.event(body), status, error, field)
        r = actor.post(BATCH, {"events": [body]})
        assert r.status_code == 200, r.text
        assert r.json()["results"][0]["error"]["code"] == error
    assert tree_size(cast.regulator.client) == size
    logged = security_codes(cast.regulator)
    assert logged[cases[4][1]["id"]] == "request.invalid"
    assert any(c == "event.unknown_type" for c in logged.values())
