"""Several API worker processes against one database: ``batterytrace serve --workers 3`` on
loopback, writers posting batches at once over fresh connections, then ``batterytrace verify``
replays the database against the log: one log, no gap, no fork, every row accounted for."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from batterytrace.cli.main import app
from batterytrace.domain.codes import make_battery_code, make_uscc
from batterytrace.services.factory import build_registry
from batterytrace.settings import Settings
from batterytrace.store import tables as T

WRITERS = 6
ROUNDS = 5
PER_BATCH = 10
BIN = Path(sys.executable).parent / "batterytrace"


def env_for(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "BATTERYTRACE_DATABASE_URL": settings.database_url,
        "BATTERYTRACE_SIGNING_KEY": str(settings.signing_key),
        "BATTERYTRACE_ENV": "test",
        "BATTERYTRACE_LOG_ORIGIN": settings.log_origin,
        "BATTERYTRACE_LOG_LEVEL": "INFO",
    }


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(settings: Settings, tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """A bootstrapped registry served by three worker processes; yields (base URL, regulator key,
    server log)."""
    env = env_for(settings)
    boot = subprocess.run(
        [str(BIN), "bootstrap", "--id", make_uscc("91110000000000001"), "--name", "Regulator"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert boot.returncode == 0, boot.stderr
    key = boot.stdout.strip().splitlines()[-1]
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(BIN), "serve", "--no-demo", "--workers", "3", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:  # every worker has started its application, and the database answers
            assert proc.poll() is None, log.read_text()
            up = log.read_text().count("Application startup complete")
            try:
                ready = up >= 3 and httpx.get(base + "/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                ready = False
            if ready:
                break
            assert time.monotonic() < deadline, "the workers did not all start"
            time.sleep(0.2)
        yield base, key, log
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def post(base: str, key: str, path: str, body: object) -> httpx.Response:
    # a fresh connection for every request, so that the workers share them out
    return httpx.post(base + path, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=120)


def test_three_workers_with_concurrent_writers_keep_one_verifiable_log(server, settings):
    base, regulator, log = server
    maker_id, automaker_id = make_uscc("91350900000000002"), make_uscc("91440300000000003")
    for body in (
        {
            "id": maker_id,
            "name": "Maker",
            "roles": ["battery_maker"],
            "region": "350900",
            "manufacturer_codes": ["0AB"],
        },
        {"id": automaker_id, "name": "Automaker", "roles": ["automaker"], "region": "440300"},
    ):
        assert post(base, regulator, "/api/v1/enterprises", body).status_code == 201
    maker = post(base, regulator, f"/api/v1/enterprises/{maker_id}/keys", {}).json()["key"]
    automaker = post(base, regulator, f"/api/v1/enterprises/{automaker_id}/keys", {}).json()["key"]
    when = (datetime.now(UTC) - timedelta(minutes=30)).isoformat()
    failures: list[str] = []
    accepted = [0] * WRITERS

    def writer(w: int) -> None:
        for r in range(ROUNDS):
            codes = [
                make_battery_code("0AB", "P", "E", "01", f"W{w:02d}R{r:03d}", date(2026, 1, 5), n + 1)
                for n in range(PER_BATCH)
            ]

            def batch(
                kind: str, data: dict[str, object], codes: list[str] = codes
            ) -> list[dict[str, object]]:
                return [
                    {
                        "id": str(uuid.uuid4()),
                        "type": kind,
                        "battery": c,
                        "time": when,
                        "region": "350900",
                        "data": data,
                    }
                    for c in codes
                ]

            made = {"capacity_kwh": 60, "voltage_v": 400, "mass_kg": 300}
            for key, events in (
                (maker, batch("manufactured", made)),
                (maker, batch("shipped", {"to": automaker_id})),
                (automaker, batch("received", {})),
            ):
                r_ = post(base, key, "/api/v1/events/batch", {"events": events})
                if r_.status_code != 200 or r_.json()["rejected"]:
                    failures.append(f"writer {w}: {r_.status_code} {r_.text[:300]}")
                    return
                accepted[w] += r_.json()["accepted"]

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not any(t.is_alive() for t in threads)
    assert failures == []
    assert sum(accepted) == WRITERS * ROUNDS * 3 * PER_BATCH

    # three worker processes were serving (uvicorn logs one start line per worker)
    started = set(re.findall(r"Started server process \[(\d+)\]", log.read_text()))
    assert len(started) == 3, log.read_text()[-2000:]

    registry = build_registry(settings, migrate=False)
    try:
        with registry.engine.connect() as conn:
            events = int(conn.execute(select(func.count()).select_from(T.events)).scalar_one())
            indexes = sorted(r.log_index for r in conn.execute(select(T.events.c.log_index)))
            size = int(conn.execute(select(T.log_head.c.size)).scalar_one())
    finally:
        registry.engine.dispose()
    assert events == sum(accepted)
    assert len(set(indexes)) == events and indexes[-1] < size  # each event has its own leaf
    result = CliRunner().invoke(app, ["verify"], env=env_for(settings))
    assert result.exit_code == 0, result.output
    assert "everything checks" in result.output
