"""Route of DM Champ's chat export: ``GET /v1/chat-exports/recent``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.responses import Response

from chatsessions.auth.api import CurrentUser
from chatsessions.errors import InvalidParameter
from chatsessions.exports import service
from chatsessions.exports.schemas import ExportParams
from chatsessions.web import DB, ClockDep, DomainRouter, json_response

__all__ = ["router"]

router = DomainRouter(prefix="/v1", tags=["chat exports"])

DEFAULT_LIMIT = 50


def _export_query(params: ExportParams) -> service.ExportQuery:
    if params.hours is None:
        raise InvalidParameter("hours", "is required (a whole number of hours ≥ 1)")
    return service.ExportQuery(
        hours=params.hours,
        format=params.format or "json",
        limit=params.limit or DEFAULT_LIMIT,
        filter=params.filter or "all",
    )


@router.get(
    "/chat-exports/recent",
    summary="Transcripts of the contacts with messages in the past `hours` hours",
    responses={200: {"content": {"application/json": {}, "text/plain": {}}}},
    operation_id="exportRecentChats",
    openapi_extra=ExportParams.openapi(),
)
async def recent_exports(
    caller: CurrentUser,
    db: DB,
    clock: ClockDep,
    params: Annotated[ExportParams, Depends(ExportParams.from_request)],
) -> Response:
    """DM Champ's chat export: one transcript per contact, newest activity first.

    At most 10,000 messages per response (the newest); `truncated` says when more matched.
    """
    query = _export_query(params)
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
