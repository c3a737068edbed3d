"""Read-only SQL the console needs beyond the API's services: the contact search."""

from __future__ import annotations

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions import tables
from chatsessions.contacts.store import ContactRow

__all__ = ["search_contacts"]

c = tables.contacts.c


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
