"""Console sign-in: an API key in a form buys a signed session cookie.

- The cookie carries a random token and its HMAC (the server's signing secret); the
  database keeps only the token's SHA-256, with the user, the API key used and the
  expiry (12 h). Signing out deletes the row, so a copied cookie dies with it; revoking
  the key ends every console session it opened.
- CSRF: every state-changing form carries a token derived from the session token (HMAC,
  nothing stored); the sign-in form, before any session exists, one derived from a
  random pre-sign-in cookie (double submit).
- Failed sign-ins count in the same failed-authentication throttle as the API's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions.auth import service as auth_service
from chatsessions.console import store
from chatsessions.db import Database

__all__ = [
    "COOKIE",
    "LIFETIME_MS",
    "PRE_COOKIE",
    "SignedIn",
    "cookie_value",
    "csrf_token",
    "end_sign_in",
    "new_pre_token",
    "resolve_cookie",
    "sign_in",
    "valid_csrf",
]

COOKIE = "cs_console"
PRE_COOKIE = "cs_pre"
LIFETIME_MS = 12 * 3_600_000


@dataclass(frozen=True)
class SignedIn:
    """The tenant of a console request, and what its forms must carry."""

    user_id: str
    token: str
    csrf: str


def _mac(secret: bytes, purpose: str, value: str) -> str:
    digest = hmac.new(secret, f"{purpose}:{value}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def cookie_value(secret: bytes, token: str) -> str:
    """``token.signature``."""
    return f"{token}.{_mac(secret, 'console', token)}"


def new_pre_token() -> str:
    """A random value for the pre-sign-in cookie."""
    return secrets.token_urlsafe(24)


def csrf_token(secret: bytes, purpose: str, token: str) -> str:
    """The CSRF token of a session (``purpose`` ``session``) or of a sign-in form."""
    return _mac(secret, f"csrf-{purpose}", token)


def valid_csrf(secret: bytes, purpose: str, token: str, given: str | None) -> bool:
    """Whether a form's CSRF field matches, compared in constant time."""
    return given is not None and hmac.compare_digest(csrf_token(secret, purpose, token), given)


async def sign_in(db: Database, *, api_key: str, now_ms: int) -> str:
    """Check the key (:class:`~chatsessions.errors.Unauthorized` when it is not valid) and
    record a console session; returns its token."""
    caller = await auth_service.resolve_credentials(
        db, auth_service.Credentials((api_key.strip(),), ())
    )
    assert caller.key_id is not None  # an API key names its id
    token = secrets.token_urlsafe(32)

    key_id = caller.key_id

    async def work(conn: AsyncConnection) -> None:
        await store.record_sign_in(
            conn,
            token_hash=_hash(token),
            user_id=caller.user_id,
            api_key_id=key_id,
            now_ms=now_ms,
            expires_at_ms=now_ms + LIFETIME_MS,
        )

    await db.run_write(work)
    return token


async def resolve_cookie(
    conn: AsyncConnection, *, secret: bytes, cookie: str | None, now_ms: int
) -> SignedIn | None:
    """The signed-in tenant of a cookie, or None (absent, forged, expired, signed out, or
    its key revoked)."""
    if not cookie or "." not in cookie:
        return None
    token, _, signature = cookie.partition(".")
    if not hmac.compare_digest(_mac(secret, "console", token), signature):
        return None
    user_id = await store.signed_in_user(conn, token_hash=_hash(token), now_ms=now_ms)
    if user_id is None:
        return None
    return SignedIn(user_id, token, csrf_token(secret, "session", token))


async def end_sign_in(db: Database, *, token: str) -> None:
    """Sign out: the session's record is deleted."""

    async def work(conn: AsyncConnection) -> None:
        await store.delete_sign_in(conn, token_hash=_hash(token))

    await db.run_write(work)
