"""Ingest inside a caller's transaction: what runs after it in the same transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions.contacts import service as contacts_service
from chatsessions.contacts.schemas import ContactIn
from chatsessions.db import Database, joined_ids
from chatsessions.messages import service as messages_service
from chatsessions.messages import store as messages_store
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
# 80: from messages.service.WRITE_AHEAD_FROM items, the new messages may be a statement
# of their own, ahead of the sessions' (two statements that each switch the plan mode).
@pytest.mark.parametrize("count", [1, 40, 80])
async def test_statements_after_ingest_plan_as_before_it(
    database: Database,
    tenant: Tenant,
    monkeypatch: pytest.MonkeyPatch,
    count: int,
    replay: bool,
) -> None:
    monkeypatch.setattr(messages_service, "WRITE_AHEAD_STALE_FROM", 0)

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


async def test_an_externalid_raced_by_a_batch_written_ahead_is_stored_once(
    database: Database, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two batches of two contacts carry the same externalId. Written ahead of their
    sessions (messages.service.WRITE_AHEAD_FROM), the second batch's messages wait on the
    first's uncommitted one; when that commits, the second batch is retried, sees the
    replay and stores the rest of its items. On PostgreSQL the interleaving is forced:
    the first batch commits only once the second has sent its messages."""
    count = messages_service.WRITE_AHEAD_FROM + 16

    async def make_contacts(conn: AsyncConnection) -> list[str]:
        return [
            (
                await contacts_service.create_contact(
                    conn,
                    user_id=tenant.user_id,
                    fields=ContactIn(email=f"r{n}@x.example"),
                    now_ms=T0,
                )
            ).id
            for n in range(2)
        ]

    first, second = await database.run_write(make_contacts)

    def batch(contact: str, tag: str) -> list[Any]:
        items = [
            MessageIn(
                contactId=contact,
                direction="inbound",
                timestamp=T0 - 1_000 + n,
                externalId="shared" if n == 0 else f"{tag}-{n}",
            )
            for n in range(count)
        ]
        return [messages_service.prepare_message(item, now_ms=T0) for item in items]

    monkeypatch.setattr(messages_service, "WRITE_AHEAD_STALE_FROM", 0)  # a new contact's
    forced = not database.is_sqlite
    first_written, second_sent = asyncio.Event(), asyncio.Event()
    ahead_calls = {first: 0, second: 0}
    prepare_write = messages_store.prepare_write

    def observed(
        conn: AsyncConnection, user_id: str, writes: Any, **kw: Any
    ) -> Callable[[], Awaitable[None]]:
        # Every write is prepared here (messages_store.write too), then sent.
        send = prepare_write(conn, user_id, writes, **kw)
        ahead = bool(writes.messages) and not (writes.inserted or writes.updated)
        contact = writes.messages[0].contact_id if writes.messages else None

        async def sent() -> None:
            if ahead and contact == second:
                ahead_calls[second] += 1
                if forced:  # after the first batch's "shared" (deadlines, not bets on timing)
                    await asyncio.wait_for(first_written.wait(), timeout=60)
                second_sent.set()
            await send()
            if ahead and contact == first:
                ahead_calls[first] += 1
                first_written.set()
                if forced and ahead_calls[first] == 1:
                    # The first batch holds "shared" uncommitted until the second sent its
                    # own, whose insert then waits for the first to commit.
                    await asyncio.wait_for(second_sent.wait(), timeout=60)

        return sent

    monkeypatch.setattr(messages_store, "prepare_write", observed)
    stored_first, stored_second = await asyncio.gather(
        messages_service.store_messages(
            database, user_id=tenant.user_id, items=batch(first, "a"), now_ms=T0
        ),
        messages_service.store_messages(
            database, user_id=tenant.user_id, items=batch(second, "b"), now_ms=T0
        ),
    )
    shared = [stored_first[0], stored_second[0]]
    assert sorted(s.duplicate for s in shared) == [False, True]
    assert shared[0].message_id == shared[1].message_id
    assert not any(s.duplicate for s in stored_first[1:] + stored_second[1:])
    if forced:  # the second batch's messages were sent twice: the race, then the retry
        assert ahead_calls == {first: 1, second: 2}
        assert not stored_first[0].duplicate
    async with database.read() as conn:
        rows = await conn.execute(
            text("SELECT contact_id, count(*) FROM messages WHERE user_id = :u GROUP BY 1"),
            {"u": tenant.user_id},
        )
        counts = dict(rows.all())
    # Nothing lost: "shared" once, every other item of both batches.
    assert sum(counts.values()) == 2 * count - 1
