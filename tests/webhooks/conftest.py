"""Fixtures of the webhook tests: an app that allows private receivers, a receiver, a worker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions import tables
from chatsessions.app import create_app
from chatsessions.config import Settings
from chatsessions.db import Database
from chatsessions.webhooks.worker import DeliveryWorker
from tests.conftest import FakeClock, Tenant
from tests.webhooks.receiver import Receiver


async def _give_up_pending(database: Database) -> None:
    dl = tables.webhook_deliveries.c

    async def work(conn: AsyncConnection) -> None:
        await conn.execute(
            update(tables.webhook_deliveries)
            .where(dl.status == "pending")
            .values(status="failed", next_attempt_ms=None)
        )
        await conn.execute(update(tables.webhook_endpoints).values(enabled=False))

    await database.run_write(work)


@pytest_asyncio.fixture(autouse=True)
async def quiet_outbox(database: Database) -> AsyncIterator[None]:
    """The delivery queue and the sweeper are server-wide: each test starts and ends with
    nothing pending and no enabled endpoint, so one test's leftovers never count in
    another's worker or sweeper rounds."""
    await _give_up_pending(database)
    yield
    await _give_up_pending(database)


@pytest.fixture
def private_app(backend_settings: Settings, database: Database, clock: FakeClock) -> Any:
    """The app with CHATSESSIONS_WEBHOOK_ALLOW_PRIVATE=true (for the local receiver)."""
    settings = backend_settings.model_copy(update={"webhook_allow_private": True})
    return create_app(settings, clock=clock, database=database)


@pytest_asyncio.fixture
async def pclient(private_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client of :func:`private_app`."""
    transport = httpx.ASGITransport(app=private_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A running receiver on a random local port."""
    r = Receiver().start()
    yield r
    r.stop()


@pytest_asyncio.fixture
async def worker(database: Database, clock: FakeClock) -> AsyncIterator[DeliveryWorker]:
    """A delivery worker on the test clock, allowed to reach the local receiver."""
    w = DeliveryWorker(database, clock=clock, allow_private=True)
    yield w
    await w.aclose()


async def subscribe(
    client: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    events: list[str] | None = None,
) -> dict[str, Any]:
    """Create an endpoint pointing at ``receiver`` and give the receiver its secret."""
    r = await client.post(
        "/v1/webhooks",
        json={
            "url": receiver.url,
            "events": events
            or ["ChatSessionOpened", "ChatSessionClosed", "ChatSessionMerged", "MessageReceived"],
        },
        headers=tenant.auth,
    )
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()["data"]
    receiver.secret = data["secret"]
    return data
