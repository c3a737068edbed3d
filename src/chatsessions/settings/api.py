"""Routes of per-user settings."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions.auth.api import CurrentUser
from chatsessions.settings import service
from chatsessions.settings.schemas import SettingsIn
from chatsessions.web import (
    DB,
    ClockDep,
    DomainRouter,
    json_response,
    read_json_body,
    schema_of,
    validate_body,
)

router = DomainRouter(prefix="/v1", tags=["settings"])


async def _current(db: DB, user_id: str, now_ms: int) -> Response:
    async with db.read() as conn:
        history = await service.timeout_history(conn, user_id)
    minutes = history.at(now_ms) // 60_000
    return json_response({"success": True, "data": {"sessionTimeoutMinutes": minutes}})


@router.get("/settings", summary="The caller's settings", operation_id="getSettings")
async def get_settings(caller: CurrentUser, db: DB, clock: ClockDep) -> Response:
    """`{"success": true, "data": {"sessionTimeoutMinutes": 60}}`."""
    return await _current(db, caller.user_id, clock())


@router.put(
    "/settings",
    openapi_extra=schema_of(SettingsIn),
    summary="Change settings",
    operation_id="updateSettings",
)
async def put_settings(request: Request, caller: CurrentUser, db: DB, clock: ClockDep) -> Response:
    """Change the session timeout from now on (history keeps its old value)."""
    raw = await read_json_body(request, limit=db.settings.max_body_bytes)
    minutes = validate_body(SettingsIn, raw).sessionTimeoutMinutes
    now = clock()

    async def work(conn: AsyncConnection) -> None:
        await service.set_timeout(conn, user_id=caller.user_id, minutes=minutes, now_ms=now)

    await db.run_write(work)
    return await _current(db, caller.user_id, now)
