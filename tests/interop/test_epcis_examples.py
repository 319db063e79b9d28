"""All 47 official EPCIS 2.0 example documents through the capture endpoint: each is checked
against the schema and refused with a reason for every event (they name GS1 keys, not battery
codes), and none causes a server error or records anything. The same documents, once they name the
registry's batteries, parties and sites, are accepted."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from batterytrace.interop import epcis
from tests import factories as f
from tests.api.support import Story, tree_size
from tests.interop import support as s
from tests.interop.conftest import World

CAPTURE = "/api/v1/epcis/capture"
EXAMPLES = sorted((s.EPCIS_DIR / "examples").rglob("*.jsonld"))


def events_of(doc: dict[str, Any]) -> list[Any]:
    body = doc["epcisBody"]
    return body["eventList"] if "eventList" in body else body["queryResults"]["resultsBody"]["eventList"]


def test_there_are_47_examples() -> None:
    assert len(EXAMPLES) == 47
    assert sum(len(events_of(json.loads(p.read_text()))) for p in EXAMPLES) == 56


@pytest.mark.parametrize("behaviour", ["rollback", "proceed"])
def test_every_official_example_is_refused_with_a_reason_per_event(world: World, behaviour: str) -> None:
    maker = world.cast.maker
    size = tree_size(world.client)
    outcomes: dict[str, str] = {}
    for path in EXAMPLES:
        doc = json.loads(path.read_text())
        name = str(path.relative_to(s.EPCIS_DIR))
        r = world.client.post(
            CAPTURE,
            content=path.read_bytes(),
            headers={
                **maker.headers,
                "Content-Type": "application/ld+json",
                "GS1-Capture-Error-Behaviour": behaviour,
            },
        )
        assert r.status_code == 422, (name, r.status_code, r.text[:500])
        body = r.json()
        assert body["code"] == "epcis.unmappable", (name, body)
        results = body["results"]
        assert [e["index"] for e in results] == list(range(len(events_of(doc)))), name
        for entry, event in zip(results, events_of(doc), strict=True):
            assert entry["status"] == "rejected"
            assert entry["eventID"] == event.get("eventID")
            problem = entry["error"]
            assert problem["code"] == "epcis.unmappable", (name, problem)
            assert problem["detail"] and problem["field"], (name, problem)
            outcomes[f"{name}#{entry['index']}"] = problem["detail"]
    assert len(outcomes) == 56
    assert tree_size(world.client) == size, "a refused document changed the log"


def adapted(path: Path, index: int, code: str, **changes: Any) -> dict[str, Any]:
    """An official example holding only its event ``index``, made to name a registry battery and
    site, at a time after the battery's last event."""
    doc = json.loads(path.read_text())
    event = copy.deepcopy(events_of(doc)[index])
    event["epcList"] = [epcis.battery_uri(code)]
    event["eventTime"] = f.at(100_000 + index)
    event["eventTimeZoneOffset"] = "+08:00"
    event["bizLocation"] = {"id": "urn:batterytrace:region:310115"}
    event.update(changes)
    doc["epcisBody"]["eventList"] = [event]
    return doc


def test_official_examples_naming_registry_batteries_are_accepted(world: World) -> None:
    cast = world.cast
    story = Story(cast)
    story.minutes = 50_000
    code = s.manufacture(story, declared=False)
    path = s.EPCIS_DIR / "examples" / "Example_9.6.1-ObjectEvent.jsonld"
    ship = adapted(
        path,
        0,
        code,
        destinationList=[
            {"type": "possessing_party", "destination": epcis.enterprise_uri(cast.automaker.id)}
        ],
    )
    assert s.epcis_errors(ship) == []
    r = world.client.post(CAPTURE, json=ship, headers=cast.maker.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True
    (recorded,) = body["results"][0]["recorded"]
    assert recorded["type"] == "shipped"
    assert recorded["battery"] == code
    receive = adapted(path, 1, code)  # keeps its vendor extension field, which is ignored
    assert "example:myField" in events_of(receive)[0]
    r = world.client.post(CAPTURE, json=receive, headers=cast.automaker.headers)
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["recorded"][0]["type"] == "received"
    state = cast.regulator.get(f"/api/v1/batteries/{code}").json()
    assert state["holder"] == cast.automaker.id
    events = cast.regulator.get(f"/api/v1/batteries/{code}/events").json()["events"]
    assert [e["type"] for e in events] == ["manufactured", "shipped", "received"]
    assert events[1]["data"] == {"to": cast.automaker.id}
    # the id minted from the official ni:/// event hash is the same on every capture
    again = world.client.post(CAPTURE, json=receive, headers=cast.automaker.headers).json()
    assert again["results"][0]["recorded"][0]["replay"] is True
