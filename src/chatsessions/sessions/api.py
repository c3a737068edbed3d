"""Routes of the Chat Sessions API: the two DM Champ listings, one session, close."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Path, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions.auth.api import CurrentUser, authenticated_read
from chatsessions.sessions import service
from chatsessions.sessions.schemas import (
    ContactListingQuery,
    ListingQuery,
    RecentListingQuery,
    SessionListResponse,
    SessionQuery,
    SingleSessionResponse,
)
from chatsessions.web import (
    DB,
    ClockDep,
    DomainRouter,
    RequestOnlyRoute,
    json_response,
    path_parameter,
)

router = DomainRouter(prefix="/v1", tags=["chat sessions"])


async def _list(request: Request, query: type[ListingQuery], contact_id: str | None) -> Response:
    state = request.app.state
    async with authenticated_read(request) as (caller, conn):
        params = query.from_request(request)
        page = await service.list_sessions_page(
            state.db,
            conn,
            user_id=caller.user_id,
            contact_id=contact_id,
            params=params,
            now_ms=state.clock(),
        )
    return json_response(page)


async def recent_sessions(request: Request) -> Response:
    """DM Champ's `GET /v1/chat-sessions/recent`, with keyset pagination."""
    return await _list(request, RecentListingQuery, None)


async def contact_sessions(request: Request) -> Response:
    """DM Champ's `GET /v1/chat-sessions/{contactId}` (404 when not the caller's contact)."""
    contact_id: str = request.path_params["contactId"]
    return await _list(request, ContactListingQuery, contact_id)


# The two listings are the hottest routes: the endpoint takes the request alone
# (RequestOnlyRoute), authenticates, then parses its query with the model that also
# writes the route's OpenAPI parameters.
router.add_api_route(
    "/chat-sessions/recent",
    recent_sessions,
    methods=["GET"],
    response_model=SessionListResponse,
    summary="Sessions of all contacts with activity in the past `hours` hours",
    operation_id="listRecentChatSessions",
    openapi_extra=RecentListingQuery.openapi(),
    route_class_override=RequestOnlyRoute,
)
router.add_api_route(
    "/chat-sessions/{contactId}",
    contact_sessions,
    methods=["GET"],
    response_model=SessionListResponse,
    summary="All sessions of one contact",
    operation_id="listContactChatSessions",
    openapi_extra={
        "parameters": [path_parameter("contactId"), *ContactListingQuery.openapi_parameters()]
    },
    route_class_override=RequestOnlyRoute,
)


HOT_ROUTES = [r for r in router.routes if isinstance(r, RequestOnlyRoute)]
Query = Annotated[SessionQuery, Depends(SessionQuery.from_request)]
"""The two listings, served ahead of FastAPI's routing layers (``web.HotRoutes``)."""


def _message_limit(query: SessionQuery) -> int:
    return query.messageLimit or service.DEFAULT_MESSAGE_LIMIT


@router.get(
    "/sessions/{sessionId}",
    response_model=SingleSessionResponse,
    summary="One session",
    operation_id="getSession",
    openapi_extra=SessionQuery.openapi(),
)
async def get_session(
    caller: CurrentUser, db: DB, clock: ClockDep, sessionId: Annotated[str, Path()], query: Query
) -> Response:
    """One session with its newest `messageLimit` messages."""
    session = await service.get_session(
        db,
        user_id=caller.user_id,
        session_id=sessionId,
        now_ms=clock(),
        message_limit=_message_limit(query),
    )
    return json_response({"success": True, "session": session})


@router.post(
    "/sessions/{sessionId}/close",
    response_model=SingleSessionResponse,
    summary="Close a session",
    operation_id="closeSession",
    openapi_extra=SessionQuery.openapi(),
)
async def close_session(
    caller: CurrentUser, db: DB, clock: ClockDep, sessionId: Annotated[str, Path()], query: Query
) -> Response:
    """Close an open session at max(now, its last message); idempotent."""
    message_limit = _message_limit(query)

    async def work(conn: AsyncConnection) -> dict[str, Any]:
        return await service.close_session(
            conn,
            user_id=caller.user_id,
            session_id=sessionId,
            now_ms=clock(),
            message_limit=message_limit,
        )

    session = await db.run_write(work)
    return json_response({"success": True, "session": session})
