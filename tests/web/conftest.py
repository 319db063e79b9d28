"""Fixtures for the web pages: a registry filled with the demo data set, served by a real uvicorn
server on a free local port, and one headless Chromium (Debian's package, driven by Playwright)
per test session."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy import create_engine, text

from batterytrace.api.app import create_app
from batterytrace.services.factory import build_registry
from batterytrace.services.registry import Registry
from batterytrace.settings import Settings
from batterytrace.simulate.demo import DemoResult, load_demo
from tests.conftest import PG_URL, Clock

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "artifacts" / "screenshots"
CHROMIUM = os.environ.get("BATTERYTRACE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def module_database_url(db_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh database for one test module (SQLite file or PostgreSQL database)."""
    if db_kind == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('web') / 'registry.sqlite'}"
        return
    if not PG_URL:
        pytest.fail("PostgreSQL tests need BATTERYTRACE_TEST_POSTGRES_URL (the test script starts a server)")
    name = "bt_web_" + uuid.uuid4().hex[:12]
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


@dataclass
class LiveSite:
    """A running registry with the demo data: its URL, the registry, and the demo's keys and
    sample batteries (one per story: in service, recycled, missing …)."""

    url: str
    registry: Registry
    demo: DemoResult
    extra: dict[str, Any] = field(default_factory=dict)

    def key(self, name: str) -> str:
        return self.demo.keys[name][2]

    def enterprise_id(self, name: str) -> str:
        return self.demo.keys[name][0]


@pytest.fixture(scope="module")
def live_site(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSite]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = Settings(
        database_url=module_database_url,
        signing_key=tmp_path_factory.mktemp("key") / "log.key",
        env="test",
        log_origin="test.batterytrace/log",
        base_url=url,
    )
    registry = build_registry(settings)
    registry.clock = Clock()
    demo = load_demo(registry, batteries=30)
    config = uvicorn.Config(
        create_app(registry),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        ws="none",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-web-tests", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield LiveSite(url=url, registry=registry, demo=demo)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        registry.engine.dispose()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the whole session (each test opens its own context)."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"no Chromium at {CHROMIUM}: install Debian's chromium package or set BATTERYTRACE_CHROMIUM"
        )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class Tab:
    """A browser page that records console errors and failed requests, and saves screenshots."""

    def __init__(self, context: Any, name: str) -> None:
        self.context = context
        self.page = context.new_page()
        self.name = name
        self.errors: list[str] = []
        self.allowed_statuses: set[int] = set()
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        self.page.on("requestfailed", self._request_failed)

    def _request_failed(self, request: Any) -> None:
        # A request the browser cancels because the page moved on (a favicon still loading when a
        # form is submitted) is not a fault of the page; a refused, reset or empty answer is.
        if request.failure == "net::ERR_ABORTED":
            return
        self.errors.append(f"request failed: {request.url} ({request.failure})")

    def _console(self, message: Any) -> None:
        if message.type != "error":
            return
        text = message.text
        # A page answered on purpose with an error status (e.g. the 404 of an unknown code) is
        # reported by Chromium as a failed resource; anything else is a real error.
        if any(f"status of {status}" in text for status in self.allowed_statuses):
            return
        self.errors.append(text)

    def screenshot(self, step: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{self.name}-{step}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def tab(browser: Any, request: pytest.FixtureRequest, db_kind: str) -> Iterator[Tab]:
    """A fresh browser context (no cookies) with one page; fails the test on console errors."""
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    name = f"{request.node.originalname}-{db_kind}"
    opened = Tab(context, name)
    try:
        yield opened
        assert not opened.errors, f"browser console errors: {opened.errors}"
    finally:
        context.close()
