"""Limits, in-process: body size, batch size, page size, the per-key rate limit (429 with
Retry-After), requests in flight per key, and a busy database answered 503 ``server.busy``.
Each limit is set from the settings, so each test sets its own."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from batterytrace.api import limits
from batterytrace.api.app import create_app
from batterytrace.services.factory import build_registry, install_extensions
from batterytrace.services.log import Log, load_signer
from batterytrace.services.registry import Registry
from batterytrace.settings import Settings
from batterytrace.store import db
from tests import factories as f
from tests.api.support import BATCH, EVENTS, assert_problem, security_codes, tree_size
from tests.conftest import Actor, Clock, make_enterprise


class Ticker:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def limited(settings: Settings, clock: Clock) -> Iterator[Any]:
    """``limited(**settings)``: a registry with these limits (once per test), its client, its
    regulator and a battery maker."""
    made: list[tuple[Registry, TestClient]] = []

    def make(**changes: Any) -> tuple[TestClient, Actor, Actor]:
        registry = build_registry(settings.model_copy(update=changes))
        registry.clock = clock
        client = TestClient(create_app(registry), raise_server_exceptions=False)
        client.__enter__()
        made.append((registry, client))
        uid = f.uscc()
        _, key = registry.bootstrap(uid, "Regulator")
        regulator = Actor(uid, key, client)
        maker = make_enterprise(regulator, ["battery_maker"], codes=["0AB"])
        return client, regulator, maker

    yield make
    for registry, client in made:
        client.__exit__(None, None, None)
        registry.engine.dispose()


# --- rate ------------------------------------------------------------------------------------------


def test_the_token_bucket_refills_at_the_set_rate() -> None:
    tick = Ticker()
    bucket = limits.RateLimiter(60, clock=tick)
    assert [bucket.take("a") for _ in range(60)] == [0] * 60
    assert bucket.take("a") == 1  # one token a second
    assert bucket.take("b") == 0  # each key has its own bucket
    tick.now += 0.5
    assert bucket.take("a") == 1
    tick.now += 0.5
    assert bucket.take("a") == 0
    tick.now += 3600  # never more than a minute's worth
    assert [bucket.take("a") for _ in range(61)].count(0) == 60
    slow = limits.RateLimiter(2, clock=tick)
    assert [slow.take("k") for _ in range(3)] == [0, 0, 30]


def test_a_key_over_its_rate_gets_429_with_retry_after(limited: Any) -> None:
    client, regulator, maker = limited(rate_limit_per_minute=3)
    tick = Ticker()
    client.app.state.rate_limiter = limits.RateLimiter(3, clock=tick)  # the setup's requests forgotten
    for _ in range(3):
        assert maker.get("/api/v1/batteries").status_code == 200
    r = maker.get("/api/v1/batteries")
    problem = assert_problem(r, 429, "request.rate_limited")
    assert r.headers["retry-after"] == "20"
    assert problem["retry_after"] == 20
    # writes are refused the same way, and write nothing
    size = tree_size(client)
    event = f.event("manufactured", f.code(), 0, f.MANUFACTURED)
    assert_problem(maker.event(event), 429, "request.rate_limited")
    assert tree_size(client) == size
    # other keys, public requests and bad keys are not affected by this key's bucket
    assert regulator.get("/api/v1/batteries").status_code == 200
    assert client.get(f"/api/v1/batteries/{f.code()}").status_code == 404
    bad = client.get("/api/v1/batteries", headers={"Authorization": "Bearer bt_000000000000_" + "x" * 40})
    assert_problem(bad, 401, "auth.invalid_key")
    # a key id alone (with a wrong secret) does not use up the key's allowance
    key_id = maker.key.split("_")[1]
    tick.now += 20
    forged = {"Authorization": f"Bearer bt_{key_id}_" + "y" * 43}
    for _ in range(5):
        assert_problem(client.get("/api/v1/batteries", headers=forged), 401, "auth.invalid_key")
    assert maker.event(event).status_code == 201


def test_no_rate_limit_when_it_is_off(limited: Any) -> None:
    client, _, maker = limited(rate_limit_per_minute=0)
    assert getattr(client.app.state, "rate_limiter", None) is None
    assert all(maker.get("/api/v1/batteries").status_code == 200 for _ in range(30))


# --- requests in flight ------------------------------------------------------------------------------


def test_in_flight_slots_are_counted_and_released() -> None:
    slots = limits.InFlight(2)
    first, second = slots.acquire("k"), slots.acquire("k")
    assert first is not None
    assert second is not None
    assert slots.acquire("k") is None
    assert slots.acquire("other") is not None
    first()
    first()  # releasing twice frees one slot only
    assert slots.current("k") == 1
    third = slots.acquire("k")
    assert third is not None
    assert slots.acquire("k") is None


def test_a_key_with_too_many_requests_in_progress_gets_429(limited: Any, monkeypatch: Any) -> None:
    client, regulator, maker = limited(max_requests_in_flight_per_key=2)
    registry: Registry = client.app.state.registry
    entered = threading.Semaphore(0)
    go_on = threading.Event()
    record = registry.record

    def slow_record(*args: Any, **kw: Any) -> Any:
        entered.release()
        assert go_on.wait(60)
        return record(*args, **kw)

    monkeypatch.setattr(registry, "record", slow_record)
    events = [f.event("manufactured", f.code(), 0, f.MANUFACTURED) for _ in range(2)]
    with ThreadPoolExecutor(2) as pool:
        running = [pool.submit(maker.event, e) for e in events]
        assert entered.acquire(timeout=60)
        assert entered.acquire(timeout=60)
        # both slots are taken: a third request of the key is refused at once
        r = maker.get("/api/v1/batteries")
        assert_problem(r, 429, "request.rate_limited")
        assert r.headers["retry-after"] == "1"
        # another key goes ahead
        assert regulator.get("/api/v1/batteries").status_code == 200
        go_on.set()
        assert [x.result(timeout=60).status_code for x in running] == [201, 201]
    # the slots were released, refusals included
    assert client.app.state.in_flight.current(maker.key.split("_")[1]) == 0
    assert maker.get("/api/v1/batteries").status_code == 200
    assert_problem(maker.event({"id": "nope"}), 422, "request.invalid")
    assert client.app.state.in_flight.current(maker.key.split("_")[1]) == 0


# --- body, batch and page size -----------------------------------------------------------------------


def test_body_batch_and_page_limits_follow_the_settings(limited: Any) -> None:
    client, _, maker = limited(max_body_bytes=4096, max_batch=3, max_page_size=5)
    size = tree_size(client)
    big = f.event("manufactured", f.code(), 0, {**f.MANUFACTURED, "model": "x" * 5000})
    payload = json.dumps(big).encode()
    headers = {**maker.headers, "content-type": "application/json"}
    assert_problem(client.post(EVENTS, content=payload, headers=headers), 413, "request.too_large")
    chunks = (payload[i : i + 1000] for i in range(0, len(payload), 1000))
    r = client.post(EVENTS, content=chunks, headers=headers)
    assert "content-length" not in r.request.headers
    assert_problem(r, 413, "request.too_large")
    events = [f.event("manufactured", f.code(), 0, f.MANUFACTURED) for _ in range(4)]
    assert_problem(maker.post(BATCH, {"events": events}), 413, "batch.too_large", "events")
    assert tree_size(client) == size
    r = maker.post(BATCH, {"events": events[:3]})
    assert [x["status"] for x in r.json()["results"]] == ["accepted"] * 3
    assert maker.get("/api/v1/batteries", limit=5).status_code == 200
    assert_problem(maker.get("/api/v1/batteries", limit=6), 422, "request.bad_page", "limit")
    # the refusals before processing are not events: nothing about them in the log
    assert tree_size(client) == size + 3


# --- a busy database ---------------------------------------------------------------------------------


def _fault(message: str) -> OperationalError:
    return OperationalError("INSERT INTO events …", {}, sqlite3.OperationalError(message))


@pytest.mark.parametrize(
    ("message", "status", "code"),
    [
        ("database is locked", 503, "server.busy"),
        ("disk I/O error", 500, "server.internal"),
    ],
)
def test_a_busy_store_is_503_and_a_broken_one_500(
    limited: Any, monkeypatch: Any, message: str, status: int, code: str
) -> None:
    client, _, maker = limited()
    registry: Registry = client.app.state.registry

    def failing(*args: Any, **kw: Any) -> Any:
        raise _fault(message)

    monkeypatch.setattr(registry, "record", failing)
    r = maker.event(f.event("manufactured", f.code(), 0, f.MANUFACTURED))
    assert r.status_code == status, r.text
    problem = r.json()
    assert problem["code"] == code
    assert message not in r.text  # the database's own words stay in the server's log
    assert ("retry-after" in r.headers) == (status == 503)
    assert "same event ids" in problem["detail"]


def test_is_busy_knows_postgresql_lock_and_deadlock_errors() -> None:
    class PgError(Exception):
        def __init__(self, sqlstate: str) -> None:
            super().__init__("error")
            self.sqlstate = sqlstate

    for state, busy in (("40P01", True), ("40001", True), ("55P03", True), ("57014", True), ("23505", False)):
        assert limits.is_busy(OperationalError("x", {}, PgError(state))) is busy
    assert not limits.is_busy(ValueError("database is locked"))


@pytest.fixture
def quick_to_give_up(settings: Settings, clock: Clock, monkeypatch: Any) -> Iterator[Registry]:
    """A registry whose database gives up waiting for a lock after 0.3 s."""
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_MS", 300)
        engine = db.make_engine(settings.database_url)
    else:
        engine = db.make_engine(settings.database_url, connect_args={"options": "-c lock_timeout=300"})
    from batterytrace.store.migrate import upgrade

    upgrade(engine)
    registry = Registry(engine, settings, Log(settings.log_origin, load_signer(settings)))
    install_extensions(registry)
    registry.clock = clock
    yield registry
    engine.dispose()


def test_a_write_lock_held_too_long_is_answered_503_not_database_is_locked(
    quick_to_give_up: Registry, tmp_path: Path
) -> None:
    registry = quick_to_give_up
    with TestClient(create_app(registry), raise_server_exceptions=False) as client:
        uid = f.uscc()
        _, key = registry.bootstrap(uid, "Regulator")
        regulator = Actor(uid, key, client)
        maker = make_enterprise(regulator, ["battery_maker"], codes=["0AB"])
        size = tree_size(client)
        event = f.event("manufactured", f.code(), 0, f.MANUFACTURED)
        holder = create_engine(
            registry.settings.database_url.replace("postgresql://", "postgresql+psycopg://")
        )
        with holder.connect() as conn:
            if registry.engine.dialect.name == "sqlite":
                conn.exec_driver_sql(
                    "BEGIN IMMEDIATE"
                )  # another process writing, for longer than the timeout
            else:
                conn.execute(text("SELECT size FROM log_head WHERE id = 1 FOR UPDATE"))
            r = maker.event(event)
            conn.rollback()
        holder.dispose()
        problem = assert_problem(r, 503, "server.busy")
        assert "locked" not in r.text
        assert int(r.headers["retry-after"]) >= 1
        assert "retry" in problem["detail"].lower()
        # nothing was written; the same event goes in once the lock is gone
        assert tree_size(client) == size
        assert maker.event(event).status_code == 201
        assert event["id"] not in security_codes(regulator)
