"""Inputs that databases cannot hold (NUL characters) or that do not name anything are refused
with a problem document, never a 500; an atomic batch reports what was stored before it."""

from __future__ import annotations

from tests import factories as f


def test_control_characters_in_names_and_labels_are_refused(regulator):
    body = {"id": f.uscc(), "name": "Bad\x00Name", "roles": ["recycler"], "region": "310115"}
    r = regulator.post("/api/v1/enterprises", body)
    assert r.status_code == 422
    assert r.json()["field"] == "name"
    r = regulator.post(f"/api/v1/enterprises/{regulator.id}/keys", {"label": "x\x00y"})
    assert r.status_code == 422
    assert r.json()["field"] == "label"
    r = regulator.get("/api/v1/security-events", enterprise="not\x00a-code")
    assert r.status_code == 422
    assert r.json()["field"] == "enterprise"


def test_atomic_batch_keeps_replays_as_accepted(cast):
    code = f.code()
    made = f.event("manufactured", code, 0, f.MANUFACTURED)
    assert cast.maker.event(made).status_code == 201
    bad = f.event("shipped", code, 5, {"to": "not-a-uscc"})
    r = cast.maker.post("/api/v1/events/batch", {"events": [made, bad], "atomic": True})
    results = r.json()["results"]
    assert results[0]["status"] == "accepted"
    assert results[0]["event"]["id"] == made["id"]
    assert results[1]["status"] == "rejected"
    assert results[1]["error"]["field"] == "data.to"
