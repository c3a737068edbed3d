"""Session events of the write paths that change stored sessions in place (an explicit
close, the silence sweeper, a timeout change), written to the outbox in the caller's
transaction. Message ingest builds its events in memory (``messages.placement``).

Those paths call :func:`emit`
with the events their change caused, in order, inside the same transaction as the change
itself, so an event is stored if and only if the change is. The body of each event is
built at that moment from the session as the transaction sees it.

When the user has no enabled endpoint subscribed to any of the events, :func:`emit` costs
one primary-key range read of ``webhook_endpoints`` and writes nothing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions import ids, tables
from chatsessions.sessions import presenter
from chatsessions.sessions import store as sessions_store
from chatsessions.webhooks import outbox, queue, store
from chatsessions.webhooks.outbox import (
    EVENT_TYPES,
    NOTIFY_CHANNEL,
    OutboxWrite,
    SessionEvent,
    add_wake_listener,
    close_subscribers_since,
    event_body,
    remove_wake_listener,
    wake_listeners,
)

__all__ = [
    "EVENT_TYPES",
    "NOTIFY_CHANNEL",
    "SessionEvent",
    "add_wake_listener",
    "close_subscribers_since",
    "emit",
    "event_body",
    "remove_wake_listener",
    "wake_listeners",
]


async def _session_json(
    conn: AsyncConnection, user_id: str, session_id: str, now_ms: int
) -> dict[str, Any] | None:
    listed = await sessions_store.get_session(conn, user_id, session_id)
    if listed is None:
        return None
    return presenter.session_as_json(listed, now_ms=now_ms)


async def _message_json(
    conn: AsyncConnection, user_id: str, message_id: str
) -> dict[str, Any] | None:
    m = tables.messages.c
    row = (
        await conn.execute(
            select(*sessions_store.MESSAGE_COLUMNS).where(m.user_id == user_id, m.id == message_id)
        )
    ).first()
    if row is None:
        return None
    return presenter.message_as_json(sessions_store.message_from_row(row))


async def _with_silence_closes(
    conn: AsyncConnection,
    *,
    user_id: str,
    contact_id: str,
    events: list[SessionEvent],
    subscriptions: list[store.Subscription],
    now_ms: int,
) -> list[SessionEvent]:
    """``events`` with the ``ChatSessionClosed`` (inactivity) the contact owes, in place
    (:func:`outbox.place_silence_closes`)."""
    since = close_subscribers_since(subscriptions)
    if since is None:
        return events
    owed = await queue.contact_owing_close(
        conn, user_id=user_id, contact_id=contact_id, since_ms=since, now_ms=now_ms
    )
    if not owed:
        return events
    placed, marks = outbox.place_silence_closes(events, owed)
    for session_id, expires_ms in marks:
        await queue.mark_close_notified(
            conn, user_id=user_id, session_id=session_id, expires_ms=expires_ms
        )
    return placed


async def _subscriptions_in_transaction(
    conn: AsyncConnection, user_id: str
) -> list[store.Subscription]:
    """The user's subscriptions, read once per transaction (endpoints do not change
    inside a write transaction)."""
    transaction = conn.sync_connection.get_transaction() if conn.sync_connection else None
    cached = conn.info.get("chatsessions.subscriptions")
    if cached is not None and transaction is not None:
        cached_txn, cached_user, subscriptions = cached
        if cached_txn is transaction and cached_user == user_id:
            return list(subscriptions)
    subscriptions = await store.subscribed_endpoints(conn, user_id)
    conn.info["chatsessions.subscriptions"] = (transaction, user_id, subscriptions)
    return list(subscriptions)


async def emit(
    conn: AsyncConnection,
    *,
    user_id: str,
    contact_id: str,
    events: list[SessionEvent],
    now_ms: int,
) -> None:
    """Record ``events`` (in order) for every endpoint of the user subscribed to them.

    Call it with the contact locked (the write paths do), so that one contact's events are
    stored in the order they happened, with the silence closes the sweeper has not
    announced yet put in their place (see :func:`_with_silence_closes`).
    """
    if not events:
        return
    subscriptions = await _subscriptions_in_transaction(conn, user_id)
    if not outbox.wants_any(events, subscriptions):
        return
    events = await _with_silence_closes(
        conn,
        user_id=user_id,
        contact_id=contact_id,
        events=events,
        subscriptions=subscriptions,
        now_ms=now_ms,
    )
    sessions: dict[str, dict[str, Any] | None] = {}
    rows: list[OutboxWrite] = []
    for event in events:
        targets = outbox.targets_of(event.type, subscriptions)
        if not targets:
            continue
        if event.session_id not in sessions:
            sessions[event.session_id] = await _session_json(
                conn, user_id, event.session_id, now_ms
            )
        data: dict[str, Any] = {"session": sessions[event.session_id]}
        if event.type == outbox.RECEIVED and event.message_id is not None:
            data["message"] = await _message_json(conn, user_id, event.message_id)
        if event.type == outbox.MERGED:
            data["merged_session_id"] = event.merged_session_id
        rows.append(
            OutboxWrite(
                ids.new_id(), contact_id, event.type, event_body(event.type, now_ms, data), targets
            )
        )
    await outbox.write(conn, user_id, rows, now_ms=now_ms)
