"""Per-user settings: the session timeout and its history (SPEC §3, §5)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions.auth import store as auth_store
from chatsessions.sessions.rule import TimeoutHistory
from chatsessions.settings import store
from chatsessions.settings.schemas import MAX_TIMEOUT_MINUTES, MIN_TIMEOUT_MINUTES

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

    A session whose last message is stamped at or after ``now_ms`` (a message may be up
    to 5 minutes ahead) now expires under the new value.
    """
    timeout_ms = minutes * 60_000
    await auth_store.insert_timeout_change(
        conn, user_id=user_id, effective_from_ms=now_ms, timeout_ms=timeout_ms
    )
    await store.reexpire_sessions_from(conn, user_id, from_ms=now_ms, timeout_ms=timeout_ms)
