"""The answer a platform gets: 200 only after commit, a replay stores nothing and emits no
event, a payload that cannot be stored is a 5xx (so the platform retries) and the retry
stores it once; counters in /metrics; tenant isolation of the webhook."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest_asyncio
from fastapi import FastAPI
from sqlalchemy import func, select, text

from chatsessions import tables
from chatsessions.app import create_app
from chatsessions.config import Settings
from chatsessions.db import Database
from tests.channels.payloads import (
    APP_SECRET,
    TELEGRAM_SECRET,
    create_channel,
    messages_of,
    post_meta,
    post_signed,
    tg_update,
    wa_text,
)
from tests.conftest import FakeClock, Tenant


@pytest_asyncio.fixture
async def hooks_client(
    backend_settings: Settings, database: Database, clock: FakeClock
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app with local webhook receivers allowed (so events are emitted),
    that sees a 500 as the platform would (not as the app's exception)."""
    settings = backend_settings.model_copy(update={"webhook_allow_private": True})
    app: FastAPI = create_app(settings, clock=clock, database=database)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


async def _events(database: Database, user_id: str) -> int:
    async with database.read() as conn:
        e = tables.webhook_events.c
        found = await conn.execute(select(func.count()).where(e.user_id == user_id))
        return int(found.scalar_one())


async def test_a_replay_stores_nothing_and_emits_no_event(
    hooks_client: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    client = hooks_client
    r = await client.post(
        "/v1/webhooks",
        json={"url": "http://127.0.0.1:9/hook", "events": ["MessageReceived", "ChatSessionOpened"]},
        headers=tenant.auth,
    )
    assert r.status_code == 201, r.text
    channel = await create_channel(client, tenant.auth, "whatsapp")
    payload = wa_text("wamid.REPLAY")
    assert (await post_meta(client, channel["webhookPath"], payload)).json()["stored"] == 1
    events = await _events(database, tenant.user_id)
    assert events == 2  # the session opened, the message received
    for _ in range(3):
        r = await post_meta(client, channel["webhookPath"], payload)
        assert r.status_code == 200
        assert r.json() == {"success": True, "stored": 0, "duplicates": 1, "ignored": 0}
    assert await _events(database, tenant.user_id) == events
    assert len(await messages_of(client, tenant.auth)) == 1
    r = await client.get(f"/v1/channels/{channel['channelId']}", headers=tenant.auth)
    counters = r.json()["data"]["counters"]
    assert (counters["received"], counters["stored"], counters["duplicates"]) == (4, 1, 3)


async def _inject_failure(database: Database, user_id: str) -> None:
    """Make every message insert of this tenant fail inside the database (a real fault)."""
    async with database.write() as conn:
        if database.is_sqlite:
            await conn.execute(
                text(
                    "CREATE TRIGGER channel_test_fault BEFORE INSERT ON messages "
                    f"WHEN NEW.user_id = '{user_id}' BEGIN SELECT RAISE(FAIL, 'injected'); END"
                )
            )
        else:
            await conn.execute(
                text(
                    "CREATE FUNCTION channel_test_fault() RETURNS trigger AS $$ BEGIN "
                    "RAISE EXCEPTION 'injected'; END $$ LANGUAGE plpgsql"
                )
            )
            await conn.execute(
                text(
                    "CREATE TRIGGER channel_test_fault BEFORE INSERT ON messages FOR EACH ROW "
                    f"WHEN (NEW.user_id = '{user_id}') EXECUTE FUNCTION channel_test_fault()"
                )
            )


async def _remove_failure(database: Database) -> None:
    async with database.write() as conn:
        if database.is_sqlite:
            await conn.execute(text("DROP TRIGGER channel_test_fault"))
        else:
            await conn.execute(text("DROP TRIGGER channel_test_fault ON messages"))
            await conn.execute(text("DROP FUNCTION channel_test_fault()"))


async def test_a_payload_that_cannot_be_stored_is_5xx_and_its_retry_stores_it_once(
    hooks_client: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    client = hooks_client
    channel = await create_channel(client, tenant.auth, "telegram")
    update = tg_update(1, message_id=99, text="store me")
    await _inject_failure(database, tenant.user_id)
    try:
        r = await post_signed(client, channel, update)
    finally:
        await _remove_failure(database)
    assert r.status_code >= 500, r.text
    assert r.json()["success"] is False and "injected" not in r.text
    assert await messages_of(client, tenant.auth) == []
    r = await client.get(f"/v1/channels/{channel['channelId']}", headers=tenant.auth)
    counters = r.json()["data"]["counters"]
    assert counters["stored"] == 0 and counters["lastError"].startswith("not stored")
    # The platform retries: stored once.
    for expected in ({"stored": 1, "duplicates": 0}, {"stored": 0, "duplicates": 1}):
        r = await post_signed(client, channel, update)
        assert r.status_code == 200, r.text
        assert {k: r.json()[k] for k in expected} == expected
    assert [m["content"] for m in await messages_of(client, tenant.auth)] == ["store me"]


async def test_metrics_count_per_channel_type(client: httpx.AsyncClient, tenant: Tenant) -> None:
    def value(metrics: str, outcome: str) -> float:
        prefix = f'chatsessions_channel_items_total{{outcome="{outcome}",type="whatsapp"}} '
        for line in metrics.splitlines():
            if line.startswith(prefix):
                return float(line[len(prefix) :])
        return 0.0

    before = (await client.get("/metrics")).text
    channel = await create_channel(client, tenant.auth, "whatsapp")
    await post_meta(client, channel["webhookPath"], wa_text("wamid.M1"))
    await post_meta(client, channel["webhookPath"], wa_text("wamid.M1"))
    await post_meta(client, channel["webhookPath"], wa_text("wamid.M2"), secret="wrong")
    after = (await client.get("/metrics")).text
    deltas = {
        o: value(after, o) - value(before, o)
        for o in ("received", "stored", "duplicates", "rejected")
    }
    assert deltas == {"received": 2, "stored": 1, "duplicates": 1, "rejected": 1}


async def test_a_channel_writes_only_into_its_own_tenant(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    mine = await create_channel(client, tenant.auth, "whatsapp")
    theirs = await create_channel(client, other_tenant.auth, "whatsapp")
    # The same platform ids reach both channels: each tenant gets its own copy.
    for channel in (mine, theirs, mine):
        assert (
            await post_meta(client, channel["webhookPath"], wa_text("wamid.SAME"))
        ).status_code == 200
    a, b = await messages_of(client, tenant.auth), await messages_of(client, other_tenant.auth)
    assert [m["external_id"] for m in a] == [m["external_id"] for m in b] == ["wamid.SAME"]
    assert a[0]["contact_id"] != b[0]["contact_id"] and a[0]["message_id"] != b[0]["message_id"]
    # Another tenant's key: every channel route answers 404 (and changes nothing).
    path = f"/v1/channels/{mine['channelId']}"
    calls: list[tuple[str, dict[str, Any]]] = [
        ("GET", {}),
        ("PATCH", {"json": {"name": "mallory", "config": {"appSecret": "x"}}}),
        ("DELETE", {}),
    ]
    for method, kwargs in calls:
        r = await client.request(method, path, headers=other_tenant.auth, **kwargs)
        assert r.status_code == 404 and r.json()["code"] == "not_found", (method, r.text)
    r = await client.get("/v1/channels", headers=other_tenant.auth)
    assert [c["channelId"] for c in r.json()["data"]] == [theirs["channelId"]]
    r = await client.get(path, headers=tenant.auth)
    assert r.json()["data"]["name"] == "my whatsapp" and r.json()["data"]["counters"]["stored"] == 1


async def test_bodies_over_the_limit_and_verified_garbage(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    channel = await create_channel(client, tenant.auth, "telegram")
    headers = {"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}
    r = await client.post(
        channel["webhookPath"], content=b"{" + b" " * (4 * 1024 * 1024), headers=headers
    )
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"
    r = await client.post(channel["webhookPath"], content=b"not json at all", headers=headers)
    assert r.status_code == 400 and r.json()["error"].startswith("body:"), r.text
    r = await client.get(f"/v1/channels/{channel['channelId']}", headers=tenant.auth)
    counters = r.json()["data"]["counters"]
    assert counters["lastError"].startswith("not a telegram payload") and counters["stored"] == 0


async def test_a_secret_that_cannot_be_opened_is_a_500_that_names_the_cause(
    client: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    channel = await create_channel(client, tenant.auth, "whatsapp")
    c = tables.channels.c
    async with database.write() as conn:  # as after a change of the server key
        await conn.execute(
            tables.channels.update()
            .where(c.user_id == tenant.user_id, c.id == channel["channelId"])
            .values(secret_box="v1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        )
    r = await post_meta(client, channel["webhookPath"], wa_text("wamid.K1"))
    assert r.status_code == 500 and r.json()["code"] == "internal"
    r = await client.get(f"/v1/channels/{channel['channelId']}", headers=tenant.auth)
    data = r.json()["data"]
    assert data["config"]["appSecret"] is None  # unreadable, shown as such
    assert "cannot decrypt" in data["counters"]["lastError"]
    # Entering the secret again repairs the channel.
    r = await client.patch(
        f"/v1/channels/{channel['channelId']}",
        json={"config": {"appSecret": APP_SECRET, "verifyToken": "new-verify-token"}},
        headers=tenant.auth,
    )
    assert r.status_code == 200, r.text
    assert (await post_meta(client, channel["webhookPath"], wa_text("wamid.K1"))).status_code == 200
