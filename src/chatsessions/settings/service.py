"""Per-user settings: the session timeout and its history (a change takes effect from its
moment; docs/contract.md#sessions)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions.auth import store as auth_store
from chatsessions.messages import service as messages_service
from chatsessions.sessions import store as sessions_store
from chatsessions.sessions.rule import DEFAULT_TIMEOUT_MS, TimeoutHistory
from chatsessions.settings.schemas import MAX_TIMEOUT_MINUTES, MIN_TIMEOUT_MINUTES

__all__ = [
    "DEFAULT_TIMEOUT_MS",
    "MAX_TIMEOUT_MINUTES",
    "MIN_TIMEOUT_MINUTES",
    "set_timeout",
    "timeout_history",
]


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
    ranges: dict[str, tuple[int, int]] = {}
    for row in reaching:
        lo, hi = ranges.get(row.contact_id, (row.start_ms, row.start_ms))
        ranges[row.contact_id] = (min(lo, row.start_ms), max(hi, row.start_ms))
    if ranges:
        await messages_service.recut_after_timeout_change(
            conn, user_id=user_id, ranges=ranges, now_ms=now_ms
        )
