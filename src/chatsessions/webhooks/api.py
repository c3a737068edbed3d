"""Routes of the webhooks API (docs/contract.md#webhooks): endpoints, secret rotation, test ping, deliveries."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions.auth.api import CurrentUser
from chatsessions.web import (
    DB,
    ClockDep,
    DomainRouter,
    json_response,
    read_json_body,
    schema_of,
    validate_body,
)
from chatsessions.webhooks import delivery, service, store
from chatsessions.webhooks.schemas import (
    DeliveriesPage,
    DeliveriesQuery,
    TestResultResponse,
    WebhookCreatedResponse,
    WebhookIn,
    WebhookListResponse,
    WebhookResponse,
)
from chatsessions.webhooks.store import EndpointRow

router = DomainRouter(prefix="/v1", tags=["webhooks"])

DEFAULT_DELIVERIES_LIMIT = 100
WebhookId = Annotated[str, Path()]


def _allow_private(request: Request) -> bool:
    """``CHATSESSIONS_WEBHOOK_ALLOW_PRIVATE`` of this app."""
    return bool(request.app.state.settings.webhook_allow_private)


@router.post(
    "/webhooks",
    openapi_extra=schema_of(WebhookIn),
    response_model=WebhookCreatedResponse,
    status_code=201,
    summary="Create a webhook endpoint",
    operation_id="createWebhook",
)
async def create_webhook(
    request: Request, caller: CurrentUser, db: DB, clock: ClockDep
) -> Response:
    """201 with the endpoint and its `secret` (shown here and on rotation only)."""
    body = validate_body(WebhookIn, await read_json_body(request, limit=db.settings.max_body_bytes))
    service.validate_events(body.events)
    await service.check_url(body.url, allow_private=_allow_private(request))

    async def work(conn: AsyncConnection) -> EndpointRow:
        return await service.create_endpoint(
            conn, user_id=caller.user_id, body=body, now_ms=clock()
        )

    endpoint = await db.run_write(work)
    return json_response(
        {"success": True, "data": service.endpoint_as_json(endpoint, with_secret=True)}, 201
    )


@router.get(
    "/webhooks",
    response_model=WebhookListResponse,
    summary="List webhook endpoints",
    operation_id="listWebhooks",
)
async def list_webhooks(caller: CurrentUser, db: DB) -> Response:
    """Every endpoint of the caller, without secrets."""
    async with db.read() as conn:
        endpoints = await store.list_endpoints(conn, caller.user_id)
    return json_response(
        {"success": True, "data": [service.endpoint_as_json(e) for e in endpoints]}
    )


@router.get(
    "/webhooks/{webhookId}",
    response_model=WebhookResponse,
    summary="Read a webhook endpoint",
    operation_id="getWebhook",
)
async def read_webhook(caller: CurrentUser, db: DB, webhookId: WebhookId) -> Response:
    """The endpoint, without its secret."""
    async with db.read() as conn:
        endpoint = await service.get_owned_endpoint(
            conn, user_id=caller.user_id, endpoint_id=webhookId
        )
    return json_response({"success": True, "data": service.endpoint_as_json(endpoint)})


@router.delete(
    "/webhooks/{webhookId}", summary="Delete a webhook endpoint", operation_id="deleteWebhook"
)
async def delete_webhook(caller: CurrentUser, db: DB, webhookId: WebhookId) -> Response:
    """Delete the endpoint and its pending and past deliveries."""

    async def work(conn: AsyncConnection) -> None:
        await service.get_owned_endpoint(conn, user_id=caller.user_id, endpoint_id=webhookId)
        await store.delete_endpoint(conn, caller.user_id, webhookId)

    await db.run_write(work)
    return json_response({"success": True})


@router.post(
    "/webhooks/{webhookId}/rotate-secret",
    response_model=WebhookCreatedResponse,
    summary="Rotate a webhook's secret",
    operation_id="rotateWebhookSecret",
)
async def rotate_secret(
    caller: CurrentUser, db: DB, clock: ClockDep, webhookId: WebhookId
) -> Response:
    """A new secret, shown once; every delivery from now on is signed with it."""

    async def work(conn: AsyncConnection) -> EndpointRow:
        return await service.rotate_secret(
            conn, user_id=caller.user_id, endpoint_id=webhookId, now_ms=clock()
        )

    endpoint = await db.run_write(work)
    return json_response(
        {"success": True, "data": service.endpoint_as_json(endpoint, with_secret=True)}
    )


@router.post(
    "/webhooks/{webhookId}/test",
    response_model=TestResultResponse,
    summary="Send a signed test event",
    operation_id="testWebhook",
)
async def test_webhook(
    request: Request, caller: CurrentUser, db: DB, clock: ClockDep, webhookId: WebhookId
) -> Response:
    """Send a signed `WebhookTest` event now; says whether it was accepted (2xx), never what
    the receiver answered."""
    async with db.read() as conn:
        endpoint = await service.get_owned_endpoint(
            conn, user_id=caller.user_id, endpoint_id=webhookId
        )
    async with delivery.new_client() as client:
        result = await service.send_test(
            db,
            endpoint,
            client=client,
            allow_private=_allow_private(request),
            now_ms=clock(),
        )
    return json_response({"success": True, "data": result})


@router.get(
    "/webhooks/{webhookId}/deliveries",
    response_model=DeliveriesPage,
    summary="List a webhook's deliveries",
    operation_id="listWebhookDeliveries",
    openapi_extra=DeliveriesQuery.openapi(),
)
async def list_deliveries(
    caller: CurrentUser,
    db: DB,
    webhookId: WebhookId,
    query: Annotated[DeliveriesQuery, Depends(DeliveriesQuery.from_request)],
) -> Response:
    """Newest first; `limit` (default 100, above 1,000 counts as 1,000) and `cursor`."""
    secret = await db.signing_secret()
    async with db.read() as conn:
        page = await service.deliveries_page(
            conn,
            user_id=caller.user_id,
            endpoint_id=webhookId,
            limit=query.limit,
            cursor=query.cursor,
            secret=secret,
            default_limit=DEFAULT_DELIVERIES_LIMIT,
        )
    return json_response(page)
