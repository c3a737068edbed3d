"""SQL of webhooks: endpoints, the outbox (events and their deliveries), claims and sweeps.

Endpoint and listing statements are scoped by user. The delivery worker's statements are
cross-tenant by nature (one queue for the whole server) and go through indexes:
``ix_webhook_deliveries_due`` to find due rows, ``ix_webhook_deliveries_chain`` for the
per-(endpoint, contact) order, and the partial ``ix_sessions_close_pending_*`` indexes for
the silence sweep.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import and_, delete, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions import tables

__all__ = [
    "ClaimedDelivery",
    "DeliveryRow",
    "EndpointRow",
    "claim_due",
    "delete_endpoint",
    "disable_endpoint",
    "erase_contact_events",
    "get_endpoint",
    "insert_endpoint",
    "list_deliveries",
    "list_endpoints",
    "pending_stats",
    "record_attempt",
    "subscribed_endpoints",
]

ep = tables.webhook_endpoints.c
ev = tables.webhook_events.c
dl = tables.webhook_deliveries.c
s = tables.sessions.c

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
    await _delete_orphan_events(conn, user_id, event_ids)
    await conn.execute(
        delete(tables.webhook_endpoints).where(ep.user_id == user_id, ep.id == endpoint_id)
    )


async def _delete_orphan_events(
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


async def subscribed_endpoints(conn: AsyncConnection, user_id: str) -> list[tuple[str, list[str]]]:
    """``(id, events)`` of the user's enabled endpoints: one primary-key range read."""
    rows = await conn.execute(
        select(ep.id, ep.events).where(ep.user_id == user_id, ep.enabled.is_(True))
    )
    return [(row.id, list(orjson.loads(row.events))) for row in rows]


async def insert_event(
    conn: AsyncConnection,
    *,
    user_id: str,
    event_id: str,
    contact_id: str | None,
    type_: str,
    payload: bytes,
    endpoint_ids: Sequence[str],
    now_ms: int,
) -> None:
    """Store one event and a pending delivery (due now) per endpoint."""
    await conn.execute(
        tables.webhook_events.insert().values(
            user_id=user_id,
            id=event_id,
            contact_id=contact_id,
            type=type_,
            payload=payload.decode(),
            created_at_ms=now_ms,
        )
    )
    await conn.execute(
        tables.webhook_deliveries.insert(),
        [
            {
                "user_id": user_id,
                "endpoint_id": endpoint_id,
                "event_id": event_id,
                "contact_id": contact_id,
                "type": type_,
                "status": PENDING,
                "attempts": 0,
                "next_attempt_ms": now_ms,
                "last_status_code": None,
                "last_error": None,
                "last_response": None,
                "created_at_ms": now_ms,
                "updated_at_ms": now_ms,
            }
            for endpoint_id in endpoint_ids
        ],
    )


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
class ClaimedDelivery:
    """A delivery leased to this worker, with what it needs to send it."""

    id: int
    user_id: str
    endpoint_id: str
    event_id: str
    contact_id: str | None
    attempts: int  # attempts made before this one
    created_at_ms: int
    url: str
    secret: str
    payload: str


async def claim_due(
    conn: AsyncConnection, *, now_ms: int, lease_ms: int, limit: int
) -> list[ClaimedDelivery]:
    """Lease up to ``limit`` due deliveries (their next attempt moved to the lease's end).

    Only the head of each (endpoint, contact) chain is due: a delivery waits while an
    earlier one of its contact to its endpoint is pending. On PostgreSQL rows another worker
    holds are skipped (``FOR UPDATE SKIP LOCKED``); on SQLite the write transaction already
    excludes other workers.
    """
    earlier = tables.webhook_deliveries.alias("earlier")
    blocked = exists().where(
        earlier.c.endpoint_id == dl.endpoint_id,
        earlier.c.contact_id == dl.contact_id,
        earlier.c.status == PENDING,
        earlier.c.id < dl.id,
    )
    stmt = (
        select(dl.id)
        .where(dl.next_attempt_ms <= now_ms, ~blocked)
        .order_by(dl.next_attempt_ms, dl.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True, of=tables.webhook_deliveries)
    ids = [row.id for row in await conn.execute(stmt)]
    if not ids:
        return []
    await conn.execute(
        update(tables.webhook_deliveries)
        .where(dl.id.in_(ids))
        .values(next_attempt_ms=now_ms + lease_ms, updated_at_ms=now_ms)
    )
    rows = await conn.execute(
        select(
            dl.id,
            dl.user_id,
            dl.endpoint_id,
            dl.event_id,
            dl.contact_id,
            dl.attempts,
            dl.created_at_ms,
            ep.url,
            ep.secret,
            ev.payload,
        )
        .join(
            tables.webhook_endpoints,
            and_(ep.user_id == dl.user_id, ep.id == dl.endpoint_id),
        )
        .join(tables.webhook_events, and_(ev.user_id == dl.user_id, ev.id == dl.event_id))
        .where(dl.id.in_(ids))
        .order_by(dl.id)
    )
    return [
        ClaimedDelivery(
            id=row.id,
            user_id=row.user_id,
            endpoint_id=row.endpoint_id,
            event_id=row.event_id,
            contact_id=row.contact_id,
            attempts=row.attempts,
            created_at_ms=row.created_at_ms,
            url=row.url,
            secret=row.secret,
            payload=row.payload,
        )
        for row in rows
    ]


async def record_attempt(
    conn: AsyncConnection,
    *,
    delivery_id: int,
    status: str,
    attempts: int,
    next_attempt_ms: int | None,
    status_code: int | None,
    error: str | None,
    response: str | None,
    now_ms: int,
) -> None:
    """Save the outcome of one attempt."""
    await conn.execute(
        update(tables.webhook_deliveries)
        .where(dl.id == delivery_id, dl.status == PENDING)  # not if disabled meanwhile
        .values(
            status=status,
            attempts=attempts,
            next_attempt_ms=next_attempt_ms,
            last_status_code=status_code,
            last_error=error,
            last_response=response,
            updated_at_ms=now_ms,
        )
    )


async def hold_chain(
    conn: AsyncConnection,
    *,
    endpoint_id: str,
    contact_id: str,
    after_id: int,
    until_ms: int,
    now_ms: int,
) -> None:
    """Hold the later pending deliveries of a chain until its head's next attempt, so the
    due scan does not keep reading rows that must wait anyway (a receiver down for hours
    with a busy contact)."""
    await conn.execute(
        update(tables.webhook_deliveries)
        .where(
            dl.endpoint_id == endpoint_id,
            dl.contact_id == contact_id,
            dl.status == PENDING,
            dl.id > after_id,
            dl.next_attempt_ms < until_ms,
        )
        .values(next_attempt_ms=until_ms, updated_at_ms=now_ms)
    )


async def mark_endpoint_health(
    conn: AsyncConnection, *, user_id: str, endpoint_id: str, ok: bool, now_ms: int
) -> int | None:
    """Record a success (clears the failing run) or a failure; returns when the run began."""
    if ok:
        await conn.execute(
            update(tables.webhook_endpoints)
            .where(ep.user_id == user_id, ep.id == endpoint_id, ep.failing_since_ms.is_not(None))
            .values(failing_since_ms=None, updated_at_ms=now_ms)
        )
        return None
    await conn.execute(
        update(tables.webhook_endpoints)
        .where(ep.user_id == user_id, ep.id == endpoint_id, ep.failing_since_ms.is_(None))
        .values(failing_since_ms=now_ms, updated_at_ms=now_ms)
    )
    row = (
        await conn.execute(
            select(ep.failing_since_ms).where(ep.user_id == user_id, ep.id == endpoint_id)
        )
    ).first()
    return None if row is None else row.failing_since_ms


async def disable_endpoint(
    conn: AsyncConnection, *, user_id: str, endpoint_id: str, reason: str, now_ms: int
) -> None:
    """Disable an endpoint and give up its pending deliveries."""
    await conn.execute(
        update(tables.webhook_endpoints)
        .where(ep.user_id == user_id, ep.id == endpoint_id)
        .values(enabled=False, disabled_reason=reason, disabled_at_ms=now_ms, updated_at_ms=now_ms)
    )
    await conn.execute(
        update(tables.webhook_deliveries)
        .where(dl.user_id == user_id, dl.endpoint_id == endpoint_id, dl.status == PENDING)
        .values(
            status=FAILED,
            next_attempt_ms=None,
            last_error=f"endpoint disabled ({reason})",
            updated_at_ms=now_ms,
        )
    )


async def pending_stats(conn: AsyncConnection) -> tuple[int, int | None]:
    """``(pending deliveries, creation time of the oldest)`` over the whole server."""
    row = (
        await conn.execute(
            select(func.count(), func.min(dl.created_at_ms)).where(dl.next_attempt_ms.is_not(None))
        )
    ).one()
    return int(row[0]), row[1]


async def close_subscribers(conn: AsyncConnection) -> list[tuple[str, int]]:
    """``(user id, since)`` of users with an enabled endpoint subscribed to
    ``ChatSessionClosed``; ``since`` is when the oldest such endpoint was created."""
    rows = await conn.execute(
        select(ep.user_id, ep.created_at_ms, ep.events).where(ep.enabled.is_(True))
    )
    since: dict[str, int] = {}
    for row in rows:
        if "ChatSessionClosed" in orjson.loads(row.events):
            since[row.user_id] = min(since.get(row.user_id, row.created_at_ms), row.created_at_ms)
    return sorted(since.items())


async def sessions_owing_close(
    conn: AsyncConnection, *, user_id: str, since_ms: int, now_ms: int, limit: int
) -> list[tuple[str, str]]:
    """``(session id, contact id)`` of sessions closed by silence and not yet announced.

    One range read of the partial ``ix_sessions_close_due`` index: sessions whose close
    fell due between ``since_ms`` and now. Sessions that went silent before anyone
    subscribed are left alone.
    """
    due = tables.SESSION_CLOSE_DUE
    rows = await conn.execute(
        select(s.id, s.contact_id)
        .where(s.user_id == user_id, tables.SESSION_CLOSE_PENDING, due >= since_ms, due <= now_ms)
        .limit(limit)
    )
    return [(row.id, row.contact_id) for row in rows]


async def mark_close_notified(
    conn: AsyncConnection, *, user_id: str, session_id: str, expires_ms: int
) -> None:
    """Remember that the session's close at ``expires_ms`` was announced."""
    await conn.execute(
        update(tables.sessions)
        .where(s.user_id == user_id, s.id == session_id)
        .values(close_notified_ms=expires_ms)
    )


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


async def purge_done(conn: AsyncConnection, *, before_ms: int, limit: int) -> int:
    """Delete up to ``limit`` delivered or failed deliveries created before ``before_ms``
    (the oldest first, by primary key) and the events left without deliveries."""
    rows = (
        await conn.execute(
            select(dl.id, dl.user_id, dl.event_id, dl.status, dl.created_at_ms)
            .order_by(dl.id)
            .limit(limit)
        )
    ).all()
    old = [r for r in rows if r.status != PENDING and r.created_at_ms < before_ms]
    if not old:
        return 0
    await conn.execute(delete(tables.webhook_deliveries).where(dl.id.in_([r.id for r in old])))
    by_user: dict[str, list[str]] = {}
    for r in old:
        by_user.setdefault(r.user_id, []).append(r.event_id)
    for user_id, event_ids in by_user.items():
        await _delete_orphan_events(conn, user_id, event_ids)
    return len(old)


async def record_sent(
    conn: AsyncConnection,
    *,
    user_id: str,
    endpoint_id: str,
    event_id: str,
    type_: str,
    payload: bytes,
    ok: bool,
    status_code: int | None,
    error: str | None,
    response: str | None,
    now_ms: int,
) -> None:
    """Log an event sent at once (the test ping) as a finished delivery (never retried)."""
    await conn.execute(
        tables.webhook_events.insert().values(
            user_id=user_id,
            id=event_id,
            contact_id=None,
            type=type_,
            payload=payload.decode(),
            created_at_ms=now_ms,
        )
    )
    await conn.execute(
        tables.webhook_deliveries.insert().values(
            user_id=user_id,
            endpoint_id=endpoint_id,
            event_id=event_id,
            contact_id=None,
            type=type_,
            status=DELIVERED if ok else FAILED,
            attempts=1,
            next_attempt_ms=None,
            last_status_code=status_code,
            last_error=error,
            last_response=response,
            created_at_ms=now_ms,
            updated_at_ms=now_ms,
        )
    )
