"""SQL for users, API keys and the session timeout history."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions import tables
from chatsessions.db import fetch_rows

__all__ = [
    "ApiKeyRow",
    "find_key_by_hash",
    "insert_key",
    "insert_timeout_change",
    "insert_user",
    "load_timeout_changes",
    "revoke_key",
    "user_exists",
]


@dataclass(frozen=True)
class ApiKeyRow:
    """A stored key: never the key itself, only its SHA-256."""

    key_id: str
    user_id: str
    revoked_at_ms: int | None


async def insert_user(conn: AsyncConnection, *, user_id: str, name: str, now_ms: int) -> None:
    """Store a new user."""
    await conn.execute(
        tables.users.insert().values(id=user_id, name=name, created_at_ms=now_ms)
    )


async def user_exists(conn: AsyncConnection, user_id: str) -> bool:
    """True when the user id is known."""
    row = await conn.execute(select(tables.users.c.id).where(tables.users.c.id == user_id))
    return row.first() is not None


async def insert_key(
    conn: AsyncConnection, *, key_id: str, user_id: str, key_hash: str, prefix: str, now_ms: int
) -> None:
    """Store a key's hash."""
    await conn.execute(
        tables.api_keys.insert().values(
            id=key_id, user_id=user_id, key_hash=key_hash, prefix=prefix, created_at_ms=now_ms
        )
    )


# Built once: every request runs it, and a pre-built statement skips SQLAlchemy's
# construction and cache-key work on each call.
_KEY_BY_HASH = select(
    tables.api_keys.c.id, tables.api_keys.c.user_id, tables.api_keys.c.revoked_at_ms
).where(tables.api_keys.c.key_hash == bindparam("key_hash"))


async def find_key_by_hash(conn: AsyncConnection, key_hash: str) -> ApiKeyRow | None:
    """The key with this hash, revoked or not."""
    rows = await fetch_rows(conn, _KEY_BY_HASH, {"key_hash": key_hash})
    return ApiKeyRow(rows[0][0], rows[0][1], rows[0][2]) if rows else None


async def revoke_key(conn: AsyncConnection, *, key_hash: str | None, key_id: str | None, now_ms: int) -> int:
    """Mark a key revoked (by its hash or id); returns how many keys changed."""
    k = tables.api_keys.c
    cond = k.key_hash == key_hash if key_hash is not None else k.id == key_id
    result = await conn.execute(
        update(tables.api_keys).where(cond, k.revoked_at_ms.is_(None)).values(revoked_at_ms=now_ms)
    )
    return int(result.rowcount or 0)


async def insert_timeout_change(
    conn: AsyncConnection, *, user_id: str, effective_from_ms: int, timeout_ms: int
) -> None:
    """Record a timeout value in force from ``effective_from_ms`` (replacing one at that ms)."""
    t = tables.timeout_changes
    await conn.execute(
        t.delete().where(t.c.user_id == user_id, t.c.effective_from_ms == effective_from_ms)
    )
    await conn.execute(
        t.insert().values(
            user_id=user_id, effective_from_ms=effective_from_ms, timeout_ms=timeout_ms
        )
    )


async def load_timeout_changes(conn: AsyncConnection, user_id: str) -> list[tuple[int, int]]:
    """The user's timeout history, oldest first."""
    t = tables.timeout_changes.c
    rows = await conn.execute(
        select(t.effective_from_ms, t.timeout_ms)
        .where(t.user_id == user_id)
        .order_by(t.effective_from_ms)
    )
    return [(r.effective_from_ms, r.timeout_ms) for r in rows]
