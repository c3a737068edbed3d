"""Ingest inside a caller's transaction: what runs after it in the same transaction."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions.contacts import service as contacts_service
from chatsessions.contacts.schemas import ContactIn
from chatsessions.db import Database, joined_ids
from chatsessions.messages import service as messages_service
from chatsessions.messages.schemas import MessageIn
from tests.conftest import T0, Tenant


async def _plan_mode(conn: AsyncConnection) -> str | None:
    if conn.dialect.name != "postgresql":
        return None  # SQLite has no plan cache settings
    return str((await conn.execute(text("SHOW plan_cache_mode"))).scalar_one())


async def _own_plan_mode(conn: AsyncConnection) -> str | None:
    """The transaction's own plan mode: the one its probe phase (db.PG_PROBES) puts back
    when it ends, or the current one outside a probe phase."""
    if conn.dialect.name != "postgresql":
        return None
    own = (
        await conn.execute(
            text(
                "SELECT COALESCE(NULLIF(current_setting("
                "'chatsessions.plan_cache_mode_after_probes', true), ''), "
                "current_setting('plan_cache_mode'))"
            )
        )
    ).scalar_one()
    return str(own)


@pytest.mark.parametrize("replay", [False, True], ids=["new", "replay"])
@pytest.mark.parametrize("count", [1, 40])
async def test_statements_after_ingest_plan_as_before_it(
    database: Database, tenant: Tenant, count: int, replay: bool
) -> None:
    # The write statement lets PostgreSQL's foreign-key checks use their generic plans
    # while it runs; a caller's later statements (a channel's counters, an import's
    # contact) must still run with the transaction's own plan settings (those its probe
    # phase, which ingest's reads end, puts back; a single message's write ends it, and a
    # replay, which writes nothing, too).
    async def make_contact(conn: AsyncConnection) -> Any:
        return await contacts_service.create_contact(
            conn, user_id=tenant.user_id, fields=ContactIn(phoneNumber="+15550001234"), now_ms=T0
        )

    contact = await database.run_write(make_contact)
    items = [
        MessageIn(
            contactId=contact.id,
            direction="inbound",
            content="hi",
            timestamp=T0 - n,
            externalId=f"ext-{n}",
        )
        for n in range(count)
    ]
    prepared = [messages_service.prepare_message(item, now_ms=T0) for item in items]
    if replay:  # stored by a transaction before: the one below writes nothing
        await messages_service.store_messages(
            database, user_id=tenant.user_id, items=prepared, now_ms=T0
        )

    async def work(conn: AsyncConnection) -> tuple[str | None, str | None, int]:
        before = await _own_plan_mode(conn)
        stored = await messages_service.ingest(
            conn, user_id=tenant.user_id, items=prepared, now_ms=T0
        )
        assert all(s.duplicate for s in stored) is replay
        return before, await _plan_mode(conn), len({s.message_id for s in stored})

    before, after, stored = await messages_service.run_ingest_transaction(database, work)
    assert after == before
    assert stored == count


def test_ids_sent_joined_never_shift_a_column() -> None:
    """The write sends id columns as one comma-joined text that PostgreSQL splits: an id
    holding a comma would shift every value after it into the wrong row, so it is refused
    instead of written."""
    assert joined_ids(["a1", "b2", "c3"]) == "a1,b2,c3"
    with pytest.raises(ValueError, match="comma"):
        joined_ids(["a1", "b,2", "c3"])
