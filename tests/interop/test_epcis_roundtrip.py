"""A battery's whole life exported as EPCIS validates against the official schemas, at every access
tier; captured into an empty registry it reproduces the same history and state, and captured again
it adds nothing."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from batterytrace.domain.model import EventType
from batterytrace.services.registry import Registry
from tests.api.support import tree_size
from tests.conftest import Cast
from tests.interop import support as s
from tests.interop.conftest import World, cast_ids, clone_enterprises

CAPTURE = "/api/v1/epcis/capture"
COMPARED = ("id", "type", "battery", "vin", "time", "actor", "region", "data", "retracted")


@pytest.fixture
def cast(world: World) -> Cast:
    return world.cast


@pytest.fixture
def lives(world: World) -> s.Lives:
    return world.lives


def roots(lives: s.Lives) -> list[str]:
    return [
        lives.new_pack,
        lives.exported_pack,
        lives.installed_pack,
        lives.retired_pack,
        lives.recycled_pack,
        lives.dismantled_pack,
        lives.product,
    ]


def whole_life(actor: Any, code: str) -> dict[str, Any]:
    r = actor.get(f"/api/v1/batteries/{code}/epcis")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/ld+json")
    assert r.headers["GS1-EPCIS-Version"] == "2.0.0"
    return r.json()


def history(
    client: TestClient, headers: dict[str, str], code: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    state = client.get(f"/api/v1/batteries/{code}", headers=headers)
    assert state.status_code == 200, state.text
    events = client.get(f"/api/v1/batteries/{code}/events", headers=headers)
    assert events.status_code == 200, events.text
    return state.json(), [{k: e.get(k) for k in COMPARED} for e in events.json()["events"]]


def codes_in(doc: dict[str, Any]) -> set[str]:
    out = set()
    for ev in doc["epcisBody"]["eventList"]:
        for key in ("epcList", "childEPCs", "inputEPCList", "outputEPCList"):
            out |= {u.rsplit(":", 1)[1] for u in ev.get(key, []) if u.startswith("urn:batterytrace:battery:")}
        if str(ev.get("parentID", "")).startswith("urn:batterytrace:battery:"):
            out.add(ev["parentID"].rsplit(":", 1)[1])
    return out


def test_whole_life_validates_and_reimports(
    cast: Cast, lives: s.Lives, other_registry: Registry, other_client: TestClient
) -> None:
    regulator = cast.regulator
    docs = {code: whole_life(regulator, code) for code in roots(lives)}
    seen_types = set()
    for code, doc in docs.items():
        assert s.epcis_errors(doc) == [], code
        seen_types |= {ev["bt:eventType"] for ev in doc["epcisBody"]["eventList"]}
        assert code in codes_in(doc)
    assert seen_types == {t.value for t in EventType}, "the lives should hold every event type"
    # the pack's whole life holds its modules' and cells' lives; the product's its origin's
    assert set(lives.modules) | set(lives.cells) <= codes_in(docs[lives.recycled_pack])
    assert lives.origin in codes_in(docs[lives.product])

    target_regulator = clone_enterprises(regulator, other_registry, [*cast_ids(cast), regulator.id])
    key = other_registry.create_key(target_regulator, target_regulator.id)["key"]
    headers = {"Authorization": f"Bearer {key}", "GS1-Capture-Error-Behaviour": "proceed"}
    for code, doc in docs.items():
        r = other_client.post(CAPTURE, json=doc, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        bad = [e for e in body["results"] if e["status"] != "accepted"]
        assert not bad, (code, bad[:3])
        assert body["success"] is True

    compared = set()
    for doc in docs.values():
        compared |= codes_in(doc)
    for code in sorted(compared):
        assert history(other_client, headers, code) == history(regulator.client, regulator.headers, code), (
            code
        )

    # captured again: every event is a replay, nothing is added
    size = tree_size(other_client)
    for doc in docs.values():
        r = other_client.post(CAPTURE, json=doc, headers=headers)
        assert r.status_code == 200, r.text
        recorded = [x for e in r.json()["results"] for x in e["recorded"]]
        assert recorded
        assert all(x["status"] == "accepted" and x["replay"] for x in recorded)
    assert tree_size(other_client) == size


def test_whole_life_validates_at_every_tier(cast: Cast, lives: s.Lives) -> None:
    """Public callers and enterprises with a legitimate interest get documents that validate too,
    without the fields they may not see."""
    public = cast.regulator.client
    for code in roots(lives):
        doc = public.get(f"/api/v1/batteries/{code}/epcis").json()
        assert s.epcis_errors(doc) == [], code
        text = str(doc)
        assert "bt:recordedBy" not in text
        assert "urn:batterytrace:vin:" not in text
        assert "recordTime" not in text
        for ev in doc["epcisBody"]["eventList"]:
            assert not [k for k in ev if k.startswith("bt:") and k not in ("bt:eventType", "bt:retracted")], (
                ev
            )
        legit = cast.unlicensed  # a recycler: legitimate interest, no part in these batteries
        doc = legit.get(f"/api/v1/batteries/{code}/epcis").json()
        assert s.epcis_errors(doc) == [], code
        assert "urn:batterytrace:vin:" not in str(doc)
    # the maker holding a new pack sees everything of it
    doc = whole_life(cast.maker, lives.new_pack)
    assert any("ilmd" in ev for ev in doc["epcisBody"]["eventList"])


def test_capture_by_several_recorders_needs_proceed(
    cast: Cast, lives: s.Lives, other_registry: Registry, other_client: TestClient
) -> None:
    doc = whole_life(cast.regulator, lives.installed_pack)
    target_regulator = clone_enterprises(cast.regulator, other_registry, cast_ids(cast))
    key = other_registry.create_key(target_regulator, target_regulator.id)["key"]
    r = other_client.post(CAPTURE, json=doc, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "request.invalid"
    assert "proceed" in r.json()["detail"]
    assert other_client.get(f"/api/v1/batteries/{lives.installed_pack}").status_code == 404
