"""The few reads an import needs besides the write path. Every statement is scoped by user."""

from __future__ import annotations

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions import tables

__all__ = ["contacts_named", "count_sessions"]


async def contacts_named(conn: AsyncConnection, user_id: str, name: str) -> list[str]:
    """Ids of the user's contacts whose name (first and last, trimmed) is ``name``."""
    c = tables.contacts.c
    first = name.strip().split(" ", 1)[0]
    rows = await conn.execute(
        select(c.id, c.first_name, c.last_name)
        .where(c.user_id == user_id, or_(c.first_name == name.strip(), c.first_name == first))
        .order_by(c.id)
    )
    wanted = " ".join(name.split())
    return [
        row.id
        for row in rows
        if " ".join(f"{row.first_name or ''} {row.last_name or ''}".split()) == wanted
    ]


async def count_sessions(
    conn: AsyncConnection, user_id: str, contact_id: str, *, start_ms: int, end_ms: int
) -> int:
    """How many of the contact's sessions overlap ``[start_ms, end_ms]``."""
    s = tables.sessions.c
    stmt = select(func.count()).where(
        s.user_id == user_id,
        s.contact_id == contact_id,
        s.start_ms <= end_ms,
        s.last_ms >= start_ms,
    )
    return int((await conn.execute(stmt)).scalar_one())
