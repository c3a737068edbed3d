"""SQL of webhooks as the API sees them: endpoints, the deliveries listing, and erasing a contact's events. Every statement is scoped by user.

The delivery queue and the silence sweep, which work across users, are in ``queue.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions import tables
from chatsessions.webhooks.outbox import Subscription

__all__ = [
    "DELIVERED",
    "FAILED",
    "PENDING",
    "DeliveryRow",
    "EndpointRow",
    "Subscription",
    "UserDelivery",
    "count_user_deliveries",
    "delete_endpoint",
    "delete_orphan_events",
    "erase_contact_events",
    "get_endpoint",
    "insert_endpoint",
    "list_deliveries",
    "list_endpoints",
    "list_user_deliveries",
    "set_secret",
    "subscribed_endpoints",
]

ep = tables.webhook_endpoints.c
ev = tables.webhook_events.c
dl = tables.webhook_deliveries.c

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


@dataclass(frozen=True)
class EndpointRow:
    """A stored webhook endpoint."""

    id: str
    user_id: str
    url: str
    description: str | None
    events: list[str]
    secret: str
    enabled: bool
    disabled_reason: str | None
    disabled_at_ms: int | None
    failing_since_ms: int | None
    created_at_ms: int

    @classmethod
    def from_row(cls, row: Any) -> EndpointRow:
        """Build from a ``webhook_endpoints`` row."""
        return cls(
            id=row.id,
            user_id=row.user_id,
            url=row.url,
            description=row.description,
            events=list(orjson.loads(row.events)),
            secret=row.secret,
            enabled=bool(row.enabled),
            disabled_reason=row.disabled_reason,
            disabled_at_ms=row.disabled_at_ms,
            failing_since_ms=row.failing_since_ms,
            created_at_ms=row.created_at_ms,
        )


async def insert_endpoint(conn: AsyncConnection, row: EndpointRow, *, now_ms: int) -> None:
    """Store a new endpoint."""
    await conn.execute(
        tables.webhook_endpoints.insert().values(
            user_id=row.user_id,
            id=row.id,
            url=row.url,
            description=row.description,
            events=orjson.dumps(row.events).decode(),
            secret=row.secret,
            enabled=row.enabled,
            disabled_reason=None,
            disabled_at_ms=None,
            failing_since_ms=None,
            created_at_ms=row.created_at_ms,
            updated_at_ms=now_ms,
        )
    )


async def get_endpoint(conn: AsyncConnection, user_id: str, endpoint_id: str) -> EndpointRow | None:
    """One endpoint of the user."""
    row = (
        await conn.execute(
            select(tables.webhook_endpoints).where(ep.user_id == user_id, ep.id == endpoint_id)
        )
    ).first()
    return EndpointRow.from_row(row) if row else None


async def list_endpoints(conn: AsyncConnection, user_id: str) -> list[EndpointRow]:
    """Every endpoint of the user, oldest first."""
    rows = await conn.execute(
        select(tables.webhook_endpoints)
        .where(ep.user_id == user_id)
        .order_by(ep.created_at_ms, ep.id)
    )
    return [EndpointRow.from_row(row) for row in rows]


async def set_secret(
    conn: AsyncConnection, user_id: str, endpoint_id: str, secret: str, *, now_ms: int
) -> None:
    """Replace an endpoint's signing secret."""
    await conn.execute(
        update(tables.webhook_endpoints)
        .where(ep.user_id == user_id, ep.id == endpoint_id)
        .values(secret=secret, updated_at_ms=now_ms)
    )


async def delete_endpoint(conn: AsyncConnection, user_id: str, endpoint_id: str) -> None:
    """Remove an endpoint, its deliveries, and the events no other endpoint still needs."""
    event_ids = [
        row.event_id
        for row in await conn.execute(
            select(dl.event_id).where(dl.user_id == user_id, dl.endpoint_id == endpoint_id)
        )
    ]
    await conn.execute(
        delete(tables.webhook_deliveries).where(
            dl.user_id == user_id, dl.endpoint_id == endpoint_id
        )
    )
    await delete_orphan_events(conn, user_id, event_ids)
    await conn.execute(
        delete(tables.webhook_endpoints).where(ep.user_id == user_id, ep.id == endpoint_id)
    )


async def delete_orphan_events(
    conn: AsyncConnection, user_id: str, event_ids: Sequence[str]
) -> None:
    for start in range(0, len(event_ids), 500):
        chunk = list(event_ids[start : start + 500])
        still_used = exists().where(dl.user_id == user_id, dl.event_id == ev.id)
        await conn.execute(
            delete(tables.webhook_events).where(
                ev.user_id == user_id, ev.id.in_(chunk), ~still_used
            )
        )


async def subscribed_endpoints(conn: AsyncConnection, user_id: str) -> list[Subscription]:
    """The user's enabled endpoints: one primary-key range read."""
    rows = await conn.execute(
        select(ep.id, ep.events, ep.created_at_ms).where(
            ep.user_id == user_id, ep.enabled.is_(True)
        )
    )
    return [Subscription(row.id, list(orjson.loads(row.events)), row.created_at_ms) for row in rows]


async def erase_contact_events(conn: AsyncConnection, *, user_id: str, contact_id: str) -> None:
    """Delete every event and delivery record of a contact (part of erasing the contact).

    Call it in the transaction that erases the contact (after locking it).
    """
    await conn.execute(
        delete(tables.webhook_deliveries).where(dl.user_id == user_id, dl.contact_id == contact_id)
    )
    await conn.execute(
        delete(tables.webhook_events).where(ev.user_id == user_id, ev.contact_id == contact_id)
    )


@dataclass(frozen=True)
class DeliveryRow:
    """A delivery as the deliveries listing shows it."""

    id: int
    event_id: str
    type: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_ms: int | None
    created_at_ms: int


async def list_deliveries(
    conn: AsyncConnection,
    *,
    user_id: str,
    endpoint_id: str,
    before_id: int | None,
    limit: int,
) -> list[DeliveryRow]:
    """One page of an endpoint's deliveries, newest first (keyset on the delivery id)."""
    conds: list[Any] = [dl.user_id == user_id, dl.endpoint_id == endpoint_id]
    if before_id is not None:
        conds.append(dl.id < before_id)
    rows = await conn.execute(
        select(
            dl.id,
            dl.event_id,
            dl.type,
            dl.status,
            dl.attempts,
            dl.last_status_code,
            dl.last_error,
            dl.next_attempt_ms,
            dl.created_at_ms,
        )
        .where(*conds)
        .order_by(dl.id.desc())
        .limit(limit)
    )
    return [
        DeliveryRow(
            id=row.id,
            event_id=row.event_id,
            type=row.type,
            status=row.status,
            attempts=row.attempts,
            last_status_code=row.last_status_code,
            last_error=row.last_error,
            next_attempt_ms=row.next_attempt_ms,
            created_at_ms=row.created_at_ms,
        )
        for row in rows
    ]


@dataclass(frozen=True)
class UserDelivery:
    """A delivery with its endpoint (for the CLI)."""

    endpoint_id: str
    event_id: str
    type: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_ms: int | None
    created_at_ms: int


async def list_user_deliveries(
    conn: AsyncConnection,
    *,
    user_id: str,
    endpoint_id: str | None,
    status: str | None,
    limit: int,
) -> list[UserDelivery]:
    """The newest deliveries of a user (optionally of one endpoint, of one status)."""
    conds: list[Any] = [dl.user_id == user_id]
    if endpoint_id is not None:
        conds.append(dl.endpoint_id == endpoint_id)
    if status is not None:
        conds.append(dl.status == status)
    rows = await conn.execute(
        select(
            dl.endpoint_id,
            dl.event_id,
            dl.type,
            dl.status,
            dl.attempts,
            dl.last_status_code,
            dl.last_error,
            dl.next_attempt_ms,
            dl.created_at_ms,
        )
        .where(*conds)
        .order_by(dl.id.desc())
        .limit(limit)
    )
    return [UserDelivery(*row) for row in rows]


async def count_user_deliveries(
    conn: AsyncConnection, *, user_id: str, endpoint_id: str | None
) -> dict[str, int]:
    """Deliveries of a user by status."""
    conds: list[Any] = [dl.user_id == user_id]
    if endpoint_id is not None:
        conds.append(dl.endpoint_id == endpoint_id)
    rows = await conn.execute(select(dl.status, func.count()).where(*conds).group_by(dl.status))
    return {row[0]: int(row[1]) for row in rows}
