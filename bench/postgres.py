"""A throwaway PostgreSQL server for the benchmarks (as ``scripts/test`` starts one), or the
server named by ``BATTERYTRACE_BENCH_POSTGRES_URL``; one fresh database per measurement."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server() -> Iterator[str]:
    """The admin URL of a PostgreSQL server: ``BATTERYTRACE_BENCH_POSTGRES_URL`` if set, otherwise
    one started here in a temporary directory (fsync on, default settings) and removed after."""
    given = os.environ.get("BATTERYTRACE_BENCH_POSTGRES_URL")
    if given:
        yield given
        return
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    if not bins:
        raise RuntimeError(
            "no PostgreSQL here: install Debian's postgresql package or set BATTERYTRACE_BENCH_POSTGRES_URL"
        )
    pg_bin = bins[-1]
    home = Path(tempfile.mkdtemp(prefix="batterytrace-bench-pg-"))
    run: list[str] = []
    if os.geteuid() == 0:
        subprocess.run(["id", "postgres"], check=True, capture_output=True)
        shutil.chown(home, user="postgres")
        run = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    subprocess.run(
        [*run, f"{pg_bin}/initdb", "-D", str(home / "data"), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=100"
    subprocess.run(
        [
            *run,
            f"{pg_bin}/pg_ctl",
            "-D",
            str(home / "data"),
            "-l",
            str(home / "log"),
            "-w",
            "-o",
            options,
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*run, f"{pg_bin}/pg_ctl", "-D", str(home / "data"), "-m", "fast", "stop"], capture_output=True
        )
        shutil.rmtree(home, ignore_errors=True)


def create_database(admin_url: str, label: str) -> str:
    name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, url: str) -> None:
    name = make_url(url).database
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


def libpq(url: str) -> str:
    """A SQLAlchemy URL as psycopg's connection string."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
