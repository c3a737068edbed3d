"""The loops as ``serve`` runs them (woken by new events, no polling wait), the metrics,
and the ``chatsessions webhooks deliveries`` command."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import orjson

from chatsessions.config import Settings
from chatsessions.db import Database
from chatsessions.webhooks.worker import Background, DeliveryWorker, purge_once, refresh_gauges
from tests.conftest import T0, FakeClock, Tenant
from tests.factories import make_contact, post_message
from tests.polling import wait_until
from tests.webhooks.conftest import subscribe
from tests.webhooks.receiver import Receiver


async def test_background_delivers_when_woken(
    pclient: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    database: Database,
    clock: FakeClock,
) -> None:
    await subscribe(pclient, tenant, receiver)
    # The loops poll once a day: only the wake-up on new events (NOTIFY on PostgreSQL,
    # in-process on SQLite) can make it deliver before the wait's deadline.
    background = Background(database, clock=clock, poll_interval_s=86_400, sweep_interval_s=86_400)
    background.worker.allow_private = True
    await background.start()
    try:
        # Progress, not a timer: the delivery loop found nothing due and sleeps, and on
        # PostgreSQL the NOTIFY listener is subscribed.
        await wait_until(background.idle.is_set, what="the delivery loop to go idle")
        if not database.is_sqlite:
            await wait_until(background.listening.is_set, what="the NOTIFY listener")
        contact = await make_contact(pclient, tenant.auth)
        await post_message(pclient, tenant.auth, contact, T0 - 1000)
        await wait_until(lambda: len(receiver.unique()) >= 2, what="two deliveries")
    finally:
        await background.stop()
    assert receiver.types() == ["ChatSessionOpened", "MessageReceived"]


async def test_metrics(
    pclient: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    worker: DeliveryWorker,
    database: Database,
    clock: FakeClock,
) -> None:
    await subscribe(pclient, tenant, receiver, ["MessageReceived"])
    contact = await make_contact(pclient, tenant.auth)
    await post_message(pclient, tenant.auth, contact, T0 - 1000)
    clock.advance(30_000)
    await refresh_gauges(database, now_ms=clock())
    text = (await pclient.get("/metrics")).text
    assert "chatsessions_webhook_pending 1.0" in text
    assert "chatsessions_webhook_oldest_pending_age_seconds 30.0" in text
    receiver.status = 500
    await worker.drain()
    receiver.status = 200
    clock.advance(10_000)
    await worker.drain()
    await refresh_gauges(database, now_ms=clock())
    text = (await pclient.get("/metrics")).text
    for name in ("delivered", "failed", "retried"):
        assert f"chatsessions_webhook_{name}_total" in text
    assert "chatsessions_webhook_pending 0.0" in text


async def test_cli_lists_deliveries(
    pclient: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    worker: DeliveryWorker,
    backend_settings: Settings,
) -> None:
    hook = (await subscribe(pclient, tenant, receiver, ["MessageReceived"]))["webhookId"]
    contact = await make_contact(pclient, tenant.auth)
    await post_message(pclient, tenant.auth, contact, T0 - 1000)
    await post_message(pclient, tenant.auth, contact, T0 - 999)
    assert await worker.run_once() == 1
    env = {
        **os.environ,
        "CHATSESSIONS_DATABASE_URL": backend_settings.database_url,
        "COLUMNS": "300",
    }
    args = [sys.executable, "-m", "chatsessions.cli", "webhooks", "deliveries"]
    done = subprocess.run(
        [*args, "--user-id", tenant.user_id, "--webhook-id", hook, "--json"],
        env=env, capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    rows = [orjson.loads(line) for line in done.stdout.splitlines()]
    assert [(r["status"], r["attempts"]) for r in rows] == [("pending", 0), ("delivered", 1)]
    assert all(r["webhookId"] == hook for r in rows)
    table = subprocess.run(
        [*args, "--user-id", tenant.user_id], env=env, capture_output=True, timeout=60, check=True
    )
    assert b"MessageReceived" in table.stdout
    assert b"1 pending, 1 delivered, 0 failed" in table.stderr


async def test_done_deliveries_are_forgotten_after_the_retention(
    pclient: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    worker: DeliveryWorker,
    database: Database,
    clock: FakeClock,
) -> None:
    hook = (await subscribe(pclient, tenant, receiver, ["MessageReceived"]))["webhookId"]
    contact = await make_contact(pclient, tenant.auth)
    await post_message(pclient, tenant.auth, contact, T0 - 1000)
    await worker.drain()
    clock.advance(29 * 86_400_000)
    await post_message(pclient, tenant.auth, contact, clock() - 1000)  # pending, recent
    url = f"/v1/webhooks/{hook}/deliveries"
    assert await purge_once(database, now_ms=clock()) == 0
    clock.advance(2 * 86_400_000)
    await purge_once(database, now_ms=clock())
    page = (await pclient.get(url, headers=tenant.auth)).json()
    assert [d["status"] for d in page["data"]] == ["pending"]
    await worker.drain()
    assert len(receiver.unique()) == 2
