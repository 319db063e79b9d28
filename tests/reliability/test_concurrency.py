"""Writers racing each other on a real server with several worker processes (loopback only): the
same event id sent at once, two installs of one battery, two recyclers after one shipment, many
batches appending to the log at once. Exactly one of the racers wins; the others get the
conflict or lifecycle refusal with its code; no request fails with a 5xx or "database is locked";
the log stays contiguous and ``batterytrace verify`` passes afterwards. On SQLite the workers are
separate processes writing one file (busy timeout); on PostgreSQL they serialize on the log head.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from batterytrace.store import tables as T
from tests import factories as f
from tests.reliability import support as s

WORKERS = 3
RACERS = 6
ROUNDS = 2


@dataclass
class Scene:
    server: s.Server
    env: dict[str, str]
    workdir: Path
    database_url: str
    keys: dict[str, str]  # name -> API key
    ids: dict[str, str]  # name -> enterprise id
    answers: list[httpx.Response]

    def api(self, name: str) -> s.Api:
        return s.Api(self.server.url, self.keys[name])

    def race(self, calls: list[tuple[str, Callable[[s.Api], httpx.Response]]]) -> list[httpx.Response]:
        """Run the calls (enterprise name, request) at the same moment, one thread and connection
        each; returns their answers in order."""
        clients = [self.api(name) for name, _ in calls]
        for client in clients:
            assert client.get("/healthz").status_code == 200  # connected before the start line
        start = threading.Barrier(len(calls))

        def go(i: int) -> httpx.Response:
            start.wait(timeout=60)
            return calls[i][1](clients[i])

        try:
            with ThreadPoolExecutor(len(calls)) as pool:
                answers = list(pool.map(go, range(len(calls))))
        finally:
            for client in clients:
                client.close()
        self.answers += answers
        return answers

    def do(self, name: str, body: dict[str, Any]) -> None:
        api = self.api(name)
        try:
            r = api.event(body)
            assert r.status_code == 201, r.text
        finally:
            api.close()


def outcome(r: httpx.Response) -> tuple[int, str | None]:
    return r.status_code, (r.json().get("code") if r.status_code >= 400 else None)


def one_wins(answers: list[httpx.Response], *losers: tuple[int, str]) -> httpx.Response:
    """Exactly one answer is 201; every other is one of the ``losers`` refusals (which one can
    depend on whether it was processed before or after the winner)."""
    got = Counter(outcome(r) for r in answers)
    assert got[(201, None)] == 1, got
    assert set(got) - {(201, None)} <= set(losers), got
    return next(r for r in answers if r.status_code == 201)


@pytest.fixture(scope="module")
def shared_scene(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    """One server with several workers, and its enterprises, for the tests of this module."""
    workdir = tmp_path_factory.mktemp("concurrency")
    database_url = module_database_url
    env = s.env_for(workdir, database_url)
    _, regulator_key = s.bootstrap(env, workdir)
    server = s.Server(workdir, env, workers=WORKERS).start()
    try:
        regulator = s.Api(server.url, regulator_key)
        ids, keys = {}, {"regulator": regulator_key}
        ids["maker"], keys["maker"] = s.make_enterprise(regulator, ["battery_maker"], codes=["0AB"])
        ids["automaker"], keys["automaker"] = s.make_enterprise(regulator, ["automaker"])
        ids["outlet"], keys["outlet"] = s.make_enterprise(
            regulator, ["service_outlet"], network_of=ids["automaker"], licences=["collection"]
        )
        for name in ("recycler_a", "recycler_b"):
            ids[name], keys[name] = s.make_enterprise(regulator, ["recycler"], licences=["recycling"])
        regulator.close()
        yield Scene(server, env, workdir, database_url, keys, ids, [])
    finally:
        server.stop()


@pytest.fixture
def scene(shared_scene: Scene) -> Scene:
    shared_scene.answers = []
    return shared_scene


def test_racing_writers_one_wins_and_the_log_stays_whole(scene: Scene) -> None:
    minute = iter(range(0, 100_000, 10))

    def ev(type_: str, code: str | None, data: dict[str, Any] | None = None) -> dict[str, Any]:
        return f.event(type_, code, next(minute), data)

    def rivals(n: int, type_: str, code: str, data: Callable[[int], dict[str, Any]]) -> list[dict[str, Any]]:
        """``n`` different events on one battery at the same moment."""
        at = next(minute)
        return [f.event(type_, code, at, data(i)) for i in range(n)]

    def each(name: str, body: dict[str, Any]) -> tuple[str, Callable[[s.Api], httpx.Response]]:
        return name, lambda api: api.event(body)

    recyclers = ("recycler_a", "recycler_b")
    recycled = {"mass_kg": 300.0, "recovered": {"li_kg": 5.4, "co_kg": 4.9}}
    for _ in range(ROUNDS):
        # the same event, sent by several clients at once: every one gets the same stored event
        same = ev("manufactured", f.code(), f.MANUFACTURED)
        answers = scene.race([each("maker", same)] * RACERS)
        assert [r.status_code for r in answers] == [201] * RACERS, [r.text for r in answers]
        assert len({r.text for r in answers}) == 1

        # one id, different bodies at once: one is recorded, the others are id conflicts
        rival = ev("manufactured", f.code(), f.MANUFACTURED)
        bodies = [{**rival, "data": {**f.MANUFACTURED, "capacity_kwh": 50.0 + i}} for i in range(RACERS)]
        answers = scene.race([each("maker", b) for b in bodies])
        one_wins(answers, (409, "event.id_reused"))

        # one battery, several installs at once: one vehicle gets it
        code = f.code()
        scene.do("maker", ev("manufactured", code, f.MANUFACTURED))
        scene.do("maker", ev("shipped", code, {"to": scene.ids["automaker"]}))
        scene.do("automaker", ev("received", code))
        installs = rivals(RACERS, "installed", code, lambda _: {"vin": f.vin()})
        answers = scene.race([each("automaker", b) for b in installs])
        won = one_wins(answers, (409, "lifecycle.wrong_stage"))
        vin = won.json()["data"]["vin"]

        # a retired battery and two recyclers: the holder ships it to both at once ...
        scene.do("outlet", ev("removed", code, {"reason": "retirement"}))
        scene.do("outlet", ev("retired", code))
        shipments = rivals(2, "shipped", code, lambda i: {"to": scene.ids[recyclers[i]]})
        answers = scene.race([each("outlet", b) for b in shipments])
        won = one_wins(answers, (409, "lifecycle.in_transit"))
        addressee = next(n for n in recyclers if scene.ids[n] == won.json()["data"]["to"])
        # ... both try to receive it, and then to recycle it
        receipts = rivals(2, "received", code, lambda _: {})
        answers = scene.race([each(n, b) for n, b in zip(recyclers, receipts, strict=True)])
        won = one_wins(answers, (403, "lifecycle.not_addressee"))
        assert won.json()["actor"] == scene.ids[addressee]
        recyclings = rivals(2, "recycled", code, lambda _: recycled)
        answers = scene.race([each(n, b) for n, b in zip(recyclers, recyclings, strict=True)])
        # the other is not the holder (if it came first) or finds the battery's life over
        won = one_wins(answers, (403, "lifecycle.not_holder"), (409, "lifecycle.final"))
        assert won.json()["actor"] == scene.ids[addressee]
        regulator = scene.api("regulator")
        battery = regulator.get(f"/api/v1/batteries/{code}").json()
        regulator.close()
        assert (battery["stage"], battery["holder"], battery["in_transit_to"]) == (
            "recycled",
            scene.ids[addressee],
            None,
        )
        assert vin

    check_the_log(scene)


def test_many_batches_append_to_the_log_at_once(scene: Scene) -> None:
    per_batch = 100
    batches = [s.manufactured_batch(per_batch, minutes=i) for i in range(RACERS + 2)]
    engine = s.engine_for(scene.database_url)
    try:
        before = s.counts(engine)
        answers = scene.race([("maker", lambda api, b=b: api.batch(b)) for b in batches])
        for answer, batch in zip(answers, batches, strict=True):
            assert answer.status_code == 200, answer.text
            results = answer.json()["results"]
            assert [x["status"] for x in results] == ["accepted"] * per_batch, answer.text[:2000]
            indexes = [x["event"]["log_index"] for x in results]
            # a batch is integrated as one: its leaves are consecutive, in the batch's order
            assert indexes == list(range(indexes[0], indexes[0] + per_batch))
            assert [x["id"] for x in results] == [e["id"] for e in batch]
        every = sorted(x["event"]["log_index"] for a in answers for x in a.json()["results"])
        assert len(set(every)) == len(every) == per_batch * len(batches)
        after = s.counts(engine)
        assert after["head"] - before["head"] == per_batch * len(batches)
        assert after["events"] == after["distinct"] == before["events"] + per_batch * len(batches)
        with engine.connect() as conn:
            # one signed checkpoint per committed batch, each for a larger tree
            sizes = [r[0] for r in conn.execute(select(T.checkpoints.c.size).order_by(T.checkpoints.c.size))]
        assert sizes[-1] == after["head"]
        firsts = {a.json()["results"][0]["event"]["log_index"] for a in answers}
        assert {i + per_batch for i in firsts} <= set(sizes)
    finally:
        engine.dispose()
    check_the_log(scene)


def check_the_log(scene: Scene) -> None:
    """No answer was a server error or mentioned a locked database; the log is contiguous and
    ``batterytrace verify`` passes on the database the workers wrote."""
    for r in scene.answers:
        assert r.status_code < 500, r.text
        assert "locked" not in r.text.lower(), r.text
    engine = s.engine_for(scene.database_url)
    try:
        c = s.counts(engine)
        with engine.connect() as conn:
            indexes = [r[0] for r in conn.execute(select(T.log_entries.c.idx).order_by(T.log_entries.c.idx))]
            event_indexes = [r[0] for r in conn.execute(select(T.events.c.log_index))]
    finally:
        engine.dispose()
    assert indexes == list(range(c["head"])), "the log has a gap or a duplicate index"
    assert c["events"] == c["distinct"] == c["event_entries"]
    assert len(set(event_indexes)) == len(event_indexes)
    done = s.verify(scene.env, scene.workdir)
    assert done.returncode == 0, done.stdout + done.stderr
    logs = scene.server.logs()
    for bad in ("database is locked", "Traceback", "unexpected error"):
        assert bad not in logs, logs[-3000:]
