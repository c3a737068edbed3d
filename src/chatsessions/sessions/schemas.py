"""Response models of the sessions API (documentation; responses are built as dicts)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

__all__ = ["MessageOut", "SessionListResponse", "SessionOut", "SingleSessionResponse"]


class MessageOut(BaseModel):
    """A message inside a session."""

    message_id: str
    direction: Literal["inbound", "outbound"]
    role: str
    type: str
    content: str | None
    media_url: str | None
    timestamp: str
    external_id: str | None


class SessionOut(BaseModel):
    """A chat session (SPEC §4). `messages*` only with includeMessages=true."""

    session_id: str
    contact_id: str
    contact_name: str | None
    contact_phone: str | None
    contact_email: str | None
    channel: str | None
    start_date_time: str
    last_message_date_time: str
    end_date_time: str | None
    status: Literal["ChatSessionOpened", "ChatSessionClosed"]
    closed_reason: Literal["inactivity", "closed"] | None
    message_count: int
    inbound_count: int
    outbound_count: int
    messages: list[MessageOut] | None = None
    messages_truncated: bool | None = None


class SessionListResponse(BaseModel):
    """A page of sessions."""

    success: bool
    count: int
    next_cursor: str | None
    sessions: list[SessionOut]


class SingleSessionResponse(BaseModel):
    """One session."""

    success: bool
    session: SessionOut
