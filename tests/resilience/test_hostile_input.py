"""Table-driven hostile input for every body field and query parameter: a 4xx JSON error
naming the field (or a 2xx that stores the value intact), never a 5xx, never a partial
write."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import func, select

from chatsessions import tables
from chatsessions.db import Database
from tests.conftest import T0, Tenant
from tests.factories import make_contact

HOSTILE: list[Any] = [
    "",
    "x" * 10_000,
    "a\x00b",
    "' OR 1=1; DROP TABLE messages; --",
    "../../../etc/passwd",
    "😀🎉 emoji",
    "مرحبا بالعالم",  # RTL
    "\u202eevil",
    12345,
    -1,
    1.5,
    1e308,
    10**30,
    True,
    None,
    [],
    {"nested": {"deep": [1, 2, 3]}},
]

Body = Callable[[str], dict[str, Any]]

BODIES: dict[tuple[str, str], tuple[Body, list[str]]] = {
    ("POST", "/v1/messages"): (
        lambda contact: {"contactId": contact, "direction": "inbound", "content": "hi"},
        ["contactId", "direction", "role", "type", "content", "mediaUrl", "timestamp", "externalId"],
    ),
    ("POST", "/v1/contacts"): (
        lambda _c: {"phoneNumber": "+15557770000", "firstName": "Ann"},
        [
            "phoneNumber",
            "firstName",
            "lastName",
            "email",
            "channel",
            "externalId",
            "instagramId",
            "is_bot_active",
            "do_not_disturb",
        ],
    ),
    ("PUT", "/v1/settings"): (lambda _c: {"sessionTimeoutMinutes": 60}, ["sessionTimeoutMinutes"]),
    ("POST", "/v1/incoming-custom-channel-message"): (
        lambda _c: {"messageType": "text", "customData": {"fromId": "u-1", "body": "hi"}},
        ["messageType", "customData"],
    ),
    ("POST", "/v1/send-custom-channel-message"): (
        lambda _c: {"toId": "u-2", "body": "hi"},
        ["toId", "body", "channel", "messageType"],
    ),
}

QUERIES: dict[str, list[str]] = {
    "/v1/chat-sessions/recent?hours=24": ["hours", "status", "limit", "includeMessages", "messageLimit", "cursor"],
    "/v1/chat-sessions/{contact}": ["hours", "status", "limit", "includeMessages", "messageLimit", "cursor"],
    "/v1/chat-exports/recent?hours=24": ["hours", "format", "limit", "filter"],
    "/v1/contacts": ["phoneNumber", "email", "externalId"],
}


async def _row_count(database: Database, user_id: str) -> int:
    total = 0
    async with database.read() as conn:
        for table in (tables.messages, tables.contacts, tables.sessions):
            total += (
                await conn.execute(select(func.count()).where(table.c.user_id == user_id))
            ).scalar_one()
    return total


def _check_error(r: httpx.Response, field: str) -> None:
    assert r.status_code < 500, r.text
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert isinstance(body, dict) and "success" in body
    if r.status_code == 400:
        assert body["code"] == "invalid_parameter"
        assert field in body["error"], (field, body)


@pytest.mark.parametrize(("method", "path"), list(BODIES))
async def test_hostile_body_fields(
    client: httpx.AsyncClient, tenant: Tenant, database: Database, method: str, path: str
) -> None:
    contact = await make_contact(client, tenant.auth)
    make_body, fields = BODIES[(method, path)]
    for field in fields:
        for value in HOSTILE:
            body = make_body(contact)
            body[field] = value
            if "timestamp" not in body and path == "/v1/messages":
                body["timestamp"] = T0 - 60_000
            before = await _row_count(database, tenant.user_id)
            r = await client.request(method, path, json=body, headers=tenant.auth)
            _check_error(r, field)
            if r.status_code >= 400:
                assert await _row_count(database, tenant.user_id) == before, (field, value)
            elif path == "/v1/messages" and field == "content" and isinstance(value, str):
                got = await client.get(f"/v1/sessions/{r.json()['sessionId']}", headers=tenant.auth)
                contents = [m["content"] for m in got.json()["session"]["messages"]]
                assert value in contents  # stored and returned intact


@pytest.mark.parametrize("template", list(QUERIES))
async def test_hostile_query_parameters(
    client: httpx.AsyncClient, tenant: Tenant, template: str
) -> None:
    contact = await make_contact(client, tenant.auth)
    path = template.replace("{contact}", contact)
    for param in QUERIES[template]:
        for value in HOSTILE:
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                continue
            sep = "&" if "?" in path else "?"
            r = await client.get(
                f"{path}{sep}{httpx.QueryParams({param: str(value)})}", headers=tenant.auth
            )
            _check_error(r, param)


async def test_hostile_path_ids(client: httpx.AsyncClient, tenant: Tenant) -> None:
    for bad in ("'%20OR%201=1--", "..%2F..%2Fetc%2Fpasswd", "%00", "x" * 5000, "%F0%9F%98%80", "%ff%fe"):
        for method, template in (
            ("GET", "/v1/chat-sessions/{}"),
            ("GET", "/v1/sessions/{}"),
            ("POST", "/v1/sessions/{}/close"),
            ("GET", "/v1/contacts/{}"),
            ("PUT", "/v1/contacts/{}"),
            ("DELETE", "/v1/contacts/{}"),
        ):
            r = await client.request(method, template.format(bad), headers=tenant.auth, json={})
            assert r.status_code in (400, 404), (method, template, bad, r.text)
            assert r.json()["success"] is False


async def test_malformed_bodies(client: httpx.AsyncClient, tenant: Tenant, database: Database) -> None:
    before = await _row_count(database, tenant.user_id)
    cases = [
        b"\xff\xfe\x00garbage",
        b'{"direction": "inbound", "content": "\xff"}',
        b"[" * 100_000,
        b'{"a":' * 2000 + b"1" + b"}" * 2000,
        b"null",
        b"42",
        b'"just a string"',
        b'{"direction": "inbound", "direction": "up"}',  # duplicate keys: the last wins
    ]
    for raw in cases:
        for path in ("/v1/messages", "/v1/messages/batch", "/v1/contacts"):
            for ctype in ("application/json", "text/plain", "application/x-www-form-urlencoded"):
                r = await client.post(
                    path, content=raw, headers={**tenant.auth, "Content-Type": ctype}
                )
                assert 400 <= r.status_code < 500, (raw[:30], path, r.text)
                assert r.json()["success"] is False
    assert await _row_count(database, tenant.user_id) == before


async def test_batch_with_one_hostile_item_writes_nothing(
    client: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    contact = await make_contact(client, tenant.auth)
    before = await _row_count(database, tenant.user_id)
    good = {"contactId": contact, "direction": "inbound", "timestamp": T0 - 60_000}
    for value in HOSTILE:
        items = [dict(good, externalId=f"h{i}") for i in range(5)]
        items[3] = {**good, "content": value, "externalId": "h-bad"}
        r = await client.post("/v1/messages/batch", json={"messages": items}, headers=tenant.auth)
        assert r.status_code < 500
        if r.status_code >= 400:
            assert "messages[3].content" in r.json()["error"]
            assert await _row_count(database, tenant.user_id) == before
        else:
            before = await _row_count(database, tenant.user_id)
    r = await client.post(
        "/v1/messages/batch",
        content=orjson.dumps({"messages": [good] * 2}),
        headers={**tenant.auth, "Content-Type": "text/plain"},
    )
    assert r.status_code == 200
