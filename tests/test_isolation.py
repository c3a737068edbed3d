"""Tenant isolation, built from the app's route table (docs/contract.md#tenancy).

Every ``/v1`` route with a path parameter is called by tenant B with tenant A's ids and
must answer 404 ``not_found`` without any of A's data; a new endpoint is covered as soon
as it is routed. Listings never show A's data, and A's data is unchanged afterwards.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest_asyncio
from fastapi import FastAPI
from fastapi import routing as fastapi_routing
from fastapi.routing import APIRoute

from chatsessions.app import create_app
from chatsessions.config import Settings
from chatsessions.db import Database
from tests.conftest import T0, FakeClock, Tenant
from tests.factories import make_contact, post_message

_PARAM = re.compile(r"{(\w+)(?::\w+)?}")
PROBE_BODY = {"firstName": "Mallory", "sessionTimeoutMinutes": 5}
# Routes a platform calls without an API key (its own proof authenticates it): a key of
# any tenant is irrelevant there; tests/channels/ checks that they never cross tenants.
KEYLESS_ROUTES = frozenset({"/v1/channels/{channelId}/webhook"})
PROBE_QUERY = {"includeMessages": "true", "messageLimit": "1000", "hours": "876000"}


@pytest_asyncio.fixture
async def iso_app(backend_settings: Settings, database: Database, clock: FakeClock) -> FastAPI:
    """The app, with private webhook receivers allowed (so A can own a webhook)."""
    settings = backend_settings.model_copy(update={"webhook_allow_private": True})
    return create_app(settings, clock=clock, database=database)


@pytest_asyncio.fixture
async def iso_client(iso_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=iso_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@dataclass(frozen=True)
class Endpoint:
    """One routed API path with its methods, as the app serves it."""

    path: str
    methods: frozenset[str]


def _v1_routes(app: FastAPI) -> list[Endpoint]:
    """Every ``/v1`` API route. Newer FastAPI includes routers lazily: walk their contexts."""
    iter_contexts = getattr(fastapi_routing, "iter_route_contexts", None)
    found: list[Endpoint] = []
    if iter_contexts is not None:
        for ctx in iter_contexts(app.routes):
            if isinstance(ctx.original_route, APIRoute) and ctx.path and ctx.methods:
                found.append(Endpoint(ctx.path, frozenset(ctx.methods)))
    else:  # pragma: no cover - FastAPI before lazy inclusion
        for route in app.routes:
            if isinstance(route, APIRoute):
                found.append(Endpoint(route.path, frozenset(route.methods)))
    return [e for e in found if e.path.startswith("/v1/")]


def _has(app: FastAPI, method: str, path: str) -> bool:
    return any(e.path == path and method in e.methods for e in _v1_routes(app))


@dataclass
class Owner:
    """Tenant A and what it owns."""

    tenant: Tenant
    contact_id: str
    session_id: str
    message_id: str
    webhook_id: str | None
    channel_id: str | None
    secrets: list[str]  # strings that must never reach B


async def _populate(client: httpx.AsyncClient, app: FastAPI, tenant: Tenant) -> Owner:
    contact = await make_contact(
        client,
        tenant.auth,
        phoneNumber="+15559871234",
        email="alice.private@example.com",
        firstName="Alicesecret",
        lastName="Ownerly",
        externalId="a-ext-1",
    )
    first = await post_message(
        client, tenant.auth, contact, T0 - 120_000, content="a-private-text", externalId="a-msg-1"
    )
    await post_message(
        client, tenant.auth, contact, T0 - 60_000, direction="outbound", content="a-private-reply"
    )
    webhook_id = None
    if _has(app, "POST", "/v1/webhooks"):
        r = await client.post(
            "/v1/webhooks",
            json={"url": "http://127.0.0.1:9/a-hook", "events": ["MessageReceived"]},
            headers=tenant.auth,
        )
        assert r.status_code == 201, r.text
        webhook_id = r.json()["data"]["webhookId"]
    channel_id = None
    if _has(app, "POST", "/v1/channels"):
        r = await client.post(
            "/v1/channels",
            json={
                "type": "whatsapp",
                "name": "a-channel-name",
                "config": {"appSecret": "a-app-secret-0123456789", "verifyToken": "a-verify"},
            },
            headers=tenant.auth,
        )
        assert r.status_code == 201, r.text
        channel_id = r.json()["data"]["channelId"]
    secrets = [
        contact,
        first["sessionId"],
        first["messageId"],
        "+15559871234",
        "alice.private@example.com",
        "Alicesecret",
        "a-private-text",
        "a-private-reply",
        "a-ext-1",
        "a-msg-1",
        "a-hook",
    ]
    if webhook_id is not None:
        secrets.append(webhook_id)
    if channel_id is not None:
        secrets += [channel_id, "a-channel-name", "…56789"]
    return Owner(
        tenant, contact, first["sessionId"], first["messageId"], webhook_id, channel_id, secrets
    )


async def _snapshot(client: httpx.AsyncClient, app: FastAPI, owner: Owner) -> list[Any]:
    """Everything A can read about its data."""
    auth = owner.tenant.auth
    paths = [
        f"/v1/contacts/{owner.contact_id}",
        f"/v1/chat-sessions/{owner.contact_id}?includeMessages=true",
        f"/v1/sessions/{owner.session_id}",
        "/v1/chat-sessions/recent?hours=24&includeMessages=true",
        "/v1/chat-exports/recent?hours=24",
        "/v1/settings",
    ]
    if owner.webhook_id is not None:
        paths += ["/v1/webhooks", f"/v1/webhooks/{owner.webhook_id}"]
    if owner.channel_id is not None:
        paths += ["/v1/channels", f"/v1/channels/{owner.channel_id}"]
    out = []
    for path in paths:
        r = await client.get(path, headers=auth)
        assert r.status_code == 200, (path, r.text)
        out.append((path, r.json()))
    return out


def _leaks(text: str, owner: Owner) -> list[str]:
    return [s for s in owner.secrets if s in text]


async def test_other_tenants_ids_answer_404_on_every_route(
    iso_client: httpx.AsyncClient, iso_app: FastAPI, tenant: Tenant, other_tenant: Tenant
) -> None:
    client, app = iso_client, iso_app
    owner = await _populate(client, app, tenant)
    before = await _snapshot(client, app, owner)
    ids = {
        "contactId": owner.contact_id,
        "sessionId": owner.session_id,
        "webhookId": owner.webhook_id,
        "messageId": owner.message_id,
        "channelId": owner.channel_id,
    }
    problems: list[str] = []
    probed: set[str] = set()
    for route in _v1_routes(app):
        names = _PARAM.findall(route.path)
        if not names or route.path in KEYLESS_ROUTES:
            continue
        unknown = [n for n in names if n not in ids]
        assert not unknown, f"{route.path}: teach the isolation test the id {unknown}"
        if any(ids[n] is None for n in names):
            problems.append(f"{route.path}: no way to create a {names} for tenant A")
            continue
        path = route.path
        for name in names:
            path = re.sub("{" + name + r"(?::\w+)?}", str(ids[name]), path)
        for method in sorted(route.methods - {"HEAD", "OPTIONS"}):
            probed.add(f"{method} {route.path}")
            kwargs: dict[str, Any] = {"headers": other_tenant.auth, "params": PROBE_QUERY}
            if method in {"POST", "PUT", "PATCH"}:
                kwargs["json"] = PROBE_BODY
            r = await client.request(method, path, **kwargs)
            where = f"{method} {route.path}"
            if r.status_code != 404:
                problems.append(f"{where}: {r.status_code} {r.text[:200]}")
                continue
            body = r.json()
            if body.get("code") != "not_found" or body.get("success") is not False:
                problems.append(f"{where}: body {body}")
            if leaked := _leaks(r.text, owner):
                problems.append(f"{where}: leaks {leaked}")
    assert not problems, "\n".join(problems)
    # The route table really was walked (the test cannot pass on an empty table).
    for expected in (
        "GET /v1/contacts/{contactId}",
        "PUT /v1/contacts/{contactId}",
        "DELETE /v1/contacts/{contactId}",
        "GET /v1/chat-sessions/{contactId}",
        "GET /v1/sessions/{sessionId}",
        "POST /v1/sessions/{sessionId}/close",
    ):
        assert expected in probed
    if owner.webhook_id is not None:
        assert any("{webhookId}" in p for p in probed)
    if owner.channel_id is not None:
        for expected in ("GET", "PATCH", "DELETE"):
            assert f"{expected} /v1/channels/{{channelId}}" in probed

    assert await _snapshot(client, app, owner) == before, "B's calls changed A's data"


async def test_listings_never_show_another_tenants_data(
    iso_client: httpx.AsyncClient, iso_app: FastAPI, tenant: Tenant, other_tenant: Tenant
) -> None:
    client, app = iso_client, iso_app
    owner = await _populate(client, app, tenant)
    mine = await make_contact(client, other_tenant.auth)
    await post_message(client, other_tenant.auth, mine, T0 - 30_000)
    problems: list[str] = []
    listed = 0
    for route in _v1_routes(app):
        if _PARAM.search(route.path) or "GET" not in route.methods:
            continue
        for extra in ({}, {"format": "txt"}):
            r = await client.get(
                route.path, params={**PROBE_QUERY, **extra}, headers=other_tenant.auth
            )
            listed += 1
            if r.status_code >= 500:
                problems.append(f"GET {route.path}: {r.status_code}")
            if leaked := _leaks(r.text, owner):
                problems.append(f"GET {route.path} {extra}: leaks {leaked}")
    assert not problems, "\n".join(problems)
    assert listed >= 4

    r = await client.get("/v1/chat-sessions/recent?hours=24", headers=other_tenant.auth)
    assert r.status_code == 200
    assert {s["contact_id"] for s in r.json()["sessions"]} == {mine}
    r = await client.get("/v1/chat-exports/recent?hours=24", headers=other_tenant.auth)
    assert [d["contactId"] for d in r.json()["data"]] == [mine]
    # Paging B's listing to the end never reaches A's sessions either.
    cursor: str | None = None
    seen: set[str] = set()
    while True:
        params = {"hours": "876000", "limit": "1", **({"cursor": cursor} if cursor else {})}
        r = await client.get("/v1/chat-sessions/recent", params=params, headers=other_tenant.auth)
        assert r.status_code == 200, r.text
        seen |= {s["session_id"] for s in r.json()["sessions"]}
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert owner.session_id not in seen and len(seen) == 1


async def test_lookups_and_writes_by_another_tenant_do_not_reach_a(
    iso_client: httpx.AsyncClient, iso_app: FastAPI, tenant: Tenant, other_tenant: Tenant
) -> None:
    client, app = iso_client, iso_app
    owner = await _populate(client, app, tenant)
    before = await _snapshot(client, app, owner)
    b = other_tenant.auth

    for params in (
        {"phoneNumber": "+15559871234"},
        {"email": "alice.private@example.com"},
        {"externalId": "a-ext-1"},
    ):
        r = await client.get("/v1/contacts", params=params, headers=b)
        assert r.status_code == 404, r.text
        assert r.json()["code"] == "not_found"
        assert not _leaks(r.text, owner)

    # A message or a batch naming A's contact: 404, nothing stored.
    r = await client.post(
        "/v1/messages",
        json={"contactId": owner.contact_id, "direction": "inbound", "content": "x"},
        headers=b,
    )
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = await client.post(
        "/v1/messages/batch",
        json={"messages": [{"contactId": owner.contact_id, "direction": "inbound"}]},
        headers=b,
    )
    assert r.status_code == 404 and r.json()["code"] == "not_found"

    # The same identifiers are free for B: its own contact, no 409 carrying A's id.
    r = await client.post(
        "/v1/contacts",
        json={"phoneNumber": "+15559871234", "email": "alice.private@example.com"},
        headers=b,
    )
    assert r.status_code == 200, r.text
    b_contact = r.json()["data"]["contactId"]
    assert b_contact != owner.contact_id

    # A's message external id replayed by B is a new message of B, not A's.
    r = await client.post(
        "/v1/messages",
        json={"contactId": b_contact, "direction": "inbound", "externalId": "a-msg-1"},
        headers=b,
    )
    assert r.status_code == 201, r.text
    assert r.json()["messageId"] != owner.message_id
    assert not _leaks(r.text, owner)

    # A custom-channel message from A's external id lands on a contact of B.
    r = await client.post(
        "/v1/incoming-custom-channel-message",
        json={"customData": {"fromId": "a-ext-1", "messageSid": "a-msg-1", "body": "hi"}},
        headers=b,
    )
    assert r.status_code == 200, r.text
    assert r.json()["messageId"] != owner.message_id

    # B's key with A's userId is refused outright.
    r = await client.get(
        "/v1/chat-sessions/recent", params={"hours": "24", "userId": tenant.user_id}, headers=b
    )
    assert r.status_code == 401
    assert not _leaks(r.text, owner)

    assert await _snapshot(client, app, owner) == before
