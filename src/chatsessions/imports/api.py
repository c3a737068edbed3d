"""``POST /v1/imports``: one chat export as the raw request body."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import Response

from chatsessions.auth.api import CurrentUser
from chatsessions.errors import InvalidParameter, PayloadTooLarge
from chatsessions.imports import service
from chatsessions.imports.model import Source
from chatsessions.imports.registry import FORMATS
from chatsessions.imports.schemas import ImportQuery
from chatsessions.web import DB, ClockDep, DomainRouter, json_response

__all__ = ["router"]

router = DomainRouter(prefix="/v1", tags=["imports"])

MAX_IMPORT_BYTES = 32 * 1024 * 1024


async def _read_body(request: Request, *, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body:
        raise InvalidParameter("body", "the export file is required as the request body")
    return body


@router.post(
    "/imports",
    operation_id="importChat",
    summary="Import one chat export (WhatsApp, Telegram, Signal, Instagram, Messenger)",
    openapi_extra={
        "parameters": ImportQuery.openapi_parameters(),
        "requestBody": {
            "required": True,
            "description": "The export file itself (WhatsApp .txt or .zip, Telegram result.json, "
            "signal-export .md, Meta message_N.json), at most 32 MiB",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "text/plain": {"schema": {"type": "string"}},
                "application/json": {"schema": {}},
            },
        },
    },
)
async def import_chat(
    request: Request,
    caller: CurrentUser,
    db: DB,
    clock: ClockDep,
    query: Annotated[ImportQuery, Depends(ImportQuery.from_request)],
) -> Response:
    """Store a chat's history as one contact's messages; sessions are cut as if live.

    Idempotent: importing the same export again, or a later one that overlaps it, stores
    only the messages not already there. Nothing is stored when the file has an error.
    """
    if query.format is None:
        raise InvalidParameter("format", f"is required: one of {', '.join(FORMATS)}")
    options = service.ImportOptions(
        format=query.format,
        me=query.me,
        tz=query.tz or "UTC",
        date_order=query.dateOrder,
        chat=query.chat,
        contact_phone=query.contactPhone,
    )
    service.check_options(options)  # bad parameters are 400 before the body is read
    body = await _read_body(request, limit=MAX_IMPORT_BYTES)
    sources = [Source.from_bytes("body", body)]
    now = clock()
    plan = await asyncio.to_thread(service.prepare, sources, options, now_ms=now)
    result = await service.run_import(db, user_id=caller.user_id, plan=plan, now_ms=now)
    return json_response(
        {
            "success": True,
            "data": {
                "contactId": result.contact_id,
                "messages": result.messages,
                "duplicates": result.duplicates,
                "sessions": result.sessions,
                "skipped": plan.skipped,
                "timeZone": plan.zone.key,
                "dateOrder": plan.date_order,
            },
        }
    )
