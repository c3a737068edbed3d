"""Routes that bring messages in: single, batch, and DM Champ's custom-channel shapes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions.auth.api import CurrentUser, authenticate, authenticated_read
from chatsessions.auth.service import Caller
from chatsessions.contacts.schemas import ContactFields
from chatsessions.db import Database
from chatsessions.errors import PayloadTooLarge
from chatsessions.messages import service
from chatsessions.messages.group_commit import GroupCommit
from chatsessions.messages.schemas import (
    BatchIn,
    CustomChannelIncoming,
    CustomChannelSend,
    MessageIn,
)
from chatsessions.timeutil import Clock
from chatsessions.web import (
    DB,
    ClockDep,
    DomainRouter,
    RequestOnlyRoute,
    invalid_from_validation,
    json_response,
    parse_json_body,
    read_body,
    read_json_body,
    schema_of,
    validate_body,
)

router = DomainRouter(prefix="/v1", tags=["messages"])

GROUPED_BATCH_ITEMS = 100
"""A batch this small shares a transaction with the tenant's concurrent small writes
(group commit); a larger one has its own, so that two large batches of a tenant touching
different contacts still run side by side on PostgreSQL."""


async def _store_one(
    request: Request,
    user_id: str,
    item: service.NewMessage,
    now_ms: int,
    conn: AsyncConnection | None = None,
) -> service.StoredMessage:
    """One message, through group commit: written at once when nothing of the tenant is
    in flight, else with the requests queued behind that write (``group_commit``)."""
    group_commit: GroupCommit = request.app.state.group_commit
    [result] = await group_commit.store(user_id, [item], now_ms, conn=conn)
    return result


@asynccontextmanager
async def _caller_and_connection(
    request: Request,
) -> AsyncIterator[tuple[Caller, AsyncConnection | None]]:
    """The caller, and on PostgreSQL the connection its credentials were looked up on, for
    the write to run on (one pool checkout per request; a checkout costs about as much CPU
    as a statement): the probe pool's, on which a single message is read and written
    without the contact's lock (``service.store_messages``). On SQLite None: a write takes
    the write lock on a connection of its own, and holding a second one while waiting for
    the lock could exhaust the pool."""
    db: Database = request.app.state.db
    if db.is_sqlite:
        yield await authenticate(request), None
        return
    async with authenticated_read(request, probes=True) as pair:
        yield pair


async def post_message(request: Request) -> Response:
    """Store one message and place it in its session; idempotent on `externalId`."""
    db: Database = request.app.state.db
    clock: Clock = request.app.state.clock
    # The body is in memory before a connection is taken: a slow sender never holds one.
    # Its errors still come after authentication's (401, then 413, then 400).
    too_large: PayloadTooLarge | None = None
    try:
        raw = await read_body(request, limit=db.settings.max_body_bytes)
    except PayloadTooLarge as exc:
        raw, too_large = b"", exc
    group_commit: GroupCommit = request.app.state.group_commit
    result: service.StoredMessage | None = None
    async with _caller_and_connection(request) as (caller, conn):
        if too_large is not None:
            raise too_large
        body = validate_body(MessageIn, parse_json_body(raw))
        now = clock()
        item = service.prepare_message(body, now_ms=now)
        if not group_commit.busy(caller.user_id):  # written at once, on this connection
            result = await _store_one(request, caller.user_id, item, now, conn)
    if result is None:  # queued behind the tenant's write in flight, holding no connection
        result = await _store_one(request, caller.user_id, item, now)
    payload = {
        "success": True,
        "messageId": result.message_id,
        "sessionId": result.session_id,
        "sessionStatus": result.session_status,
        "sessionOpened": result.session_opened,
    }
    if result.duplicate:
        payload["duplicate"] = True
        return json_response(payload, 200)
    return json_response(payload, 201)


async def post_batch(request: Request) -> Response:
    """Validate every item, then store all of them in one transaction (or none)."""
    caller = await authenticate(request)
    db: Database = request.app.state.db
    clock: Clock = request.app.state.clock
    # Its own checkouts: a large body is read and validated without holding a connection.
    raw = await read_json_body(request, limit=db.settings.max_batch_body_bytes)
    batch = validate_body(BatchIn, raw)
    now = clock()
    items: list[service.NewMessage] = []
    for i, entry in enumerate(batch.messages):
        prefix = f"messages[{i}]."
        try:
            parsed = MessageIn.model_validate(entry)
        except ValidationError as exc:
            raise invalid_from_validation(exc, prefix.rstrip(".")) from None
        items.append(service.prepare_message(parsed, now_ms=now, prefix=prefix))
    if len(items) <= GROUPED_BATCH_ITEMS:
        group_commit: GroupCommit = request.app.state.group_commit
        results = await group_commit.store(caller.user_id, items, now)
    else:
        results = await service.store_messages(db, user_id=caller.user_id, items=items, now_ms=now)
    return json_response(
        {
            "success": True,
            "results": [
                {"messageId": r.message_id, "sessionId": r.session_id, "duplicate": r.duplicate}
                for r in results
            ],
        }
    )


# The two ingest routes are the hottest writes: like the listings, the endpoint takes the
# request alone (RequestOnlyRoute), authenticates before reading the body, and is served
# ahead of FastAPI's routing layers (HOT_ROUTES, web.HotRoutes).
router.add_api_route(
    "/messages",
    post_message,
    methods=["POST"],
    status_code=201,
    openapi_extra=schema_of(MessageIn),
    summary="Store a message",
    operation_id="createMessage",
    responses={200: {"description": "A replay of a stored externalId (duplicate: true)"}},
    route_class_override=RequestOnlyRoute,
)
router.add_api_route(
    "/messages/batch",
    post_batch,
    methods=["POST"],
    openapi_extra=schema_of(BatchIn),
    summary="Store up to 1,000 messages",
    operation_id="createMessageBatch",
    route_class_override=RequestOnlyRoute,
)
HOT_ROUTES = [r for r in router.routes if isinstance(r, RequestOnlyRoute)]
"""The two ingest routes, served ahead of FastAPI's routing layers (``web.HotRoutes``)."""


async def _incoming_custom(
    request: Request, caller: CurrentUser, db: DB, clock: ClockDep
) -> Response:
    body = validate_body(
        CustomChannelIncoming, await read_json_body(request, limit=db.settings.max_body_bytes)
    )
    data = body.customData
    now = clock()
    message = MessageIn(
        contact=ContactFields(externalId=data.fromId, channel=data.channel or "custom"),
        direction="inbound",
        type=body.messageType or "text",
        content=data.body,
        mediaUrl=data.mediaUrl,
        timestamp=data.timestamp,
        externalId=data.messageSid,
    )
    item = service.prepare_message(message, now_ms=now)
    result = await _store_one(request, caller.user_id, item, now)
    out = {"success": True, "messageId": result.message_id}
    if result.duplicate:
        out["duplicate"] = True
    return json_response(out)


router.add_api_route(
    "/incoming-custom-channel-message",
    _incoming_custom,
    methods=["POST"],
    openapi_extra=schema_of(CustomChannelIncoming),
    summary="DM Champ custom channel: an inbound message",
    operation_id="receiveCustomChannelMessage",
)
router.add_api_route(
    "/incoming_custom_channel_message",
    _incoming_custom,
    methods=["POST"],
    include_in_schema=False,
    operation_id="receiveCustomChannelMessageUnderscored",
)


@router.post(
    "/send-custom-channel-message",
    openapi_extra=schema_of(CustomChannelSend),
    summary="DM Champ custom channel: an outbound message",
    operation_id="sendCustomChannelMessage",
)
async def send_custom(request: Request, caller: CurrentUser, db: DB, clock: ClockDep) -> Response:
    """Record an outbound message to a custom-channel contact (created if missing)."""
    body = validate_body(
        CustomChannelSend, await read_json_body(request, limit=db.settings.max_body_bytes)
    )
    now = clock()
    message = MessageIn(
        contact=ContactFields(externalId=body.toId, channel=body.channel or "custom"),
        direction="outbound",
        type=body.messageType or "text",
        content=body.body,
        mediaUrl=body.mediaUrl,
        timestamp=body.timestamp,
        externalId=body.externalId or body.messageSid,
    )
    item = service.prepare_message(message, now_ms=now)
    result = await _store_one(request, caller.user_id, item, now)
    out = {"success": True, "messageId": result.message_id}
    if result.duplicate:
        out["duplicate"] = True
    return json_response(out)
