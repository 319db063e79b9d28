"""The reporting client against the in-process registry: batches, retries under the same ids, the
outbox while the registry is down, and problems as exceptions with the registry's codes."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from batterytrace.client import Client, Outbox, ProblemError, RegistryUnavailableError
from tests import factories as f
from tests.api.support import tree_size
from tests.ops.support import ViaApp


def make_client(actor, via: ViaApp, **kw) -> Client:
    kw.setdefault("retries", 2)
    return Client("http://registry.test", actor.key, transport=via, sleep=lambda _s: None, **kw)


def manufactured(n: int) -> list[dict]:
    return [f.event("manufactured", f.code(), i, f.MANUFACTURED) for i in range(n)]


def stored_events(regulator, code: str) -> list[dict]:
    r = regulator.get(f"/api/v1/batteries/{code}/events")
    assert r.status_code == 200, r.text
    return r.json()["events"]


def test_record_many_batches_in_order(client, cast):
    via = ViaApp(client)
    events = manufactured(7)
    with make_client(cast.maker, via, batch_size=3) as c:
        outcomes = c.record_many(events)
    assert [o.id for o in outcomes] == [e["id"] for e in events]
    assert {o.status for o in outcomes} == {"accepted"}
    assert all(o.event["log_index"] is not None for o in outcomes)
    batches = [json.loads(body)["events"] for m, path, body in via.requests if path == "/api/v1/events/batch"]
    assert [len(b) for b in batches] == [3, 3, 1]


def test_events_without_an_id_get_one_and_the_callers_dicts_are_left_alone(client, cast):
    event = f.event("manufactured", f.code(), 0, f.MANUFACTURED)
    del event["id"]
    with make_client(cast.maker, ViaApp(client)) as c:
        outcome = c.record(event)
    assert "id" not in event
    assert outcome.status == "accepted"
    assert outcome.event["id"] == outcome.id


def test_a_refusal_raises_a_problem_error_with_the_registry_code(client, cast):
    code = f.code()
    with make_client(cast.maker, ViaApp(client)) as c:
        c.record(f.event("manufactured", code, 0, f.MANUFACTURED))
        with pytest.raises(ProblemError) as info:
            c.record(f.event("manufactured", code, 1, f.MANUFACTURED))
        assert info.value.code == "battery.exists"
        assert info.value.status == 409
        assert info.value.field == "battery"
        assert "already registered" in info.value.detail
        with pytest.raises(ProblemError) as info:
            c.get_battery(f.code())
        assert info.value.code == "battery.unknown"
        assert info.value.status == 404
        assert info.value.request_id
        # in a batch, refused events are outcomes, not exceptions
        outcomes = c.record_many([f.event("manufactured", code, 2, f.MANUFACTURED)])
        assert outcomes[0].status == "rejected"
        assert outcomes[0].problem.code == "battery.exists"
        assert outcomes[0].problem.request_id  # the batch request's id, to quote to the registry


def test_a_bad_key_raises_at_once_and_is_not_retried(client, cast):
    via = ViaApp(client)
    c = Client("http://registry.test", cast.maker.key[:-3] + "xyz", transport=via, sleep=lambda _s: None)
    with c, pytest.raises(ProblemError) as info:
        c.record_many(manufactured(1))
    assert info.value.code == "auth.invalid_key"
    assert info.value.status == 401
    assert len(via.requests) == 1


def test_retries_resend_the_same_ids_and_nothing_is_recorded_twice(client, cast):
    via = ViaApp(client)
    events = manufactured(4)
    size = tree_size(client)
    with make_client(cast.maker, via, batch_size=2, retries=3) as c:
        via.fail_before(2)  # the registry is down for two attempts
        via.lose_answer_of("/api/v1/events/batch")  # then a batch is recorded but its answer lost
        outcomes = c.record_many(events)
    assert {o.status for o in outcomes} == {"accepted"}
    sent = [json.loads(body) for m, path, body in via.requests if path == "/api/v1/events/batch"]
    assert [e["id"] for e in sent[0]["events"]] == [e["id"] for e in sent[2]["events"]]
    assert sent[0] == sent[3], "a retry sends exactly the same body"
    assert tree_size(client) == size + 4
    for e in events:
        assert [x["id"] for x in stored_events(cast.regulator, e["battery"])] == [e["id"]]


def test_without_an_outbox_an_unreachable_registry_raises_with_the_events_to_resend(client, cast):
    via = ViaApp(client)
    events = manufactured(5)
    with make_client(cast.maker, via, batch_size=2, retries=1) as c:
        c.record_many(events[:2])
        via.fail_before(100)
        with pytest.raises(RegistryUnavailableError) as info:
            c.record_many(events)
        assert [e["id"] for e in info.value.events] == [e["id"] for e in events]
        via.fail_before(0)
        outcomes = c.record_many(info.value.events)
    assert [o.status for o in outcomes] == ["accepted"] * 5


def test_outbox_keeps_events_while_the_registry_is_down_and_delivers_them_later(client, cast, tmp_path):
    via = ViaApp(client)
    events = manufactured(6)
    with make_client(cast.maker, via, outbox_dir=tmp_path / "outbox", batch_size=4, retries=1) as c:
        via.fail_before(1000)
        outcomes = c.record_many(events)
        assert [o.status for o in outcomes] == ["pending"] * 6
        assert c.outbox.count() == 6
        report = c.flush()
        assert report.pending == 6
        assert isinstance(report.error, RegistryUnavailableError)
        via.fail_before(0)
        # a new client over the same directory (the process restarted) delivers everything
    with make_client(cast.maker, via, outbox_dir=tmp_path / "outbox", batch_size=4) as again:
        report = again.flush()
        assert report.error is None
        assert report.accepted == 6
        assert report.pending == 0
        assert again.outbox.count() == 0
    assert list((tmp_path / "outbox" / "pending").iterdir()) == []
    for e in events:
        assert [x["id"] for x in stored_events(cast.regulator, e["battery"])] == [e["id"]]


def test_outbox_keeps_refused_events_apart_with_their_problem(client, cast, tmp_path):
    code = f.code()
    good = f.event("manufactured", code, 0, f.MANUFACTURED)
    bad = f.event("manufactured", code, 1, f.MANUFACTURED)
    worse = f.event("manufactured", code, 2, f.MANUFACTURED)
    with make_client(cast.maker, ViaApp(client), outbox_dir=tmp_path / "ob") as c:
        outcomes = c.record_many([good, bad])
        assert [o.status for o in outcomes] == ["accepted", "rejected"]
        assert outcomes[1].problem.code == "battery.exists"
        with pytest.raises(ProblemError) as info:
            c.record(worse)
        assert info.value.code == "battery.exists"
        kept = list(c.outbox.rejected())
        assert c.outbox.count() == 0
    assert [k["event"]["id"] for k in kept] == [bad["id"], worse["id"]]
    assert {k["problem"]["code"] for k in kept} == {"battery.exists"}


def test_outbox_delivers_older_events_first(client, cast, tmp_path):
    via = ViaApp(client)
    code = f.code()
    made = f.event("manufactured", code, 0, f.MANUFACTURED)
    shipped = f.event("shipped", code, 1, {"to": cast.automaker.id})
    with make_client(cast.maker, via, outbox_dir=tmp_path / "ob", retries=0) as c:
        via.fail_before(1)
        assert c.record(made).status == "pending"
        # the shipment can only be accepted after the manufacture that waits in the outbox
        assert c.record(shipped).status == "accepted"
    assert [x["type"] for x in stored_events(cast.regulator, code)] == ["manufactured", "shipped"]


def test_get_battery_and_its_events(client, cast):
    with make_client(cast.maker, ViaApp(client)) as c:
        event = manufactured(1)[0]
        c.record(event)
        battery = c.get_battery(event["battery"])
        assert battery["code"] == event["battery"]
        assert battery["holder"] == cast.maker.id
        assert [x["id"] for x in c.battery_events(event["battery"])] == [event["id"]]


def test_capture_epcis_posts_the_document(client, cast):
    seen: list[httpx.Request] = []
    via = ViaApp(client)
    via.on_request = seen.append
    code = f.code()
    event = f.event("manufactured", code, 0, f.MANUFACTURED)
    capture_exists = "/api/v1/epcis/capture" in client.get("/openapi.json").json()["paths"]
    with make_client(cast.maker, via) as c:
        if not capture_exists:
            document = {"type": "EPCISDocument", "schemaVersion": "2.0", "epcisBody": {"eventList": []}}
            with pytest.raises(ProblemError) as info:
                c.capture_epcis(document)
            assert info.value.code == "request.not_found"
        else:
            from datetime import UTC, datetime

            from batterytrace.interop import epcis

            stored = {**event, "actor": cast.maker.id}
            document = epcis.document([epcis.to_epcis(stored)], created=datetime(2026, 3, 2, tzinfo=UTC))
            answer = c.capture_epcis(document)
            assert answer["accepted"] == 1, answer
            assert c.get_battery(code)["stage"] == "new"
            again = c.capture_epcis(document)  # the same document again: recorded once
            assert again["accepted"] == 1, again
            assert [x["id"] for x in c.battery_events(code)] == [event["id"]]
    request = seen[0]
    assert request.url.path == "/api/v1/epcis/capture"
    assert request.headers["content-type"] == "application/ld+json"
    assert json.loads(request.content) == document


def test_the_client_imports_nothing_of_the_server():
    code = (
        "import sys, batterytrace.client\n"
        "server = [m for m in sys.modules if m.startswith('batterytrace.') and not m.startswith('batterytrace.client')]\n"
        "others = [m for m in ('fastapi', 'sqlalchemy', 'typer', 'starlette') if m in sys.modules]\n"
        "print(server + others)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_outbox_requires_ids(tmp_path):
    with pytest.raises(ValueError, match="id"):
        Outbox(tmp_path).add([{"type": "manufactured"}])
