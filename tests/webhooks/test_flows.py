"""Session events end to end: the app writes the outbox, a worker delivers to a real
receiver that verifies every signature; the expected events arrive, in order."""

from __future__ import annotations

from typing import Any

import httpx

from chatsessions.db import Database
from chatsessions.timeutil import format_ms
from chatsessions.webhooks.worker import DeliveryWorker, sweep_once
from tests.conftest import T0, FakeClock, Tenant
from tests.factories import make_contact, post_message
from tests.webhooks.conftest import subscribe
from tests.webhooks.receiver import Receiver, dump

MIN = 60_000
SESSION_FIELDS = {
    "session_id",
    "contact_id",
    "contact_name",
    "contact_phone",
    "contact_email",
    "channel",
    "start_date_time",
    "last_message_date_time",
    "end_date_time",
    "status",
    "closed_reason",
    "message_count",
    "inbound_count",
    "outbound_count",
}
MESSAGE_FIELDS = {
    "message_id",
    "direction",
    "role",
    "type",
    "content",
    "media_url",
    "timestamp",
    "external_id",
}


async def test_open_message_close(
    pclient: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    worker: DeliveryWorker,
    clock: FakeClock,
) -> None:
    await subscribe(pclient, tenant, receiver)
    contact = await make_contact(pclient, tenant.auth)
    first = await post_message(pclient, tenant.auth, contact, T0, externalId="wamid.1")
    clock.advance(MIN)
    await post_message(pclient, tenant.auth, contact, T0 + MIN, direction="outbound")
    r = await pclient.post(f"/v1/sessions/{first['sessionId']}/close", headers=tenant.auth)
    assert r.status_code == 200, r.text
    assert await worker.drain() == 4
    assert receiver.rejected == []
    got = receiver.unique()
    assert [g.type for g in got] == [
        "ChatSessionOpened",
        "MessageReceived",
        "MessageReceived",
        "ChatSessionClosed",
    ], dump(receiver)
    for g in got:
        session = g.body["data"]["session"]
        assert set(session) == SESSION_FIELDS, session
        assert session["session_id"] == first["sessionId"]
        assert session["contact_id"] == contact
        assert g.webhook_id and g.headers["webhook-signature"].startswith("v1,")
    opened, received, _second, closed = (g.body for g in got)
    assert opened["data"]["session"]["status"] == "ChatSessionOpened"
    assert "message" not in opened["data"]
    assert opened["timestamp"] == format_ms(T0)
    msg = received["data"]["message"]
    assert set(msg) == MESSAGE_FIELDS
    assert msg["message_id"] == first["messageId"]
    assert msg["external_id"] == "wamid.1" and msg["direction"] == "inbound"
    assert msg["timestamp"] == format_ms(T0)
    assert closed["data"]["session"]["status"] == "ChatSessionClosed"
    assert closed["data"]["session"]["closed_reason"] == "closed"
    assert closed["data"]["session"]["message_count"] == 2
    # Nothing else is due; closing again changes nothing and emits nothing.
    await pclient.post(f"/v1/sessions/{first['sessionId']}/close", headers=tenant.auth)
    assert await worker.drain() == 0


async def test_silence_close_and_reopen_by_late_message(
    pclient: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    worker: DeliveryWorker,
    clock: FakeClock,
    database: Database,
) -> None:
    await subscribe(pclient, tenant, receiver)
    contact = await make_contact(pclient, tenant.auth)
    await post_message(pclient, tenant.auth, contact, T0)
    await worker.drain()
    assert await sweep_once(database, now_ms=clock()) == 0  # still open
    clock.advance(61 * MIN)
    assert await sweep_once(database, now_ms=clock()) == 1
    assert await sweep_once(database, now_ms=clock()) == 0  # announced once
    await worker.drain()
    closed = receiver.unique()[-1].body
    assert closed["type"] == "ChatSessionClosed"
    assert closed["data"]["session"]["closed_reason"] == "inactivity"
    assert closed["data"]["session"]["end_date_time"] == format_ms(T0)
    # A late message inside the session re-opens it (its new expiry is in the future).
    await post_message(pclient, tenant.auth, contact, T0 + 30 * MIN)
    await worker.drain()
    clock.advance(30 * MIN)  # T0 + 91 min: silent again
    assert await sweep_once(database, now_ms=clock()) == 1
    await worker.drain()
    assert receiver.types() == [
        "ChatSessionOpened",
        "MessageReceived",
        "ChatSessionClosed",
        "ChatSessionOpened",
        "MessageReceived",
        "ChatSessionClosed",
    ], dump(receiver)
    sessions = {g.body["data"]["session"]["session_id"] for g in receiver.unique()}
    assert len(sessions) == 1
    assert receiver.unique()[-1].body["data"]["session"]["last_message_date_time"] == format_ms(
        T0 + 30 * MIN
    )


async def test_new_session_after_silence_gives_the_close_first(
    pclient: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    worker: DeliveryWorker,
    clock: FakeClock,
    database: Database,
) -> None:
    """A message after the timeout, before the sweeper ran: the old session's Closed comes
    before the new one's Opened, and the sweeper does not announce it again."""
    await subscribe(pclient, tenant, receiver)
    contact = await make_contact(pclient, tenant.auth)
    first = await post_message(pclient, tenant.auth, contact, T0)
    clock.advance(61 * MIN)
    second = await post_message(pclient, tenant.auth, contact, clock())
    assert second["sessionId"] != first["sessionId"]
    assert await sweep_once(database, now_ms=clock()) == 0
    await worker.drain()
    got = [(g.type, g.body["data"]["session"]["session_id"]) for g in receiver.unique()]
    assert got == [
        ("ChatSessionOpened", first["sessionId"]),
        ("MessageReceived", first["sessionId"]),
        ("ChatSessionClosed", first["sessionId"]),
        ("ChatSessionOpened", second["sessionId"]),
        ("MessageReceived", second["sessionId"]),
    ]
    assert receiver.unique()[2].body["data"]["session"]["closed_reason"] == "inactivity"


async def test_backfill_into_a_closed_session_does_not_close_it_again(
    pclient: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    worker: DeliveryWorker,
    clock: FakeClock,
    database: Database,
) -> None:
    await subscribe(pclient, tenant, receiver)
    contact = await make_contact(pclient, tenant.auth)
    await post_message(pclient, tenant.auth, contact, T0)
    clock.advance(200 * MIN)
    assert await sweep_once(database, now_ms=clock()) == 1
    # An older message extends the closed session (its expiry moves, still in the past).
    await post_message(pclient, tenant.auth, contact, T0 + 10 * MIN)
    assert await sweep_once(database, now_ms=clock()) == 0
    await worker.drain()
    assert receiver.types() == [
        "ChatSessionOpened",
        "MessageReceived",
        "ChatSessionClosed",
        "MessageReceived",
    ]


async def test_backfilled_session_past_its_timeout_is_opened_then_closed(
    pclient: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    worker: DeliveryWorker,
    clock: FakeClock,
    database: Database,
) -> None:
    await subscribe(pclient, tenant, receiver)
    contact = await make_contact(pclient, tenant.auth)
    await post_message(pclient, tenant.auth, contact, T0 - 5 * 60 * MIN)
    assert await sweep_once(database, now_ms=clock()) == 0  # already announced, at once
    await worker.drain()
    assert receiver.types() == ["ChatSessionOpened", "MessageReceived", "ChatSessionClosed"]


async def test_bridging_backfill_merges(
    pclient: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    worker: DeliveryWorker,
) -> None:
    await subscribe(pclient, tenant, receiver, ["ChatSessionMerged", "MessageReceived"])
    contact = await make_contact(pclient, tenant.auth)
    early = await post_message(pclient, tenant.auth, contact, T0 - 100 * MIN)
    late = await post_message(pclient, tenant.auth, contact, T0 - 10 * MIN)
    assert early["sessionId"] != late["sessionId"]
    bridge = await post_message(pclient, tenant.auth, contact, T0 - 55 * MIN)
    assert bridge["sessionId"] == early["sessionId"]
    await worker.drain()
    assert receiver.types() == [
        "MessageReceived",
        "MessageReceived",
        "ChatSessionMerged",
        "MessageReceived",
    ], dump(receiver)
    merged = receiver.unique()[2].body["data"]
    assert merged["merged_session_id"] == late["sessionId"]
    assert merged["session"]["session_id"] == early["sessionId"]
    assert merged["session"]["message_count"] == 3
    assert receiver.unique()[3].body["data"]["message"]["message_id"] == bridge["messageId"]


async def test_only_subscribed_types_and_own_tenant(
    pclient: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    receiver: Receiver,
    worker: DeliveryWorker,
) -> None:
    await subscribe(pclient, tenant, receiver, ["ChatSessionOpened"])
    contact = await make_contact(pclient, tenant.auth)
    other_contact = await make_contact(pclient, other_tenant.auth)
    await post_message(pclient, tenant.auth, contact, T0)
    await post_message(pclient, tenant.auth, contact, T0 + 1)
    await post_message(pclient, other_tenant.auth, other_contact, T0)
    await worker.drain()
    assert receiver.types() == ["ChatSessionOpened"]


async def test_batch_ingest_events_in_order(
    pclient: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    worker: DeliveryWorker,
) -> None:
    await subscribe(pclient, tenant, receiver, ["ChatSessionOpened", "MessageReceived"])
    a = await make_contact(pclient, tenant.auth)
    b = await make_contact(pclient, tenant.auth)
    items: list[dict[str, Any]] = [
        {
            "contactId": cid,
            "direction": "inbound",
            "content": f"{cid}-{i}",
            "timestamp": format_ms(T0 - 10 * MIN + i * 1000),
        }
        for i in range(5)
        for cid in (a, b)
    ]
    r = await pclient.post("/v1/messages/batch", json={"messages": items}, headers=tenant.auth)
    assert r.status_code == 200, r.text
    await worker.drain()
    for cid in (a, b):
        mine = [g for g in receiver.unique() if g.body["data"]["session"]["contact_id"] == cid]
        assert [g.type for g in mine] == ["ChatSessionOpened"] + ["MessageReceived"] * 5
        contents = [g.body["data"]["message"]["content"] for g in mine[1:]]
        assert contents == [f"{cid}-{i}" for i in range(5)]


async def test_events_of_contacts_created_inline_show_their_fields(
    pclient: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    worker: DeliveryWorker,
) -> None:
    """A batch that creates a contact (by phone) and one that finds it: the events show
    the contact's name and E.164 phone both times (the created contact is inserted only
    by the write, after the event bodies are made)."""
    await subscribe(pclient, tenant, receiver, ["ChatSessionOpened", "MessageReceived"])
    contact = {"phoneNumber": "+1 (555) 010-7788", "firstName": "Ada", "lastName": "Byron"}
    item = {"contact": contact, "direction": "inbound", "content": "hi"}
    first = await pclient.post(
        "/v1/messages/batch",
        json={"messages": [{**item, "timestamp": format_ms(T0 - 2 * MIN)}]},
        headers=tenant.auth,
    )
    assert first.status_code == 200, first.text
    again = await pclient.post(
        "/v1/messages/batch",
        json={"messages": [{**item, "timestamp": format_ms(T0 - MIN)}]},
        headers=tenant.auth,
    )
    assert again.status_code == 200, again.text
    assert await worker.drain() == 3
    got = receiver.unique()
    assert [g.type for g in got] == ["ChatSessionOpened", "MessageReceived", "MessageReceived"]
    for g in got:
        session = g.body["data"]["session"]
        assert session["contact_phone"] == "+15550107788", session
        assert session["contact_name"] == "Ada Byron", session
    # The second batch found the contact the first created: one contact, one session.
    assert len({g.body["data"]["session"]["contact_id"] for g in got}) == 1
    session_ids = {first.json()["results"][0]["sessionId"], again.json()["results"][0]["sessionId"]}
    assert {g.body["data"]["session"]["session_id"] for g in got} == session_ids
    assert len(session_ids) == 1
