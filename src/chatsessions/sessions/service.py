"""Reading and closing sessions: listings with keyset cursors, one session, explicit close."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions import ids
from chatsessions.contacts import store as contacts_store
from chatsessions.db import Database
from chatsessions.errors import InvalidParameter, NotFound
from chatsessions.sessions import rule, store
from chatsessions.sessions.cursor import decode_cursor, encode_cursor
from chatsessions.sessions.store import ListedSession, MessageRow
from chatsessions.timeutil import format_ms

__all__ = [
    "MAX_MESSAGES_PER_RESPONSE",
    "ListQuery",
    "close_session",
    "get_session",
    "list_sessions_page",
    "message_as_json",
    "session_as_json",
]

MAX_MESSAGES_PER_RESPONSE = 10_000
HOUR_MS = 3_600_000


def message_as_json(msg: MessageRow) -> dict[str, Any]:
    """A message as the API shows it."""
    return {
        "message_id": msg.id,
        "direction": msg.direction,
        "role": msg.role,
        "type": msg.type,
        "content": msg.content,
        "media_url": msg.media_url,
        "timestamp": format_ms(msg.ts_ms),
        "external_id": msg.external_id,
    }


def contact_name(first: str | None, last: str | None) -> str | None:
    """``firstName lastName`` trimmed; null when both are empty."""
    return f"{first or ''} {last or ''}".strip() or None


def session_as_json(
    listed: ListedSession,
    *,
    now_ms: int,
    messages: list[MessageRow] | None = None,
) -> dict[str, Any]:
    """The §4 session object; ``messages`` given adds ``messages`` and ``messages_truncated``."""
    sess = listed.session
    end_ms, reason = rule.end_and_reason(
        now_ms=now_ms,
        last_ms=sess.last_ms,
        closed_at_ms=sess.closed_at_ms,
        expires_ms=sess.expires_ms,
    )
    out: dict[str, Any] = {
        "session_id": sess.id,
        "contact_id": sess.contact_id,
        "contact_name": contact_name(listed.first_name, listed.last_name),
        "contact_phone": listed.phone,
        "contact_email": listed.email,
        "channel": listed.channel,
        "start_date_time": format_ms(sess.start_ms),
        "last_message_date_time": format_ms(sess.last_ms),
        "end_date_time": format_ms(end_ms),
        "status": rule.OPENED if reason is None else rule.CLOSED,
        "closed_reason": reason,
        "message_count": sess.message_count,
        "inbound_count": sess.inbound_count,
        "outbound_count": sess.outbound_count,
    }
    if messages is not None:
        out["messages"] = [message_as_json(msg) for msg in messages]
        out["messages_truncated"] = len(messages) < sess.message_count
    return out


@dataclass(frozen=True)
class ListQuery:
    """A validated listing request (both chat-sessions endpoints)."""

    contact_id: str | None
    hours: int | None
    status: str | None  # "opened" | "closed" | None
    limit: int
    include_messages: bool
    message_limit: int
    cursor: str | None

    def binding(self, user_id: str) -> dict[str, Any]:
        """What a cursor of this query must carry to be accepted."""
        return {
            "u": user_id,
            "c": self.contact_id,
            "h": self.hours,
            "s": self.status,
            "l": self.limit,
            "ml": self.message_limit,
        }


async def list_sessions_page(
    db: Database, *, user_id: str, query: ListQuery, now_ms: int
) -> dict[str, Any]:
    """One page of a listing, with ``next_cursor`` (null on the last page)."""
    secret = await db.signing_secret()
    binding = query.binding(user_id)
    window_time = now_ms
    after: tuple[int, str] | None = None
    if query.cursor is not None:
        payload = decode_cursor(query.cursor, secret)
        if any(payload.get(k) != v for k, v in binding.items()):
            raise InvalidParameter("cursor", "belongs to another query (parameters or user differ)")
        try:
            window_time = int(payload["t"])
            after = (int(payload["a"]), str(payload["i"]))
        except (KeyError, TypeError, ValueError):
            raise InvalidParameter("cursor", "is not a valid cursor") from None
    min_activity = window_time - query.hours * HOUR_MS if query.hours is not None else None
    async with db.read() as conn:
        if query.contact_id is not None:
            contact = None
            if ids.is_id(query.contact_id):
                contact = await contacts_store.get_contact(conn, user_id, query.contact_id)
            if contact is None:
                raise NotFound("contact not found")
        rows = await store.list_sessions(
            conn,
            user_id=user_id,
            contact_id=query.contact_id,
            min_activity_ms=min_activity,
            status=query.status,
            now_ms=now_ms,
            after=after,
            limit=query.limit + 1,
        )
        has_more = len(rows) > query.limit
        rows = rows[: query.limit]
        per_session: dict[str, list[MessageRow]] | None = None
        if query.include_messages and rows:
            cap = min(query.message_limit, MAX_MESSAGES_PER_RESPONSE // len(rows))
            per_session = await store.messages_for_sessions(
                conn, user_id, [r.session.id for r in rows], cap
            )
    sessions = [
        session_as_json(
            r,
            now_ms=now_ms,
            messages=(per_session or {}).get(r.session.id, []) if query.include_messages else None,
        )
        for r in rows
    ]
    next_cursor = None
    if has_more and rows:
        last = rows[-1].session
        next_cursor = encode_cursor(
            {**binding, "t": window_time, "a": last.activity_ms, "i": last.id}, secret
        )
    return {"success": True, "count": len(sessions), "next_cursor": next_cursor, "sessions": sessions}


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
    async with db.read() as conn:
        listed = await _owned_session(conn, user_id, session_id)
        return await _with_messages(conn, user_id, listed, now_ms=now_ms, message_limit=message_limit)


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
    return await _with_messages(conn, user_id, listed, now_ms=now_ms, message_limit=message_limit)
