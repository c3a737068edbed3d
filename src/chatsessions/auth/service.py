"""Users, API keys and authentication (SPEC §2)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions import ids
from chatsessions.auth import store
from chatsessions.db import Database
from chatsessions.errors import Unauthorized
from chatsessions.tables import MIN_TIME_MS

__all__ = [
    "Caller",
    "Credentials",
    "NewUser",
    "create_key",
    "create_user",
    "hash_key",
    "resolve_credentials",
    "revoke_key",
]


@dataclass(frozen=True)
class Caller:
    """The authenticated tenant of a request, and the key it used (if any)."""

    user_id: str
    key_id: str | None = None

    @property
    def rate_limit_bucket(self) -> str:
        """What the per-key request limit counts: the key, or the user for ``userId`` auth."""
        return f"k:{self.key_id}" if self.key_id else f"u:{self.user_id}"


@dataclass(frozen=True)
class NewUser:
    """A created user with its first key (shown once)."""

    user_id: str
    api_key: str


@dataclass(frozen=True)
class Credentials:
    """Every credential a request supplied; each one given must be valid."""

    api_keys: tuple[str, ...]
    user_ids: tuple[str, ...]

    @property
    def empty(self) -> bool:
        """True when the request supplied nothing."""
        return not self.api_keys and not self.user_ids


def hash_key(api_key: str) -> str:
    """SHA-256 (hex) of a key: keys are high-entropy, so no slow hash is needed."""
    return hashlib.sha256(api_key.encode()).hexdigest()


async def create_user(
    conn: AsyncConnection, *, name: str, timeout_minutes: int, now_ms: int
) -> NewUser:
    """Create a user with its timeout and a first API key."""
    user_id = ids.new_id()
    await store.insert_user(conn, user_id=user_id, name=name, now_ms=now_ms)
    await store.insert_timeout_change(
        conn, user_id=user_id, effective_from_ms=MIN_TIME_MS, timeout_ms=timeout_minutes * 60_000
    )
    api_key = await create_key(conn, user_id=user_id, now_ms=now_ms)
    return NewUser(user_id, api_key)


async def create_key(conn: AsyncConnection, *, user_id: str, now_ms: int) -> str:
    """Create and return a new key for the user; only its hash is stored."""
    api_key = ids.new_api_key()
    await store.insert_key(
        conn,
        key_id=ids.new_id(),
        user_id=user_id,
        key_hash=hash_key(api_key),
        prefix=api_key[:8],
        now_ms=now_ms,
    )
    return api_key


async def revoke_key(conn: AsyncConnection, *, api_key_or_id: str, now_ms: int) -> bool:
    """Revoke a key given either the key itself or its id; True when one was revoked."""
    if api_key_or_id.startswith("csk_"):
        n = await store.revoke_key(conn, key_hash=hash_key(api_key_or_id), key_id=None, now_ms=now_ms)
    else:
        n = await store.revoke_key(conn, key_hash=None, key_id=api_key_or_id, now_ms=now_ms)
    return n > 0


async def resolve_credentials(
    db: Database, creds: Credentials, *, conn: AsyncConnection | None = None
) -> Caller:
    """Return the caller named by every credential, or raise :class:`Unauthorized`.

    Each credential must be valid on its own and all must name the same user; an invalid
    one never falls through to another. ``conn``: a connection from ``db.read()`` to look
    the credentials up on (by default one of their own).
    """
    if creds.empty:
        raise Unauthorized()
    if conn is None:
        async with db.read() as own:
            return await _resolve(own, creds)
    return await _resolve(conn, creds)


async def _resolve(conn: AsyncConnection, creds: Credentials) -> Caller:
    users: set[str] = set()
    key_ids: list[str] = []
    for key in creds.api_keys:
        if not ids.API_KEY_RE.match(key):
            raise Unauthorized()
        # The lookup is by the hash's unique index: the comparison that decides is the
        # database's equality on a digest the caller cannot steer, i.e. constant time
        # with respect to the secret key.
        row = await store.find_key_by_hash(conn, hash_key(key))
        if row is None or row.revoked_at_ms is not None:
            raise Unauthorized()
        users.add(row.user_id)
        key_ids.append(row.key_id)
    for user_id in creds.user_ids:
        if not ids.is_id(user_id) or not await store.user_exists(conn, user_id):
            raise Unauthorized()
        users.add(user_id)
    if len(users) != 1:
        raise Unauthorized()
    return Caller(users.pop(), key_ids[0] if key_ids else None)
