"""Helpers for the reliability tests: the registry as real processes on loopback (server with one
or several workers, CLI commands), an HTTP client per thread, and reading the database directly.

Every wait is bounded; processes are started in their own session so that a test can kill a
server and its workers (``SIGKILL`` to the process group it created) and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from batterytrace.store import tables as T
from tests import factories as f

START_TIMEOUT = 90.0
COMMAND_TIMEOUT = 180.0
ORIGIN = "reliability.test/log"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def exe() -> str:
    return str(Path(sys.executable).with_name("batterytrace"))


def env_for(workdir: Path, database_url: str, **settings: Any) -> dict[str, str]:
    """The environment of a registry process: only this test's ``BATTERYTRACE_*`` settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATTERYTRACE_")}
    env.update(
        BATTERYTRACE_DATABASE_URL=database_url,
        BATTERYTRACE_ENV="development",
        BATTERYTRACE_SIGNING_KEY=str(workdir / "log.key"),
        BATTERYTRACE_LOG_ORIGIN=ORIGIN,
        BATTERYTRACE_LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    for name, value in settings.items():
        env[f"BATTERYTRACE_{name.upper()}"] = str(value)
    return env


def run(
    args: Sequence[str], env: dict[str, str], cwd: Path, timeout: float = COMMAND_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run ``batterytrace ARGS`` to the end."""
    return subprocess.run(
        [exe(), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def bootstrap(env: dict[str, str], cwd: Path) -> tuple[str, str]:
    """Create the first regulator; returns (its id, its API key)."""
    uid = f.uscc()
    done = run(["bootstrap", "--id", uid, "--name", "Reliability Office"], env, cwd)
    assert done.returncode == 0, done.stderr + done.stdout
    return uid, done.stdout.strip().splitlines()[-1]


def verify(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return run(["verify"], env, cwd)


def rss_kib(pid: int) -> int:
    """Resident memory of a process, in KiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


class Server:
    """``batterytrace serve --no-demo`` on a free loopback port."""

    def __init__(self, workdir: Path, env: dict[str, str], workers: int = 1) -> None:
        self.workdir = workdir
        self.env = env
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def logs(self) -> str:
        return "\n".join(
            (self.workdir / f"server-{n}.{s}").read_text(encoding="utf-8", errors="replace")
            for n in range(1, self.starts + 1)
            for s in ("stdout", "stderr")
        )

    def start(self) -> Server:
        assert self.proc is None
        self.starts += 1
        args = [exe(), "serve", "--no-demo", "--host", "127.0.0.1", "--port", str(self.port)]
        if self.workers > 1:
            args += ["--workers", str(self.workers)]
        with (
            open(self.workdir / f"server-{self.starts}.stdout", "wb") as out,
            open(self.workdir / f"server-{self.starts}.stderr", "wb") as err,
        ):
            self.proc = subprocess.Popen(
                args, env=self.env, cwd=self.workdir, stdout=out, stderr=err, start_new_session=True
            )
        deadline = time.monotonic() + START_TIMEOUT
        answered = 0
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise AssertionError(f"the server exited with {code}:\n{self.logs()[-4000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=5).status_code == 200:
                    answered += 1
                    if answered >= self.workers:  # give every worker a chance to come up
                        return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.kill()
        raise AssertionError(f"the server did not answer within {START_TIMEOUT} s:\n{self.logs()[-4000:]}")

    def kill(self) -> None:
        """SIGKILL to the server and its workers: no shutdown, no flushing, as in a crash."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc = None

    def stop(self) -> None:
        """A clean stop (SIGTERM), falling back to SIGKILL."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
                return
        with contextlib.suppress(ProcessLookupError):  # workers left behind by a parent that died first
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc = None

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Api:
    """An HTTP client of a running server for one enterprise (one per thread)."""

    def __init__(self, url: str, key: str | None, timeout: float = 120.0) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def post(self, path: str, body: Any) -> httpx.Response:
        return self.http.post(path, json=body)

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(path, params=params)

    def event(self, body: dict[str, Any]) -> httpx.Response:
        return self.post("/api/v1/events", body)

    def batch(self, events: list[dict[str, Any]], atomic: bool = False) -> httpx.Response:
        return self.post("/api/v1/events/batch", {"events": events, "atomic": atomic})


def make_enterprise(
    regulator: Api,
    roles: list[str],
    *,
    codes: Iterable[str] = (),
    licences: Iterable[str] = (),
    network_of: str | None = None,
) -> tuple[str, str]:
    """Register an enterprise through the API; returns (its id, a new API key)."""
    uid = f.uscc()
    body = {
        "id": uid,
        "name": f"Enterprise {uid[-6:]}",
        "roles": roles,
        "region": "310115",
        "manufacturer_codes": list(codes),
        "network_of": network_of,
    }
    r = regulator.post("/api/v1/enterprises", body)
    assert r.status_code == 201, r.text
    for scope in licences:
        r = regulator.post(
            f"/api/v1/enterprises/{uid}/licences",
            {"scope": scope, "valid_from": "2026-01-01", "valid_to": "2030-12-31", "region": None},
        )
        assert r.status_code == 201, r.text
    r = regulator.post(f"/api/v1/enterprises/{uid}/keys", {})
    assert r.status_code == 201, r.text
    return uid, r.json()["key"]


def engine_for(database_url: str) -> Engine:
    """A plain engine for looking at the database from the test (no registry around it); its
    connections close when returned, so nothing is left open when the test ends."""
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql" and url.get_driver_name() in ("", "psycopg2"):
        url = url.set(drivername="postgresql+psycopg")
    return create_engine(url, poolclass=NullPool)


def stored_ids(engine: Engine, ids: Sequence[str]) -> set[str]:
    """Which of these event ids the events table holds."""
    found: set[str] = set()
    with engine.connect() as conn:
        for i in range(0, len(ids), 500):
            chunk = list(ids[i : i + 500])
            found |= {r[0] for r in conn.execute(select(T.events.c.id).where(T.events.c.id.in_(chunk)))}
    return found


def counts(engine: Engine) -> dict[str, int]:
    """Rows in the event table, log entries, distinct event ids and the log head's size."""
    with engine.connect() as conn:
        return {
            "events": int(conn.execute(select(func.count()).select_from(T.events)).scalar_one()),
            "distinct": int(conn.execute(select(func.count(func.distinct(T.events.c.id)))).scalar_one()),
            "entries": int(conn.execute(select(func.count()).select_from(T.log_entries)).scalar_one()),
            "head": int(conn.execute(select(T.log_head.c.size).where(T.log_head.c.id == 1)).scalar_one()),
            "event_entries": int(
                conn.execute(
                    select(func.count()).select_from(T.log_entries).where(T.log_entries.c.kind == "event")
                ).scalar_one()
            ),
        }


def manufactured_batch(n: int, minutes: int = 0) -> list[dict[str, Any]]:
    return [f.event("manufactured", f.code(), minutes, f.MANUFACTURED) for _ in range(n)]


def write_in_progress(database_url: str) -> Callable[[], bool]:
    """A probe: is a write transaction open on the database right now?"""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        path = url.database

        def sqlite_probe() -> bool:
            conn = sqlite3.connect(str(path), timeout=0, isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")
                return False
            except sqlite3.OperationalError:
                return True  # another connection holds the write lock
            finally:
                conn.close()

        return sqlite_probe
    engine = engine_for(database_url)

    def pg_probe() -> bool:
        with engine.connect() as conn:
            try:
                conn.execute(text("SELECT size FROM log_head WHERE id = 1 FOR UPDATE NOWAIT"))
                return False
            except OperationalError:
                return True  # a writer holds the log head
            finally:
                conn.rollback()

    return pg_probe
