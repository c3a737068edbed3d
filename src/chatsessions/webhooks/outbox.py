"""The webhook outbox: the only module that writes events and their deliveries.

Every change that causes an event (message ingest, an explicit close, the silence
sweeper, a timeout change) hands its events here as :class:`OutboxWrite` rows, inside
the transaction of the change itself, so that an event is stored if and only if the
change is. Ingest folds the rows into its one write statement (:data:`PG_PARTS`,
:func:`pg_params`); the other paths call :func:`write`.

Also here, pure: which endpoints an event goes to, the event body, and when a session
owes the announcement of its close by silence (:func:`owes_close`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import orjson
from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions import tables
from chatsessions.db import fetch_rows, sqlite_executemany
from chatsessions.timeutil import format_ms

__all__ = [
    "CLOSED",
    "EVENT_TYPES",
    "MERGED",
    "NOTIFY_CHANNEL",
    "NO_NOTIFICATION",
    "OPENED",
    "PG_PARTS",
    "RECEIVED",
    "OutboxWrite",
    "SessionEvent",
    "Subscription",
    "add_wake_listener",
    "close_subscribers_since",
    "event_body",
    "owes_close",
    "pg_params",
    "place_silence_closes",
    "record_sent",
    "remove_wake_listener",
    "targets_of",
    "wake_listeners",
    "wants_any",
    "write",
    "write_sqlite",
]

OPENED, CLOSED = "ChatSessionOpened", "ChatSessionClosed"
MERGED, RECEIVED = "ChatSessionMerged", "MessageReceived"
EVENT_TYPES = (OPENED, CLOSED, MERGED, RECEIVED)
NOTIFY_CHANNEL = "chatsessions_webhooks"

_wake_listeners: list[Callable[[], None]] = []


@dataclass(frozen=True)
class SessionEvent:
    """One event: its type, the session it is about, and the message or merged id."""

    type: str
    session_id: str
    message_id: str | None = None
    merged_session_id: str | None = None


@dataclass(frozen=True)
class Subscription:
    """An enabled endpoint as the outbox needs it."""

    endpoint_id: str
    events: list[str]
    created_at_ms: int


@dataclass(frozen=True)
class OutboxWrite:
    """One webhook event and the endpoints it goes to (in emission order)."""

    event_id: str
    contact_id: str | None
    type: str
    payload: bytes
    endpoint_ids: list[str]


# -- pure -----------------------------------------------------------------------------------


def event_body(type_: str, now_ms: int, data: dict[str, Any]) -> bytes:
    """The JSON body of an event as delivered."""
    return orjson.dumps({"type": type_, "timestamp": format_ms(now_ms), "data": data})


def close_subscribers_since(subscriptions: list[Subscription]) -> int | None:
    """When the oldest endpoint subscribed to ``ChatSessionClosed`` was created (None: no
    such endpoint): sessions whose close fell due before that are never announced."""
    closers = [sub.created_at_ms for sub in subscriptions if CLOSED in sub.events]
    return min(closers) if closers else None


def wants_any(events: list[SessionEvent], subscriptions: list[Subscription]) -> bool:
    """True when some endpoint is subscribed to one of the events' types."""
    wanted = {event.type for event in events}
    return any(wanted.intersection(sub.events) for sub in subscriptions)


def targets_of(type_: str, subscriptions: list[Subscription]) -> list[str]:
    """The endpoints an event of this type goes to."""
    return [sub.endpoint_id for sub in subscriptions if type_ in sub.events]


def owes_close(
    *,
    closed_at_ms: int | None,
    expires_ms: int,
    close_notified_ms: int | None,
    created_at_ms: int,
    since_ms: int,
    now_ms: int,
) -> bool:
    """True when a session owes a ``ChatSessionClosed`` (inactivity) announcement: not
    explicitly closed, not announced for its current expiry, and due (the later of its
    expiry and the time it was stored) in ``[since_ms, now_ms]``.

    The database reads the same condition through the partial index
    ``ix_sessions_close_due`` (``tables.SESSION_CLOSE_PENDING`` and ``SESSION_CLOSE_DUE``);
    ``tests/webhooks/test_owes_close.py`` checks that both agree.
    """
    if closed_at_ms is not None:
        return False
    if close_notified_ms is not None and close_notified_ms >= expires_ms:
        return False
    return since_ms <= max(expires_ms, created_at_ms) <= now_ms


def place_silence_closes(
    events: list[SessionEvent], owed: list[tuple[str, int, int | None]]
) -> tuple[list[SessionEvent], list[tuple[str, int]]]:
    """``events`` with the ``ChatSessionClosed`` (inactivity) of the ``owed`` sessions
    ``(id, expires_ms, close_notified_ms)`` put in their place, and the ``(id, expires_ms)``
    to mark as announced.

    What the sweeper would announce later is announced when the contact changes, so that
    receivers see it in order: the close of a session that went silent before this change
    comes first; a session this change opened already past its timeout (back-filled) is
    closed right after its events; one that had been announced closed and only got an
    older message is not announced again.
    """
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


# -- waking delivery loops ------------------------------------------------------------------


def add_wake_listener(listener: Callable[[], None]) -> None:
    """Call ``listener`` whenever this process writes deliveries (delivery loops use it)."""
    _wake_listeners.append(listener)


def remove_wake_listener(listener: Callable[[], None]) -> None:
    """Undo :func:`add_wake_listener`."""
    if listener in _wake_listeners:
        _wake_listeners.remove(listener)


def wake_listeners() -> None:
    """Wake this process's delivery loops (SQLite, after writing deliveries: their claim
    waits for this transaction's commit)."""
    for listener in list(_wake_listeners):
        listener()


# -- SQL ------------------------------------------------------------------------------------

# Data-modifying CTE parts of one PostgreSQL statement (ingest adds them to its write).
PG_PARTS = {
    "events": """
        INSERT INTO webhook_events (user_id, id, contact_id, type, payload, created_at_ms)
        SELECT :user_id, v.*, :now_ms
        FROM unnest(CAST(:e_id AS varchar[]), CAST(:e_contact AS varchar[]),
                    CAST(:e_type AS varchar[]), CAST(:e_payload AS text[])) AS v
    """,
    # The delivery id (identity) is the delivery order: rows go in emission order.
    "deliveries": """
        INSERT INTO webhook_deliveries (user_id, endpoint_id, event_id, contact_id, type,
            status, attempts, next_attempt_ms, created_at_ms, updated_at_ms)
        SELECT :user_id, v.endpoint_id, v.event_id, v.contact_id, v.type, 'pending', 0,
            :now_ms, :now_ms, :now_ms
        FROM unnest(CAST(:d_endpoint AS varchar[]), CAST(:d_event AS varchar[]),
                    CAST(:d_contact AS varchar[]), CAST(:d_type AS varchar[]))
             WITH ORDINALITY AS v(endpoint_id, event_id, contact_id, type, n)
        ORDER BY v.n
    """,
}


def pg_parts(rows: Sequence[OutboxWrite]) -> tuple[str, ...]:
    """The names of :data:`PG_PARTS` that ``rows`` need."""
    if not rows:
        return ()
    return ("events", "deliveries") if any(r.endpoint_ids for r in rows) else ("events",)


NO_NOTIFICATION: Mapping[str, Any] = MappingProxyType({"channel": NOTIFY_CHANNEL, "notify": False})
"""What :func:`pg_params` gives of the notification for no rows: none sent."""


def pg_params(rows: Sequence[OutboxWrite]) -> dict[str, Any]:
    """The parameters of :data:`PG_PARTS` (and ``notify``: deliveries were written)."""
    deliveries = [(ep, e) for e in rows for ep in e.endpoint_ids]
    return {
        "e_id": [e.event_id for e in rows],
        "e_contact": [e.contact_id for e in rows],
        "e_type": [e.type for e in rows],
        "e_payload": [e.payload.decode() for e in rows],
        "d_endpoint": [ep for ep, _ in deliveries],
        "d_event": [e.event_id for _, e in deliveries],
        "d_contact": [e.contact_id for _, e in deliveries],
        "d_type": [e.type for _, e in deliveries],
        "channel": NOTIFY_CHANNEL,
        "notify": bool(deliveries),
    }


_PG_WRITE: dict[tuple[str, ...], TextClause] = {
    parts: text(
        "WITH "
        + ",\n".join(f"{name} AS ({PG_PARTS[name]})" for name in parts)
        + "\nSELECT pg_notify(:channel, '') WHERE CAST(:notify AS boolean)"
    )
    for parts in (("events",), ("events", "deliveries"))
}

_SQLITE_INSERT_EVENT = text(
    """
    INSERT INTO webhook_events (user_id, id, contact_id, type, payload, created_at_ms)
    VALUES (:user_id, :id, :contact_id, :type, :payload, :created_at_ms)
    """
)
_SQLITE_INSERT_DELIVERY = text(
    """
    INSERT INTO webhook_deliveries (user_id, endpoint_id, event_id, contact_id, type, status,
        attempts, next_attempt_ms, created_at_ms, updated_at_ms)
    VALUES (:user_id, :endpoint_id, :event_id, :contact_id, :type, 'pending', 0, :now_ms,
        :now_ms, :now_ms)
    """
)


async def write_sqlite(
    conn: AsyncConnection, user_id: str, rows: Sequence[OutboxWrite], *, now_ms: int
) -> None:
    """SQLite: insert the events, then their deliveries in emission order (the
    autoincrement id is the delivery order; ``executemany`` runs its rows in order), on
    the driver in the caller's write transaction; wake this process's delivery loops."""
    if not rows:
        return
    await sqlite_executemany(
        conn,
        _SQLITE_INSERT_EVENT.text,
        [
            {
                "user_id": user_id,
                "id": e.event_id,
                "contact_id": e.contact_id,
                "type": e.type,
                "payload": e.payload.decode(),
                "created_at_ms": now_ms,
            }
            for e in rows
        ],
    )
    deliveries = [
        {
            "user_id": user_id,
            "endpoint_id": endpoint_id,
            "event_id": e.event_id,
            "contact_id": e.contact_id,
            "type": e.type,
            "now_ms": now_ms,
        }
        for e in rows
        for endpoint_id in e.endpoint_ids
    ]
    await sqlite_executemany(conn, _SQLITE_INSERT_DELIVERY.text, deliveries)
    if deliveries:
        wake_listeners()


async def write(
    conn: AsyncConnection, user_id: str, rows: Sequence[OutboxWrite], *, now_ms: int
) -> None:
    """Store events and a pending delivery (due now) per endpoint, in the caller's
    transaction. PostgreSQL: one statement, which also notifies the delivery workers of
    every process when (and only if) the transaction commits."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        await write_sqlite(conn, user_id, rows, now_ms=now_ms)
        return
    params = {"user_id": user_id, "now_ms": now_ms, **pg_params(rows)}
    await fetch_rows(conn, _PG_WRITE[pg_parts(rows)], params)


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
            status="delivered" if ok else "failed",
            attempts=1,
            next_attempt_ms=None,
            last_status_code=status_code,
            last_error=error,
            last_response=response,
            created_at_ms=now_ms,
            updated_at_ms=now_ms,
        )
    )
