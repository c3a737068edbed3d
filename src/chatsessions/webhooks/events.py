"""Session events written to the webhook outbox in the caller's transaction (SPEC §6).

The write paths (message ingest, explicit close, the silence sweeper) call :func:`emit`
with the events their change caused, in order, inside the same transaction as the change
itself, so an event is stored if and only if the change is. The body of each event is
built at that moment from the session as the transaction sees it.

When the user has no enabled endpoint subscribed to any of the events, :func:`emit` costs
one primary-key range read of ``webhook_endpoints`` and writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions import ids, tables
from chatsessions.sessions import store as sessions_store
from chatsessions.timeutil import format_ms
from chatsessions.webhooks import queue, store

__all__ = [
    "EVENT_TYPES",
    "NOTIFY_CHANNEL",
    "SessionEvent",
    "add_wake_listener",
    "close_subscribers_since",
    "emit",
    "event_body",
    "place_silence_closes",
    "remember_subscriptions",
    "remove_wake_listener",
    "targets_of",
    "wake_listeners",
    "wants_any",
]

EVENT_TYPES = ("ChatSessionOpened", "ChatSessionClosed", "ChatSessionMerged", "MessageReceived")
OPENED, CLOSED = "ChatSessionOpened", "ChatSessionClosed"
NOTIFY_CHANNEL = "chatsessions_webhooks"

_wake_listeners: list[Callable[[], None]] = []


@dataclass(frozen=True)
class SessionEvent:
    """One event: its type, the session it is about, and the message or merged id."""

    type: str
    session_id: str
    message_id: str | None = None
    merged_session_id: str | None = None


def add_wake_listener(listener: Callable[[], None]) -> None:
    """Call ``listener`` whenever this process writes deliveries (delivery loops use it)."""
    _wake_listeners.append(listener)


def remove_wake_listener(listener: Callable[[], None]) -> None:
    """Undo :func:`add_wake_listener`."""
    if listener in _wake_listeners:
        _wake_listeners.remove(listener)


async def _session_json(
    conn: AsyncConnection, user_id: str, session_id: str, now_ms: int
) -> dict[str, Any] | None:
    # Imported here: sessions.service emits events, so it imports this module.
    from chatsessions.sessions import service as sessions_service

    listed = await sessions_store.get_session(conn, user_id, session_id)
    if listed is None:
        return None
    return sessions_service.session_as_json(listed, now_ms=now_ms)


async def _message_json(
    conn: AsyncConnection, user_id: str, message_id: str
) -> dict[str, Any] | None:
    from chatsessions.sessions import service as sessions_service

    m = tables.messages.c
    row = (
        await conn.execute(
            select(*sessions_store.MESSAGE_COLUMNS).where(m.user_id == user_id, m.id == message_id)
        )
    ).first()
    if row is None:
        return None
    return sessions_service.message_as_json(sessions_store.message_from_row(row))


def event_body(type_: str, now_ms: int, data: dict[str, Any]) -> bytes:
    """The JSON body of an event as delivered."""
    return orjson.dumps({"type": type_, "timestamp": format_ms(now_ms), "data": data})


def close_subscribers_since(subscriptions: list[store.Subscription]) -> int | None:
    """When the oldest endpoint subscribed to ``ChatSessionClosed`` was created (None: no
    such endpoint): sessions whose close fell due before that are never announced."""
    closers = [sub.created_at_ms for sub in subscriptions if CLOSED in sub.events]
    return min(closers) if closers else None


def wants_any(events: list[SessionEvent], subscriptions: list[store.Subscription]) -> bool:
    """True when some endpoint is subscribed to one of the events' types."""
    wanted = {event.type for event in events}
    return any(wanted.intersection(sub.events) for sub in subscriptions)


def targets_of(type_: str, subscriptions: list[store.Subscription]) -> list[str]:
    """The endpoints an event of this type goes to."""
    return [sub.endpoint_id for sub in subscriptions if type_ in sub.events]


def place_silence_closes(
    events: list[SessionEvent], owed: list[tuple[str, int, int | None]]
) -> tuple[list[SessionEvent], list[tuple[str, int]]]:
    """``events`` with the ``ChatSessionClosed`` (inactivity) of the ``owed`` sessions
    ``(id, expires_ms, close_notified_ms)`` put in their place, and the ``(id, expires_ms)``
    to mark as announced (pure; see :func:`_with_silence_closes`)."""
    touched = {event.session_id for event in events}
    opened = {event.session_id for event in events if event.type == OPENED}
    closing = {event.session_id for event in events if event.type == CLOSED}
    before: list[SessionEvent] = []
    after: list[SessionEvent] = []
    marks: list[tuple[str, int]] = []
    for session_id, expires_ms, notified_ms in owed:
        if session_id in closing:
            pass  # the caller (the sweeper) announces it
        elif session_id not in touched:
            before.append(SessionEvent(CLOSED, session_id))
        elif session_id in opened or notified_ms is None:
            after.append(SessionEvent(CLOSED, session_id))
        marks.append((session_id, expires_ms))
    return [*before, *events, *after], marks


async def _with_silence_closes(
    conn: AsyncConnection,
    *,
    user_id: str,
    contact_id: str,
    events: list[SessionEvent],
    subscriptions: list[store.Subscription],
    now_ms: int,
) -> list[SessionEvent]:
    """``events`` with the ``ChatSessionClosed`` (inactivity) the contact owes, in place.

    What the sweeper would announce later is announced here when the contact changes, so
    that receivers see it in order: the close of a session that went silent before this
    change comes first; a session this change opened already past its timeout (back-filled)
    is closed right after its events; one that had been announced closed and only got an
    older message is not announced again.
    """
    since = close_subscribers_since(subscriptions)
    if since is None:
        return events
    owed = await queue.contact_owing_close(
        conn, user_id=user_id, contact_id=contact_id, since_ms=since, now_ms=now_ms
    )
    if not owed:
        return events
    placed, marks = place_silence_closes(events, owed)
    for session_id, expires_ms in marks:
        await queue.mark_close_notified(
            conn, user_id=user_id, session_id=session_id, expires_ms=expires_ms
        )
    return placed


def remember_subscriptions(
    conn: AsyncConnection, user_id: str, subscriptions: list[store.Subscription]
) -> None:
    """Let :func:`emit` in this transaction use subscriptions read by the caller (in the
    statement that locked the contacts) instead of reading them again."""
    transaction = conn.sync_connection.get_transaction() if conn.sync_connection else None
    conn.info["chatsessions.subscriptions"] = (transaction, user_id, list(subscriptions))


async def _subscriptions_in_transaction(
    conn: AsyncConnection, user_id: str
) -> list[store.Subscription]:
    """The user's subscriptions, read once per transaction (a batch of 1,000 messages
    emits 1,000 times; endpoints do not change inside a write transaction)."""
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
    if not wants_any(events, subscriptions):
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
    written = False
    for event in events:
        targets = targets_of(event.type, subscriptions)
        if not targets:
            continue
        if event.session_id not in sessions:
            sessions[event.session_id] = await _session_json(
                conn, user_id, event.session_id, now_ms
            )
        data: dict[str, Any] = {"session": sessions[event.session_id]}
        if event.type == "MessageReceived" and event.message_id is not None:
            data["message"] = await _message_json(conn, user_id, event.message_id)
        if event.type == "ChatSessionMerged":
            data["merged_session_id"] = event.merged_session_id
        await store.insert_event(
            conn,
            user_id=user_id,
            event_id=ids.new_id(),
            contact_id=contact_id,
            type_=event.type,
            payload=event_body(event.type, now_ms, data),
            endpoint_ids=targets,
            now_ms=now_ms,
        )
        written = True
    if not written:
        return
    if conn.dialect.name == "postgresql":
        # Delivered to every listening worker, in every process, when (and only if) the
        # transaction commits.
        await conn.execute(text(f"SELECT pg_notify('{NOTIFY_CHANNEL}', '')"))
    else:
        wake_listeners()


def wake_listeners() -> None:
    """Wake this process's delivery loops (SQLite, after writing deliveries: their claim
    waits for this transaction's commit)."""
    for listener in list(_wake_listeners):
        listener()
