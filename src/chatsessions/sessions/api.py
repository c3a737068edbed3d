"""Routes of the Chat Sessions API: the two DM Champ listings, one session, close."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions.auth.api import CurrentUser, authenticated_read
from chatsessions.errors import InvalidParameter
from chatsessions.sessions import service
from chatsessions.sessions.schemas import SessionListResponse, SingleSessionResponse
from chatsessions.web import (
    DB,
    ClockDep,
    RequestOnlyRoute,
    json_response,
    parse_bool,
    parse_positive_int,
    path_parameter,
    query_parameter,
    query_value,
)

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


def _query(request: Request, *names: str) -> dict[str, str]:
    """The named query parameters; one given twice with different values is a 400."""
    out: dict[str, str] = {}
    for name in names:
        values = {v for v in request.query_params.getlist(name) if v != ""}
        if len(values) > 1:
            raise InvalidParameter(name, "is given more than once with different values")
        if values:
            out[name] = values.pop()
    return out


def _list_params(params: dict[str, str]) -> service.ListParams:
    """Validate every listing parameter (400 naming the first bad one); absent stays None."""
    return service.ListParams(
        hours=parse_positive_int(params, "hours", default=None, cap=MAX_HOURS),
        status=_status(params),
        limit=parse_positive_int(params, "limit", default=None, cap=MAX_LIMIT),
        include_messages=_optional_bool(params, "includeMessages"),
        message_limit=parse_positive_int(params, "messageLimit", default=None, cap=MAX_LIMIT),
    )


def _optional_bool(params: dict[str, str], name: str) -> bool | None:
    if query_value(params, name) is None:
        return None
    return parse_bool(params, name, default=False)


async def _list(request: Request, contact_id: str | None) -> Response:
    state = request.app.state
    async with authenticated_read(request) as (caller, conn):
        given = _query(
            request, "hours", "status", "limit", "includeMessages", "messageLimit", "cursor"
        )
        params = _list_params(given)
        page = await service.list_sessions_page(
            state.db,
            conn,
            user_id=caller.user_id,
            contact_id=contact_id,
            params=params,
            cursor=given.get("cursor"),
            now_ms=state.clock(),
        )
    return json_response(page)


_LIST_QUERY = [
    query_parameter("hours", "integer ≥ 1 (required)"),
    query_parameter("status", "ChatSessionOpened | ChatSessionClosed"),
    query_parameter("limit", "integer ≥ 1, default 100; above 1000 counts as 1000"),
    query_parameter("includeMessages", "true/false/1/0"),
    query_parameter("messageLimit", "integer ≥ 1, default 100"),
    query_parameter(
        "cursor", "next_cursor of the previous page (the rest of the query may be left out)"
    ),
]


async def recent_sessions(request: Request) -> Response:
    """DM Champ's `GET /v1/chat-sessions/recent`, with keyset pagination."""
    return await _list(request, None)


async def contact_sessions(request: Request) -> Response:
    """DM Champ's `GET /v1/chat-sessions/{contactId}` (404 when not the caller's contact)."""
    contact_id: str = request.path_params["contactId"]
    return await _list(request, contact_id)


# The two listings are the hottest routes: the endpoint takes the request alone
# (RequestOnlyRoute), authenticates and reads its query by hand (strictly: a 400 naming
# the parameter); the query is declared for the OpenAPI document only.
router.add_api_route(
    "/chat-sessions/recent",
    recent_sessions,
    methods=["GET"],
    response_model=SessionListResponse,
    summary="Sessions of all contacts with activity in the past `hours` hours",
    openapi_extra={"parameters": _LIST_QUERY},
    route_class_override=RequestOnlyRoute,
)
router.add_api_route(
    "/chat-sessions/{contactId}",
    contact_sessions,
    methods=["GET"],
    response_model=SessionListResponse,
    summary="All sessions of one contact",
    openapi_extra={
        "parameters": [
            path_parameter("contactId"),
            *(
                query_parameter("hours", "integer ≥ 1 (optional)") if p["name"] == "hours" else p
                for p in _LIST_QUERY
            ),
        ]
    },
    route_class_override=RequestOnlyRoute,
)


HOT_ROUTES = [r for r in router.routes if isinstance(r, RequestOnlyRoute)]
"""The two listings, served ahead of FastAPI's routing layers (``web.HotRoutes``)."""


def _message_limit(request: Request) -> int:
    value = parse_positive_int(
        _query(request, "messageLimit"), "messageLimit", default=100, cap=MAX_LIMIT
    )
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
