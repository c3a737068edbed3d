"""The rules of webhook endpoints: validation, secrets, the JSON shapes, the test ping."""

from __future__ import annotations

import base64
import dataclasses
import secrets
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions import ids
from chatsessions.db import Database
from chatsessions.errors import InvalidParameter, NotFound
from chatsessions.sessions.cursor import decode_cursor, encode_cursor
from chatsessions.timeutil import format_ms
from chatsessions.webhooks import delivery, outbox, safety, store
from chatsessions.webhooks.schemas import WebhookIn
from chatsessions.webhooks.store import DeliveryRow, EndpointRow

__all__ = [
    "create_endpoint",
    "deliveries_page",
    "endpoint_as_json",
    "get_owned_endpoint",
    "new_secret",
    "rotate_secret",
    "send_test",
    "validate_events",
]

TEST_EVENT = "WebhookTest"


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def validate_events(names: list[str]) -> list[str]:
    """The subscribed event types, de-duplicated in the order given (400 naming events)."""
    if not names:
        raise InvalidParameter(
            "events", f"must list at least one of {', '.join(outbox.EVENT_TYPES)}"
        )
    out: list[str] = []
    for name in names:
        if name not in outbox.EVENT_TYPES:
            raise InvalidParameter(
                "events",
                f"unknown event {name[:60]!r}; known: {', '.join(outbox.EVENT_TYPES)}",
            )
        if name not in out:
            out.append(name)
    return out


async def check_url(url: str, *, allow_private: bool) -> None:
    """400 naming ``url`` unless webhooks may be sent there."""
    try:
        await safety.check_new_url(url.strip(), allow_private=allow_private)
    except safety.UnsafeUrl as exc:
        raise InvalidParameter("url", str(exc)) from None


def endpoint_as_json(endpoint: EndpointRow, *, with_secret: bool = False) -> dict[str, Any]:
    """An endpoint as the API shows it; the secret only on creation and rotation."""
    out: dict[str, Any] = {
        "webhookId": endpoint.id,
        "url": endpoint.url,
        "events": endpoint.events,
        "description": endpoint.description,
        "enabled": endpoint.enabled,
        "disabledReason": endpoint.disabled_reason,
        "disabledAt": format_ms(endpoint.disabled_at_ms),
        "createdAt": format_ms(endpoint.created_at_ms),
    }
    if with_secret:
        out["secret"] = endpoint.secret
    return out


async def create_endpoint(
    conn: AsyncConnection, *, user_id: str, body: WebhookIn, now_ms: int
) -> EndpointRow:
    """Store a new, enabled endpoint (its URL checked by the caller beforehand)."""
    endpoint = EndpointRow(
        id=ids.new_id(),
        user_id=user_id,
        url=body.url.strip(),
        description=body.description,
        events=validate_events(body.events),
        secret=new_secret(),
        enabled=True,
        disabled_reason=None,
        disabled_at_ms=None,
        failing_since_ms=None,
        created_at_ms=now_ms,
    )
    await store.insert_endpoint(conn, endpoint, now_ms=now_ms)
    return endpoint


async def get_owned_endpoint(
    conn: AsyncConnection, *, user_id: str, endpoint_id: str
) -> EndpointRow:
    """The caller's endpoint, or 404 (another tenant's does not exist for the caller)."""
    found = await store.get_endpoint(conn, user_id, endpoint_id) if ids.is_id(endpoint_id) else None
    if found is None:
        raise NotFound("webhook not found")
    return found


async def rotate_secret(
    conn: AsyncConnection, *, user_id: str, endpoint_id: str, now_ms: int
) -> EndpointRow:
    """Give the endpoint a new secret; deliveries from now on are signed with it."""
    endpoint = await get_owned_endpoint(conn, user_id=user_id, endpoint_id=endpoint_id)
    secret = new_secret()
    await store.set_secret(conn, user_id, endpoint_id, secret, now_ms=now_ms)
    return dataclasses.replace(endpoint, secret=secret)


async def send_test(
    db: Database, endpoint: EndpointRow, *, client: Any, allow_private: bool, now_ms: int
) -> dict[str, Any]:
    """Send a signed ``WebhookTest`` ping now and log it among the deliveries; report whether
    it got a 2xx (never the receiver's body)."""
    event_id = ids.new_id()
    body = outbox.event_body(
        TEST_EVENT, now_ms, {"webhookId": endpoint.id, "message": "test event from chatsessions"}
    )
    result = await delivery.send(
        client,
        url=endpoint.url,
        secret=endpoint.secret,
        event_id=event_id,
        body=body.decode(),
        allow_private=allow_private,
    )

    async def log(conn: AsyncConnection) -> None:
        await outbox.record_sent(
            conn,
            user_id=endpoint.user_id,
            endpoint_id=endpoint.id,
            event_id=event_id,
            type_=TEST_EVENT,
            payload=body,
            ok=result.ok,
            status_code=result.status_code,
            error=result.error,
            response=result.response,
            now_ms=now_ms,
        )

    await db.run_write(log)
    return {
        "eventId": event_id,
        "delivered": result.ok,
        "statusCode": result.status_code,
        "error": None if result.ok or result.status_code is not None else result.error,
    }


def delivery_as_json(row: DeliveryRow) -> dict[str, Any]:
    """One delivery as the deliveries listing shows it."""
    return {
        "eventId": row.event_id,
        "type": row.type,
        "status": row.status,
        "attempts": row.attempts,
        "lastStatusCode": row.last_status_code,
        "lastError": row.last_error,
        "nextAttemptAt": format_ms(row.next_attempt_ms),
        "createdAt": format_ms(row.created_at_ms),
    }


async def deliveries_page(
    conn: AsyncConnection,
    *,
    user_id: str,
    endpoint_id: str,
    limit: int | None,
    cursor: str | None,
    secret: bytes,
    default_limit: int,
) -> dict[str, Any]:
    """One page of an endpoint's deliveries, newest first, with ``next_cursor``."""
    await get_owned_endpoint(conn, user_id=user_id, endpoint_id=endpoint_id)
    before: int | None = None
    if cursor is not None:
        payload = decode_cursor(cursor, secret, user_id=user_id)
        try:
            carried_limit, before = int(payload["l"]), int(payload["b"])
            carried_endpoint = str(payload["w"])
        except (KeyError, TypeError, ValueError):
            raise InvalidParameter("cursor", "is not a valid cursor") from None
        if carried_endpoint != endpoint_id:
            raise InvalidParameter("cursor", "belongs to another webhook's deliveries")
        if limit is not None and limit != carried_limit:
            raise InvalidParameter("cursor", "belongs to another query (limit differs)")
        limit = carried_limit
    limit = limit or default_limit
    rows = await store.list_deliveries(
        conn, user_id=user_id, endpoint_id=endpoint_id, before_id=before, limit=limit + 1
    )
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(
            {"w": endpoint_id, "l": limit, "b": rows[-1].id}, secret, user_id=user_id
        )
    return {
        "success": True,
        "next_cursor": next_cursor,
        "data": [delivery_as_json(row) for row in rows],
    }
