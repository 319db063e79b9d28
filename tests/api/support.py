"""Helpers for the lifecycle acceptance tests: a story of events told through the API, with
assertions on problem documents, battery state, security events and the log size."""

from __future__ import annotations

from typing import Any

from tests import factories as f
from tests.conftest import Actor, Cast

PROBLEM_JSON = "application/problem+json"
EVENTS = "/api/v1/events"
BATCH = "/api/v1/events/batch"


def battery_path(code: str) -> str:
    return f"/api/v1/batteries/{code}"


def assert_problem(response: Any, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    """An RFC 9457 problem document with the given status, stable code and (if given) field."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON), response.headers["content-type"]
    body = response.json()
    for key in ("type", "title", "status", "detail", "code"):
        assert key in body, f"problem document lacks '{key}': {body}"
    assert body["status"] == status
    assert body["code"] == code, body
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["detail"], str)
    assert body["detail"]
    if field is not None:
        assert body.get("field") == field, body
    return body


def tree_size(client: Any) -> int:
    """The log's size, from the second line of the signed checkpoint."""
    r = client.get("/api/v1/log/checkpoint")
    assert r.status_code == 200, r.text
    return int(r.text.splitlines()[1])


def security_codes(regulator: Actor) -> dict[str, str]:
    """Refused events by event id → error code, as the regulator sees them."""
    r = regulator.get("/api/v1/security-events", limit=1000)
    assert r.status_code == 200, r.text
    return {item["event_id"]: item["code"] for item in r.json()["items"] if item["event_id"]}


class Story:
    """Events on batteries told in order through the API; each gets a later time than the last."""

    def __init__(self, cast: Cast) -> None:
        self.cast = cast
        self.minutes = 0
        self.refused: dict[str, str] = {}

    # --- telling ------------------------------------------------------------------------------

    def ev(
        self, type_: str, battery: str | None, data: dict[str, Any] | None = None, **kw: Any
    ) -> dict[str, Any]:
        self.minutes += 10
        return f.event(type_, battery, self.minutes, data, **kw)

    def do(
        self, actor: Actor, type_: str, battery: str | None, data: dict[str, Any] | None = None, **kw: Any
    ) -> dict[str, Any]:
        """Record an event that must be accepted; returns the stored event."""
        body = self.ev(type_, battery, data, **kw)
        r = actor.event(body)
        assert r.status_code == 201, r.text
        stored = r.json()
        assert stored["id"] == body["id"]
        assert stored["type"] == type_
        assert stored["actor"] == actor.id
        assert isinstance(stored["log_index"], int)
        return stored

    def refuse(
        self,
        actor: Actor,
        type_: str,
        battery: str | None,
        data: dict[str, Any] | None,
        status: int,
        code: str,
        field: str | None = None,
        **kw: Any,
    ) -> dict[str, Any]:
        """Record an event that must be refused with ``status`` and ``code``; nothing may change. The
        attempt is remembered for ``check_security_events``."""
        body = self.ev(type_, battery, data, **kw)
        before = self.state(battery) if battery is not None else None
        size = tree_size(actor.client)
        problem = assert_problem(actor.event(body), status, code, field)
        assert tree_size(actor.client) == size, "a refused event grew the log"
        if battery is not None:
            assert self.state(battery) == before, "a refused event changed the battery"
        self.refused[body["id"]] = code
        return problem

    def check_security_events(self) -> None:
        """Every attempt refused in this story is kept as a security event with its code."""
        if not self.refused:
            return
        logged = security_codes(self.cast.regulator)
        missing = {i: c for i, c in self.refused.items() if logged.get(i) != c}
        assert not missing, f"refused events not kept as security events with their code: {missing}"

    def state(self, code: str) -> dict[str, Any] | None:
        """The battery as the regulator sees it (None if it is not registered)."""
        r = self.cast.regulator.get(battery_path(code))
        if r.status_code == 404:
            assert r.json()["code"] == "battery.unknown", r.text
            return None
        assert r.status_code == 200, r.text
        return r.json()

    def expect(self, code: str, **fields: Any) -> dict[str, Any]:
        """Assert the battery's fields as the regulator sees them; returns the whole record."""
        got = self.state(code)
        assert got is not None, f"battery {code} is not registered"
        assert {k: got.get(k) for k in fields} == fields, got
        return got

    # --- ready-made batteries -----------------------------------------------------------------

    def manufactured(self, level: str = "P", chemistry: str = "E") -> str:
        code = f.code(level=level, chemistry=chemistry)
        self.do(self.cast.maker, "manufactured", code, f.MANUFACTURED)
        return code

    def move(self, code: str, sender: Actor, receiver: Actor) -> None:
        self.do(sender, "shipped", code, {"to": receiver.id})
        self.do(receiver, "received", code)

    def at_automaker(self) -> str:
        code = self.manufactured()
        self.move(code, self.cast.maker, self.cast.automaker)
        return code

    def installed(self) -> tuple[str, str]:
        """A pack installed by the automaker in a new vehicle: (code, vin)."""
        code = self.at_automaker()
        vin = f.vin()
        self.do(self.cast.automaker, "installed", code, {"vin": vin})
        return code, vin

    def removed(self) -> str:
        """A pack removed from its vehicle by an outlet of the automaker's network (now its holder)."""
        code, _ = self.installed()
        self.do(self.cast.outlet, "removed", code, {"reason": "retirement"})
        return code

    def retired(self) -> str:
        """A retired pack held by the outlet that removed it."""
        code = self.removed()
        self.do(self.cast.outlet, "retired", code)
        return code

    def retired_at(self, holder: Actor) -> str:
        """A retired pack shipped by the outlet to ``holder`` (a licensed facility) and received."""
        code = self.retired()
        self.move(code, self.cast.outlet, holder)
        return code
