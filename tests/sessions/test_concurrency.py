"""Concurrent writers on one contact never split or duplicate a session, nor lose a message."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from sqlalchemy import func, select

from chatsessions import tables
from chatsessions.contacts import service as contacts_service
from chatsessions.contacts.schemas import ContactIn
from chatsessions.db import Database
from chatsessions.messages import service as messages_service
from chatsessions.messages.schemas import MessageIn
from chatsessions.sessions import rule
from chatsessions.settings import service as settings_service
from tests.conftest import T0, create_tenant

MIN = 60_000
WRITERS = 8
PER_WRITER = 200


async def test_eight_concurrent_writers_give_the_sequential_sessions(database: Database) -> None:
    tenant = await create_tenant(database)

    async def setup(conn: Any) -> str:
        contact = await contacts_service.create_contact(
            conn, user_id=tenant.user_id, fields=ContactIn(phoneNumber="+15550001111"), now_ms=T0
        )
        return contact.id

    contact_id = await database.run_write(setup)
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

    s, m = tables.sessions.c, tables.messages.c
    async with database.read() as conn:
        history = await settings_service.timeout_history(conn, tenant.user_id)
        rows = (
            await conn.execute(
                select(m.id, m.ts_ms, m.session_id).where(m.user_id == tenant.user_id)
            )
        ).all()
        session_count = (
            await conn.execute(select(func.count()).where(s.user_id == tenant.user_id))
        ).scalar_one()
        counted = (
            await conn.execute(select(func.sum(s.message_count)).where(s.user_id == tenant.user_id))
        ).scalar_one()

    stored_ids = {r.id for r in rows}
    assert stored_ids == {mid for ids in acknowledged for mid in ids}  # nothing lost
    assert len(rows) == WRITERS * PER_WRITER
    expected = rule.segment([(r.ts_ms, r.id) for r in rows], [], history)
    got: dict[str, list[tuple[int, str]]] = {}
    for r in rows:
        got.setdefault(r.session_id, []).append((r.ts_ms, r.id))
    assert {tuple(sorted(v)) for v in got.values()} == {seg.messages for seg in expected}
    assert session_count == len(expected)  # no orphan or duplicate session rows
    assert counted == WRITERS * PER_WRITER
