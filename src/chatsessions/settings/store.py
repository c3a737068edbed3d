"""SQL of the settings domain. Every statement is scoped by ``user_id``."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions import tables

__all__ = ["reexpire_sessions_from"]

s = tables.sessions.c


async def reexpire_sessions_from(
    conn: AsyncConnection, user_id: str, *, from_ms: int, timeout_ms: int
) -> None:
    """Sessions whose last message is at or after ``from_ms`` expire ``timeout_ms`` after it.

    Only future-stamped messages (up to 5 minutes ahead of their receipt) can be there
    when a timeout change takes effect at ``from_ms``.
    """
    await conn.execute(
        update(tables.sessions)
        .where(s.user_id == user_id, s.last_ms >= from_ms)
        .values(expires_ms=s.last_ms + timeout_ms)
    )
