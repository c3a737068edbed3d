"""Read-only SQL the console needs beyond the API's services: the contact search and the
sessions behind an analytics bucket."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions import tables
from chatsessions.contacts.store import ContactRow

__all__ = ["search_contacts", "sessions_starting"]

c = tables.contacts.c
s = tables.sessions.c


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def search_contacts(
    conn: AsyncConnection, *, user_id: str, search: str | None, after: str | None, limit: int
) -> list[ContactRow]:
    """The tenant's contacts whose name, phone or email contains ``search`` (any case),
    by id, after the id ``after``; at most ``limit``."""
    stmt = select(tables.contacts).where(c.user_id == user_id)
    if search:
        pattern = _like(search)
        name = func.lower(func.coalesce(c.first_name, "") + " " + func.coalesce(c.last_name, ""))
        stmt = stmt.where(
            or_(
                name.like(pattern, escape="\\"),
                func.lower(func.coalesce(c.phone, "")).like(pattern, escape="\\"),
                func.lower(func.coalesce(c.email, "")).like(pattern, escape="\\"),
            )
        )
    if after:
        stmt = stmt.where(c.id > after)
    rows = (await conn.execute(stmt.order_by(c.id).limit(limit))).all()
    return [ContactRow.from_row(r) for r in rows]


async def sessions_starting(
    conn: AsyncConnection,
    *,
    user_id: str,
    from_ms: int,
    to_ms: int,
    channel: str | None,
    limit: int,
) -> Sequence[Sequence[Any]]:
    """Sessions that start in ``[from_ms, to_ms)`` (of contacts of ``channel``, any case),
    oldest first, as the flat rows of the listings (session columns then the contact's
    first name, last name, phone, email and channel)."""
    stmt = (
        select(
            s.id,
            s.contact_id,
            s.start_ms,
            s.last_ms,
            s.expires_ms,
            s.closed_at_ms,
            s.activity_ms,
            s.message_count,
            s.inbound_count,
            s.outbound_count,
            s.created_at_ms,
            c.first_name,
            c.last_name,
            c.phone,
            c.email,
            c.channel,
        )
        .select_from(
            tables.sessions.join(
                tables.contacts, and_(c.user_id == s.user_id, c.id == s.contact_id)
            )
        )
        .where(
            s.user_id == user_id,
            s.activity_ms >= from_ms,  # activity is never before the start: the listing index
            s.start_ms >= from_ms,
            s.start_ms < to_ms,
        )
        .order_by(s.start_ms, s.id)
        .limit(limit)
    )
    if channel:
        stmt = stmt.where(func.lower(c.channel) == channel.lower())
    return (await conn.execute(stmt)).all()
