"""Route of DM Champ's chat export: ``GET /v1/chat-exports/recent``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from chatsessions.auth.api import CurrentUser
from chatsessions.errors import InvalidParameter
from chatsessions.exports import service
from chatsessions.exports.store import FILTERS
from chatsessions.web import DB, ClockDep, json_response, parse_positive_int, query_value

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["chat exports"])

MAX_HOURS = 876_000
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
FORMATS = ("json", "txt")


def _choice(params: dict[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    raw = query_value(params, name)
    if raw is None:
        return default
    value = raw.lower()
    if value not in allowed:
        raise InvalidParameter(name, f"must be one of {', '.join(allowed)}, got {raw[:40]!r}")
    return value


def _export_query(request: Request) -> service.ExportQuery:
    params = dict(request.query_params)
    hours = parse_positive_int(params, "hours", default=None, cap=MAX_HOURS)
    if hours is None:
        raise InvalidParameter("hours", "is required (a whole number of hours ≥ 1)")
    limit = parse_positive_int(params, "limit", default=DEFAULT_LIMIT, cap=MAX_LIMIT)
    assert limit is not None
    return service.ExportQuery(
        hours=hours,
        format=_choice(params, "format", FORMATS, "json"),
        limit=limit,
        filter=_choice(params, "filter", FILTERS, "all"),
    )


@router.get(
    "/chat-exports/recent",
    summary="Transcripts of the contacts with messages in the past `hours` hours",
    responses={200: {"content": {"application/json": {}, "text/plain": {}}}},
)
async def recent_exports(
    request: Request,
    caller: CurrentUser,
    db: DB,
    clock: ClockDep,
    hours: Annotated[str | None, Query(description="integer ≥ 1 (required)")] = None,
    format: Annotated[str | None, Query(description="json (default) | txt")] = None,
    limit: Annotated[str | None, Query(description="contacts, integer ≥ 1, default 50")] = None,
    filter: Annotated[
        str | None, Query(description="all (default) | media | tool_use | text")
    ] = None,
) -> Response:
    """DM Champ's chat export: one transcript per contact, newest activity first.

    At most 10,000 messages per response (the newest); `truncated` says when more matched.
    """
    query = _export_query(request)
    now = clock()
    export = await service.build_export(db, user_id=caller.user_id, query=query, now_ms=now)
    if query.format == "txt":
        return Response(
            service.export_as_text(export).encode("utf-8"),
            media_type="text/plain; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="{service.export_filename(now)}"'
            },
        )
    return json_response(service.export_as_json(export))
