"""Per-user settings: the session timeout and its history (SPEC §3, §5)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions.auth import store
from chatsessions.sessions.rule import TimeoutHistory

__all__ = ["MAX_TIMEOUT_MINUTES", "MIN_TIMEOUT_MINUTES", "set_timeout", "timeout_history"]

MIN_TIMEOUT_MINUTES = 1
MAX_TIMEOUT_MINUTES = 43_200  # 30 days


async def timeout_history(conn: AsyncConnection, user_id: str) -> TimeoutHistory:
    """The user's timeout history (a user always has at least its initial value)."""
    changes = await store.load_timeout_changes(conn, user_id)
    if not changes:
        return TimeoutHistory.constant(60 * 60_000)
    return TimeoutHistory(tuple(changes))


async def set_timeout(conn: AsyncConnection, *, user_id: str, minutes: int, now_ms: int) -> None:
    """Make ``minutes`` the timeout from ``now_ms`` on; history before keeps its value."""
    await store.insert_timeout_change(
        conn, user_id=user_id, effective_from_ms=now_ms, timeout_ms=minutes * 60_000
    )
