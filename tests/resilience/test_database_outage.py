"""Database outage: while PostgreSQL is cut away requests fail fast with 503 JSON and
/readyz says so; afterwards the service recovers by itself, and no acknowledged write is
lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg  # type: ignore[import-untyped]
import httpx
from sqlalchemy import func, select

from chatsessions import tables
from chatsessions.app import create_app
from chatsessions.config import Settings
from chatsessions.db import Database
from tests.conftest import (
    PG_ADMIN_URL,
    T0,
    FakeClock,
    Tenant,
    _create_pg_database,
    _drop_pg_database,
    create_tenant,
)
from tests.factories import make_contact
from tests.polling import wait_until
from tests.resilience.tcp_proxy import CuttableProxy

MIN = 60_000
# The service's connect timeout here. "Fails fast" means within a small multiple of it (a
# busy machine adds scheduling delay, never a hang of the client's 30 s timeout).
CONNECT_TIMEOUT_S = 2


@asynccontextmanager
async def _service_behind_proxy() -> AsyncIterator[
    tuple[CuttableProxy, Database, Tenant, httpx.AsyncClient]
]:
    """A fresh PostgreSQL database reached through a cuttable TCP proxy, a tenant, and a
    client of the real app on it."""
    pg_name, direct_url = await _create_pg_database()
    proxy = CuttableProxy("127.0.0.1", 5432)
    await proxy.start()
    try:
        from chatsessions.db import migrate

        await migrate(Settings(database_url=direct_url))
        url = direct_url.replace(":5432/", f":{proxy.port}/")
        settings = Settings(
            database_url=url, database_connect_timeout=CONNECT_TIMEOUT_S, secret_key="k"
        )
        db = Database(settings)
        tenant = await create_tenant(db)
        app = create_app(settings, clock=FakeClock(), database=db)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=30) as c:
            yield proxy, db, tenant, c
        await db.dispose()
    finally:
        await proxy.cut()
        await _drop_pg_database(pg_name)


async def test_outage_gives_fast_503_then_recovers_without_restart() -> None:
    async with _service_behind_proxy() as (proxy, db, tenant, c):
        contact = await make_contact(c, tenant.auth)
        acked: list[str] = []

        async def write(i: int) -> httpx.Response:
            return await c.post(
                "/v1/messages",
                json={
                    "contactId": contact,
                    "direction": "inbound",
                    "timestamp": T0 - i * MIN,
                    "externalId": f"o-{i}",
                },
                headers=tenant.auth,
            )

        for i in range(20):
            r = await write(i)
            assert r.status_code == 201
            acked.append(r.json()["messageId"])

        await proxy.cut()
        outage_codes = []
        for i in range(20, 30):
            started = time.monotonic()
            r = await write(i)
            assert time.monotonic() - started < 3 * CONNECT_TIMEOUT_S  # fails fast, no hang
            outage_codes.append(r.status_code)
            assert r.headers["content-type"].startswith("application/json")
            if r.status_code in (200, 201):
                acked.append(r.json()["messageId"])
        assert set(outage_codes) == {503}
        r = await c.get("/readyz")
        assert r.status_code == 503 and r.json()["code"] == "unavailable"
        r = await c.get("/v1/chat-sessions/recent?hours=1", headers=tenant.auth)
        assert r.status_code == 503

        await proxy.restore()

        async def ready() -> bool:
            return (await c.get("/readyz")).status_code == 200

        # Recovers by itself, without a restart (the deadline only bounds a failure).
        await wait_until(ready, what="/readyz to answer 200 after the database came back")
        for i in range(30, 40):
            r = await write(i)
            assert r.status_code == 201, r.text
            acked.append(r.json()["messageId"])

        async with db.read() as conn:
            m = tables.messages.c
            stored = {
                row.id
                for row in await conn.execute(select(m.id).where(m.user_id == tenant.user_id))
            }
            count = (
                await conn.execute(select(func.count()).where(m.user_id == tenant.user_id))
            ).scalar_one()
        assert set(acked) <= stored
        assert count == len(acked)  # nothing refused during the outage was half-stored


async def test_reads_after_a_database_restart_fail_at_most_once_per_process() -> None:
    """Pooled connections are not pinged before use: the first request that meets a dead
    one fails (503) and retires every connection opened before it, so the next request
    already gets a fresh one — not one failure per pooled connection."""
    listing = "/v1/chat-sessions/recent?hours=24"
    async with _service_behind_proxy() as (proxy, db, tenant, c):
        # Several requests at once leave several connections in the pool.
        warm = await asyncio.gather(*(c.get(listing, headers=tenant.auth) for _ in range(6)))
        assert {r.status_code for r in warm} == {200}
        assert db.engine.pool.checkedin() >= 3  # type: ignore[attr-defined]

        await proxy.cut()  # every pooled connection dies (a database restart)
        await proxy.restore()
        codes = [(await c.get(listing, headers=tenant.auth)).status_code for _ in range(6)]
    assert codes.count(503) <= 1, codes
    assert codes[-5:] == [200] * 5, codes


async def test_connections_the_server_terminated_fail_one_request_with_503_per_pool() -> None:
    """The server itself ends the service's connections (an administrator's
    pg_terminate_backend, a failover): the client sees them closed ("connection is
    closed", asyncpg's own error), which is the database being unavailable (503, retry),
    never a 500; one request per pool meets it, the next ones get fresh connections.
    The listing runs on the main pool, a single message on the probe pool."""
    listing = "/v1/chat-sessions/recent?hours=24"
    async with _service_behind_proxy() as (_proxy, db, tenant, c):
        contact_id = await make_contact(c, tenant.auth, phoneNumber="+15550009999")

        def message(n: int) -> dict[str, object]:
            return {"contactId": contact_id, "direction": "inbound", "content": f"m{n}"}

        warm = await asyncio.gather(
            *(c.get(listing, headers=tenant.auth) for _ in range(3)),
            *(c.post("/v1/messages", json=message(n), headers=tenant.auth) for n in range(3)),
        )
        assert [r.status_code for r in warm] == [200] * 3 + [201] * 3
        admin = await asyncpg.connect(PG_ADMIN_URL.replace("+asyncpg", ""))
        try:
            ended = await admin.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                db.engine.url.database,
            )
            assert len(ended) >= 2

            async def all_gone() -> bool:
                left = await admin.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1"
                    " AND pid <> pg_backend_pid()",
                    db.engine.url.database,
                )
                return not left

            await wait_until(all_gone, what="the terminated backends to exit")
        finally:
            await admin.close()
        reads = [(await c.get(listing, headers=tenant.auth)).status_code for _ in range(4)]
        writes = [
            (await c.post("/v1/messages", json=message(10 + n), headers=tenant.auth)).status_code
            for n in range(4)
        ]
    assert reads.count(503) <= 1 and reads[-3:] == [200] * 3, reads
    assert writes.count(503) <= 1 and writes[-3:] == [201] * 3, writes
    assert 500 not in reads + writes
