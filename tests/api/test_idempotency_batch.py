"""Idempotent event ids and the batch endpoint, through the API."""

from __future__ import annotations

from typing import Any

from tests import factories as f
from tests.api.support import BATCH, assert_problem, battery_path, security_codes, tree_size
from tests.conftest import Actor, Cast


def state(cast: Cast, code: str) -> dict[str, Any] | None:
    r = cast.regulator.get(battery_path(code))
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r.text
    return r.json()


def batch(actor: Actor, events: list[dict[str, Any]], *, atomic: bool = False) -> list[dict[str, Any]]:
    r = actor.post(BATCH, {"events": events, "atomic": atomic})
    assert r.status_code == 200, r.text
    body = r.json()
    results = body["results"]
    assert [x["id"] for x in results] == [e["id"] for e in events]
    assert body["accepted"] == sum(x["status"] == "accepted" for x in results)
    assert body["rejected"] == sum(x["status"] == "rejected" for x in results)
    for x in results:
        assert x["status"] in ("accepted", "rejected")
        if x["status"] == "accepted":
            assert x["error"] is None
            assert isinstance(x["event"]["log_index"], int)
        else:
            assert x["event"] is None
            for key in ("type", "title", "status", "detail", "code"):
                assert key in x["error"], x["error"]
    return results


def codes(results: list[dict[str, Any]]) -> list[str | None]:
    return [x["error"]["code"] if x["error"] else None for x in results]


# --- idempotency ------------------------------------------------------------------------------


def test_same_id_and_body_returns_the_same_result_without_a_new_log_entry(cast: Cast) -> None:
    code = f.code()
    event = f.event("manufactured", code, 0, f.MANUFACTURED)
    first = cast.maker.event(event)
    assert first.status_code == 201, first.text
    size = tree_size(cast.regulator.client)
    again = cast.maker.event(event)
    assert again.status_code == 201, again.text
    assert again.json() == first.json()
    assert tree_size(cast.regulator.client) == size
    # the same through the batch endpoint
    (result,) = batch(cast.maker, [event])
    assert result["status"] == "accepted"
    assert result["event"] == first.json()
    assert tree_size(cast.regulator.client) == size
    r = cast.regulator.get(battery_path(code) + "/events")
    assert [e["id"] for e in r.json()["events"]] == [event["id"]]


def test_same_id_with_another_body_is_a_conflict(cast: Cast) -> None:
    code = f.code()
    event = f.event("manufactured", code, 0, f.MANUFACTURED)
    assert cast.maker.event(event).status_code == 201
    size = tree_size(cast.regulator.client)
    before = state(cast, code)
    changed = {**event, "data": {**f.MANUFACTURED, "capacity_kwh": 61.0}}
    assert_problem(cast.maker.event(changed), 409, "event.id_reused", "id")
    # a new event under an old id, even of another type on another battery
    other = {**f.event("manufactured", f.code(), 5, f.MANUFACTURED), "id": event["id"]}
    assert_problem(cast.maker.event(other), 409, "event.id_reused", "id")
    assert state(cast, other["battery"]) is None
    # the same body from another enterprise is not a retry of the first
    assert_problem(cast.automaker.event(event), 409, "event.id_reused", "id")
    assert tree_size(cast.regulator.client) == size
    assert state(cast, code) == before
    assert security_codes(cast.regulator)[event["id"]] == "event.id_reused"
    # the same id twice in one batch: a retry, or a clash
    code = f.code()
    made = f.event("manufactured", code, 0, f.MANUFACTURED)
    clash = {**f.event("shipped", code, 10, {"to": cast.automaker.id}), "id": made["id"]}
    results = batch(cast.maker, [made, made, clash])
    assert [x["status"] for x in results] == ["accepted", "accepted", "rejected"]
    assert codes(results) == [None, None, "event.id_reused"]
    assert results[1]["event"] == results[0]["event"]
    assert state(cast, code)["in_transit_to"] is None  # type: ignore[index]


# --- batches ----------------------------------------------------------------------------------


def test_events_in_a_batch_see_the_earlier_ones(cast: Cast) -> None:
    pack, cell = f.code(level="P"), f.code(level="C")
    events = [
        f.event("manufactured", pack, 0, f.MANUFACTURED),
        f.event("manufactured", cell, 1, f.MANUFACTURED),
        f.event("assembled", pack, 2, {"children": [cell]}),
        f.event("shipped", pack, 3, {"to": cast.automaker.id}),
    ]
    size = tree_size(cast.regulator.client)
    results = batch(cast.maker, events)
    assert [x["status"] for x in results] == ["accepted"] * 4
    indexes = [x["event"]["log_index"] for x in results]
    assert indexes == list(range(indexes[0], indexes[0] + 4))
    assert tree_size(cast.regulator.client) == size + 4
    got = state(cast, pack)
    assert got is not None
    assert (got["stage"], got["holder"], got["in_transit_to"], got["children"]) == (
        "new",
        cast.maker.id,
        cast.automaker.id,
        [cell],
    )
    assert state(cast, cell)["parent"] == pack  # type: ignore[index]
    # and the receiver's batch sees the shipment
    results = batch(
        cast.automaker, [f.event("received", pack, 4), f.event("installed", pack, 5, {"vin": f.vin()})]
    )
    assert codes(results) == [None, None]
    assert state(cast, pack)["stage"] == "installed"  # type: ignore[index]


def test_an_atomic_batch_with_one_bad_event_records_nothing(cast: Cast) -> None:
    good, bad = f.code(), f.code()
    events = [
        f.event("manufactured", good, 0, f.MANUFACTURED),
        f.event("manufactured", bad, 1, {**f.MANUFACTURED, "capacity_kwh": "lots"}),
        f.event("shipped", good, 2, {"to": cast.automaker.id}),
    ]
    size = tree_size(cast.regulator.client)
    results = batch(cast.maker, events, atomic=True)
    assert [x["status"] for x in results] == ["rejected"] * 3
    assert codes(results) == ["batch.aborted", "request.invalid", "batch.aborted"]
    assert results[1]["error"]["field"] == "data.capacity_kwh"
    assert results[1]["error"]["status"] == 422
    assert results[0]["error"]["status"] == 409
    assert events[1]["id"] in results[0]["error"]["detail"]
    assert tree_size(cast.regulator.client) == size
    assert state(cast, good) is None
    assert state(cast, bad) is None
    # a lifecycle refusal aborts the batch the same way, and the ids stay free for the retry
    events[1] = f.event("shipped", good, 1, {"to": f.uscc()})
    results = batch(cast.maker, events, atomic=True)
    assert codes(results) == ["batch.aborted", "enterprise.unknown", "batch.aborted"]
    assert state(cast, good) is None
    assert tree_size(cast.regulator.client) == size
    events[1] = f.event("manufactured", bad, 1, f.MANUFACTURED)
    results = batch(cast.maker, events, atomic=True)
    assert codes(results) == [None, None, None]
    assert tree_size(cast.regulator.client) == size + 3
    assert state(cast, good)["in_transit_to"] == cast.automaker.id  # type: ignore[index]


def test_a_non_atomic_batch_records_the_good_events(cast: Cast) -> None:
    good, bad, other = f.code(), f.code(), f.code()
    events = [
        f.event("manufactured", good, 0, f.MANUFACTURED),
        f.event("manufactured", bad, 1, {**f.MANUFACTURED, "capacity_kwh": "lots"}),
        f.event("shipped", bad, 2, {"to": cast.automaker.id}),
        f.event("shipped", good, 3, {"to": cast.automaker.id}),
        f.event("manufactured", f.code(manufacturer="9RP"), 4, f.MANUFACTURED),
        {"id": f.eid(), "type": "manufactured"},
        f.event("manufactured", other, 5, f.MANUFACTURED),
    ]
    size = tree_size(cast.regulator.client)
    results = batch(cast.maker, events)
    assert [x["status"] for x in results] == [
        "accepted",
        "rejected",
        "rejected",
        "accepted",
        "rejected",
        "rejected",
        "accepted",
    ]
    assert codes(results) == [
        None,
        "request.invalid",
        "battery.unknown",
        None,
        "lifecycle.not_code_owner",
        "request.invalid",
        None,
    ]
    assert results[5]["error"]["field"] == "time"
    assert tree_size(cast.regulator.client) == size + 3
    assert state(cast, good)["in_transit_to"] == cast.automaker.id  # type: ignore[index]
    assert state(cast, bad) is None
    assert state(cast, other)["stage"] == "new"  # type: ignore[index]
    logged = security_codes(cast.regulator)
    for event, code in zip(events, codes(results), strict=True):
        if code is not None:
            assert logged[event["id"]] == code
