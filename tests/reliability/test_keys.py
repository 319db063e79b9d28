"""API keys and the log's signing key: keys are random, shown once, stored hashed, revocable and
may expire; every use of a revoked or expired key is refused (never downgraded to a public
request) and recorded as a security event; the log's signing key can be rotated with old
checkpoints still verifiable and new ones signed by the new key only."""

from __future__ import annotations

import hashlib
import logging
import re
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import LargeBinary, String, Text, select
from sqlalchemy.types import JSON
from typer.testing import CliRunner

from batterytrace.cli.main import app as cli
from batterytrace.ledger.checkpoint import Verifier, open_checkpoint
from batterytrace.services.factory import build_registry
from batterytrace.services.registry import Registry
from batterytrace.services.verify import verify
from batterytrace.settings import Settings
from batterytrace.store import tables as T
from tests import factories as f
from tests.api.support import assert_problem, tree_size
from tests.conftest import Actor, Cast, Clock

KEY_FORMAT = re.compile(r"^bt_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


def key_id(actor: Actor) -> str:
    return actor.key.split("_")[1]


def security_rows(registry: Registry, key: str) -> list[dict[str, Any]]:
    with registry.engine.connect() as conn:
        rows = conn.execute(select(T.security_events).where(T.security_events.c.key_id == key))
        return [dict(r._mapping) for r in rows]


def every_stored_text(registry: Registry) -> str:
    """Every text, JSON and binary value of every table, as one string."""
    parts: list[str] = []
    with registry.engine.connect() as conn:
        for table in T.metadata.sorted_tables:
            columns = [c for c in table.columns if isinstance(c.type, String | Text | JSON | LargeBinary)]
            if not columns:
                continue
            for row in conn.execute(select(*columns)):
                parts += [v.hex() if isinstance(v, bytes) else str(v) for v in row if v is not None]
    return "\n".join(parts)


def uses(actor: Actor, regulator: Actor) -> list[Any]:
    """One of each kind of request that reads a key, made with ``actor``'s key. (Endpoints that read
    no key at all, such as the log's, ignore the header.)"""
    code = f.code()
    return [
        actor.get(f"/api/v1/batteries/{code}"),  # a public endpoint: a bad key is not read as no key
        actor.get(f"/api/v1/batteries/{code}/events"),
        actor.get("/api/v1/batteries"),
        actor.get(f"/api/v1/enterprises/{actor.id}"),
        actor.event(f.event("manufactured", code, 0, f.MANUFACTURED)),
        actor.post(
            "/api/v1/events/batch", {"events": [f.event("manufactured", f.code(), 0, f.MANUFACTURED)]}
        ),
        actor.post(f"/api/v1/enterprises/{actor.id}/keys", {}),
    ]


def test_keys_are_random_shown_once_and_stored_hashed(
    registry: Registry, cast: Cast, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    created = [
        cast.maker.post(f"/api/v1/enterprises/{cast.maker.id}/keys", {"label": f"k{i}"}) for i in range(12)
    ]
    assert all(r.status_code == 201 for r in created)
    keys = [r.json()["key"] for r in created]
    matches = [KEY_FORMAT.match(k) for k in keys]
    assert all(matches), keys
    assert len({m.group(1) for m in matches if m}) == len({m.group(2) for m in matches if m}) == len(keys)
    # shown once: the enterprise's record lists its keys without their secrets
    listed = cast.maker.get(f"/api/v1/enterprises/{cast.maker.id}")
    assert {k["id"] for k in listed.json()["keys"]} >= {m.group(1) for m in matches if m}
    stored = every_stored_text(registry)
    with registry.engine.connect() as conn:
        hashes = dict(conn.execute(select(T.api_keys.c.id, T.api_keys.c.secret_hash)).all())
    for m in matches:
        assert m is not None
        kid, secret = m.groups()
        assert secret not in listed.text
        assert secret not in stored, "a key's secret is stored in the clear"
        assert hashes[kid] == hashlib.sha256(secret.encode()).hexdigest()
    secrets_shown = [m.group(2) for m in matches if m]  # whole secrets: a secret may itself hold "_"
    assert not [r for r in caplog.records for x in secrets_shown if x in r.getMessage() + str(r.__dict__)]
    # each new key works
    other = Actor(cast.maker.id, keys[-1], cast.maker.client)
    assert other.get("/api/v1/batteries").status_code == 200


def test_every_use_of_a_revoked_key_is_refused_and_recorded(registry: Registry, cast: Cast) -> None:
    r = cast.regulator.post(f"/api/v1/enterprises/{cast.recycler.id}/keys", {"label": "to revoke"})
    doomed = Actor(cast.recycler.id, r.json()["key"], cast.recycler.client)
    assert doomed.get("/api/v1/batteries").status_code == 200
    # only the enterprise itself or a regulator may revoke it
    path = f"/api/v1/enterprises/{cast.recycler.id}/keys/{key_id(doomed)}"
    assert_problem(cast.maker.client.delete(path, headers=cast.maker.headers), 403, "permission.denied")
    size = tree_size(cast.regulator.client)
    r = cast.recycler.client.delete(path, headers=cast.recycler.headers)
    assert r.status_code == 200, r.text
    revoked_at = r.json()["revoked_at"]
    assert tree_size(cast.regulator.client) == size + 1  # the revocation is in the log
    entry = cast.regulator.client.get(f"/api/v1/log/entries/{size}").json()
    assert entry["entry"]["kind"] == "key_revoked"
    assert entry["entry"]["key"]["id"] == key_id(doomed)
    # revoking again changes nothing
    again = cast.regulator.client.delete(path, headers=cast.regulator.headers)
    assert again.json()["revoked_at"] == revoked_at
    assert tree_size(cast.regulator.client) == size + 1
    assert_problem(
        cast.regulator.client.delete(path[:-12] + "0" * 12, headers=cast.regulator.headers),
        404,
        "key.unknown",
    )

    before = len(security_rows(registry, key_id(doomed)))
    size = tree_size(cast.regulator.client)
    answers = uses(doomed, cast.regulator)
    for answer in answers:
        problem = assert_problem(answer, 401, "auth.invalid_key")
        assert "revoked" in problem["detail"]
        assert answer.headers["www-authenticate"].startswith("Bearer")
    assert tree_size(cast.regulator.client) == size, "a revoked key wrote something"
    rows = security_rows(registry, key_id(doomed))[before:]
    assert len(rows) == len(answers), "not every use of the revoked key was recorded"
    assert {(x["code"], x["enterprise_id"], x["detail"]) for x in rows} == {
        ("auth.invalid_key", cast.recycler.id, "revoked API key used")
    }
    # the enterprise's other keys still work
    assert cast.recycler.get("/api/v1/batteries").status_code == 200


def test_every_use_of_an_expired_key_is_refused_and_recorded(
    registry: Registry, cast: Cast, clock: Clock
) -> None:
    expires = (clock.now + timedelta(hours=1)).isoformat()
    r = cast.maker.post(
        f"/api/v1/enterprises/{cast.maker.id}/keys", {"label": "an hour", "expires_at": expires}
    )
    assert r.status_code == 201, r.text
    assert r.json()["expires_at"] == expires
    brief = Actor(cast.maker.id, r.json()["key"], cast.maker.client)
    assert brief.event(f.event("manufactured", f.code(), 0, f.MANUFACTURED)).status_code == 201
    clock.now += timedelta(hours=1)  # expiry is exclusive: at the stated instant the key is dead
    size = tree_size(cast.regulator.client)
    answers = uses(brief, cast.regulator)
    for answer in answers:
        problem = assert_problem(answer, 401, "auth.invalid_key")
        assert "expired" in problem["detail"]
    assert tree_size(cast.regulator.client) == size
    rows = security_rows(registry, key_id(brief))
    assert len(rows) == len(answers)
    assert {x["detail"] for x in rows} == {"expired API key used"}
    # a key whose expiry has no UTC offset is refused when created
    r = cast.maker.post(f"/api/v1/enterprises/{cast.maker.id}/keys", {"expires_at": "2030-01-01T00:00:00"})
    assert r.status_code == 422, r.text


def test_unknown_keys_and_wrong_secrets_are_refused_and_recorded(registry: Registry, cast: Cast) -> None:
    client = cast.maker.client
    kid = key_id(cast.maker)
    before = len(security_rows(registry, kid))
    for header in (
        f"Bearer bt_{kid}_" + "A" * 43,  # the right key id, a wrong secret
        f"Bearer {cast.maker.key}x",
    ):
        r = client.get("/api/v1/batteries", headers={"Authorization": header})
        assert_problem(r, 401, "auth.invalid_key")
    rows = security_rows(registry, kid)[before:]
    assert [(x["code"], x["detail"]) for x in rows] == [
        ("auth.invalid_key", "unknown API key or wrong secret")
    ] * 2
    malformed = client.get("/api/v1/batteries", headers={"Authorization": "Bearer bt_nothing"})
    assert_problem(malformed, 401, "auth.invalid_key")
    with registry.engine.connect() as conn:
        last = conn.execute(select(T.security_events).order_by(T.security_events.c.id.desc()).limit(1)).one()
    assert (last.code, last.key_id, last.detail) == ("auth.invalid_key", None, "malformed API key presented")
    assert cast.maker.get("/api/v1/batteries").status_code == 200


def test_the_signing_key_rotates_and_old_checkpoints_stay_verifiable(
    registry: Registry, cast: Cast, settings: Settings, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = cast.regulator.client
    assert cast.maker.event(f.event("manufactured", f.code(), 0, f.MANUFACTURED)).status_code == 201
    old_note = client.get("/api/v1/log/checkpoint").text
    old_key = client.get("/api/v1/log/key").text.strip()
    saved = tmp_path / "old-checkpoint.txt"
    saved.write_text(old_note)
    for name, value in (
        ("DATABASE_URL", settings.database_url),
        ("SIGNING_KEY", str(settings.signing_key)),
        ("LOG_ORIGIN", settings.log_origin),
        ("ENV", "test"),
    ):
        monkeypatch.setenv(f"BATTERYTRACE_{name}", value)
    new_path = tmp_path / "new.key"
    done = CliRunner().invoke(cli, ["log", "rotate-key", "--out", str(new_path)])
    assert done.exit_code == 0, done.output
    new_key = done.output.strip().splitlines()[-1]
    assert new_key != old_key
    # refuses to overwrite a key file
    assert CliRunner().invoke(cli, ["log", "rotate-key", "--out", str(new_path)]).exit_code != 0

    # the registry restarted with the new key signs new checkpoints with it alone
    monkeypatch.setenv("BATTERYTRACE_SIGNING_KEY", str(new_path))
    rotated = build_registry(settings.model_copy(update={"signing_key": new_path}))
    rotated.clock = registry.clock
    try:
        from fastapi.testclient import TestClient

        from batterytrace.api.app import create_app

        with TestClient(create_app(rotated), raise_server_exceptions=False) as after:
            assert after.get("/api/v1/log/key").text.strip() == new_key
            maker = Actor(cast.maker.id, cast.maker.key, after)
            assert maker.event(f.event("manufactured", f.code(), 5, f.MANUFACTURED)).status_code == 201
            new_note = after.get("/api/v1/log/checkpoint").text
        assert (
            open_checkpoint(new_note, [Verifier.from_key(new_key)]).size
            > open_checkpoint(old_note, [Verifier.from_key(old_key)]).size
        )
        with pytest.raises(ValueError):
            open_checkpoint(new_note, [Verifier.from_key(old_key)])
        # an auditor holding the old checkpoint and the old key still proves append-only
        done = CliRunner().invoke(cli, ["log", "consistency", "--checkpoint", str(saved)])
        assert done.exit_code == 0, done.output
        assert "consistent" in done.output
        report = verify(rotated.engine, rotated.log)
        assert report.ok, [str(x) for x in report.findings]
        done = CliRunner().invoke(cli, ["verify"])
        assert done.exit_code == 0, done.output
    finally:
        rotated.engine.dispose()
