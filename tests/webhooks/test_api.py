"""The webhooks API (docs/contract.md#webhooks): shapes, validation, tenant isolation, rotation, test ping,
the deliveries listing."""

from __future__ import annotations

import httpx
import pytest
from standardwebhooks import Webhook

from chatsessions.webhooks.worker import DeliveryWorker
from tests.conftest import T0, Tenant
from tests.factories import make_contact, post_message
from tests.webhooks.conftest import subscribe
from tests.webhooks.receiver import Receiver

ENDPOINT_FIELDS = {"webhookId", "url", "events", "description", "enabled", "createdAt"}


async def test_create_list_get_delete(
    pclient: httpx.AsyncClient, tenant: Tenant, receiver: Receiver
) -> None:
    r = await pclient.post(
        "/v1/webhooks",
        json={"url": receiver.url, "events": ["MessageReceived"], "description": "CRM", "x": 1},
        headers=tenant.auth,
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["success"] is True
    data = body["data"]
    assert set(data) >= ENDPOINT_FIELDS | {"secret"}
    assert data["secret"].startswith("whsec_")
    Webhook(data["secret"])  # a valid Standard Webhooks secret
    assert data["url"] == receiver.url
    assert data["events"] == ["MessageReceived"]
    assert data["description"] == "CRM"
    assert data["enabled"] is True
    assert data["createdAt"].endswith("Z")
    hook = data["webhookId"]
    assert len(hook) == 20

    listed = (await pclient.get("/v1/webhooks", headers=tenant.auth)).json()
    assert listed["success"] is True
    [item] = listed["data"]
    assert "secret" not in item
    assert {k: item[k] for k in ENDPOINT_FIELDS} == {k: data[k] for k in ENDPOINT_FIELDS}

    one = await pclient.get(f"/v1/webhooks/{hook}", headers=tenant.auth)
    assert one.status_code == 200
    assert "secret" not in one.json()["data"]
    assert one.json()["data"]["webhookId"] == hook

    gone = await pclient.delete(f"/v1/webhooks/{hook}", headers=tenant.auth)
    assert gone.status_code == 200 and gone.json() == {"success": True}
    assert (await pclient.get(f"/v1/webhooks/{hook}", headers=tenant.auth)).status_code == 404
    assert (await pclient.delete(f"/v1/webhooks/{hook}", headers=tenant.auth)).status_code == 404
    assert (await pclient.get("/v1/webhooks", headers=tenant.auth)).json()["data"] == []


@pytest.mark.parametrize(
    "body",
    [
        {"url": "https://example.com/h"},
        {"url": "https://example.com/h", "events": []},
        {"url": "https://example.com/h", "events": ["SessionStarted"]},
        {"url": "https://example.com/h", "events": "MessageReceived"},
        {"url": "https://example.com/h", "events": [1]},
    ],
)
async def test_bad_events_are_400_naming_events(
    pclient: httpx.AsyncClient, tenant: Tenant, body: dict[str, object]
) -> None:
    r = await pclient.post("/v1/webhooks", json=body, headers=tenant.auth)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "invalid_parameter"
    assert "events" in r.json()["error"]


@pytest.mark.parametrize(
    "body",
    [
        {"events": ["MessageReceived"]},
        {"url": 5, "events": ["MessageReceived"]},
        {"url": "not a url", "events": ["MessageReceived"]},
        {"url": "ftp://example.com/x", "events": ["MessageReceived"]},
        {"url": "https://user:pw@example.com/x", "events": ["MessageReceived"]},
    ],
)
async def test_bad_url_is_400_naming_url(
    pclient: httpx.AsyncClient, tenant: Tenant, body: dict[str, object]
) -> None:
    r = await pclient.post("/v1/webhooks", json=body, headers=tenant.auth)
    assert r.status_code == 400, r.text
    assert "url" in r.json()["error"]


async def test_other_tenant_gets_404_everywhere(
    pclient: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, receiver: Receiver
) -> None:
    hook = (await subscribe(pclient, tenant, receiver))["webhookId"]
    auth = other_tenant.auth
    for method, path in [
        ("GET", f"/v1/webhooks/{hook}"),
        ("DELETE", f"/v1/webhooks/{hook}"),
        ("POST", f"/v1/webhooks/{hook}/rotate-secret"),
        ("POST", f"/v1/webhooks/{hook}/test"),
        ("GET", f"/v1/webhooks/{hook}/deliveries"),
        ("GET", "/v1/webhooks/not-an-id"),
    ]:
        r = await pclient.request(method, path, headers=auth)
        assert r.status_code == 404, (method, path, r.text)
        assert r.json()["code"] == "not_found"
    assert (await pclient.get("/v1/webhooks", headers=auth)).json()["data"] == []
    assert receiver.attempts == 0
    assert (await pclient.get(f"/v1/webhooks/{hook}", headers=tenant.auth)).status_code == 200


async def test_requires_authentication(pclient: httpx.AsyncClient) -> None:
    assert (await pclient.get("/v1/webhooks")).status_code == 401


async def test_rotate_secret_and_test_ping(
    pclient: httpx.AsyncClient, tenant: Tenant, receiver: Receiver
) -> None:
    created = await subscribe(pclient, tenant, receiver)
    hook = created["webhookId"]
    r = await pclient.post(f"/v1/webhooks/{hook}/rotate-secret", headers=tenant.auth)
    assert r.status_code == 200, r.text
    new_secret = r.json()["data"]["secret"]
    assert new_secret.startswith("whsec_") and new_secret != created["secret"]
    receiver.secret = new_secret
    receiver.answer = b"SECRET-INTERNAL-ANSWER"
    r = await pclient.post(f"/v1/webhooks/{hook}/test", headers=tenant.auth)
    assert r.status_code == 200, r.text
    assert "SECRET-INTERNAL-ANSWER" not in r.text
    assert r.json()["success"] is True and r.json()["data"]["delivered"] is True
    [ping] = receiver.received
    assert ping.type == "WebhookTest"
    assert ping.webhook_id == r.json()["data"]["eventId"]
    assert receiver.rejected == []
    # A receiver still holding the old secret rejects what is now sent.
    receiver.secret = created["secret"]
    r = await pclient.post(f"/v1/webhooks/{hook}/test", headers=tenant.auth)
    assert r.json()["data"]["delivered"] is False
    assert len(receiver.rejected) == 1
    # Both pings are in the deliveries log, done (a ping is not retried).
    page = (await pclient.get(f"/v1/webhooks/{hook}/deliveries", headers=tenant.auth)).json()
    assert [(d["type"], d["status"], d["lastStatusCode"]) for d in page["data"]] == [
        ("WebhookTest", "failed", 400),
        ("WebhookTest", "delivered", 200),
    ]


async def test_deliveries_listing_pages(
    pclient: httpx.AsyncClient, tenant: Tenant, receiver: Receiver, worker: DeliveryWorker
) -> None:
    hook = (await subscribe(pclient, tenant, receiver, ["MessageReceived"]))["webhookId"]
    contact = await make_contact(pclient, tenant.auth)
    for i in range(5):
        await post_message(pclient, tenant.auth, contact, T0 - 1000 + i)
    url = f"/v1/webhooks/{hook}/deliveries"
    pending = (await pclient.get(url, headers=tenant.auth)).json()
    assert [d["status"] for d in pending["data"]] == ["pending"] * 5
    assert pending["next_cursor"] is None
    first = pending["data"][0]
    assert set(first) >= {
        "eventId",
        "type",
        "status",
        "attempts",
        "lastStatusCode",
        "nextAttemptAt",
        "createdAt",
    }
    assert first["attempts"] == 0 and first["lastStatusCode"] is None
    assert first["nextAttemptAt"] is not None and first["type"] == "MessageReceived"

    await worker.drain()
    page1 = (await pclient.get(url, params={"limit": 2}, headers=tenant.auth)).json()
    assert len(page1["data"]) == 2 and page1["next_cursor"]
    page2 = (
        await pclient.get(url, params={"cursor": page1["next_cursor"]}, headers=tenant.auth)
    ).json()
    page3 = (
        await pclient.get(url, params={"cursor": page2["next_cursor"]}, headers=tenant.auth)
    ).json()
    assert page3["next_cursor"] is None
    rows = page1["data"] + page2["data"] + page3["data"]
    assert len({d["eventId"] for d in rows}) == 5
    # newest first: the reverse of the order received
    assert [d["eventId"] for d in rows] == [g.webhook_id for g in receiver.unique()][::-1]
    assert all(d["status"] == "delivered" and d["attempts"] == 1 for d in rows)
    assert all(d["lastStatusCode"] == 200 and d["nextAttemptAt"] is None for d in rows)

    bad = await pclient.get(url, params={"cursor": "garbage"}, headers=tenant.auth)
    assert bad.status_code == 400 and "cursor" in bad.json()["error"]
    other = await pclient.get(
        url, params={"cursor": page1["next_cursor"], "limit": 3}, headers=tenant.auth
    )
    assert other.status_code == 400
    assert (await pclient.get(url, params={"limit": "0"}, headers=tenant.auth)).status_code == 400
