"""Liveness and readiness: /readyz turns false when the database goes away, the schema falls behind
or the signing key is not the log's, and true again when that is put right."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from batterytrace.api.app import create_app
from batterytrace.ledger.checkpoint import Signer
from batterytrace.store.migrate import head_revision


def test_healthz_answers_with_a_request_id(client):
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}
    assert r.headers["x-request-id"]


def test_ops_routes_are_public_and_documented(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/healthz", "/readyz", "/metrics"):
        assert paths[path]["get"]["x-permission"] == "public:read", path


def test_ready_on_a_fresh_registry(client):
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ready"
    assert body["reasons"] == []
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["migrations"] == {"ok": True, "current": head_revision(), "head": head_revision()}
    assert body["checks"]["signing_key"]["ok"] is True


def _not_ready(client, check: str) -> dict:
    r = client.get("/readyz")
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["status"] == "not_ready"
    assert body["checks"][check]["ok"] is False
    assert any(reason.startswith(f"{check}: ") for reason in body["reasons"]), body
    return body


@contextmanager
def database_away(database_url: str) -> Iterator[None]:
    """Make the registry's database unreachable for the block: the SQLite file moves away; the
    PostgreSQL database refuses connections and its open ones are cut."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        path = Path(url.database)
        aside = path.with_name(path.name + ".away")
        path.rename(aside)
        try:
            yield
        finally:
            aside.rename(path)
        return
    name = url.database
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": name}
            )
        yield
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()


def test_readiness_follows_the_database_away_and_back(client, regulator, database_url):
    assert client.get("/readyz").status_code == 200
    with database_away(database_url):
        body = _not_ready(client, "database")
        assert "unreachable" in body["checks"]["database"]["reason"]
        # the dependent checks say they could not run, rather than claim anything
        assert body["checks"]["migrations"]["ok"] is False
        assert client.get("/healthz").status_code == 200  # alive, just not ready
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    # and the registry works again through the same engine
    assert regulator.get(f"/api/v1/enterprises/{regulator.id}").status_code == 200


def test_a_vanished_sqlite_file_is_not_recreated_by_the_check(tmp_path, settings, registry):
    url = make_url(settings.database_url)
    if url.get_backend_name() != "sqlite":
        return  # the PostgreSQL case is covered by the test above
    from fastapi.testclient import TestClient

    path = Path(url.database)
    with TestClient(create_app(registry)) as c, database_away(settings.database_url):
        _not_ready(c, "database")
        assert not path.exists(), "the readiness check created an empty database file"


def test_readiness_is_false_while_the_schema_is_behind(client, registry):
    head = head_revision()
    with registry.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0003'"))
    body = _not_ready(client, "migrations")
    assert body["checks"]["migrations"]["current"] == "0003"
    assert body["checks"]["migrations"]["head"] == head
    assert "batterytrace db upgrade" in body["checks"]["migrations"]["reason"]
    with registry.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :h"), {"h": head})
    assert client.get("/readyz").status_code == 200


def test_a_schema_newer_than_the_code_keeps_the_worker_ready(client, registry):
    # a later release upgraded the database; this worker still runs the previous code
    head = head_revision()
    with registry.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_later'"))
    try:
        r = client.get("/readyz")
        assert r.status_code == 200, r.text
        assert r.json()["checks"]["migrations"] == {
            "ok": True,
            "ahead": True,
            "current": "9999_later",
            "head": head,
        }
    finally:
        with registry.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :h"), {"h": head})


def test_readiness_is_false_with_a_signing_key_the_log_does_not_know(client, registry, regulator):
    # the log has entries (the regulator and its key), signed with the configured key
    original = registry.log.signer
    registry.log.signer = Signer.generate(original.name)
    try:
        body = _not_ready(client, "signing_key")
        assert "BATTERYTRACE_SIGNING_KEY" in body["checks"]["signing_key"]["reason"]
        assert "PRIVATE" not in str(body)
    finally:
        registry.log.signer = original
    assert client.get("/readyz").status_code == 200


def test_readiness_answer_does_not_disclose_the_database_address(client, database_url):
    with database_away(database_url):
        body = _not_ready(client, "database")
    url = make_url(database_url)
    text_ = str(body)
    assert url.database not in text_
    if url.host:
        assert url.host not in text_
