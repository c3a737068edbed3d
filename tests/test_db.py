"""Write transactions: commit, rollback, races retried, and per-transaction plan settings."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select, text

from chatsessions import tables
from chatsessions.config import Settings
from chatsessions.contacts import service as contacts_service
from chatsessions.contacts.schemas import ContactIn
from chatsessions.db import Database, fetch_rows
from chatsessions.messages import service as messages_service
from chatsessions.messages.schemas import MessageIn
from tests.conftest import BACKENDS, PG_ADMIN_URL, T0, Tenant

_PLAN_MODE = text("SELECT current_setting('plan_cache_mode')")


async def _contact(database: Database, tenant: Tenant, phone: str) -> str:
    async def work(conn: Any) -> str:
        contact = await contacts_service.create_contact(
            conn, user_id=tenant.user_id, fields=ContactIn(phoneNumber=phone), now_ms=T0
        )
        return contact.id

    return await database.run_write(work)


async def _message_count(database: Database, tenant: Tenant) -> int:
    m = tables.messages.c
    async with database.read() as conn:
        stmt = select(func.count()).where(m.user_id == tenant.user_id)
        return int((await conn.execute(stmt)).scalar_one())


@pytest.mark.parametrize("generic_plans", [False, True])
async def test_one_external_id_posted_at_once_for_many_contacts_is_stored_once(
    database: Database, tenant: Tenant, generic_plans: bool
) -> None:
    # Different contacts do not lock each other out: both writers miss the externalId,
    # both insert it, the unique index refuses one, and the retry replays the winner's.
    contacts = [await _contact(database, tenant, f"+1555000{i:04d}") for i in range(6)]

    async def post(contact_id: str) -> messages_service.StoredMessage:
        item = messages_service.prepare_message(
            MessageIn(
                contactId=contact_id,
                direction="inbound",
                timestamp=T0,
                content="once",
                externalId="ext-race",
            ),
            now_ms=T0,
        )

        async def work(conn: Any) -> list[messages_service.StoredMessage]:
            return await messages_service.ingest(
                conn, user_id=tenant.user_id, items=[item], now_ms=T0
            )

        [stored] = await database.run_write(work, generic_plans=generic_plans)
        return stored

    results = await asyncio.gather(*(post(c) for c in contacts))

    assert len({r.message_id for r in results}) == 1
    assert sum(not r.duplicate for r in results) == 1
    assert await _message_count(database, tenant) == 1


@pytest.mark.parametrize("generic_plans", [False, True])
async def test_a_failed_write_is_rolled_back_and_the_connection_stays_usable(
    database: Database, tenant: Tenant, generic_plans: bool
) -> None:
    # Ingest's statements run straight on the driver: they must still be inside the
    # transaction (SQLAlchemy alone would begin one only at its own first statement).
    contact_id = await _contact(database, tenant, "+15550009999")
    item = messages_service.prepare_message(
        MessageIn(contactId=contact_id, direction="inbound", timestamp=T0, content="x"),
        now_ms=T0,
    )

    async def store_then_fail(conn: Any) -> None:
        await messages_service.ingest(conn, user_id=tenant.user_id, items=[item], now_ms=T0)
        raise RuntimeError("the request failed after its statements")

    for _ in range(3):  # more than once: the pooled connection is reused each time
        with pytest.raises(RuntimeError):
            await database.run_write(store_then_fail, generic_plans=generic_plans)
    assert await _message_count(database, tenant) == 0

    async def store(conn: Any) -> list[messages_service.StoredMessage]:
        return await messages_service.ingest(conn, user_id=tenant.user_id, items=[item], now_ms=T0)

    await database.run_write(store, generic_plans=generic_plans)
    assert await _message_count(database, tenant) == 1


# plan_cache_mode is PostgreSQL's: this test runs on PostgreSQL only (no tables needed).
@pytest.mark.parametrize("backend_name", [b for b in BACKENDS if b == "postgresql"])
async def test_generic_plans_hold_inside_their_transaction_only(backend_name: str) -> None:
    database = Database(Settings(database_url=PG_ADMIN_URL))

    async def mode(conn: Any) -> str:
        return str((await fetch_rows(conn, _PLAN_MODE, {}))[0][0])

    try:
        inside = await database.run_write(mode, generic_plans=True)
        ordinary = await database.run_write(mode)
        async with database.read() as conn:
            afterwards = await mode(conn)
    finally:
        await database.dispose()

    assert inside == "force_generic_plan"
    # The connection's own setting (custom plans, for the listing) is back after it.
    assert ordinary == afterwards == "force_custom_plan"


_BITMAP = text("SELECT current_setting('enable_bitmapscan')")


@pytest.mark.parametrize("backend_name", [b for b in BACKENDS if b == "postgresql"])
async def test_ingest_transactions_plan_with_index_scans_only(backend_name: str) -> None:
    """store_messages' transactions turn bitmap scans off for themselves only."""
    database = Database(Settings(database_url=PG_ADMIN_URL))

    async def bitmap(conn: Any) -> str:
        return str((await fetch_rows(conn, _BITMAP, {}))[0][0])

    try:
        inside = await database.run_write(bitmap, index_scans=True)
        ordinary = await database.run_write(bitmap)
    finally:
        await database.dispose()
    assert (inside, ordinary) == ("off", "on")


async def test_sqlite_a_connection_given_back_in_a_transaction_is_rolled_back(
    tmp_path: Any,
) -> None:
    """SQLite's pool resets only connections still in a transaction (no rollback hop after
    every commit): one given back in a transaction SQLAlchemy does not know of (as after a
    rollback that failed) is rolled back, so its write lock is not kept."""
    database = Database(Settings(database_url=f"sqlite:///{tmp_path / 'reset.db'}"))
    try:
        async with database.engine.connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            await driver.execute("BEGIN IMMEDIATE")
            assert driver.in_transaction
        assert not driver.in_transaction

        async def in_transaction(conn: Any) -> bool:
            return bool(conn.in_transaction())

        assert await database.run_write(in_transaction)  # the write lock was free
    finally:
        await database.dispose()


async def test_sqlite_sql_text_outside_a_transaction_begins_one_for_its_snapshot(
    tmp_path: Any,
) -> None:
    """fetch_rows runs SQL text on SQLite's driver only inside a transaction; a read's
    first statement goes through SQLAlchemy, which begins the read's transaction (its one
    snapshot for every statement that follows)."""
    database = Database(Settings(database_url=f"sqlite:///{tmp_path / 'snap.db'}"))
    try:
        async with database.read() as conn:
            assert not conn.in_transaction()
            assert list(await fetch_rows(conn, "SELECT 1 + :n", {"n": 1})) == [(2,)]
            assert conn.in_transaction()
            driver = (await conn.get_raw_connection()).driver_connection
            assert driver.in_transaction
            assert list(await fetch_rows(conn, "SELECT 2 * :n", {"n": 2})) == [(4,)]
    finally:
        await database.dispose()
