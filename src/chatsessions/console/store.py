"""SQL the console needs beyond the API's services: its sign-ins, the contact search and
the sessions behind an analytics bucket."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions import tables
from chatsessions.contacts.store import ContactRow
from chatsessions.sessions.store import LISTED_COLUMNS

__all__ = [
    "delete_sign_in",
    "record_sign_in",
    "search_contacts",
    "sessions_starting",
    "signed_in_user",
]

c = tables.contacts.c
s = tables.sessions.c
si = tables.console_sign_ins.c
keys = tables.api_keys.c


async def record_sign_in(
    conn: AsyncConnection,
    *,
    token_hash: str,
    user_id: str,
    api_key_id: str,
    now_ms: int,
    expires_at_ms: int,
) -> None:
    """Store a console sign-in (and forget the expired ones)."""
    await conn.execute(delete(tables.console_sign_ins).where(si.expires_at_ms <= now_ms))
    await conn.execute(
        tables.console_sign_ins.insert().values(
            token_hash=token_hash,
            user_id=user_id,
            api_key_id=api_key_id,
            created_at_ms=now_ms,
            expires_at_ms=expires_at_ms,
        )
    )


async def signed_in_user(conn: AsyncConnection, *, token_hash: str, now_ms: int) -> str | None:
    """The user of a live sign-in (None: unknown, expired, or its key revoked)."""
    row = (
        await conn.execute(
            select(si.user_id)
            .select_from(tables.console_sign_ins.join(tables.api_keys, keys.id == si.api_key_id))
            .where(
                si.token_hash == token_hash,
                si.expires_at_ms > now_ms,
                keys.revoked_at_ms.is_(None),
            )
        )
    ).first()
    return None if row is None else str(row[0])


async def delete_sign_in(conn: AsyncConnection, *, token_hash: str) -> None:
    """Forget a sign-in (sign-out)."""
    await conn.execute(delete(tables.console_sign_ins).where(si.token_hash == token_hash))


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
        select(*LISTED_COLUMNS)
        .select_from(
            tables.sessions.join(
                tables.contacts, and_(c.user_id == s.user_id, c.id == s.contact_id)
            )
        )
        .where(
            s.user_id == user_id,  # a range of ix_sessions_start, in its order
            s.start_ms >= from_ms,
            s.start_ms < to_ms,
        )
        .order_by(s.start_ms, s.id)
        .limit(limit)
    )
    if channel:
        stmt = stmt.where(func.lower(c.channel) == channel.lower())
    return (await conn.execute(stmt)).all()
