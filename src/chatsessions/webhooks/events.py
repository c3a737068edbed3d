"""Session events written to the webhook outbox in the caller's transaction (SPEC §6).

The write paths (message ingest, explicit close) call :func:`emit` with the events their
change caused, in order, inside the same transaction as the change itself, so an event is
stored if and only if the change is.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["EVENT_TYPES", "SessionEvent", "emit"]

EVENT_TYPES = ("ChatSessionOpened", "ChatSessionClosed", "ChatSessionMerged", "MessageReceived")


@dataclass(frozen=True)
class SessionEvent:
    """One event: its type, the session it is about, and the message or merged id."""

    type: str
    session_id: str
    message_id: str | None = None
    merged_session_id: str | None = None


async def emit(
    conn: AsyncConnection,
    *,
    user_id: str,
    contact_id: str,
    events: list[SessionEvent],
    now_ms: int,
) -> None:
    """Record ``events`` (in order) for every endpoint of the user subscribed to them."""
    # Filled in by the webhooks outbox; until then there is nothing to deliver to.
    del conn, user_id, contact_id, events, now_ms
