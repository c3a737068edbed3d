"""Owing a close announcement is one condition read two ways: in memory by ingest
(``outbox.owes_close``) and by the database through the partial index the sweeper reads
(``queue.sessions_owing_close``). Both must agree on any session, on both backends."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete

from chatsessions import ids, tables
from chatsessions.contacts import service as contacts_service
from chatsessions.contacts.schemas import ContactIn
from chatsessions.db import Database
from chatsessions.webhooks import outbox, queue
from tests.conftest import T0, Tenant

MIN = 60_000
times = st.integers(T0 - 90 * MIN, T0 + 90 * MIN).map(lambda t: t - t % MIN)
session = st.tuples(
    times,  # expires
    st.none() | times,  # closed at
    st.none() | times,  # close announced for this expiry
    times,  # created (stored)
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=st.lists(session, min_size=1, max_size=12), since=times)
async def test_database_and_memory_agree_on_who_owes_a_close(
    database: Database, tenant: Tenant, rows: list[tuple[Any, ...]], since: int
) -> None:
    async def setup(conn: Any) -> dict[str, tuple[Any, ...]]:
        await conn.execute(
            delete(tables.sessions).where(tables.sessions.c.user_id == tenant.user_id)
        )
        contact = await contacts_service.create_contact(
            conn, user_id=tenant.user_id, fields=ContactIn(email=f"{ids.new_id()}@x.org"), now_ms=T0
        )
        made = {}
        for expires, closed, notified, created in rows:
            sid = ids.new_id()
            made[sid] = (expires, closed, notified, created)
            await conn.execute(
                tables.sessions.insert().values(
                    user_id=tenant.user_id,
                    id=sid,
                    contact_id=contact.id,
                    start_ms=expires - MIN,
                    last_ms=expires - MIN,
                    expires_ms=expires,
                    closed_at_ms=closed,
                    activity_ms=expires,
                    message_count=1,
                    inbound_count=1,
                    outbound_count=0,
                    created_at_ms=created,
                    updated_at_ms=created,
                    close_notified_ms=notified,
                )
            )
        return made

    made = await database.run_write(setup)
    async with database.read() as conn:
        owing = await queue.sessions_owing_close(
            conn, user_id=tenant.user_id, since_ms=since, now_ms=T0, limit=100
        )
    in_memory = {
        sid
        for sid, (expires, closed, notified, created) in made.items()
        if outbox.owes_close(
            closed_at_ms=closed,
            expires_ms=expires,
            close_notified_ms=notified,
            created_at_ms=created,
            since_ms=since,
            now_ms=T0,
        )
    }
    assert {sid for sid, _contact in owing} == in_memory
