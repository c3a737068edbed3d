"""Concurrent writers on one contact never split or duplicate a session, nor lose a message."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from sqlalchemy import select

from chatsessions import tables
from chatsessions.contacts import service as contacts_service
from chatsessions.contacts.schemas import ContactFields, ContactIn
from chatsessions.db import Database
from chatsessions.messages import service as messages_service
from chatsessions.messages.schemas import MessageIn
from tests.conftest import T0, create_tenant
from tests.segmentation import assert_offline_segmentation

MIN = 60_000
WRITERS = 8
PER_WRITER = 200


async def _new_contact(database: Database, user_id: str, phone: str) -> str:
    """A contact made as POST /v1/contacts makes it."""

    async def setup(conn: Any) -> str:
        contact = await contacts_service.create_contact(
            conn, user_id=user_id, fields=ContactIn(phoneNumber=phone), now_ms=T0
        )
        return contact.id

    return await database.run_write(setup)


async def test_eight_concurrent_writers_give_the_sequential_sessions(database: Database) -> None:
    tenant = await create_tenant(database)

    contact_id = await _new_contact(database, tenant.user_id, "+15550001111")
    rng = random.Random(7)
    # Timestamps over 3 days with gaps around the 60-minute timeout, so that concurrent
    # messages open, join, back-fill and merge the same sessions.
    plans = [
        [
            T0 - rng.randrange(0, 3 * 24 * 60) * MIN - rng.randrange(60_000)
            for _ in range(PER_WRITER)
        ]
        for _ in range(WRITERS)
    ]

    async def writer(stamps: list[int]) -> list[str]:
        ids: list[str] = []
        for ts in stamps:
            item = messages_service.prepare_message(
                MessageIn(contactId=contact_id, direction="outbound", timestamp=ts, content="x"),
                now_ms=T0,
            )

            async def work(conn: Any, item: Any = item) -> list[messages_service.StoredMessage]:
                return await messages_service.ingest(
                    conn, user_id=tenant.user_id, items=[item], now_ms=T0
                )

            [stored] = await database.run_write(work, generic_plans=True)  # as the routes
            ids.append(stored.message_id)
        return ids

    acknowledged = await asyncio.gather(*(writer(p) for p in plans))

    stored = await assert_offline_segmentation(database, tenant.user_id)
    assert stored == {mid for ids in acknowledged for mid in ids}  # nothing lost
    assert len(stored) == WRITERS * PER_WRITER


async def test_concurrent_writers_creating_one_contact_inline_find_one_contact(
    database: Database,
) -> None:
    """Writers that each name the same new contact by phone (no contactId): the first
    commit creates it, the others' insert of it fails and their retry finds it: one
    contact, every message of it, cut as one writer would have cut them."""
    tenant = await create_tenant(database)
    rng = random.Random(11)
    plans = [[T0 - rng.randrange(0, 6 * 60) * MIN for _ in range(20)] for _ in range(WRITERS)]

    async def writer(stamps: list[int]) -> list[str]:
        ids: list[str] = []
        for ts in stamps:
            body = MessageIn(
                contact=ContactFields(phoneNumber="+1 555 000 2222"),
                direction="inbound",
                timestamp=ts,
                content="x",
            )
            item = messages_service.prepare_message(body, now_ms=T0)
            [stored] = await messages_service.store_messages(
                database, user_id=tenant.user_id, items=[item], now_ms=T0
            )
            ids.append(stored.message_id)
        return ids

    acknowledged = await asyncio.gather(*(writer(p) for p in plans))

    c = tables.contacts.c
    async with database.read() as conn:
        contacts = (
            await conn.execute(select(c.id, c.phone).where(c.user_id == tenant.user_id))
        ).all()
    assert [phone for _id, phone in contacts] == ["+15550002222"]
    stored = await assert_offline_segmentation(database, tenant.user_id)
    assert stored == {mid for ids in acknowledged for mid in ids}
    assert len(stored) == WRITERS * 20


# The contacts a batch creates inserted with the rest, or in a statement of their own
# before it (messages.service.CONTACTS_AHEAD_FROM, PostgreSQL), where the race is lost.
@pytest.mark.parametrize("contacts_ahead_from", [2, 10**9], ids=["contacts ahead", "one write"])
async def test_concurrent_batches_creating_the_same_contacts_inline_find_one_each(
    database: Database, monkeypatch: pytest.MonkeyPatch, contacts_ahead_from: int
) -> None:
    """Batches that each name the same new contacts by phone: one contact per phone, every
    acknowledged message stored once, cut as one writer would have cut them."""
    monkeypatch.setattr(messages_service, "CONTACTS_AHEAD_FROM", contacts_ahead_from)
    tenant = await create_tenant(database)
    phones = [f"+1555000{n:04d}" for n in range(8)]
    rng = random.Random(17)
    plans = [
        [
            [(rng.choice(phones), T0 - rng.randrange(0, 6 * 60) * MIN) for _ in range(20)]
            for _ in range(4)
        ]
        for _ in range(4)
    ]

    async def writer(batches: list[list[tuple[str, int]]]) -> list[str]:
        ids: list[str] = []
        for batch in batches:
            items = [
                messages_service.prepare_message(
                    MessageIn(
                        contact=ContactFields(phoneNumber=phone),
                        direction="inbound",
                        timestamp=ts,
                        content="x",
                    ),
                    now_ms=T0,
                )
                for phone, ts in batch
            ]
            stored = await messages_service.store_messages(
                database, user_id=tenant.user_id, items=items, now_ms=T0
            )
            ids += [s.message_id for s in stored]
        return ids

    acknowledged = await asyncio.gather(*(writer(p) for p in plans))

    c = tables.contacts.c
    async with database.read() as conn:
        contacts = (await conn.execute(select(c.phone).where(c.user_id == tenant.user_id))).all()
    assert sorted(phone for (phone,) in contacts) == phones
    stored = await assert_offline_segmentation(database, tenant.user_id)
    assert stored == {mid for ids in acknowledged for mid in ids}
    assert len(stored) == 4 * 4 * 20


async def test_singles_without_the_lock_and_batches_under_it_give_the_sequential_sessions(
    database: Database,
) -> None:
    """Single messages the routes' way (on PostgreSQL read and written without the
    contact's lock, falling back to it when a writer committed meanwhile) racing each
    other and batches under the lock, on one contact: the sessions one writer would have
    cut, every acknowledged message stored once."""
    tenant = await create_tenant(database)

    contact_id = await _new_contact(database, tenant.user_id, "+15550003333")
    rng = random.Random(13)
    plans = [
        [T0 - rng.randrange(0, 2 * 24 * 60) * MIN - rng.randrange(60_000) for _ in range(120)]
        for _ in range(WRITERS)
    ]

    def item(ts: int) -> messages_service.NewMessage:
        body = MessageIn(contactId=contact_id, direction="inbound", timestamp=ts, content="x")
        return messages_service.prepare_message(body, now_ms=T0)

    async def singles(stamps: list[int]) -> list[str]:
        ids: list[str] = []
        for ts in stamps:
            [stored] = await messages_service.store_messages(
                database, user_id=tenant.user_id, items=[item(ts)], now_ms=T0
            )
            ids.append(stored.message_id)
        return ids

    async def batches(stamps: list[int]) -> list[str]:
        ids: list[str] = []
        for start in range(0, len(stamps), 3):
            items = [item(ts) for ts in stamps[start : start + 3]]

            async def work(conn: Any, items: Any = items) -> list[messages_service.StoredMessage]:
                return await messages_service.ingest(
                    conn, user_id=tenant.user_id, items=items, now_ms=T0
                )

            ids += [
                s.message_id for s in await messages_service.run_ingest_transaction(database, work)
            ]
        return ids

    acknowledged = await asyncio.gather(
        *(singles(p) if n % 2 == 0 else batches(p) for n, p in enumerate(plans))
    )

    stored = await assert_offline_segmentation(database, tenant.user_id)
    assert stored == {mid for ids in acknowledged for mid in ids}  # nothing lost
    assert len(stored) == WRITERS * 120
