"""Crash safety with real processes: ``kill -9`` of the server while batches are being written, and
of ``batterytrace import`` in the middle of a file, caught while a write transaction is open.
Afterwards ``batterytrace verify`` passes, every batch is wholly recorded or not at all (and every
acknowledged one is recorded), and sending the batches again, or importing the file again,
completes with nothing recorded twice."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import Engine

from batterytrace.services.factory import build_registry
from batterytrace.settings import Settings
from tests import factories as f
from tests.reliability import support as s

BATCH = 150
KILLS = 2
WAIT = 120.0


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT, step: float = 0.002) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(step)


@dataclass
class Sender:
    """Sends batches one after another until the server goes away."""

    url: str
    key: str
    batches: list[list[dict[str, object]]]
    acked: set[int] = field(default_factory=set)
    started: set[int] = field(default_factory=set)
    problem: str | None = None

    def run(self) -> None:
        api = s.Api(self.url, self.key, timeout=60)
        try:
            for i, batch in enumerate(self.batches):
                self.started.add(i)
                try:
                    r = api.batch(batch, atomic=i % 2 == 1)
                except httpx.TransportError:
                    return  # the server was killed
                if r.status_code != 200 or r.json()["accepted"] != len(batch):
                    self.problem = r.text[:1000]
                    return
                self.acked.add(i)
        finally:
            api.close()


def check_batches(engine: Engine, batches: list[list[dict[str, object]]], acked: set[int]) -> int:
    """Every batch is wholly in the database or not at all; acknowledged ones are in. Returns how
    many batches are in."""
    whole = 0
    for i, batch in enumerate(batches):
        present = len(s.stored_ids(engine, [str(e["id"]) for e in batch]))
        assert present in (0, len(batch)), f"batch {i} is half written: {present} of {len(batch)} events"
        assert i not in acked or present == len(batch), f"acknowledged batch {i} was lost"
        whole += present == len(batch)
    return whole


def test_kill_9_during_batch_writes(database_url: str, workdir: Path) -> None:
    env = s.env_for(workdir, database_url)
    _, regulator_key = s.bootstrap(env, workdir)
    server = s.Server(workdir, env).start()
    engine = s.engine_for(database_url)
    busy = s.write_in_progress(database_url)
    try:
        regulator = s.Api(server.url, regulator_key)
        _, maker_key = s.make_enterprise(regulator, ["battery_maker"], codes=["0AB"])
        regulator.close()
        batches = [s.manufactured_batch(BATCH, minutes=i) for i in range(12)]
        acked: set[int] = set()
        caught_in_transaction = 0
        for _ in range(KILLS):
            todo = [b for i, b in enumerate(batches) if i not in acked]
            sender = Sender(server.url, maker_key, todo)
            thread = threading.Thread(target=sender.run, daemon=True)
            thread.start()
            wait_for(lambda sender=sender: len(sender.acked) >= 2, "two batches to be acknowledged")
            # kill it while a batch is being written
            deadline = time.monotonic() + WAIT
            while not busy() and thread.is_alive() and time.monotonic() < deadline:
                time.sleep(0.001)
            caught_in_transaction += busy()
            server.kill()
            thread.join(timeout=WAIT)
            assert not thread.is_alive()
            assert sender.problem is None, sender.problem
            index = {id(b): i for i, b in enumerate(batches)}
            acked |= {index[id(todo[i])] for i in sender.acked}
            # after the crash, before the restart: the database replays against its log
            done = s.verify(env, workdir)
            assert done.returncode == 0, done.stdout + done.stderr
            assert check_batches(engine, batches, acked) >= len(acked)
            server.start()
        assert caught_in_transaction >= 1, "the server was never killed while a batch was being written"

        # every batch sent again: the recorded ones are replays, the rest are recorded, once
        api = s.Api(server.url, maker_key)
        for batch in batches:
            r = api.batch(batch)
            assert r.status_code == 200, r.text
            assert r.json()["accepted"] == len(batch)
        api.close()
        counts = s.counts(engine)
        assert counts["events"] == counts["distinct"] == counts["event_entries"] == BATCH * len(batches)
        assert check_batches(engine, batches, set(range(len(batches)))) == len(batches)
        server.stop()
        done = s.verify(env, workdir)
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        server.kill()
        engine.dispose()


# --- the importer -------------------------------------------------------------------------------------


def enterprise_key(env: dict[str, str], regulator_key: str) -> str:
    """A battery maker and its key, made through the library (no server needed to import)."""
    settings = Settings(
        database_url=env["BATTERYTRACE_DATABASE_URL"],
        signing_key=Path(env["BATTERYTRACE_SIGNING_KEY"]),
        env="development",
        log_origin=env["BATTERYTRACE_LOG_ORIGIN"],
    )
    registry = build_registry(settings)
    try:
        regulator = registry.authenticate(regulator_key)
        uid = f.uscc()
        registry.create_enterprise(
            regulator,
            {"id": uid, "name": "Importing maker", "roles": ["battery_maker"], "region": "320500",
             "manufacturer_codes": ["0AB"]},
        )  # fmt: skip
        return str(registry.create_key(regulator, uid)["key"])
    finally:
        registry.engine.dispose()


IMPORT_BATCH = 150
IMPORT_EVENTS = 6000  # long enough that the importer is still running when the probe looks


def test_kill_9_during_an_import_and_import_again(database_url: str, workdir: Path) -> None:
    env = s.env_for(workdir, database_url)
    _, regulator_key = s.bootstrap(env, workdir)
    key = enterprise_key(env, regulator_key)
    events = []
    for i in range(IMPORT_EVENTS):
        event = f.event("manufactured", f.code(), i // 100, f.MANUFACTURED)
        if i % 3 == 0:
            del event["id"]  # the importer derives these ids from the content
        events.append(event)
    source = workdir / "national.jsonl"
    source.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    args = ["import", str(source), "--key", key, "--batch-size", str(IMPORT_BATCH), "--quiet"]
    engine = s.engine_for(database_url)
    busy = s.write_in_progress(database_url)
    try:
        proc = subprocess.Popen(
            [s.exe(), *args], env=env, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True,
        )  # fmt: skip
        try:
            wait_for(
                lambda: s.counts(engine)["events"] >= 2 * IMPORT_BATCH,
                "the import to commit batches",
                step=0.01,
            )
            deadline = time.monotonic() + WAIT
            while not busy() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.001)
            in_transaction = busy()
            proc.kill()
        finally:
            proc.kill()
            out, err = proc.communicate(timeout=WAIT)
        assert proc.returncode == -9, (proc.returncode, out, err)
        assert in_transaction, "the import was not caught in the middle of a batch"
        recorded = s.counts(engine)["events"]
        assert 0 < recorded < IMPORT_EVENTS, "the import was not killed in the middle of the file"
        assert recorded % IMPORT_BATCH == 0, f"a batch is half recorded: {recorded} events"
        done = s.verify(env, workdir)
        assert done.returncode == 0, done.stdout + done.stderr

        # the same command again finishes the file, recording nothing twice
        again = s.run(args, env, workdir)
        assert again.returncode == 0, again.stdout + again.stderr
        counts = s.counts(engine)
        assert counts["events"] == counts["distinct"] == counts["event_entries"] == IMPORT_EVENTS
        # and from the start once more, without the saved position: every record is a replay
        fresh = s.run([*args, "--no-resume"], env, workdir)
        assert fresh.returncode == 0, fresh.stdout + fresh.stderr
        assert s.counts(engine) == counts
        done = s.verify(env, workdir)
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        engine.dispose()
