"""Fixtures for the reliability tests: a registry and its cast shared by the tests of one module
(the authorization matrix and the fuzzers run hundreds of cases against one database)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from batterytrace.api.app import create_app
from batterytrace.services.factory import build_registry
from batterytrace.services.registry import Registry
from batterytrace.settings import Settings
from tests import factories as f
from tests.conftest import PG_URL, Actor, Cast, Clock, make_enterprise


@contextmanager
def fresh_database(db_kind: str, directory: Path, *, create: bool = True) -> Iterator[str]:
    """A new database: a SQLite file in ``directory``, or a new PostgreSQL database (with
    ``create=False`` only its name: the test creates it), dropped afterwards."""
    if db_kind == "sqlite":
        yield f"sqlite:///{directory / ('db-' + uuid.uuid4().hex[:8] + '.sqlite')}"
        return
    if not PG_URL:
        pytest.fail("PostgreSQL tests need BATTERYTRACE_TEST_POSTGRES_URL (the test script starts a server)")
    name = "bt_" + uuid.uuid4().hex[:12]
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    if create:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    base, _, _ = PG_URL.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module")
def module_database_url(db_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh database for one test module."""
    with fresh_database(db_kind, tmp_path_factory.mktemp("module-db")) as url:
        yield url


@pytest.fixture(scope="module")
def module_settings(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        database_url=module_database_url,
        signing_key=tmp_path_factory.mktemp("module-key") / "log.key",
        env="test",
        log_origin="test.batterytrace/log",
    )


@pytest.fixture(scope="module")
def module_registry(module_settings: Settings) -> Iterator[Registry]:
    registry = build_registry(module_settings)
    registry.clock = Clock()
    yield registry
    registry.engine.dispose()


@pytest.fixture(scope="module")
def module_client(module_registry: Registry) -> Iterator[TestClient]:
    with TestClient(create_app(module_registry), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def module_cast(module_registry: Registry, module_client: TestClient) -> Cast:
    uid = f.uscc()
    _, key = module_registry.bootstrap(uid, "National Battery Traceability Office")
    regulator = Actor(uid, key, module_client)
    maker = make_enterprise(regulator, ["battery_maker"], codes=["0AB"])
    automaker = make_enterprise(regulator, ["automaker"])
    outlet = make_enterprise(regulator, ["service_outlet"], network_of=automaker.id, licences=["collection"])
    dismantler = make_enterprise(regulator, ["dismantler"], licences=["dismantling"])
    repurposer = make_enterprise(regulator, ["repurposer"], codes=["9RP"], licences=["second_life"])
    recycler = make_enterprise(regulator, ["recycler"], licences=["recycling"])
    stranger = make_enterprise(regulator, ["automaker"])
    unlicensed = make_enterprise(regulator, ["recycler"])
    return Cast(regulator, maker, automaker, outlet, dismantler, repurposer, recycler, stranger, unlicensed)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The working directory of the registry processes a test starts."""
    return tmp_path
