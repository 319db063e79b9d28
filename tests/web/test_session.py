"""Signed sessions and form tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from batterytrace.domain.model import Enterprise, Role
from batterytrace.services.registry import Caller
from batterytrace.settings import Settings
from batterytrace.web.session import SessionSecretError, Signer, cookie_names, session_secret

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
CALLER = Caller(
    enterprise=Enterprise(
        id="91310115000000001U", name="R", roles=frozenset({Role.REGULATOR}), region="110000"
    ),
    key_id="a1b2c3d4e5f6",
)


def test_a_session_reads_back_until_it_ends() -> None:
    signer = Signer(b"k" * 32, hours=8)
    value = signer.issue(CALLER, NOW)
    session = signer.read(value, NOW + timedelta(hours=7, minutes=59))
    assert session is not None
    assert session.key_id == CALLER.key_id
    assert session.enterprise_id == CALLER.id
    assert signer.read(value, NOW + timedelta(hours=8)) is None
    assert signer.read(value, NOW - timedelta(seconds=1)) is None


@pytest.mark.parametrize(
    "mangle",
    [
        lambda v: v[:-1] + ("A" if v[-1] != "A" else "B"),
        lambda v: "x" + v,
        lambda v: v.replace(".", ""),
        lambda v: v + ".x",
        lambda v: "",
        lambda v: "!!!.???",
    ],
)
def test_an_altered_session_is_no_session(mangle: object) -> None:
    signer = Signer(b"k" * 32, hours=8)
    value = signer.issue(CALLER, NOW)
    assert signer.read(mangle(value), NOW) is None  # type: ignore[operator]


def test_each_session_has_one_spelling() -> None:
    signer = Signer(b"k" * 32, hours=8)
    for _ in range(20):  # the last character of the MAC carries 4 bits and 2 spare ones
        value = signer.issue(CALLER, NOW)
        last = value[-1]
        for other in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_":
            if other != last:
                assert signer.read(value[:-1] + other, NOW) is None


def test_another_secret_reads_nothing() -> None:
    value = Signer(b"k" * 32, hours=8).issue(CALLER, NOW)
    assert Signer(b"j" * 32, hours=8).read(value, NOW) is None


def test_form_tokens_are_bound_to_their_cookies() -> None:
    signer = Signer(b"k" * 32, hours=8)
    nonce = signer.new_nonce()
    token = signer.csrf_token(nonce, "session-a")
    assert signer.csrf_ok(nonce, "session-a", token)
    assert not signer.csrf_ok(nonce, "session-b", token)
    assert not signer.csrf_ok(signer.new_nonce(), "session-a", token)
    assert not signer.csrf_ok(nonce, "session-a", None)
    assert not signer.csrf_ok(None, "session-a", token)
    assert signer.csrf_ok(nonce, None, signer.csrf_token(nonce, None))


def test_production_needs_a_configured_secret() -> None:
    with pytest.raises(SessionSecretError, match="BATTERYTRACE_SESSION_SECRET"):
        session_secret(Settings(env="production"))
    configured = Settings(env="production", session_secret="s" * 40)
    assert session_secret(configured) == b"s" * 40
    development = session_secret(Settings(env="development"))
    assert len(development) == 32
    assert session_secret(Settings(env="test")) == development  # one per process


def test_secure_cookies_take_the_host_prefix() -> None:
    assert cookie_names(True) == ("__Host-bt_session", "__Host-bt_csrf")
    assert cookie_names(False) == ("bt_session", "bt_csrf")


def test_production_refuses_to_start_the_pages_without_a_secret(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from batterytrace.api.app import create_app
    from batterytrace.services.factory import build_registry
    from batterytrace.services.log import write_new_key

    write_new_key(tmp_path / "log.key", "test.batterytrace/log")
    common = {
        "database_url": f"sqlite:///{tmp_path / 'r.sqlite'}",
        "signing_key": tmp_path / "log.key",
        "env": "production",
        "log_origin": "test.batterytrace/log",
    }
    registry = build_registry(Settings(**common))
    with pytest.raises(SessionSecretError), TestClient(create_app(registry)):
        pass
    registry.engine.dispose()
    registry = build_registry(Settings(**common, session_secret="s" * 48))
    with TestClient(create_app(registry)) as client:
        assert client.get("/").status_code == 200
    registry.engine.dispose()
