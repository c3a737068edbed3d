"""SQL of the delivery queue and the silence sweep: the statements of the background
loops, across users (one queue for the whole server).

Each goes through an index: ``ix_webhook_deliveries_due`` finds due rows,
``ix_webhook_deliveries_chain`` keeps the per-(endpoint, contact) order, the primary key
orders the purge, and the partial ``ix_sessions_close_due`` finds sessions closed by
silence that were not announced yet.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from sqlalchemy import and_, delete, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions import tables
from chatsessions.webhooks.store import FAILED, PENDING, delete_orphan_events

__all__ = [
    "ClaimedDelivery",
    "any_due",
    "claim_due",
    "close_subscribers",
    "contact_owing_close",
    "disable_endpoint",
    "hold_chain",
    "mark_close_notified",
    "mark_endpoint_health",
    "pending_stats",
    "purge_done",
    "record_attempt",
    "sessions_owing_close",
]

ep = tables.webhook_endpoints.c
ev = tables.webhook_events.c
dl = tables.webhook_deliveries.c
s = tables.sessions.c


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
    endpoint_failing: bool  # its endpoint's last attempt failed (a success clears that)
    payload: str


async def any_due(conn: AsyncConnection, *, now_ms: int) -> bool:
    """Whether any delivery is due (one probe of the due index; no lock taken)."""
    row = (await conn.execute(select(dl.id).where(dl.next_attempt_ms <= now_ms).limit(1))).first()
    return row is not None


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
            ep.failing_since_ms,
            ev.payload,
        )
        .join(
            tables.webhook_endpoints,
            and_(ep.user_id == dl.user_id, ep.id == dl.endpoint_id),
        )
        .join(tables.webhook_events, and_(ev.user_id == dl.user_id, ev.id == dl.event_id))
        .where(dl.next_attempt_ms <= now_ms, ~blocked)
        .order_by(dl.next_attempt_ms, dl.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True, of=tables.webhook_deliveries)
    rows = (await conn.execute(stmt)).all()
    if not rows:
        return []
    await conn.execute(
        update(tables.webhook_deliveries)
        .where(dl.id.in_([row.id for row in rows]))
        .values(next_attempt_ms=now_ms + lease_ms, updated_at_ms=now_ms)
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
            endpoint_failing=row.failing_since_ms is not None,
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


async def contact_owing_close(
    conn: AsyncConnection, *, user_id: str, contact_id: str, since_ms: int, now_ms: int
) -> list[tuple[str, int, int | None]]:
    """``(session id, expires_ms, close_notified_ms)`` of one contact's sessions closed by
    silence and not announced for their current expiry, oldest first: the user's few
    not-yet-swept ones, read through the same partial index as the sweep."""
    due = tables.SESSION_CLOSE_DUE
    rows = await conn.execute(
        select(s.id, s.expires_ms, s.close_notified_ms)
        .where(
            s.user_id == user_id,
            tables.SESSION_CLOSE_PENDING,
            due >= since_ms,
            due <= now_ms,
            s.contact_id == contact_id,
        )
        .order_by(s.start_ms)
    )
    return [(row.id, row.expires_ms, row.close_notified_ms) for row in rows]


async def mark_close_notified(
    conn: AsyncConnection, *, user_id: str, session_id: str, expires_ms: int
) -> None:
    """Remember that the session's close at ``expires_ms`` was announced."""
    await conn.execute(
        update(tables.sessions)
        .where(s.user_id == user_id, s.id == session_id)
        .values(close_notified_ms=expires_ms)
    )


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
        await delete_orphan_events(conn, user_id, event_ids)
    return len(old)
