"""Factories that build data through the real HTTP API."""

from __future__ import annotations

from typing import Any

import httpx

from chatsessions.timeutil import format_ms


async def make_contact(client: httpx.AsyncClient, auth: dict[str, str], **fields: Any) -> str:
    """Create a contact (a unique phone number unless given) and return its id."""
    import secrets

    body = {
        "phoneNumber": f"+1555{secrets.randbelow(10**7):07d}",
        "firstName": "Jane",
        "lastName": "Smith",
    }
    body.update(fields)
    r = await client.post("/v1/contacts", json=body, headers=auth)
    assert r.status_code == 200, r.text
    return str(r.json()["data"]["contactId"])


async def post_message(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    contact_id: str,
    ts_ms: int,
    *,
    direction: str = "inbound",
    expect: int | None = 201,
    **fields: Any,
) -> dict[str, Any]:
    """Store one message at ``ts_ms`` and return the response JSON."""
    body: dict[str, Any] = {
        "contactId": contact_id,
        "direction": direction,
        "content": "hello",
        "timestamp": format_ms(ts_ms),
    }
    body.update(fields)
    r = await client.post("/v1/messages", json=body, headers=auth)
    if expect is not None:
        assert r.status_code == expect, r.text
    data: dict[str, Any] = r.json()
    return data
