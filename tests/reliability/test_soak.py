"""A bounded soak test on loopback: for about a minute (``BATTERYTRACE_SOAK_SECONDS``, default 45),
concurrent clients mix writes (batches of new batteries, then each battery's custody and
installation, one event at a time), refused writes, and reads (passports with and without a key,
histories, lists, the log's checkpoint and proofs) against one server process. Every answer is
the one expected, the server logs no error, its memory does not grow once warm, and
``batterytrace verify`` passes at the end."""

from __future__ import annotations

import os
import random
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests import factories as f
from tests.reliability import support as s

SECONDS = float(os.environ.get("BATTERYTRACE_SOAK_SECONDS", "45"))
WRITERS = 2
READERS = 3
#: Resident memory may not grow by more than this between the warm middle and the end of the run.
GROWTH_LIMIT_KIB = 24 * 1024


@dataclass
class Soak:
    server: s.Server
    keys: dict[str, str]
    ids: dict[str, str]
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    codes: list[str] = field(default_factory=list)  # batteries recorded so far
    errors: list[str] = field(default_factory=list)
    requests: int = 0

    def expect(self, r: httpx.Response, *statuses: int) -> httpx.Response:
        with self.lock:
            self.requests += 1
            if r.status_code not in statuses:
                self.errors.append(f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text[:300]}")
        return r

    def loop(self, body: Callable[[random.Random], None], seed: int, *clients: s.Api) -> Callable[[], None]:
        """A client thread: ``body`` again and again until the end; its connections closed after."""

        def run() -> None:
            rng = random.Random(seed)
            try:
                while not self.stop.is_set():
                    body(rng)
            except (httpx.HTTPError, AssertionError, KeyError, ValueError) as exc:
                with self.lock:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
            finally:
                for client in clients:
                    client.close()

        return run


@pytest.fixture
def soak(database_url: str, workdir: Path) -> Iterator[tuple[Soak, dict[str, str], Path]]:
    env = s.env_for(workdir, database_url)
    _, regulator_key = s.bootstrap(env, workdir)
    with s.Server(workdir, env) as server:
        regulator = s.Api(server.url, regulator_key)
        ids, keys = {"regulator": ""}, {"regulator": regulator_key}
        ids["maker"], keys["maker"] = s.make_enterprise(regulator, ["battery_maker"], codes=["0AB"])
        ids["automaker"], keys["automaker"] = s.make_enterprise(regulator, ["automaker"])
        ids["stranger"], keys["stranger"] = s.make_enterprise(regulator, ["automaker"])
        regulator.close()
        yield Soak(server, keys, ids), env, workdir


def test_a_minute_of_mixed_clients(soak: tuple[Soak, dict[str, str], Path]) -> None:
    sk, env, workdir = soak
    url = sk.server.url
    minute = iter(range(10**9))

    def writer(seed: int) -> Callable[[], None]:
        maker, automaker = s.Api(url, sk.keys["maker"]), s.Api(url, sk.keys["automaker"])

        def body(rng: random.Random) -> None:
            batch = s.manufactured_batch(rng.randint(20, 60), minutes=next(minute))
            r = sk.expect(maker.batch(batch), 200)
            if r.status_code != 200:
                return
            codes = [str(e["battery"]) for e in batch]
            with sk.lock:
                sk.codes.extend(codes)
            for code in rng.sample(codes, 3):
                at = next(minute)
                sk.expect(maker.event(f.event("shipped", code, at, {"to": sk.ids["automaker"]})), 201)
                sk.expect(automaker.event(f.event("received", code, at + 1)), 201)
                sk.expect(automaker.event(f.event("installed", code, at + 2, {"vin": f.vin()})), 201)

        return sk.loop(body, seed, maker, automaker)

    def reader(seed: int) -> Callable[[], None]:
        anonymous, keyed = s.Api(url, None), s.Api(url, sk.keys["automaker"])

        def body(rng: random.Random) -> None:
            with sk.lock:
                code = rng.choice(sk.codes) if sk.codes else f.code()
            client = rng.choice((anonymous, keyed))
            sk.expect(client.get(f"/api/v1/batteries/{code}"), 200, 404)
            sk.expect(client.get(f"/api/v1/batteries/{code}/events"), 200, 404)
            sk.expect(keyed.get("/api/v1/batteries", limit=50), 200)
            note = sk.expect(anonymous.get("/api/v1/log/checkpoint"), 200).text
            size = int(note.splitlines()[1])
            sk.expect(anonymous.get("/api/v1/log/proof/inclusion", index=rng.randrange(size), size=size), 200)
            sk.expect(
                anonymous.get("/api/v1/log/proof/consistency", first=rng.randint(1, size), second=size), 200
            )
            sk.expect(anonymous.get(f"/api/v1/log/entries/{rng.randrange(size)}"), 200)

        return sk.loop(body, seed, anonymous, keyed)

    def refused(seed: int) -> Callable[[], None]:
        stranger = s.Api(url, sk.keys["stranger"])

        def body(rng: random.Random) -> None:
            with sk.lock:
                code = rng.choice(sk.codes) if sk.codes else None
            if code is None:
                time.sleep(0.05)
                return
            # someone else's battery: refused, and kept as a security event (a write too)
            sk.expect(
                stranger.event(f.event("shipped", code, next(minute), {"to": sk.ids["maker"]})), 403, 409
            )
            time.sleep(0.02)

        return sk.loop(body, seed, stranger)

    threads = [threading.Thread(target=writer(i), daemon=True) for i in range(WRITERS)]
    threads += [threading.Thread(target=reader(100 + i), daemon=True) for i in range(READERS)]
    threads.append(threading.Thread(target=refused(200), daemon=True))
    pid = sk.server.proc.pid if sk.server.proc else 0
    samples: list[tuple[float, int]] = []
    started = time.monotonic()
    for t in threads:
        t.start()
    while (elapsed := time.monotonic() - started) < SECONDS:
        samples.append((elapsed, s.rss_kib(pid)))
        if sk.errors:
            break
        time.sleep(1.0)
    sk.stop.set()
    for t in threads:
        t.join(timeout=120)
    assert not [t for t in threads if t.is_alive()], "a client did not finish"
    assert not sk.errors, f"{len(sk.errors)} errors in {sk.requests} requests, first: {sk.errors[:5]}"
    assert sk.requests > 100, f"only {sk.requests} requests in {SECONDS:.0f} s"

    # memory: once warm (from the middle of the run), the server does not keep growing
    warm = [kib for t, kib in samples if 0.3 * SECONDS <= t < 0.5 * SECONDS]
    end = [kib for t, kib in samples if t >= 0.8 * SECONDS]
    assert warm, samples
    assert end, samples
    growth = statistics.median(end) - statistics.median(warm)
    assert growth < GROWTH_LIMIT_KIB, f"the server grew by {growth / 1024:.1f} MiB: {samples}"

    sk.server.stop()
    logs = sk.server.logs()
    assert '"level": "error"' not in logs.lower(), logs[-3000:]
    assert "Traceback" not in logs, logs[-3000:]
    done = s.verify(env, workdir)
    assert done.returncode == 0, done.stdout + done.stderr
