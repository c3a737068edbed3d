"""``POST /v1/imports``: one chat export as the raw request body."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from chatsessions.auth.api import CurrentUser
from chatsessions.errors import InvalidParameter, PayloadTooLarge
from chatsessions.imports import service
from chatsessions.imports.model import Source
from chatsessions.imports.registry import FORMATS
from chatsessions.web import DB, ClockDep, json_response

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["imports"])

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


def _opt(value: str | None) -> str | None:
    return value if value else None  # given empty counts as absent


@router.post(
    "/imports",
    operation_id="importChat",
    summary="Import one chat export (WhatsApp, Telegram, Signal, Instagram, Messenger)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The export file itself (WhatsApp .txt or .zip, Telegram result.json, "
            "signal-export .md, Meta message_N.json), at most 32 MiB",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "text/plain": {"schema": {"type": "string"}},
                "application/json": {"schema": {}},
            },
        }
    },
)
async def import_chat(
    request: Request,
    caller: CurrentUser,
    db: DB,
    clock: ClockDep,
    format: Annotated[str | None, Query(description=" | ".join(FORMATS) + " (required)")] = None,
    me: Annotated[
        str | None,
        Query(description="the business's author name in the export (its messages are outbound)"),
    ] = None,
    tz: Annotated[
        str | None,
        Query(description="IANA time zone of a text export's wall-clock times (default UTC)"),
    ] = None,
    dateOrder: Annotated[
        str | None, Query(description="dmy | mdy | ymd, when the file's date order is ambiguous")
    ] = None,
    chat: Annotated[
        str | None, Query(description="the chat to import from a whole-account Telegram export")
    ] = None,
    contactPhone: Annotated[
        str | None,
        Query(description="the contact's phone number (find or create the contact by it)"),
    ] = None,
) -> Response:
    """Store a chat's history as one contact's messages; sessions are cut as if live.

    Idempotent: importing the same export again, or a later one that overlaps it, stores
    only the messages not already there. Nothing is stored when the file has an error.
    """
    if not format:
        raise InvalidParameter("format", f"is required: one of {', '.join(FORMATS)}")
    options = service.ImportOptions(
        format=format,
        me=_opt(me),
        tz=tz or "UTC",
        date_order=_opt(dateOrder),
        chat=_opt(chat),
        contact_phone=_opt(contactPhone),
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
