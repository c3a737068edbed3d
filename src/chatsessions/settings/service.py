"""Per-user settings: the session timeout and its history (docs/contract.md#sessions, docs/contract.md#writes)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions.auth import store as auth_store
from chatsessions.contacts import store as contacts_store
from chatsessions.sessions import store as sessions_store
from chatsessions.sessions.recut import recut_sessions
from chatsessions.sessions.rule import TimeoutHistory
from chatsessions.sessions.store import SessionRow
from chatsessions.settings.schemas import MAX_TIMEOUT_MINUTES, MIN_TIMEOUT_MINUTES
from chatsessions.webhooks import events as webhook_events
from chatsessions.webhooks.events import SessionEvent

__all__ = ["MAX_TIMEOUT_MINUTES", "MIN_TIMEOUT_MINUTES", "set_timeout", "timeout_history"]

DEFAULT_TIMEOUT_MS = 60 * 60_000


async def timeout_history(conn: AsyncConnection, user_id: str) -> TimeoutHistory:
    """The user's timeout history (a user always has at least its initial value)."""
    changes = await auth_store.load_timeout_changes(conn, user_id)
    if not changes:
        return TimeoutHistory.constant(DEFAULT_TIMEOUT_MS)
    return TimeoutHistory(tuple(changes))


async def set_timeout(conn: AsyncConnection, *, user_id: str, minutes: int, now_ms: int) -> None:
    """Make ``minutes`` the timeout from ``now_ms`` on; history before keeps its value.

    Messages may be stamped up to 5 minutes ahead, so some gaps may start at or after
    ``now_ms``: the sessions that hold them are re-cut under the new history (a shorter
    timeout can split them, a longer one merge them) and expire under the new value.
    """
    await auth_store.insert_timeout_change(
        conn, user_id=user_id, effective_from_ms=now_ms, timeout_ms=minutes * 60_000
    )
    reaching = await sessions_store.sessions_reaching(conn, user_id, now_ms)
    if not reaching:
        return
    history = await timeout_history(conn, user_id)
    by_contact: dict[str, list[SessionRow]] = {}
    for row in reaching:
        by_contact.setdefault(row.contact_id, []).append(row)
    await contacts_store.lock_contacts(conn, user_id, by_contact)
    for contact_id, olds in sorted(by_contact.items()):
        done = await recut_sessions(
            conn, user_id=user_id, contact_id=contact_id, olds=olds, history=history, now_ms=now_ms
        )
        events = [SessionEvent("ChatSessionOpened", sid) for sid in done.created]
        events += [
            SessionEvent("ChatSessionMerged", into, merged_session_id=gone)
            for gone, into in done.merged_into.items()
        ]
        if events:
            await webhook_events.emit(
                conn, user_id=user_id, contact_id=contact_id, events=events, now_ms=now_ms
            )
