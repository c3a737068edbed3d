"""Property test on the real databases: whatever the arrival order (and explicit closes in
between), the stored sessions equal the offline segmentation of the sorted timestamps."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from chatsessions import tables
from chatsessions.contacts import service as contacts_service
from chatsessions.contacts.schemas import ContactIn
from chatsessions.db import Database
from chatsessions.messages import service as messages_service
from chatsessions.messages.schemas import MessageIn
from chatsessions.sessions import rule
from chatsessions.sessions import service as sessions_service
from chatsessions.settings import service as settings_service
from tests.conftest import T0, create_tenant

MIN = 60_000
BASE = T0 - 24 * 60 * MIN  # all timestamps lie in the day before "now"


async def _store(db: Database, user_id: str, contact_id: str, ts: int, now: int) -> str:
    item = messages_service.prepare_message(
        MessageIn(contactId=contact_id, direction="inbound", timestamp=ts), now_ms=now
    )

    async def work(conn: Any) -> list[messages_service.StoredMessage]:
        return await messages_service.ingest(conn, user_id=user_id, items=[item], now_ms=now)

    [stored] = await db.run_write(work)
    return stored.message_id


async def _stored_sessions(db: Database, user_id: str, contact_id: str) -> set[Any]:
    s, m = tables.sessions.c, tables.messages.c
    async with db.read() as conn:
        sessions = {
            r.id: r
            for r in await conn.execute(
                select(s.id, s.start_ms, s.last_ms, s.closed_at_ms, s.message_count).where(
                    s.user_id == user_id, s.contact_id == contact_id
                )
            )
        }
        members: dict[str, list[tuple[int, str]]] = {sid: [] for sid in sessions}
        for r in await conn.execute(
            select(m.id, m.ts_ms, m.session_id).where(
                m.user_id == user_id, m.contact_id == contact_id
            )
        ):
            members[r.session_id].append((r.ts_ms, r.id))
    out = set()
    for sid, row in sessions.items():
        msgs = tuple(sorted(members[sid]))
        # The stored summary columns must agree with the stored messages.
        assert row.message_count == len(msgs)
        assert (row.start_ms, row.last_ms) == (msgs[0][0], msgs[-1][0])
        out.add((msgs, row.closed_at_ms))
    return out


offsets = st.lists(st.integers(min_value=0, max_value=6 * 60 * MIN), min_size=1, max_size=14)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    first=offsets,
    later=st.lists(st.integers(min_value=0, max_value=6 * 60 * MIN), max_size=8),
    changes=st.lists(
        st.tuples(st.integers(0, 6 * 60 * MIN), st.sampled_from([1, 10, 60, 90])), max_size=2
    ),
    data=st.data(),
)
async def test_stored_sessions_equal_offline_segmentation(
    database: Database,
    first: list[int],
    later: list[int],
    changes: list[tuple[int, int]],
    data: st.DataObject,
) -> None:
    tenant = await create_tenant(database, timeout_minutes=60, now_ms=BASE - MIN)

    async def setup(conn: Any) -> str:
        for at, minutes in changes:
            await settings_service.set_timeout(
                conn, user_id=tenant.user_id, minutes=minutes, now_ms=BASE + at
            )
        contact = await contacts_service.create_contact(
            conn, user_id=tenant.user_id, fields=ContactIn(email="p@example.com"), now_ms=BASE
        )
        return contact.id

    contact_id = await database.run_write(setup)
    async with database.read() as conn:
        history = await settings_service.timeout_history(conn, tenant.user_id)

    stored: list[tuple[int, str]] = []
    for off in data.draw(st.permutations(first)):
        ts = BASE + off
        stored.append((ts, await _store(database, tenant.user_id, contact_id, ts, T0)))

    closes: list[int] = []
    current = await _stored_sessions(database, tenant.user_id, contact_id)
    async with database.read() as conn:
        ids_by_start = {
            r.start_ms: r.id
            for r in await conn.execute(
                select(tables.sessions.c.id, tables.sessions.c.start_ms).where(
                    tables.sessions.c.user_id == tenant.user_id
                )
            )
        }
    for msgs, _closed in sorted(current)[: data.draw(st.integers(0, 2))]:
        sid = ids_by_start[msgs[0][0]]
        now = msgs[-1][0] + data.draw(st.integers(-5 * MIN, 90 * MIN))

        async def close(conn: Any, sid: str = sid, now: int = now) -> dict[str, Any]:
            return await sessions_service.close_session(
                conn, user_id=tenant.user_id, session_id=sid, now_ms=now, message_limit=1
            )

        closed = await database.run_write(close)
        if closed["closed_reason"] == "closed":
            closes.append(now if now > msgs[-1][0] else msgs[-1][0])

    for off in data.draw(st.permutations(later)):
        ts = BASE + off
        stored.append((ts, await _store(database, tenant.user_id, contact_id, ts, T0)))

    expected = {(seg.messages, seg.closed_at_ms) for seg in rule.segment(stored, closes, history)}
    assert await _stored_sessions(database, tenant.user_id, contact_id) == expected
