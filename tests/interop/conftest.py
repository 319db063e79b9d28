"""Fixtures for the standards tests: a second, empty registry on the same kind of database (to
import into), with the same enterprises as the first."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from batterytrace.api.app import create_app
from batterytrace.services.factory import build_registry
from batterytrace.services.registry import Caller, Registry
from batterytrace.settings import Settings
from tests import factories as f
from tests.api.support import Story
from tests.conftest import PG_URL, Actor, Cast, Clock, make_enterprise
from tests.interop import support


@contextmanager
def database(db_kind: str, directory: Path, name: str) -> Iterator[str]:
    """A fresh database: a SQLite file in ``directory``, or a new PostgreSQL database."""
    if db_kind == "sqlite":
        yield f"sqlite:///{directory / (name + '.sqlite')}"
        return
    if not PG_URL:
        pytest.fail("PostgreSQL tests need BATTERYTRACE_TEST_POSTGRES_URL (the test script starts a server)")
    name = "bt_" + uuid.uuid4().hex[:12]
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base, _, _ = PG_URL.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def other_database_url(db_kind: str, tmp_path: Path) -> Iterator[str]:
    with database(db_kind, tmp_path, "other") as url:
        yield url


@pytest.fixture
def other_settings(other_database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=other_database_url,
        signing_key=tmp_path / "other-log.key",
        env="test",
        log_origin="other.batterytrace/log",
    )


@pytest.fixture
def other_registry(other_settings: Settings, clock: Any) -> Iterator[Registry]:
    reg = build_registry(other_settings)
    reg.clock = clock
    yield reg
    reg.engine.dispose()


@pytest.fixture
def other_client(other_registry: Registry) -> Iterator[TestClient]:
    with TestClient(create_app(other_registry), raise_server_exceptions=False) as c:
        yield c


def clone_enterprises(source: Actor, target: Registry, ids: list[str]) -> Caller:
    """The same enterprises (ids, roles, codes, networks, licences) in ``target``, whose first
    regulator is created here; returns that regulator."""
    _, key = target.bootstrap(f.uscc(), "Second registry office")
    regulator = target.authenticate(key)
    records = []
    for uid in ids:
        r = source.get(f"/api/v1/enterprises/{uid}")
        assert r.status_code == 200, r.text
        records.append(r.json())
    records.sort(key=lambda rec: rec["network_of"] is not None)
    for rec in records:
        target.create_enterprise(
            regulator,
            {k: rec[k] for k in ("id", "name", "roles", "region", "manufacturer_codes", "network_of")},
        )
        for lic in rec["licences"]:
            target.grant_licence(
                regulator,
                rec["id"],
                {k: lic[k] for k in ("scope", "valid_from", "valid_to", "region")},
            )
    return regulator


def cast_ids(cast: Cast) -> list[str]:
    return [
        a.id
        for a in (cast.maker, cast.automaker, cast.outlet, cast.dismantler, cast.repurposer, cast.recycler)
    ]


@dataclass
class World:
    """A registry with the usual cast and every kind of life told, shared by the standards tests
    (which only read it, or add batteries of their own)."""

    registry: Registry
    client: TestClient
    cast: Cast
    lives: support.Lives
    settings: Settings


@pytest.fixture(scope="session")
def world(db_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("world")
    with database(db_kind, directory, "world") as url:
        settings = Settings(
            database_url=url,
            signing_key=directory / "log.key",
            env="test",
            log_origin="test.batterytrace/log",
        )
        registry = build_registry(settings)
        registry.clock = Clock()
        with TestClient(create_app(registry), raise_server_exceptions=False) as client:
            uid = f.uscc()
            _, key = registry.bootstrap(uid, "National Battery Traceability Office")
            regulator = Actor(uid, key, client)
            maker = make_enterprise(regulator, ["battery_maker"], codes=["0AB"])
            automaker = make_enterprise(regulator, ["automaker"])
            outlet = make_enterprise(
                regulator, ["service_outlet"], network_of=automaker.id, licences=["collection"]
            )
            dismantler = make_enterprise(regulator, ["dismantler"], licences=["dismantling"])
            repurposer = make_enterprise(regulator, ["repurposer"], codes=["9RP"], licences=["second_life"])
            recycler = make_enterprise(regulator, ["recycler"], licences=["recycling"])
            stranger = make_enterprise(regulator, ["automaker"])
            unlicensed = make_enterprise(regulator, ["recycler"])
            cast = Cast(
                regulator, maker, automaker, outlet, dismantler, repurposer, recycler, stranger, unlicensed
            )
            lives = support.tell_lives(Story(cast))
            yield World(registry, client, cast, lives, settings)
        registry.engine.dispose()
