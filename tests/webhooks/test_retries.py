"""Delivery when the receiver is down or failing: retries on the schedule (driven by the
test clock), every event arrives, each webhook-id once after de-duplication, in order per
contact; 410 and five days of failures disable the endpoint."""

from __future__ import annotations

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions import tables
from chatsessions.db import Database
from chatsessions.webhooks import delivery, store
from chatsessions.webhooks.worker import DeliveryWorker
from tests.conftest import T0, FakeClock, Tenant
from tests.factories import make_contact, post_message
from tests.webhooks.conftest import subscribe
from tests.webhooks.receiver import Receiver, dump

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE


def test_retry_schedule_with_jitter() -> None:
    expected = [5 * SECOND, 5 * MINUTE, 30 * MINUTE, 2 * HOUR, 5 * HOUR, 10 * HOUR,
                14 * HOUR, 20 * HOUR, 24 * HOUR]  # fmt: skip
    for attempts, base in enumerate(expected, start=1):
        for _ in range(50):
            delay = delivery.next_delay_ms(attempts)
            assert delay is not None and 0.9 * base <= delay <= 1.1 * base
    assert delivery.next_delay_ms(10) is None  # the 10th failed attempt gives up


async def test_down_then_failing_then_up_delivers_everything_in_order(
    pclient: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    worker: DeliveryWorker,
    clock: FakeClock,
) -> None:
    hook = (await subscribe(pclient, tenant, receiver))["webhookId"]
    port = receiver.port
    receiver.stop()  # connection refused
    contacts = [await make_contact(pclient, tenant.auth) for _ in range(3)]
    for i in range(4):
        for c in contacts:
            await post_message(pclient, tenant.auth, c, T0 - 10 * MINUTE + i * SECOND)
            clock.advance(1)
    # 3 contacts × (Opened + 4 MessageReceived) = 15 events; one head per contact is tried.
    assert await worker.run_once() == 3
    assert await worker.run_once() == 0  # the heads wait 5 s; the rest wait for them
    page = (await pclient.get(f"/v1/webhooks/{hook}/deliveries", headers=tenant.auth)).json()
    tried = [d for d in page["data"] if d["attempts"] == 1]
    assert len(tried) == 3 and all(d["status"] == "pending" for d in tried)
    assert all(d["lastStatusCode"] is None for d in tried)
    # the rest of each chain is held until its head's retry (not re-read by every scan)
    retry_at = min(d["nextAttemptAt"] for d in tried)
    assert all(d["nextAttemptAt"] >= retry_at for d in page["data"])

    revived = Receiver(secret=receiver.secret, port=port, status=500, record_failures=True)
    revived.start()
    try:
        clock.advance(6 * SECOND)
        assert await worker.run_once() == 3  # 500s, recorded by the receiver (duplicates)
        clock.advance(6 * SECOND)
        assert await worker.run_once() == 0  # next try after ~5 min
        clock.advance(6 * MINUTE)
        assert await worker.run_once() == 3
        revived.status = 200
        revived.record_failures = False
        assert await worker.run_once() == 0  # ~30 min now
        clock.advance(34 * MINUTE)
        assert await worker.drain() == 15
        assert revived.rejected == []
        assert len(revived.received) == 15 + 6  # two failed rounds of 3 heads recorded
        unique = revived.unique()
        assert len(unique) == 15
        for c in contacts:
            mine = [g for g in unique if g.body["data"]["session"]["contact_id"] == c]
            assert [g.type for g in mine] == ["ChatSessionOpened"] + ["MessageReceived"] * 4
            stamps = [g.body["data"]["message"]["timestamp"] for g in mine[1:]]
            assert stamps == sorted(stamps), dump(revived)
        # every attempt of one event carried the same webhook-id
        heads = [g for g in revived.received if g.type == "ChatSessionOpened"]
        assert len({g.webhook_id for g in heads}) == 3 and len(heads) == 9
        page = (await pclient.get(f"/v1/webhooks/{hook}/deliveries", headers=tenant.auth)).json()
        assert all(d["status"] == "delivered" for d in page["data"])
        assert sorted(d["attempts"] for d in page["data"]) == [1] * 12 + [4] * 3
    finally:
        revived.stop()


async def test_schedule_exhausted_marks_failed(
    pclient: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    worker: DeliveryWorker,
    clock: FakeClock,
) -> None:
    hook = (await subscribe(pclient, tenant, receiver, ["MessageReceived"]))["webhookId"]
    receiver.status = 503
    contact = await make_contact(pclient, tenant.auth)
    await post_message(pclient, tenant.auth, contact, T0 - 1000)
    await post_message(pclient, tenant.auth, contact, T0 - 999)
    for delay in (*delivery.RETRY_DELAYS_MS, 0):
        assert await worker.run_once() == 1
        clock.advance(int(delay * 1.1) + 1)
    assert receiver.attempts == 10
    page = (await pclient.get(f"/v1/webhooks/{hook}/deliveries", headers=tenant.auth)).json()
    first = page["data"][-1]
    assert first["status"] == "failed" and first["attempts"] == 10
    assert first["lastStatusCode"] == 503 and first["nextAttemptAt"] is None
    # given up counts as done: the next event of the contact goes out
    receiver.status = 200
    assert await worker.drain() == 1
    assert len(receiver.received) == 1


async def test_410_disables_the_endpoint(
    pclient: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    worker: DeliveryWorker,
) -> None:
    hook = (await subscribe(pclient, tenant, receiver, ["MessageReceived"]))["webhookId"]
    receiver.status = 410
    contact = await make_contact(pclient, tenant.auth)
    await post_message(pclient, tenant.auth, contact, T0 - 1000)
    await post_message(pclient, tenant.auth, contact, T0 - 999)
    assert await worker.drain() == 1
    data = (await pclient.get(f"/v1/webhooks/{hook}", headers=tenant.auth)).json()["data"]
    assert data["enabled"] is False and data["disabledReason"] == "gone"
    page = (await pclient.get(f"/v1/webhooks/{hook}/deliveries", headers=tenant.auth)).json()
    assert [d["status"] for d in page["data"]] == ["failed", "failed"]
    # a disabled endpoint gets no new events
    await post_message(pclient, tenant.auth, contact, T0 - 998)
    page = (await pclient.get(f"/v1/webhooks/{hook}/deliveries", headers=tenant.auth)).json()
    assert len(page["data"]) == 2
    assert receiver.attempts == 1


async def test_failing_for_five_days_disables(
    pclient: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    worker: DeliveryWorker,
    clock: FakeClock,
) -> None:
    hook = (await subscribe(pclient, tenant, receiver, ["MessageReceived"]))["webhookId"]
    receiver.status = 500
    contact = await make_contact(pclient, tenant.auth)
    for day in range(6):
        await post_message(pclient, tenant.auth, contact, clock() - 1)
        await worker.drain()
        data = (await pclient.get(f"/v1/webhooks/{hook}", headers=tenant.auth)).json()["data"]
        assert data["enabled"] is (day < 5), (day, data)
        clock.advance(24 * HOUR)
    assert data["disabledReason"] == "failing"
    # a success in between resets the run of failures
    hook2 = (await subscribe(pclient, tenant, receiver, ["MessageReceived"]))["webhookId"]
    for _ in range(4):
        receiver.status = 500
        await post_message(pclient, tenant.auth, contact, clock() - 1)
        await worker.drain()
        clock.advance(36 * HOUR)
        receiver.status = 200
        await worker.drain()
    data = (await pclient.get(f"/v1/webhooks/{hook2}", headers=tenant.auth)).json()["data"]
    assert data["enabled"] is True


async def test_erase_contact_events(
    pclient: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    database: Database,
) -> None:
    await subscribe(pclient, tenant, receiver)
    gone = await make_contact(pclient, tenant.auth)
    kept = await make_contact(pclient, tenant.auth)
    for c in (gone, kept):
        await post_message(pclient, tenant.auth, c, T0 - 1000)

    async def erase(conn: AsyncConnection) -> None:
        await store.erase_contact_events(conn, user_id=tenant.user_id, contact_id=gone)

    await database.run_write(erase)
    ev, dl = tables.webhook_events.c, tables.webhook_deliveries.c
    async with database.read() as conn:
        events = (
            await conn.execute(select(ev.contact_id).where(ev.user_id == tenant.user_id))
        ).all()
        deliveries = (
            await conn.execute(select(dl.contact_id).where(dl.user_id == tenant.user_id))
        ).all()
    assert {row.contact_id for row in events} == {kept}
    assert {row.contact_id for row in deliveries} == {kept}
    assert len(events) == 2 and len(deliveries) == 2


async def test_contact_erase_through_the_api_removes_its_events(
    pclient: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    database: Database,
) -> None:
    hook = (await subscribe(pclient, tenant, receiver))["webhookId"]
    gone = await make_contact(pclient, tenant.auth)
    kept = await make_contact(pclient, tenant.auth)
    for c in (gone, kept):
        await post_message(pclient, tenant.auth, c, T0 - 1000)
    r = await pclient.delete(f"/v1/contacts/{gone}", headers=tenant.auth)
    assert r.status_code == 200, r.text
    page = (await pclient.get(f"/v1/webhooks/{hook}/deliveries", headers=tenant.auth)).json()
    ev = tables.webhook_events.c
    async with database.read() as conn:
        events = (
            await conn.execute(select(ev.contact_id).where(ev.user_id == tenant.user_id))
        ).all()
    assert {row.contact_id for row in events} == {kept}
    assert len(page["data"]) == 2
