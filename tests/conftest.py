"""Shared fixtures: a registry on SQLite (or on PostgreSQL when BATTERYTRACE_TEST_POSTGRES_URL is
set), an in-process API client, and a small cast of enterprises."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from sqlalchemy import create_engine, text

from batterytrace.api.app import create_app
from batterytrace.services.factory import build_registry
from batterytrace.services.registry import Registry
from batterytrace.settings import Settings
from tests import factories as f

# Shared machines are noisy: examples are judged on their result, never on their speed.
hypothesis_settings.register_profile(
    "batterytrace", deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
hypothesis_settings.load_profile("batterytrace")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PG_URL = os.environ.get("BATTERYTRACE_TEST_POSTGRES_URL")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db",
        action="store",
        default="sqlite",
        choices=("sqlite", "postgresql", "both"),
        help="database(s) for storage and API tests",
    )


def _db_params(config: pytest.Config) -> list[str]:
    choice = config.getoption("--db")
    if choice == "both":
        return ["sqlite", "postgresql"]
    return [choice]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "db_kind" in metafunc.fixturenames:
        metafunc.parametrize("db_kind", _db_params(metafunc.config), scope="session")


@pytest.fixture
def database_url(db_kind: str, tmp_path: Path) -> Iterator[str]:
    if db_kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.sqlite'}"
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
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        signing_key=tmp_path / "log.key",
        env="test",
        log_origin="test.batterytrace/log",
    )


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def registry(settings: Settings, clock: Clock) -> Iterator[Registry]:
    reg = build_registry(settings)
    reg.clock = clock
    yield reg
    reg.engine.dispose()


@pytest.fixture
def client(registry: Registry) -> Iterator[TestClient]:
    with TestClient(create_app(registry), raise_server_exceptions=False) as c:
        yield c


@dataclass
class Actor:
    id: str
    key: str
    client: TestClient

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def post(self, path: str, body: Any) -> Any:
        return self.client.post(path, json=body, headers=self.headers)

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(path, params=params, headers=self.headers)

    def event(self, body: dict[str, Any]) -> Any:
        return self.post("/api/v1/events", body)


@dataclass
class Cast:
    regulator: Actor
    maker: Actor
    automaker: Actor
    outlet: Actor
    dismantler: Actor
    repurposer: Actor
    recycler: Actor
    stranger: Actor  # an automaker with no part in the batteries
    unlicensed: Actor  # a recycler without a licence


def make_enterprise(
    regulator: Actor,
    roles: list[str],
    *,
    codes: list[str] | None = None,
    network_of: str | None = None,
    licences: list[str] = (),
    region: str = "310115",
) -> Actor:
    uid = f.uscc()
    body = {
        "id": uid,
        "name": f"Enterprise {uid[-6:]}",
        "roles": roles,
        "region": region,
        "manufacturer_codes": codes or [],
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
    return Actor(uid, r.json()["key"], regulator.client)


@pytest.fixture
def regulator(registry: Registry, client: TestClient) -> Actor:
    uid = f.uscc()
    _, key = registry.bootstrap(uid, "National Battery Traceability Office")
    return Actor(uid, key, client)


@pytest.fixture
def cast(regulator: Actor) -> Cast:
    maker = make_enterprise(regulator, ["battery_maker"], codes=["0AB"])
    automaker = make_enterprise(regulator, ["automaker"])
    outlet = make_enterprise(regulator, ["service_outlet"], network_of=automaker.id, licences=["collection"])
    dismantler = make_enterprise(regulator, ["dismantler"], licences=["dismantling"])
    repurposer = make_enterprise(regulator, ["repurposer"], codes=["9RP"], licences=["second_life"])
    recycler = make_enterprise(regulator, ["recycler"], licences=["recycling"])
    stranger = make_enterprise(regulator, ["automaker"])
    unlicensed = make_enterprise(regulator, ["recycler"])
    return Cast(regulator, maker, automaker, outlet, dismantler, repurposer, recycler, stranger, unlicensed)
