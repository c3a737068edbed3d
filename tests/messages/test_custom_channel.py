"""DM Champ's custom-channel endpoints: incoming (both spellings) and send (docs/contract.md#writes)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from chatsessions.timeutil import format_ms
from tests.conftest import T0, FakeClock, Tenant
from tests.factories import make_contact

INCOMING = ["/v1/incoming-custom-channel-message", "/v1/incoming_custom_channel_message"]
SEND = "/v1/send-custom-channel-message"


def _incoming(**custom: Any) -> dict[str, Any]:
    data = {
        "messageSid": "sid-1",
        "fromId": "visitor-42",
        "toId": "bot-1",
        "body": "Hi there",
        "status": "received",
        "channel": "webchat",
    }
    data.update(custom)
    return {"messageType": "text", "customData": {k: v for k, v in data.items() if v is not None}}


async def _find(client: httpx.AsyncClient, tenant: Tenant, external_id: str) -> str:
    r = await client.get("/v1/contacts", params={"externalId": external_id}, headers=tenant.auth)
    assert r.status_code == 200, r.text
    return str(r.json()["contactId"])


async def _messages(client: httpx.AsyncClient, tenant: Tenant, contact_id: str) -> list[Any]:
    r = await client.get(
        f"/v1/chat-sessions/{contact_id}?includeMessages=true", headers=tenant.auth
    )
    assert r.status_code == 200, r.text
    return [m for s in reversed(r.json()["sessions"]) for m in s["messages"]]


@pytest.mark.parametrize("path", INCOMING)
async def test_incoming_creates_contact_and_stores_inbound(
    client: httpx.AsyncClient, tenant: Tenant, path: str
) -> None:
    r = await client.post(path, json=_incoming(), headers=tenant.auth)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True
    assert len(body["messageId"]) == 20
    contact_id = await _find(client, tenant, "visitor-42")
    r = await client.get(f"/v1/contacts/{contact_id}", headers=tenant.auth)
    contact = r.json()["data"]
    assert contact["externalId"] == "visitor-42"
    assert contact["channel"] == "webchat"
    assert contact["phoneNumber"] is None
    [msg] = await _messages(client, tenant, contact_id)
    assert msg == {
        "message_id": body["messageId"],
        "direction": "inbound",
        "role": "user",
        "type": "text",
        "content": "Hi there",
        "media_url": None,
        "timestamp": format_ms(T0),
        "external_id": "sid-1",
    }
    r = await client.get(f"/v1/chat-sessions/{contact_id}", headers=tenant.auth)
    [session] = r.json()["sessions"]
    assert session["channel"] == "webchat"
    assert session["inbound_count"] == 1 and session["outbound_count"] == 0


async def test_incoming_channel_defaults_to_custom(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    r = await client.post(INCOMING[0], json=_incoming(channel=None), headers=tenant.auth)
    assert r.status_code == 200, r.text
    contact_id = await _find(client, tenant, "visitor-42")
    r = await client.get(f"/v1/contacts/{contact_id}", headers=tenant.auth)
    assert r.json()["data"]["channel"] == "custom"


async def test_incoming_is_idempotent_on_message_sid_across_spellings(
    client: httpx.AsyncClient, tenant: Tenant, clock: FakeClock
) -> None:
    first = await client.post(INCOMING[0], json=_incoming(), headers=tenant.auth)
    clock.advance(1000)
    again = await client.post(INCOMING[1], json=_incoming(body="changed"), headers=tenant.auth)
    assert again.status_code == 200, again.text
    assert again.json()["messageId"] == first.json()["messageId"]
    [msg] = await _messages(client, tenant, await _find(client, tenant, "visitor-42"))
    assert msg["content"] == "Hi there"


async def test_incoming_reuses_the_contact_of_a_known_sender(
    client: httpx.AsyncClient, tenant: Tenant, clock: FakeClock
) -> None:
    existing = await make_contact(client, tenant.auth, externalId="visitor-42", channel="webchat")
    r1 = await client.post(INCOMING[0], json=_incoming(), headers=tenant.auth)
    clock.advance(60_000)
    r2 = await client.post(
        INCOMING[1], json=_incoming(messageSid="sid-2", body="again"), headers=tenant.auth
    )
    assert r1.status_code == r2.status_code == 200
    assert r1.json()["messageId"] != r2.json()["messageId"]
    assert await _find(client, tenant, "visitor-42") == existing
    msgs = await _messages(client, tenant, existing)
    assert [m["content"] for m in msgs] == ["Hi there", "again"]


async def test_incoming_without_sid_stores_each_message(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    a = await client.post(INCOMING[0], json=_incoming(messageSid=None), headers=tenant.auth)
    b = await client.post(INCOMING[0], json=_incoming(messageSid=None), headers=tenant.auth)
    assert a.status_code == b.status_code == 200
    assert a.json()["messageId"] != b.json()["messageId"]


async def test_incoming_media_type_and_url(client: httpx.AsyncClient, tenant: Tenant) -> None:
    body = _incoming(mediaUrl="https://cdn.example.com/a.png")
    body["messageType"] = "media"
    r = await client.post(INCOMING[0], json=body, headers=tenant.auth)
    assert r.status_code == 200, r.text
    [msg] = await _messages(client, tenant, await _find(client, tenant, "visitor-42"))
    assert msg["type"] == "media"
    assert msg["media_url"] == "https://cdn.example.com/a.png"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_incoming(fromId=None), "fromId"),
        ({"messageType": "text"}, "customData"),
        ({"messageType": "text", "customData": "nope"}, "customData"),
        (_incoming(fromId=42), "fromId"),
        (_incoming(fromId="a\x00b"), "fromId"),
        (_incoming(body="x\x00"), "body"),
        (_incoming(messageSid=["x"]), "messageSid"),
        (_incoming(fromId="x" * 256), "fromId"),
    ],
)
async def test_incoming_invalid_is_400_naming_the_field(
    client: httpx.AsyncClient, tenant: Tenant, body: dict[str, Any], field: str
) -> None:
    r = await client.post(INCOMING[0], json=body, headers=tenant.auth)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "invalid_parameter"
    assert field in r.json()["error"]
    r = await client.get("/v1/chat-sessions/recent?hours=1", headers=tenant.auth)
    assert r.json()["count"] == 0, "nothing is stored"


async def test_incoming_parses_json_whatever_the_content_type(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    import orjson

    r = await client.post(
        INCOMING[1],
        content=orjson.dumps(_incoming()),
        headers={**tenant.auth, "Content-Type": "text/plain"},
    )
    assert r.status_code == 200, r.text


async def test_send_stores_outbound_and_creates_contact(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    r = await client.post(
        SEND,
        json={"toId": "visitor-7", "body": "Welcome!", "channel": "webchat", "messageType": "text"},
        headers=tenant.auth,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True
    contact_id = await _find(client, tenant, "visitor-7")
    r = await client.get(f"/v1/contacts/{contact_id}", headers=tenant.auth)
    assert r.json()["data"]["channel"] == "webchat"
    [msg] = await _messages(client, tenant, contact_id)
    assert msg["message_id"] == body["messageId"]
    assert msg["direction"] == "outbound"
    assert msg["role"] == "assistant"
    assert msg["type"] == "text"
    assert msg["content"] == "Welcome!"


async def test_conversation_over_the_custom_channel(
    client: httpx.AsyncClient, tenant: Tenant, clock: FakeClock
) -> None:
    r = await client.post(INCOMING[0], json=_incoming(), headers=tenant.auth)
    assert r.status_code == 200
    clock.advance(30_000)
    r = await client.post(
        SEND,
        json={"toId": "visitor-42", "body": "Hello!", "channel": "webchat"},
        headers=tenant.auth,
    )
    assert r.status_code == 200, r.text
    contact_id = await _find(client, tenant, "visitor-42")
    r = await client.get(
        f"/v1/chat-sessions/{contact_id}?includeMessages=true", headers=tenant.auth
    )
    [session] = r.json()["sessions"]
    assert session["message_count"] == 2
    assert session["inbound_count"] == 1 and session["outbound_count"] == 1
    assert [(m["role"], m["content"]) for m in session["messages"]] == [
        ("user", "Hi there"),
        ("assistant", "Hello!"),
    ]


async def test_send_channel_defaults_to_custom(client: httpx.AsyncClient, tenant: Tenant) -> None:
    r = await client.post(SEND, json={"toId": "visitor-8", "body": "Hi"}, headers=tenant.auth)
    assert r.status_code == 200, r.text
    contact_id = await _find(client, tenant, "visitor-8")
    r = await client.get(f"/v1/contacts/{contact_id}", headers=tenant.auth)
    assert r.json()["data"]["channel"] == "custom"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"body": "Hi"}, "toId"),
        ({"toId": 5, "body": "Hi"}, "toId"),
        ({"toId": "v", "body": 5}, "body"),
        ({"toId": "v", "body": "Hi", "messageType": "not a word!"}, "messageType"),
        ({"toId": "v", "body": "\x00"}, "body"),
    ],
)
async def test_send_invalid_is_400_naming_the_field(
    client: httpx.AsyncClient, tenant: Tenant, body: dict[str, Any], field: str
) -> None:
    r = await client.post(SEND, json=body, headers=tenant.auth)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "invalid_parameter"
    assert field in r.json()["error"]


@pytest.mark.parametrize("path", [*INCOMING, SEND])
async def test_custom_channel_requires_authentication(client: httpx.AsyncClient, path: str) -> None:
    r = await client.post(path, json=_incoming())
    assert r.status_code == 401
    assert r.json()["code"] == "unauthorized"
