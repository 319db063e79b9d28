"""The measurements of ``bench.run``, each run in its own process (``python -m bench.run --stage
NAME --params JSON``) so that its peak memory is its own. Each returns a dict that ends up, as
one JSON line, on the child's standard output."""

from __future__ import annotations

import asyncio
import json
import random
import resource
import sqlite3
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from batterytrace.settings import Settings

#: Events per transaction for the import and the raw-insert ceiling.
IMPORT_BATCH = 2_000
#: Events per request for the batch API.
API_BATCH = 2_000


def peak_mb() -> float:
    """This process's peak resident memory (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def settings_for(p: dict[str, Any]) -> Settings:
    return Settings(
        database_url=p["url"],
        signing_key=Path(p["signing_key"]),
        env="development",
        log_origin="bench.batterytrace/log",
        log_level="WARNING",
    )


def registry_for(p: dict[str, Any]) -> Any:
    from batterytrace.services.factory import build_registry

    return build_registry(settings_for(p))


def sim_config(p: dict[str, Any], **overrides: Any) -> Any:
    from batterytrace.simulate.national import SimConfig

    values: dict[str, Any] = {
        "batteries": p["packs"],
        "seed": p["seed"],
        "end": datetime.fromisoformat(p["end"]),
    }
    values.update(overrides)
    return SimConfig(**values)


# --- setting up -----------------------------------------------------------------------------------------


def stage_setup(p: dict[str, Any]) -> dict[str, Any]:
    """The simulated enterprises with their licences, and an API key for each (the API benchmarks
    record as each enterprise). Written to ``keys`` as {enterprise id: key}."""
    from batterytrace.simulate.national import SETUP_LEAD, NationalSimulation, setup

    started = time.perf_counter()
    registry = registry_for(p)
    sim = NationalSimulation(sim_config(p))
    at = (sim.start - SETUP_LEAD).astimezone(UTC)
    registry.clock = lambda: at
    keys = setup(registry, sim)
    regulator = registry.authenticate(keys["regulator"][2])
    by_id = {uid: key for uid, _, key in keys.values()}
    for party in sim.cast.parties:
        if party.id not in by_id:
            by_id[party.id] = registry.create_key(regulator, party.id, label="benchmark")["key"]
    Path(p["keys"]).write_text(json.dumps({"regulator": keys["regulator"][2], "by_id": by_id}))
    registry.engine.dispose()
    return {
        "enterprises": len(sim.cast.parties),
        "seconds": time.perf_counter() - started,
        "peak_mb": peak_mb(),
    }


# --- bulk import and its ceiling --------------------------------------------------------------------------


def stage_import(p: dict[str, Any]) -> dict[str, Any]:
    """``batterytrace import`` of the simulated history (a regulator-run migration, each line naming
    its recording enterprise), through the importer's own code. The registry's clock follows the
    file: each batch is recorded at its latest event's time, so reports count as made on time (as
    they were, live) instead of raising a late-report alert for every historical event."""
    from batterytrace.services.interop import Interop, import_file

    registry = registry_for(p)
    keys = json.loads(Path(p["keys"]).read_text())
    caller = registry.authenticate(keys["regulator"])
    clock = _FollowingClock(datetime.fromisoformat(p["start"]).astimezone(UTC))
    registry.clock = clock
    original = registry.record

    def record(who: Any, events: Any, **options: Any) -> Any:
        clock.follow(events)
        return original(who, events, **options)

    registry.record = record
    started = time.perf_counter()
    summary = import_file(
        Interop(registry),
        caller,
        Path(p["file"]),
        "jsonl",
        rejects_path=Path(p["rejects"]),
        batch_size=IMPORT_BATCH,
        resume=False,
    )
    seconds = time.perf_counter() - started
    c = summary.counts
    size = database_bytes(registry.engine)
    registry.engine.dispose()
    return {
        "read": c.read,
        "accepted": c.accepted,
        "rejected": c.rejected,
        "seconds": seconds,
        "rate": c.read / seconds,
        "db_bytes": size,
        "peak_mb": peak_mb(),
    }


def database_bytes(engine: Any) -> int:
    """Bytes the database takes on disk (SQLite: the file and its WAL; PostgreSQL: the database)."""
    if engine.dialect.name == "sqlite":
        path = Path(engine.url.database)
        return sum(f.stat().st_size for f in (path, path.with_name(path.name + "-wal")) if f.exists())
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one())


class _FollowingClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def follow(self, events: Any) -> None:
        for event in events:
            try:
                moment = datetime.fromisoformat(event["time"]).astimezone(UTC)
            except (KeyError, TypeError, ValueError):
                continue
            if moment > self.now:
                self.now = moment


def stage_raw(p: dict[str, Any]) -> dict[str, Any]:
    """The ceiling: the rows the import stored in ``events``, inserted into the same table of a
    fresh database of the same kind with the driver alone (sqlite3 ``executemany``; psycopg
    ``COPY``), in transactions of the import's size, each committed durably. Only the inserts and
    commits are timed, not reading the rows."""
    from batterytrace.store import tables as T
    from batterytrace.store.db import make_engine
    from batterytrace.store.migrate import upgrade

    target = make_engine(p["target"])
    upgrade(target)
    target.dispose()
    columns = [c.name for c in T.events.columns]
    spent = 0.0
    rows_total = 0
    if make_url(p["source"]).get_backend_name() == "sqlite":
        src = sqlite3.connect(make_url(p["source"]).database or "")
        dst = sqlite3.connect(make_url(p["target"]).database or "", isolation_level=None)
        dst.execute("PRAGMA journal_mode=WAL")
        dst.execute("PRAGMA synchronous=FULL")
        names = ", ".join(columns)
        insert = f"INSERT INTO events ({names}) VALUES ({', '.join('?' for _ in columns)})"
        cur = src.execute(f"SELECT {names} FROM events ORDER BY log_index")
        while rows := cur.fetchmany(IMPORT_BATCH):
            t0 = time.perf_counter()
            dst.execute("BEGIN")
            dst.executemany(insert, rows)
            dst.execute("COMMIT")
            spent += time.perf_counter() - t0
            rows_total += len(rows)
        src.close()
        dst.close()
    else:
        import psycopg

        from bench.postgres import libpq

        casts = {"data": "data::text", "undo": "undo::text"}
        selected = ", ".join(casts.get(c, c) for c in columns)
        with (
            psycopg.connect(libpq(p["source"])) as src,
            psycopg.connect(libpq(p["target"])) as dst,
            src.cursor(name="events_out") as cur,
        ):
            cur.itersize = IMPORT_BATCH
            cur.execute(f"SELECT {selected} FROM events ORDER BY log_index")
            while rows := cur.fetchmany(IMPORT_BATCH):
                t0 = time.perf_counter()
                with dst.cursor() as out, out.copy(f"COPY events ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                dst.commit()
                spent += time.perf_counter() - t0
                rows_total += len(rows)
    return {
        "rows": rows_total,
        "seconds": spent,
        "rate": rows_total / spent if spent else 0.0,
        "peak_mb": peak_mb(),
    }


# --- after the import: alerts, lookups, proofs, reports ----------------------------------------------------


def stage_rescan(p: dict[str, Any]) -> dict[str, Any]:
    """A full re-scan of the running deadlines at today's date (every deadline that passed since
    the history ended raises its alert)."""
    from batterytrace.services.monitoring import monitoring_for

    registry = registry_for(p)
    now = datetime.fromisoformat(p["now"])
    registry.clock = lambda: now
    started = time.perf_counter()
    result = monitoring_for(registry).rescan(now)
    seconds = time.perf_counter() - started
    registry.engine.dispose()
    return {**result, "seconds": seconds, "peak_mb": peak_mb()}


def _timed(fn: Callable[[], Any], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def stage_reads(p: dict[str, Any]) -> dict[str, Any]:
    """A battery's history (the use case behind ``GET /api/v1/batteries/{code}/events``, as the
    regulator), inclusion proofs of random log entries, the reports and the dashboard."""
    from batterytrace.services import forecast, reports
    from batterytrace.services import log as logsvc
    from batterytrace.services.monitoring import monitoring_for
    from batterytrace.store import tables as T
    from batterytrace.web.dashboard_data import load_dashboard

    registry = registry_for(p)
    now = datetime.fromisoformat(p["now"])
    registry.clock = lambda: now
    keys = json.loads(Path(p["keys"]).read_text())
    caller = registry.authenticate(keys["regulator"])
    engine = registry.engine
    rng = random.Random(7)
    n = p["lookups"]
    with engine.connect() as conn:
        codes = [
            r.code
            for r in conn.execute(
                select(T.batteries.c.code)
                .where(T.batteries.c.level == "pack")
                .order_by(text("random()"))
                .limit(n)
            )
        ]
        size = int(conn.execute(select(T.log_head.c.size)).scalar_one())
    for code in codes[:20]:  # warm the caches as a running server has them
        registry.battery_events(caller, code)
    history = []
    events_seen = 0
    for code in codes:
        t0 = time.perf_counter()
        got = registry.battery_events(caller, code)
        history.append((time.perf_counter() - t0) * 1000)
        events_seen += len(got["events"])
    proofs = []
    for index in (rng.randrange(size) for _ in range(n)):
        t0 = time.perf_counter()
        logsvc.prove_inclusion(engine, index, None)
        proofs.append((time.perf_counter() - t0) * 1000)
    profile = monitoring_for(registry).profile
    out: dict[str, Any] = {
        "history_p50_ms": _percentile(history, 0.5),
        "history_p99_ms": _percentile(history, 0.99),
        "history_events_mean": events_seen / max(len(codes), 1),
        "proof_p50_ms": _percentile(proofs, 0.5),
        "proof_p99_ms": _percentile(proofs, 0.99),
        "statistics_ms": _timed(lambda: reports.statistics(engine)) * 1000,
        "statistics_grouped_ms": _timed(
            lambda: reports.statistics(engine, group_by=["province", "chemistry"])
        )
        * 1000,
        "producers_ms": _timed(lambda: reports.producers(engine, now)) * 1000,
        "recovery_ms": _timed(lambda: reports.recovery(engine)) * 1000,
        "forecast_ms": _timed(lambda: forecast.from_fleet(engine, profile, now), repeat=1) * 1000,
        "alerts_page_ms": _timed(lambda: monitoring_for(registry).list_alerts(None, operator=True, limit=100))
        * 1000,
    }
    t0 = time.perf_counter()
    load_dashboard(registry, caller)
    out["dashboard_first_ms"] = (time.perf_counter() - t0) * 1000
    out["dashboard_cached_ms"] = _timed(lambda: load_dashboard(registry, caller)) * 1000
    out["peak_mb"] = peak_mb()
    engine.dispose()
    return out


# --- the API, driven from another process -------------------------------------------------------------------


def live_rounds(p: dict[str, Any]) -> list[list[Any]]:
    """Live traffic for the API: packs sold in the last 20 days by the same enterprises (codes of
    their own series), as rounds of one-enterprise batches; the batches of a round are
    independent."""
    from batterytrace.simulate.national import NationalSimulation

    end = datetime.fromisoformat(p["live_end"])
    config = sim_config(
        p,
        batteries=p["live_packs"],
        cast_for=p["packs"],
        series=p.get("series", "L"),
        start=end - timedelta(days=20),
        end=end,
        stories=False,
        batch_size=API_BATCH,
    )
    return [batches for window in NationalSimulation(config).windows() for batches in window.rounds]


def stage_client(p: dict[str, Any]) -> dict[str, Any]:
    """Drive a running server: ``batch`` posts the first ``batch_events`` of the live traffic as
    batches (the batches of a round concurrently); ``single`` posts the next ``requests`` events
    one per request over ``concurrency`` connections, each pack's events in order."""
    rounds = live_rounds(p)
    keys = json.loads(Path(p["keys"]).read_text())["by_id"]
    batch_part: list[list[Any]] = []
    taken = 0
    rest = iter(rounds)
    for batches in rest:
        batch_part.append(batches)
        taken += sum(len(b.events) for b in batches)
        if taken >= p["batch_events"]:
            break
    if p["mode"] == "batch":
        return asyncio.run(_post_batches(p["base"], batch_part, keys, p["concurrency"]))
    lanes_by_round: list[list[list[tuple[str, str]]]] = []
    wanted = p["requests"]
    count = 0
    for batches in rest:
        lanes: dict[str, list[tuple[str, str]]] = {}
        for batch in batches:
            for text_, pack in zip(batch.events, batch.packs, strict=True):
                lanes.setdefault(pack, []).append((batch.actor, text_))
        lanes_by_round.append(list(lanes.values()))
        count += sum(len(lane) for lane in lanes.values())
        if count >= wanted:
            break
    return asyncio.run(_post_singles(p["base"], lanes_by_round, keys, p["concurrency"]))


async def _post_batches(
    base: str, rounds: list[list[Any]], keys: dict[str, str], concurrency: int
) -> dict[str, Any]:
    import httpx

    accepted = rejected = 0
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=limits) as client:

        async def post(batch: Any) -> None:
            nonlocal accepted, rejected
            body = '{"atomic":false,"events":[' + ",".join(batch.events) + "]}"
            headers = {"Authorization": f"Bearer {keys[batch.actor]}", "Content-Type": "application/json"}
            async with gate:
                r = await client.post("/api/v1/events/batch", content=body.encode(), headers=headers)
            if r.status_code != 200:
                raise RuntimeError(f"batch refused: {r.status_code} {r.text[:300]}")
            got = r.json()
            accepted += got["accepted"]
            rejected += got["rejected"]

        started = time.perf_counter()
        requests = 0
        for batches in rounds:
            await asyncio.gather(*(post(b) for b in batches))
            requests += len(batches)
        seconds = time.perf_counter() - started
    events = accepted + rejected
    return {
        "events": events,
        "accepted": accepted,
        "rejected": rejected,
        "requests": requests,
        "seconds": seconds,
        "rate": events / seconds,
        "peak_mb": peak_mb(),
    }


async def _post_singles(
    base: str, rounds: list[list[list[tuple[str, str]]]], keys: dict[str, str], concurrency: int
) -> dict[str, Any]:
    import httpx

    statuses: dict[int, int] = {}
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:

        async def worker(queue: asyncio.Queue[list[tuple[str, str]]]) -> None:
            while True:
                try:
                    lane = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                for actor, body in lane:
                    headers = {"Authorization": f"Bearer {keys[actor]}", "Content-Type": "application/json"}
                    t0 = time.perf_counter()
                    r = await client.post("/api/v1/events", content=body.encode(), headers=headers)
                    latencies.append((time.perf_counter() - t0) * 1000)
                    statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

        started = time.perf_counter()
        for lanes in rounds:
            queue: asyncio.Queue[list[tuple[str, str]]] = asyncio.Queue()
            for lane in lanes:
                queue.put_nowait(lane)
            await asyncio.gather(*(worker(queue) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    total = sum(statuses.values())
    return {
        "requests": total,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "seconds": seconds,
        "rate": total / seconds,
        "p50_ms": _percentile(latencies, 0.5),
        "p99_ms": _percentile(latencies, 0.99),
        "peak_mb": peak_mb(),
    }


STAGES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "setup": stage_setup,
    "import": stage_import,
    "raw": stage_raw,
    "rescan": stage_rescan,
    "reads": stage_reads,
    "client": stage_client,
}
