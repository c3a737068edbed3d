"""Models of the sessions API: the query of each route (parsed and documented by one
declaration, :mod:`chatsessions.queryparams`), and the responses (documentation only;
responses are built as dicts)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, Field

from chatsessions.queryparams import Flag, PositiveInt, QueryModel, Text, Word

__all__ = [
    "MAX_HOURS",
    "MAX_LIMIT",
    "ContactListingQuery",
    "ListingQuery",
    "MessageOut",
    "RecentListingQuery",
    "SessionListResponse",
    "SessionOut",
    "SessionQuery",
    "SingleSessionResponse",
]

MAX_HOURS = 876_000  # 100 years: a larger window counts as this
MAX_LIMIT = 1000  # sessions a page, messages a session: larger counts as this

# DM Champ's names of the two statuses and the short forms clients send, in any case.
_STATUS = Word(
    (
        ("chatsessionopened", "opened"),
        ("chatsessionclosed", "closed"),
        ("open", "opened"),
        ("opened", "opened"),
        ("closed", "closed"),
    ),
    expected="must be ChatSessionOpened or ChatSessionClosed",
)
_MESSAGE_LIMIT = Field(None, description="integer ≥ 1, default 100; above 1000 counts as 1000")


class ListingQuery(QueryModel):
    """The query of both chat-session listings (absent parameters stay ``None``; the
    service applies defaults, or takes them from a cursor)."""

    hours: Annotated[int | None, PositiveInt(cap=MAX_HOURS)] = Field(
        None, description="integer ≥ 1 (optional)"
    )
    status: Annotated[str | None, _STATUS] = Field(
        None,
        description="ChatSessionOpened | ChatSessionClosed (any case; open, opened, closed)",
    )
    limit: Annotated[int | None, PositiveInt(cap=MAX_LIMIT)] = Field(
        None, description="integer ≥ 1, default 100; above 1000 counts as 1000"
    )
    includeMessages: Annotated[bool | None, Flag()] = Field(
        None, description="true/false/1/0 (any case), default false"
    )
    messageLimit: Annotated[int | None, PositiveInt(cap=MAX_LIMIT)] = _MESSAGE_LIMIT
    cursor: Annotated[str | None, Text()] = Field(
        None,
        description="next_cursor of the previous page (the rest of the query may be left out)",
    )


class RecentListingQuery(ListingQuery):
    """``GET /v1/chat-sessions/recent``: ``hours`` is required (unless a cursor carries it)."""

    documented_required: ClassVar[frozenset[str]] = frozenset({"hours"})
    hours: Annotated[int | None, PositiveInt(cap=MAX_HOURS)] = Field(
        None, description="integer ≥ 1 (required)"
    )


class ContactListingQuery(ListingQuery):
    """``GET /v1/chat-sessions/{contactId}``: no window when ``hours`` is absent."""


class SessionQuery(QueryModel):
    """``GET /v1/sessions/{sessionId}`` and its close: how many messages to include."""

    messageLimit: Annotated[int | None, PositiveInt(cap=MAX_LIMIT)] = _MESSAGE_LIMIT


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
    """A chat session (docs/contract.md#listings). `messages*` only with includeMessages=true."""

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
