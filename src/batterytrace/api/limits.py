"""Limits that keep one client from starving the others, and answers for an overloaded store.

- **Body size**: ``BodyLimit`` refuses a body over ``max_body_bytes`` with 413 ``request.too_large``,
  counting bytes as they stream in: a declared ``Content-Length`` that is too large is refused
  before anything is read, and a chunked body is cut off as soon as it passes the limit.
- **Rate**: a token bucket per API key (``rate_limit_per_minute``; 0 turns it off). The bucket
  holds a minute's worth of requests and refills continuously; an empty bucket answers 429
  ``request.rate_limited`` with ``Retry-After`` in seconds. Buckets live in the worker process:
  with several workers each limits on its own (see ``docs/reliability.md``).
- **Requests in flight**: at most ``max_requests_in_flight_per_key`` requests of one key are
  processed at once (0: no limit); one more answers 429 with ``Retry-After: 1``. A client with many
  parallel connections thus cannot occupy every worker thread.
- **Busy store**: a database that stays locked past its busy timeout, a lock or statement timeout,
  a deadlock or an exhausted connection pool answers 503 ``server.busy`` with ``Retry-After``
  instead of a bare 500; nothing was recorded and the client retries with the same event ids.

Both per-key limits count only requests whose key authenticated, so knowing another
enterprise's key id is not enough to use up its allowance.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from batterytrace.api import problems
from batterytrace.domain import errors as E
from batterytrace.domain.errors import DomainError
from batterytrace.settings import Settings

#: Seconds a client is asked to wait when the store is busy.
BUSY_RETRY_AFTER = 2
_RELEASE = "limits.release"
_TRACKED = "limits.tracked"


class RateLimitedError(DomainError):
    """429 ``request.rate_limited``, answered with a ``Retry-After`` header."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(E.RATE_LIMITED, message, extra={"retry_after": retry_after})
        self.retry_after = retry_after


# --- body size --------------------------------------------------------------------------------------


class BodyLimit:
    """Refuses request bodies over ``limit`` bytes, counting as they stream in.

    When a body without a declared length passes the limit, the 413 is sent at once and the
    application sees the client as gone; whatever it tries to send afterwards is dropped.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    def _too_large(self) -> DomainError:
        return DomainError(
            E.REQUEST_TOO_LARGE,
            f"the request body is larger than {self.limit} bytes; split it into smaller batches",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await problems.problem_response(self._too_large(), Request(scope))(scope, receive, send)
            return
        seen = 0
        refused = False

        async def limited_receive() -> Message:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    refused = True
                    await problems.problem_response(self._too_large(), Request(scope))(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:
                await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not refused:
                raise


# --- per-key rate and concurrency ----------------------------------------------------------------


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """A token bucket per key: ``per_minute`` tokens at most, refilled at ``per_minute / 60`` a
    second. ``take`` returns 0 when a request may go ahead, else the whole seconds to wait."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> int:
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(self.capacity, now)
            bucket.tokens = min(self.capacity, bucket.tokens + max(0.0, now - bucket.stamp) * self.rate)
            bucket.stamp = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0
            return max(1, math.ceil((1.0 - bucket.tokens) / self.rate))

    def __len__(self) -> int:
        return len(self._buckets)


class InFlight:
    """Counts the requests of each key being processed; refuses one over ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str) -> Callable[[], None] | None:
        """A function that releases the slot, or None when the key has ``limit`` in flight."""
        with self._lock:
            count = self._counts.get(key, 0)
            if count >= self.limit:
                return None
            self._counts[key] = count + 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            with self._lock:
                left = self._counts.get(key, 1) - 1
                if left > 0:
                    self._counts[key] = left
                else:
                    self._counts.pop(key, None)

        return release

    def current(self, key: str) -> int:
        with self._lock:
            return self._counts.get(key, 0)


class ReleaseSlots:
    """Releases the in-flight slot a request took (in ``admit``) once its response is sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state[_TRACKED] = True
        try:
            await self.app(scope, receive, send)
        finally:
            release = state.pop(_RELEASE, None)
            if release is not None:
                release()


def admit(request: Request, key_id: str) -> None:
    """Charge one request of an authenticated key; raise 429 when it is over a limit."""
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is not None:
        wait = limiter.take(key_id)
        if wait:
            raise RateLimitedError(
                f"API key {key_id} is over its limit of {int(limiter.capacity)} requests a minute; "
                f"retry in {wait} s",
                wait,
            )
    in_flight: InFlight | None = getattr(request.app.state, "in_flight", None)
    if in_flight is None or not request.scope.get("state", {}).get(_TRACKED):
        return
    if request.scope["state"].get(_RELEASE) is not None:
        return  # the same request authenticated twice (several dependencies): one slot
    release = in_flight.acquire(key_id)
    if release is None:
        raise RateLimitedError(
            f"API key {key_id} already has {in_flight.limit} requests in progress; wait for one to finish",
            1,
        )
    request.scope["state"][_RELEASE] = release


# --- answers --------------------------------------------------------------------------------------


async def on_rate_limited(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RateLimitedError)
    return problems.problem_response(exc, request, headers={"Retry-After": str(exc.retry_after)})


#: Messages of a database that is busy rather than broken: SQLite past its busy timeout,
#: PostgreSQL lock and statement timeouts, deadlocks and serialization failures.
_BUSY_SQLITE = ("database is locked", "database is busy", "database table is locked")
_BUSY_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57014"})


def is_busy(exc: BaseException) -> bool:
    """Whether a database error means "busy, try again" rather than a fault."""
    if isinstance(exc, PoolTimeoutError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if sqlstate in _BUSY_SQLSTATES:
        return True
    text = str(orig).lower()
    return any(marker in text for marker in _BUSY_SQLITE)


def busy_handler(fallback: Callable[[Request, Exception], Any]) -> Callable[[Request, Exception], Any]:
    """An exception handler for database errors: 503 ``server.busy`` when the store is busy,
    else ``fallback`` (the application's 500)."""

    async def on_database_error(request: Request, exc: Exception) -> Any:
        if not is_busy(exc):
            return await fallback(request, exc)
        error = DomainError(
            E.STORE_BUSY,
            "the registry's database is busy; nothing was recorded by this request. "
            f"Retry in {BUSY_RETRY_AFTER} s with the same event ids",
        )
        return problems.problem_response(error, request, headers={"Retry-After": str(BUSY_RETRY_AFTER)})

    return on_database_error


def install(app: FastAPI, settings: Settings) -> None:
    """Add the body limit, the per-key limits and the busy-store answers to ``app``."""
    if settings.rate_limit_per_minute > 0:
        app.state.rate_limiter = RateLimiter(settings.rate_limit_per_minute)
    if settings.max_requests_in_flight_per_key > 0:
        app.state.in_flight = InFlight(settings.max_requests_in_flight_per_key)
    app.add_exception_handler(RateLimitedError, on_rate_limited)
    on_database_error = busy_handler(problems.on_unexpected)
    app.add_exception_handler(DBAPIError, on_database_error)
    app.add_exception_handler(PoolTimeoutError, on_database_error)
    app.add_middleware(ReleaseSlots)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
