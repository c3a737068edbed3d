"""SQL behind ``GET /v1/chat-exports/recent``. Every statement is scoped by ``user_id``.

Two statements serve one export, whatever the number of contacts on the page: the page of
contacts (an aggregate over the window's messages) and the messages of all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions import tables
from chatsessions.sessions.store import MESSAGE_COLUMNS, MessageRow, message_from_row

__all__ = ["FILTERS", "ExportContact", "contacts_page", "messages_of"]

m = tables.messages.c
ct = tables.contacts.c

FILTERS = ("all", "media", "tool_use", "text")
"""``all``; ``media`` (type media or a media URL); ``tool_use``; ``text`` (no media URL)."""


def _filter_condition(kind: str) -> Any:
    kind_of = func.lower(m.type)
    if kind == "media":
        return or_(kind_of == "media", m.media_url.is_not(None))
    if kind == "tool_use":
        return kind_of == "tool_use"
    if kind == "text":
        return and_(kind_of == "text", m.media_url.is_(None))
    if kind == "all":
        return None
    raise ValueError(f"unknown filter {kind!r}")


def _window(user_id: str, since_ms: int, kind: str) -> list[Any]:
    # EXPORT_WINDOW: what lets PostgreSQL read the window through the tenant's time index.
    conds: list[Any] = [m.user_id == user_id, m.ts_ms >= since_ms, tables.EXPORT_WINDOW]
    extra = _filter_condition(kind)
    if extra is not None:
        conds.append(extra)
    return conds


@dataclass(frozen=True)
class ExportContact:
    """A contact with matching messages in the window."""

    id: str
    first_name: str | None
    last_name: str | None
    phone: str | None
    email: str | None
    last_ms: int
    message_count: int


async def contacts_page(
    conn: AsyncConnection, *, user_id: str, since_ms: int, kind: str, limit: int
) -> list[ExportContact]:
    """Contacts with messages of ``kind`` at or after ``since_ms``, newest activity first.

    Ties are broken by contact id ascending, so the order is the same on both backends.
    """
    activity = (
        select(
            m.contact_id.label("contact_id"),
            func.max(m.ts_ms).label("last_ms"),
            func.count().label("message_count"),
        )
        .where(*_window(user_id, since_ms, kind))
        .group_by(m.contact_id)
        .subquery()
    )
    stmt = (
        select(
            ct.id,
            ct.first_name,
            ct.last_name,
            ct.phone,
            ct.email,
            activity.c.last_ms,
            activity.c.message_count,
        )
        .join(activity, and_(ct.user_id == user_id, ct.id == activity.c.contact_id))
        .order_by(activity.c.last_ms.desc(), ct.id.asc())
        .limit(limit)
    )
    return [
        ExportContact(
            id=row.id,
            first_name=row.first_name,
            last_name=row.last_name,
            phone=row.phone,
            email=row.email,
            last_ms=int(row.last_ms),
            message_count=int(row.message_count),
        )
        for row in await conn.execute(stmt)
    ]


async def messages_of(
    conn: AsyncConnection,
    *,
    user_id: str,
    contact_ids: Sequence[str],
    since_ms: int,
    kind: str,
    limit: int,
) -> list[MessageRow]:
    """The newest ``limit`` messages of ``kind`` of these contacts in the window, newest first."""
    if not contact_ids:
        return []
    stmt = (
        select(*MESSAGE_COLUMNS)
        .where(*_window(user_id, since_ms, kind), m.contact_id.in_(list(contact_ids)))
        .order_by(m.ts_ms.desc(), m.id.desc())
        .limit(limit)
    )
    return [message_from_row(row) for row in await conn.execute(stmt)]
