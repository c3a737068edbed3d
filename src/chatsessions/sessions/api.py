"""Routes of the Chat Sessions API: the two DM Champ listings, one session, close."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from chatsessions.auth.api import CurrentUser
from chatsessions.errors import InvalidParameter
from chatsessions.sessions import service
from chatsessions.sessions.schemas import SessionListResponse, SingleSessionResponse
from chatsessions.web import DB, ClockDep, json_response, parse_bool, parse_positive_int, query_value

router = APIRouter(prefix="/v1", tags=["chat sessions"])

MAX_HOURS = 876_000
MAX_LIMIT = 1000
_STATUS = {
    "chatsessionopened": "opened",
    "open": "opened",
    "opened": "opened",
    "chatsessionclosed": "closed",
    "closed": "closed",
}

Str = Annotated[str | None, Query()]


def _status(params: dict[str, str]) -> str | None:
    raw = query_value(params, "status")
    if raw is None:
        return None
    status = _STATUS.get(raw.lower())
    if status is None:
        raise InvalidParameter(
            "status", f"must be ChatSessionOpened or ChatSessionClosed, got {raw[:40]!r}"
        )
    return status


def _list_query(request: Request, *, contact_id: str | None) -> service.ListQuery:
    params = dict(request.query_params)
    hours = parse_positive_int(params, "hours", default=None, cap=MAX_HOURS)
    if contact_id is None and hours is None:
        raise InvalidParameter("hours", "is required (a whole number of hours ≥ 1)")
    status = _status(params)
    limit = parse_positive_int(params, "limit", default=100, cap=MAX_LIMIT)
    message_limit = parse_positive_int(params, "messageLimit", default=100, cap=MAX_LIMIT)
    include = parse_bool(params, "includeMessages", default=False)
    assert limit is not None and message_limit is not None
    return service.ListQuery(
        contact_id=contact_id,
        hours=hours,
        status=status,
        limit=limit,
        include_messages=include,
        message_limit=message_limit,
        cursor=query_value(params, "cursor"),
    )


@router.get(
    "/chat-sessions/recent",
    response_model=SessionListResponse,
    summary="Sessions of all contacts with activity in the past `hours` hours",
)
async def recent_sessions(
    request: Request,
    caller: CurrentUser,
    db: DB,
    clock: ClockDep,
    hours: Annotated[str | None, Query(description="integer ≥ 1 (required)")] = None,
    status: Annotated[str | None, Query(description="ChatSessionOpened | ChatSessionClosed")] = None,
    limit: Annotated[str | None, Query(description="integer ≥ 1, default 100, max 1000")] = None,
    includeMessages: Annotated[str | None, Query(description="true/false/1/0")] = None,
    messageLimit: Annotated[str | None, Query(description="integer ≥ 1, default 100")] = None,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> Response:
    """DM Champ's `GET /v1/chat-sessions/recent`, with keyset pagination."""
    query = _list_query(request, contact_id=None)
    page = await service.list_sessions_page(db, user_id=caller.user_id, query=query, now_ms=clock())
    return json_response(page)


@router.get(
    "/chat-sessions/{contactId}",
    response_model=SessionListResponse,
    summary="All sessions of one contact",
)
async def contact_sessions(
    request: Request,
    caller: CurrentUser,
    db: DB,
    clock: ClockDep,
    contactId: Annotated[str, Path()],
    hours: Annotated[str | None, Query(description="integer ≥ 1 (optional)")] = None,
    status: Annotated[str | None, Query(description="ChatSessionOpened | ChatSessionClosed")] = None,
    limit: Annotated[str | None, Query(description="integer ≥ 1, default 100, max 1000")] = None,
    includeMessages: Annotated[str | None, Query(description="true/false/1/0")] = None,
    messageLimit: Annotated[str | None, Query(description="integer ≥ 1, default 100")] = None,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> Response:
    """DM Champ's `GET /v1/chat-sessions/{contactId}` (404 when not the caller's contact)."""
    query = _list_query(request, contact_id=contactId)
    page = await service.list_sessions_page(db, user_id=caller.user_id, query=query, now_ms=clock())
    return json_response(page)


def _message_limit(request: Request) -> int:
    value = parse_positive_int(dict(request.query_params), "messageLimit", default=100, cap=MAX_LIMIT)
    assert value is not None
    return value


@router.get("/sessions/{sessionId}", response_model=SingleSessionResponse, summary="One session")
async def get_session(
    request: Request,
    caller: CurrentUser,
    db: DB,
    clock: ClockDep,
    sessionId: Annotated[str, Path()],
    messageLimit: Annotated[str | None, Query(description="integer ≥ 1, default 100")] = None,
) -> Response:
    """One session with its newest `messageLimit` messages."""
    session = await service.get_session(
        db,
        user_id=caller.user_id,
        session_id=sessionId,
        now_ms=clock(),
        message_limit=_message_limit(request),
    )
    return json_response({"success": True, "session": session})


@router.post(
    "/sessions/{sessionId}/close", response_model=SingleSessionResponse, summary="Close a session"
)
async def close_session(
    request: Request,
    caller: CurrentUser,
    db: DB,
    clock: ClockDep,
    sessionId: Annotated[str, Path()],
    messageLimit: Annotated[str | None, Query(description="integer ≥ 1, default 100")] = None,
) -> Response:
    """Close an open session at max(now, its last message); idempotent."""
    message_limit = _message_limit(request)

    async def work(conn):  # type: ignore[no-untyped-def]
        return await service.close_session(
            conn,
            user_id=caller.user_id,
            session_id=sessionId,
            now_ms=clock(),
            message_limit=message_limit,
        )

    session = await db.run_write(work)
    return json_response({"success": True, "session": session})
