"""The authentication dependency (docs/contract.md#authentication) and the failed-authentication throttle."""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions.auth.service import Caller, Credentials, resolve_credentials
from chatsessions.config import Settings
from chatsessions.db import Database
from chatsessions.errors import RateLimited, Unauthorized
from chatsessions.ratelimit import RateLimiter

__all__ = [
    "AuthFailureThrottle",
    "CurrentUser",
    "authenticate",
    "authenticated_read",
    "client_address",
]


class AuthFailureThrottle:
    """Counts failed authentications per client address over a sliding minute.

    After ``limit`` failures within 60 s the address gets 429 (with ``Retry-After``) for
    every request until the oldest failure leaves the window.
    """

    def __init__(self, limit: int, window_s: float = 60.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _trim(self, q: deque[float], now: float) -> None:
        while q and q[0] <= now - self.window_s:
            q.popleft()

    def retry_after(self, address: str) -> int | None:
        """Seconds until the address may try again, or None when it is not throttled."""
        now = time.monotonic()
        with self._lock:
            q = self._failures.get(address)
            if not q:
                return None
            self._trim(q, now)
            if len(q) < self.limit:
                if not q:
                    del self._failures[address]
                return None
            return int(q[0] + self.window_s - now) + 1

    def record_failure(self, address: str) -> None:
        """Count one failed authentication."""
        now = time.monotonic()
        with self._lock:
            q = self._failures.setdefault(address, deque())
            self._trim(q, now)
            q.append(now)
            if len(self._failures) > 100_000:  # bound memory under address spraying
                self._failures.pop(next(iter(self._failures)))


def client_address(request: Request, settings: Settings) -> str:
    """The client's address; ``X-Forwarded-For`` counts only from a trusted proxy."""
    peer = request.client.host if request.client else "unknown"
    if not settings.trusted_proxies:
        return peer
    networks = [ipaddress.ip_network(p, strict=False) for p in settings.trusted_proxies]

    def trusted(addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in net for net in networks)

    if not trusted(peer):
        return peer
    forwarded = request.headers.get("x-forwarded-for", "")
    hops = [h.strip() for h in forwarded.split(",") if h.strip()]
    # The right-most address that is not one of our proxies is the client.
    for hop in reversed(hops):
        if not trusted(hop):
            return hop
    return hops[0] if hops else peer


def _credentials(request: Request, settings: Settings) -> Credentials:
    keys: list[str] = []
    users: list[str] = []
    for value in request.query_params.getlist("apiKey"):
        if value != "":
            keys.append(value)
    header_key = request.headers.get("x-api-key")
    if header_key is not None and header_key.strip() != "":
        keys.append(header_key.strip())
    authorization = request.headers.get("authorization")
    if authorization is not None and authorization.strip() != "":
        scheme, _, token = authorization.strip().partition(" ")
        # A non-Bearer Authorization header is a credential that is not valid.
        keys.append(token.strip() if scheme.lower() == "bearer" else "")
    for value in request.query_params.getlist("userId"):
        if value != "" and settings.allow_user_id_auth:
            users.append(value)
    return Credentials(tuple(keys), tuple(users))


async def authenticate(request: Request, conn: AsyncConnection | None = None) -> Caller:
    """Resolve the request's credentials to a caller, or 401 (429 when throttled).

    ``conn``: a connection from ``db.read()`` to look the credentials up on (by default
    one of their own; see :func:`authenticated_read`).
    """
    state = request.app.state
    settings: Settings = state.settings
    throttle: AuthFailureThrottle = state.auth_throttle
    address = client_address(request, settings)
    retry = throttle.retry_after(address)
    if retry is not None:
        raise RateLimited(retry, "too many failed authentication attempts")
    try:
        caller = await resolve_credentials(state.db, _credentials(request, settings), conn=conn)
    except Unauthorized:
        throttle.record_failure(address)
        raise
    limiter = state.rate_limiter
    if limiter is not None:
        await limiter.check(caller.rate_limit_bucket, now_ms=state.clock())
    request.state.user_id = caller.user_id
    return caller


async def _authenticate_dependency(request: Request) -> Caller:
    return await authenticate(request)


CurrentUser = Annotated[Caller, Depends(_authenticate_dependency)]


@asynccontextmanager
async def authenticated_read(
    request: Request, *, probes: bool = False
) -> AsyncIterator[tuple[Caller, AsyncConnection]]:
    """Authenticate the request and give a read connection (``db.read()``) for its work.

    One pool checkout serves both (a checkout costs about as much CPU as a statement),
    unless the rate limiter counts in the database: its write takes a connection of its
    own, and holding a second one meanwhile could exhaust the pool under load.
    ``probes``: a connection of the probe pool (``db.read(probes=True)``; the lookup of
    the credentials is a key probe too).
    """
    state = request.app.state
    db: Database = state.db
    limiter: RateLimiter | None = state.rate_limiter
    if limiter is not None and limiter.uses_database:
        caller = await authenticate(request)
        async with db.read(probes=probes) as conn:
            yield caller, conn
        return
    async with db.read(probes=probes) as conn:
        yield await authenticate(request, conn), conn
