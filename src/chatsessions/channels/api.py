"""Routes of channels: the resources (API key) and each channel's webhook (the platform's
own proof instead of a key)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Path, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions import ids
from chatsessions.auth.api import AuthFailureThrottle, CurrentUser, client_address
from chatsessions.channels import intake, service, store
from chatsessions.channels.base import ProofRejected, Translation
from chatsessions.channels.registry import META_TYPES, platform_of
from chatsessions.channels.schemas import (
    ChannelIn,
    ChannelListResponse,
    ChannelPatch,
    ChannelResponse,
    HandshakeQuery,
)
from chatsessions.channels.store import ChannelRow, Counts
from chatsessions.channels.vault import SealedSecretError, token_matches
from chatsessions.config import Settings
from chatsessions.db import Database
from chatsessions.errors import (
    ChatSessionsError,
    InvalidParameter,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
)
from chatsessions.messages.group_commit import GroupCommit
from chatsessions.timeutil import Clock
from chatsessions.web import (
    DB,
    ClockDep,
    DomainRouter,
    RequestOnlyRoute,
    json_response,
    path_parameter,
    read_json_body,
    schema_of,
    validate_body,
)

router = DomainRouter(prefix="/v1", tags=["channels"])

ChannelId = Annotated[str, Path()]
WEBHOOK_BODY_LIMIT = 4 * 1024 * 1024  # Meta batches; read only for a channel that exists
_MAX_CHALLENGE = 1024
_TWIML_EMPTY = b'<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


class ProofRefused(ChatSessionsError):
    """401: the platform's proof is missing or wrong."""

    status_code = 401
    code = "unauthorized"


class HandshakeRefused(ChatSessionsError):
    """403: Meta's subscription handshake with a verify token that does not match."""

    status_code = 403
    code = "unauthorized"


async def _counts_of(conn: AsyncConnection, rows: list[ChannelRow]) -> dict[str, Counts]:
    if not rows:
        return {}
    return await store.read_counts(conn, rows[0].user_id, [r.id for r in rows])


@router.post(
    "/channels",
    operation_id="createChannel",
    openapi_extra=schema_of(ChannelIn),
    response_model=ChannelResponse,
    status_code=201,
    summary="Connect a messaging platform",
)
async def create_channel(
    request: Request, caller: CurrentUser, db: DB, clock: ClockDep
) -> Response:
    """201 with the channel, its `webhookPath` (to paste into the platform) and its config
    with secrets masked."""
    body = validate_body(ChannelIn, await read_json_body(request, limit=db.settings.max_body_bytes))
    box = service.vault_of(db.settings)

    async def work(conn: AsyncConnection) -> ChannelRow:
        return await service.create_channel(
            conn, user_id=caller.user_id, body=body, box=box, now_ms=clock()
        )

    row = await db.run_write(work)
    return json_response(
        {"success": True, "data": service.channel_as_json(row, Counts(), box)}, 201
    )


@router.get(
    "/channels",
    operation_id="listChannels",
    response_model=ChannelListResponse,
    summary="List channels",
)
async def list_channels(caller: CurrentUser, db: DB) -> Response:
    """Every channel of the caller with its counters, secrets masked."""
    box = service.vault_of(db.settings)
    async with db.read(snapshot=True) as conn:
        rows = await store.list_channels(conn, caller.user_id)
        counts = await _counts_of(conn, rows)
    return json_response(
        {"success": True, "data": [service.channel_as_json(r, counts[r.id], box) for r in rows]}
    )


@router.get(
    "/channels/{channelId}",
    operation_id="getChannel",
    response_model=ChannelResponse,
    summary="Read a channel and its counters",
)
async def read_channel(caller: CurrentUser, db: DB, channelId: ChannelId) -> Response:
    """The channel, secrets masked, with its counters since creation."""
    box = service.vault_of(db.settings)
    async with db.read(snapshot=True) as conn:
        row = await service.get_owned_channel(conn, user_id=caller.user_id, channel_id=channelId)
        counts = await _counts_of(conn, [row])
    return json_response(
        {"success": True, "data": service.channel_as_json(row, counts[row.id], box)}
    )


@router.patch(
    "/channels/{channelId}",
    operation_id="updateChannel",
    openapi_extra=schema_of(ChannelPatch),
    response_model=ChannelResponse,
    summary="Change a channel's name or config (rotate a secret)",
)
async def update_channel(
    request: Request, caller: CurrentUser, db: DB, clock: ClockDep, channelId: ChannelId
) -> Response:
    """The config keys given replace the stored ones; a replaced secret stops verifying."""
    raw = await read_json_body(request, limit=db.settings.max_body_bytes)
    box = service.vault_of(db.settings)

    async def work(conn: AsyncConnection) -> tuple[ChannelRow, Counts]:
        # The channel is looked up before the body is judged: another tenant gets 404.
        await service.get_owned_channel(conn, user_id=caller.user_id, channel_id=channelId)
        body = validate_body(ChannelPatch, raw)
        row = await service.update_channel(
            conn, user_id=caller.user_id, channel_id=channelId, body=body, box=box, now_ms=clock()
        )
        return row, (await _counts_of(conn, [row]))[row.id]

    row, counts = await db.run_write(work)
    return json_response({"success": True, "data": service.channel_as_json(row, counts, box)})


@router.delete("/channels/{channelId}", operation_id="deleteChannel", summary="Delete a channel")
async def delete_channel(caller: CurrentUser, db: DB, channelId: ChannelId) -> Response:
    """Delete the channel; its webhook answers 404 from now on (messages stay)."""

    async def work(conn: AsyncConnection) -> None:
        await service.delete_channel(conn, user_id=caller.user_id, channel_id=channelId)

    await db.run_write(work)
    return json_response({"success": True})


async def _channel_of(request: Request, conn: AsyncConnection | None = None) -> ChannelRow:
    """The channel of the path, read on ``conn`` (from ``db.read()``) or a connection of its
    own; 404 when there is none."""
    db: Database = request.app.state.db
    channel_id = request.path_params["channelId"]
    row = None
    if ids.is_id(channel_id):
        if conn is not None:
            row = await store.get_channel_by_id(conn, channel_id)
        else:
            async with db.read() as own:
                row = await store.get_channel_by_id(own, channel_id)
    if row is None:
        raise NotFound("channel not found")
    return row


@asynccontextmanager
async def _request_connection(db: Database) -> AsyncIterator[AsyncConnection | None]:
    """On PostgreSQL one connection for the whole delivery (the channel's lookup, then the
    write on it: one pool checkout); on SQLite None (a write takes the write lock on a
    connection of its own, and holding a second one meanwhile could exhaust the pool)."""
    if db.is_sqlite:
        yield None
        return
    async with db.read() as conn:
        yield conn


def _throttle_of(request: Request) -> tuple[AuthFailureThrottle, str]:
    """Bad proofs and verify tokens count as failed authentications of the sender's
    address: a flood of forged deliveries, or guesses at a verify token, get 429 (and no
    counter write each) once over the limit."""
    throttle: AuthFailureThrottle = request.app.state.auth_throttle
    address = client_address(request, request.app.state.settings)
    retry = throttle.retry_after(address)
    if retry is not None:
        raise RateLimited(retry, "too many requests with a bad proof from this address")
    return throttle, address


async def handshake(request: Request) -> Response:
    """Meta's subscription check: echo `hub.challenge` when `hub.verify_token` matches."""
    row = await _channel_of(request)
    throttle, address = _throttle_of(request)
    if row.type not in META_TYPES:
        raise MethodNotAllowed(f"a {row.type} channel has no subscription handshake")
    query = HandshakeQuery.from_request(request)
    mode, token, challenge = query.mode, query.verify_token, query.challenge or ""
    if len(challenge) > _MAX_CHALLENGE:
        raise InvalidParameter("hub.challenge", f"must be at most {_MAX_CHALLENGE} characters")
    if mode != "subscribe" or not token or row.token_hash is None:
        raise HandshakeRefused("hub.mode must be subscribe with the channel's hub.verify_token")
    if not token_matches(token, row.token_hash):
        throttle.record_failure(address)
        raise HandshakeRefused("hub.verify_token does not match")
    return PlainTextResponse(challenge)


async def _raw_body(request: Request) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > WEBHOOK_BODY_LIMIT:
            raise PayloadTooLarge(f"request body is over the limit of {WEBHOOK_BODY_LIMIT} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def receive(request: Request) -> Response:
    """A platform's delivery: 200 once every message it carries is committed; 401 on a
    missing or wrong proof; 5xx when it cannot be stored (the platform retries)."""
    db: Database = request.app.state.db
    group_commit: GroupCommit = request.app.state.group_commit
    throttle, address = _throttle_of(request)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > WEBHOOK_BODY_LIMIT:
        raise PayloadTooLarge(f"request body is over the limit of {WEBHOOK_BODY_LIMIT} bytes")
    # The body is in memory before a connection is taken: a slow sender never holds one.
    raw = await _raw_body(request)
    async with _request_connection(db) as conn:
        row, translation, now = await _verified(request, raw, throttle, address, conn)
        if not group_commit.busy(row.user_id):  # written at once, on this connection
            return await _store(request, row, translation, now, conn)
    # Queued behind the tenant's write in flight (group commit), holding no connection.
    return await _store(request, row, translation, now, None)


async def _verified(
    request: Request,
    raw: bytes,
    throttle: AuthFailureThrottle,
    address: str,
    conn: AsyncConnection | None,
) -> tuple[ChannelRow, Translation, int]:
    """The channel, the payload's translation once its proof verified, and the time of
    receipt; a refused or unreadable delivery is counted and raised."""
    row = await _channel_of(request, conn)
    db: Database = request.app.state.db
    settings: Settings = request.app.state.settings
    clock: Clock = request.app.state.clock
    platform = platform_of(row.type)
    try:
        config = service.runtime_config(row, service.vault_of(settings))
    except SealedSecretError as exc:
        counts = Counts(last_error=str(exc), last_error_at_ms=clock())
        await intake.count(db, row, counts, conn=conn)
        raise ChatSessionsError("the channel's secrets cannot be read on this server") from None
    url = config.public_url or intake.request_url(request, settings)
    try:
        platform.verify(raw, request.headers, config, url=url)
    except ProofRejected as exc:
        throttle.record_failure(address)
        now = clock()
        intake.CHANNEL_ITEMS.labels(row.type, "rejected").inc()
        counts = Counts(rejected=1, last_error=str(exc), last_error_at_ms=now)
        await intake.count(db, row, counts, conn=conn)
        raise ProofRefused("the platform's proof is missing or wrong") from None
    now = clock()
    content_type = request.headers.get("content-type", "").lower()
    try:
        translation = platform.translate(raw, config, content_type=content_type)
    except (ValidationError, ValueError) as exc:  # orjson's and pydantic's errors included
        problem = f"not a {row.type} payload ({type(exc).__name__})"
        counts = Counts(received=1, last_error=problem, last_error_at_ms=now)
        await intake.count(db, row, counts, conn=conn)
        raise InvalidParameter("body", problem) from None
    return row, translation, now


async def _store(
    request: Request,
    row: ChannelRow,
    translation: Translation,
    now: int,
    conn: AsyncConnection | None,
) -> Response:
    """Store the delivery (through group commit) and answer the platform."""
    db: Database = request.app.state.db
    group_commit: GroupCommit = request.app.state.group_commit
    outcome = await intake.store_translation(
        db, group_commit, row, translation, now_ms=now, conn=conn
    )
    if row.type == "twilio":
        return Response(_TWIML_EMPTY, media_type="text/xml")
    return json_response(
        {
            "success": True,
            "stored": outcome.stored,
            "duplicates": outcome.duplicates,
            "ignored": outcome.ignored,
        }
    )


_WEBHOOK_PATH = "/channels/{channelId}/webhook"
_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
router.add_api_route(
    _WEBHOOK_PATH,
    handshake,
    methods=["GET"],
    operation_id="verifyChannelWebhook",
    summary="Meta's subscription handshake (no API key)",
    response_class=PlainTextResponse,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        403: {"description": "hub.verify_token does not match", "content": _ERROR},
        405: {"description": "not a Meta channel", "content": _ERROR},
    },
    openapi_extra={
        "parameters": [path_parameter("channelId"), *HandshakeQuery.openapi_parameters()],
        "security": [],
    },
    route_class_override=RequestOnlyRoute,
)
router.add_api_route(
    _WEBHOOK_PATH,
    receive,
    methods=["POST"],
    operation_id="receiveChannelWebhook",
    summary="A platform's delivery (authenticated by the platform's proof, no API key)",
    responses={
        200: {
            "description": "Committed (Twilio channels: an empty TwiML document)",
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "text/xml": {"schema": {"type": "string"}},
            },
        },
    },
    openapi_extra={"parameters": [path_parameter("channelId")], "security": []},
    route_class_override=RequestOnlyRoute,
)
HOT_ROUTES = [
    r for r in router.routes if isinstance(r, RequestOnlyRoute) and "POST" in (r.methods or ())
]
"""The webhook's delivery route, served ahead of FastAPI's routing layers (``web.HotRoutes``):
a platform's deliveries are the channel's hot path."""
