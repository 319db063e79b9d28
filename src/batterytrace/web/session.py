"""Web sessions and form tokens, signed with the ``session_secret`` setting.

Logging in with an API key gives a session cookie that holds only the key's id, the enterprise,
and the session's start and end, signed with HMAC-SHA256; the key itself is never stored in the
browser or on the server. Every request with a session checks the key again (not revoked, not
expired, still the enterprise's), so revoking a key ends its sessions at once.

Forms carry a CSRF token: the HMAC of a random value kept in its own cookie, bound to the
session cookie, so a token is good only with the cookies it was made for. Both cookies are
HttpOnly and SameSite; when the registry is served over https they are ``Secure`` and take the
``__Host-`` prefix, which keeps sibling hosts from planting them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import select

from batterytrace.services.registry import Caller, Registry
from batterytrace.settings import Settings
from batterytrace.store import repo
from batterytrace.store import tables as T
from batterytrace.store.db import read_transaction

SESSION_COOKIE = "bt_session"
CSRF_COOKIE = "bt_csrf"
CSRF_FIELD = "csrf_token"


class SessionSecretError(RuntimeError):
    """Production without ``BATTERYTRACE_SESSION_SECRET``."""


@cache
def _process_secret() -> bytes:
    return secrets.token_bytes(32)


def session_secret(settings: Settings) -> bytes:
    """The configured secret; in development and tests one made for this process (sessions then
    end when it stops). Production must configure one."""
    if settings.session_secret is not None:
        return settings.session_secret.get_secret_value().encode("utf-8")
    if settings.env == "production":
        raise SessionSecretError(
            "BATTERYTRACE_SESSION_SECRET is not set: in production the web sessions need a secret of "
            "32 characters or more, the same for every worker (e.g. `python -c 'import secrets; "
            "print(secrets.token_urlsafe(48))'`)"
        )
    return _process_secret()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    """Strict: only the canonical unpadded form decodes (no second spelling of the same bytes)."""
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(raw) != text:
        raise ValueError("not canonical base64url")
    return raw


@dataclass(frozen=True)
class Session:
    key_id: str
    enterprise_id: str
    issued: int  # Unix seconds
    expires: int


class Signer:
    """Signs sessions and form tokens with keys derived from one secret."""

    def __init__(self, secret: bytes, hours: int) -> None:
        self._session_key = hmac.new(secret, b"batterytrace web session", hashlib.sha256).digest()
        self._csrf_key = hmac.new(secret, b"batterytrace web csrf", hashlib.sha256).digest()
        self.lifetime = timedelta(hours=hours)

    # --- sessions -------------------------------------------------------------------------------

    def issue(self, caller: Caller, now: datetime) -> str:
        body = {
            "k": caller.key_id,
            "e": caller.id,
            "i": int(now.timestamp()),
            "x": int((now + self.lifetime).timestamp()),
            "n": secrets.token_hex(8),
        }
        payload = json.dumps(body, separators=(",", ":"), sort_keys=True).encode("utf-8")
        mac = hmac.new(self._session_key, payload, hashlib.sha256).digest()
        return f"{_b64(payload)}.{_b64(mac)}"

    def read(self, value: str | None, now: datetime) -> Session | None:
        """The session in a cookie value, or None if it is missing, forged or over."""
        if not value or value.count(".") != 1 or len(value) > 1000:
            return None
        payload_b64, mac_b64 = value.split(".")
        try:
            payload, mac = _unb64(payload_b64), _unb64(mac_b64)
        except (ValueError, binascii.Error):
            return None
        expected = hmac.new(self._session_key, payload, hashlib.sha256).digest()
        if not hmac.compare_digest(mac, expected):
            return None
        try:
            body = json.loads(payload)
            session = Session(
                key_id=str(body["k"]),
                enterprise_id=str(body["e"]),
                issued=int(body["i"]),
                expires=int(body["x"]),
            )
        except (ValueError, KeyError, TypeError):
            return None
        if not session.issued <= now.timestamp() < session.expires:
            return None
        return session

    # --- form tokens ------------------------------------------------------------------------------

    @staticmethod
    def new_nonce() -> str:
        return secrets.token_urlsafe(18)

    def csrf_token(self, nonce: str, session_cookie: str | None) -> str:
        message = f"{nonce}\0{session_cookie or ''}".encode()
        return _b64(hmac.new(self._csrf_key, message, hashlib.sha256).digest())

    def csrf_ok(self, nonce: str | None, session_cookie: str | None, token: str | None) -> bool:
        if not nonce or not token:
            return False
        return hmac.compare_digest(self.csrf_token(nonce, session_cookie), token)


def cookie_names(secure: bool) -> tuple[str, str]:
    """(session cookie, CSRF cookie); ``__Host-`` names when served over https."""
    if secure:
        return f"__Host-{SESSION_COOKIE}", f"__Host-{CSRF_COOKIE}"
    return SESSION_COOKIE, CSRF_COOKIE


def caller_for(registry: Registry, session: Session, now: datetime) -> Caller | None:
    """The enterprise behind a session, if its key is still good."""
    with read_transaction(registry.engine) as conn:
        row = conn.execute(select(T.api_keys).where(T.api_keys.c.id == session.key_id)).first()
        if row is None or row.enterprise_id != session.enterprise_id or row.revoked_at is not None:
            return None
        if row.expires_at is not None and row.expires_at <= now:
            return None
        enterprise = repo.load_enterprise(conn, row.enterprise_id)
    if enterprise is None:
        return None
    return Caller(enterprise=enterprise, key_id=session.key_id)
