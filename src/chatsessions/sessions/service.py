"""Reading and closing sessions: listings with keyset cursors, one session, explicit close."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions import ids
from chatsessions.contacts import store as contacts_store
from chatsessions.db import Database
from chatsessions.errors import InvalidParameter, NotFound
from chatsessions.sessions import rule, store
from chatsessions.sessions.cursor import decode_cursor, encode_cursor
from chatsessions.sessions.presenter import (
    contact_name,
    listed_row_as_json,
    message_as_json,
    session_as_json,
)
from chatsessions.sessions.schemas import ListingQuery
from chatsessions.sessions.store import ListedSession
from chatsessions.webhooks import events as webhook_events
from chatsessions.webhooks.events import SessionEvent

__all__ = [
    "DEFAULT_LIMIT",
    "DEFAULT_MESSAGE_LIMIT",
    "MAX_MESSAGES_PER_RESPONSE",
    "ListQuery",
    "close_session",
    "contact_name",
    "get_session",
    "list_sessions_page",
    "listed_row_as_json",
    "message_as_json",
    "per_session_message_cap",
    "session_as_json",
]

MAX_MESSAGES_PER_RESPONSE = 10_000
DEFAULT_LIMIT = 100
DEFAULT_MESSAGE_LIMIT = 100
HOUR_MS = 3_600_000


def per_session_message_cap(message_limit: int, sessions_on_page: int) -> int:
    """How many messages each session of a page lists: ``messageLimit``, but at most
    ``floor(10000 / sessions on the page)`` so that one response holds ≤ 10,000 messages.

    >>> per_session_message_cap(1000, 11)
    909
    """
    if sessions_on_page <= 0:
        return message_limit
    return min(message_limit, MAX_MESSAGES_PER_RESPONSE // sessions_on_page)


@dataclass(frozen=True)
class ListQuery:
    """The complete query of a listing (both chat-sessions endpoints), defaults applied."""

    contact_id: str | None
    hours: int | None
    status: str | None  # "opened" | "closed" | None
    limit: int
    include_messages: bool
    message_limit: int

    def payload(self) -> dict[str, Any]:
        """What a cursor of this query carries (its user is bound by the signature)."""
        return {
            "c": self.contact_id,
            "h": self.hours,
            "s": self.status,
            "l": self.limit,
            "im": self.include_messages,
            "ml": self.message_limit,
        }


def _fresh_query(params: ListingQuery, contact_id: str | None) -> ListQuery:
    if contact_id is None and params.hours is None:
        raise InvalidParameter("hours", "is required (a whole number of hours ≥ 1)")
    return ListQuery(
        contact_id=contact_id,
        hours=params.hours,
        status=params.status,
        limit=params.limit if params.limit is not None else DEFAULT_LIMIT,
        include_messages=bool(params.includeMessages),
        message_limit=(
            params.messageLimit if params.messageLimit is not None else DEFAULT_MESSAGE_LIMIT
        ),
    )


def _cursor_query(
    payload: dict[str, Any], params: ListingQuery, contact_id: str | None
) -> tuple[ListQuery, int, tuple[int, str]]:
    """The query a cursor carries, its window time and position.

    A parameter left out is taken from the cursor; one given must equal the cursor's.
    """
    if payload.get("c") != contact_id:
        raise InvalidParameter("cursor", "belongs to another listing (a different contact)")
    try:
        query = ListQuery(
            contact_id=contact_id,
            hours=None if payload["h"] is None else int(payload["h"]),
            status=None if payload["s"] is None else str(payload["s"]),
            limit=int(payload["l"]),
            include_messages=bool(payload["im"]),
            message_limit=int(payload["ml"]),
        )
        window_time = int(payload["t"])
        after = (int(payload["a"]), str(payload["i"]))
    except (KeyError, TypeError, ValueError):
        raise InvalidParameter("cursor", "is not a valid cursor") from None
    given = {
        "hours": (params.hours, query.hours),
        "status": (params.status, query.status),
        "limit": (params.limit, query.limit),
        "includeMessages": (params.includeMessages, query.include_messages),
        "messageLimit": (params.messageLimit, query.message_limit),
    }
    for name, (value, carried) in given.items():
        if value is not None and value != carried:
            raise InvalidParameter(
                "cursor", f"belongs to another query ({name} differs from the first request's)"
            )
    return query, window_time, after


async def list_sessions_page(
    db: Database,
    conn: AsyncConnection,
    *,
    user_id: str,
    contact_id: str | None,
    params: ListingQuery,
    now_ms: int,
) -> dict[str, Any]:
    """One page of a listing, with ``next_cursor`` (null on the last page).

    The first request fixes the window (``now - hours``) for the whole cursor chain; status
    and the status filter are evaluated at each request's own time. ``conn`` is from
    ``db.read()`` (the request's, already used to authenticate it).
    """
    secret = await db.signing_secret()
    after: tuple[int, str] | None = None
    if params.cursor is None:
        query, window_time = _fresh_query(params, contact_id), now_ms
    else:
        payload = decode_cursor(params.cursor, secret, user_id=user_id)
        query, window_time, after = _cursor_query(payload, params, contact_id)
    min_activity = window_time - query.hours * HOUR_MS if query.hours is not None else None
    # One snapshot only when the messages must agree with the sessions listed: a single
    # statement reads one snapshot anyway, and autocommit saves two round trips.
    async with db.snapshot(conn) if query.include_messages else contextlib.nullcontext():
        if contact_id is not None:
            contact = None
            if ids.is_id(contact_id):
                contact = await contacts_store.get_contact(conn, user_id, contact_id)
            if contact is None:
                raise NotFound("contact not found")
        rows = await store.list_sessions(
            conn,
            user_id=user_id,
            contact_id=contact_id,
            min_activity_ms=min_activity,
            status=query.status,
            now_ms=now_ms,
            after=after,
            limit=query.limit + 1,
        )
        has_more = len(rows) > query.limit
        rows = rows[: query.limit]
        cap = per_session_message_cap(query.message_limit, len(rows))
        per_session: dict[str, list[Sequence[Any]]] = {}
        if query.include_messages and rows:
            per_session = await store.messages_for_sessions(
                conn, user_id, [r[store.LISTED_ID] for r in rows], cap
            )
    if query.include_messages:
        sessions = [
            listed_row_as_json(
                r,
                now_ms=now_ms,
                messages=per_session.get(r[store.LISTED_ID], []),
                # Cut by the response cap: messageLimit alone would have listed more.
                truncated=min(query.message_limit, r[store.LISTED_MESSAGE_COUNT]) > cap,
            )
            for r in rows
        ]
    else:
        sessions = [listed_row_as_json(r, now_ms=now_ms) for r in rows]
    next_cursor = None
    if has_more and rows:
        last = rows[-1]
        next_cursor = encode_cursor(
            {
                **query.payload(),
                "t": window_time,
                "a": last[store.LISTED_ACTIVITY],
                "i": last[store.LISTED_ID],
            },
            secret,
            user_id=user_id,
        )
    return {
        "success": True,
        "count": len(sessions),
        "next_cursor": next_cursor,
        "sessions": sessions,
    }


async def _owned_session(conn: AsyncConnection, user_id: str, session_id: str) -> ListedSession:
    found = await store.get_session(conn, user_id, session_id) if ids.is_id(session_id) else None
    if found is None:
        raise NotFound("session not found")
    return found


async def _with_messages(
    conn: AsyncConnection, user_id: str, listed: ListedSession, *, now_ms: int, message_limit: int
) -> dict[str, Any]:
    msgs = await store.messages_for_sessions(conn, user_id, [listed.session.id], message_limit)
    return session_as_json(listed, now_ms=now_ms, messages=msgs[listed.session.id])


async def get_session(
    db: Database, *, user_id: str, session_id: str, now_ms: int, message_limit: int
) -> dict[str, Any]:
    """One session with its newest ``message_limit`` messages."""
    async with db.read(snapshot=True) as conn:
        listed = await _owned_session(conn, user_id, session_id)
        return await _with_messages(
            conn, user_id, listed, now_ms=now_ms, message_limit=message_limit
        )


async def close_session(
    conn: AsyncConnection, *, user_id: str, session_id: str, now_ms: int, message_limit: int
) -> dict[str, Any]:
    """Close an open session at ``max(now, last message)``; a closed one is left as it is."""
    listed = await _owned_session(conn, user_id, session_id)
    await contacts_store.lock_contacts(conn, user_id, [listed.session.contact_id])
    listed = await _owned_session(conn, user_id, session_id)  # re-read under the lock
    sess = listed.session
    if rule.is_open(now_ms=now_ms, closed_at_ms=sess.closed_at_ms, expires_ms=sess.expires_ms):
        sess.closed_at_ms = rule.close_time(now_ms=now_ms, last_ms=sess.last_ms)
        sess.activity_ms = max(sess.last_ms, sess.closed_at_ms)
        await store.update_session(conn, user_id, sess, now_ms=now_ms)
        await webhook_events.emit(
            conn,
            user_id=user_id,
            contact_id=sess.contact_id,
            events=[SessionEvent("ChatSessionClosed", sess.id)],
            now_ms=now_ms,
        )
    return await _with_messages(conn, user_id, listed, now_ms=now_ms, message_limit=message_limit)
