"""A late message in a long session: its figures come from the stored messages around it
(sessions.store.message_keys_around), not from every message of the session, and are
those of the whole session recomputed."""

from __future__ import annotations

from typing import Any

import pytest

from chatsessions.contacts import service as contacts_service
from chatsessions.contacts.schemas import ContactIn
from chatsessions.db import Database
from chatsessions.messages import service as messages_service
from chatsessions.messages.schemas import MessageIn
from chatsessions.sessions import store as sessions_store
from tests.conftest import T0, create_tenant
from tests.figures_oracle import check_stored_figures

MIN = 60_000
BASE = T0 - 24 * 60 * MIN
TURNS = 150  # 300 messages: an inbound one, its reply a minute later, every 2 minutes


async def _ingest(database: Database, user_id: str, messages: list[MessageIn]) -> None:
    items = [messages_service.prepare_message(m, now_ms=T0) for m in messages]

    async def work(conn: Any) -> Any:
        return await messages_service.ingest(conn, user_id=user_id, items=items, now_ms=T0)

    await database.run_write(work)


def _message(contact_id: str, ts_ms: int, direction: str, n: str) -> MessageIn:
    return MessageIn(contactId=contact_id, direction=direction, timestamp=ts_ms, externalId=n)


@pytest.mark.parametrize(
    ("late_ms", "direction", "read"),
    [
        # Inside the last turns: from the reply before it to the reply after it.
        (BASE + (TURNS - 3) * 2 * MIN + 30_000, "inbound", 3),
        # An early reply that answers sooner: from the session's start (no reply before).
        (BASE + 30_000, "outbound", 2),
        # After every stored message but tied with none: appended, nothing read.
        (BASE + TURNS * 2 * MIN, "inbound", None),
        # Before the first message: from the start to the first reply.
        (BASE - MIN, "inbound", 2),
    ],
)
async def test_a_late_message_reads_the_turns_around_it(
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
    late_ms: int,
    direction: str,
    read: int | None,
) -> None:
    tenant = await create_tenant(database, timeout_minutes=60, now_ms=BASE - MIN)

    async def setup(conn: Any) -> str:
        contact = await contacts_service.create_contact(
            conn, user_id=tenant.user_id, fields=ContactIn(email="late@x.example"), now_ms=BASE
        )
        return contact.id

    contact_id = await database.run_write(setup)
    history = [
        _message(contact_id, BASE + t * 2 * MIN + (MIN if reply else 0), d, f"h{t}{d}")
        for t in range(TURNS)
        for reply, d in ((False, "inbound"), (True, "outbound"))
    ]
    await _ingest(database, tenant.user_id, history)

    reads: list[int] = []
    real = sessions_store.message_keys_around

    async def counted(conn: Any, user_id: str, spans: Any) -> Any:
        out = await real(conn, user_id, spans)
        reads.append(sum(len(keys) for keys in out.values()))
        return out

    monkeypatch.setattr(sessions_store, "message_keys_around", counted)
    await _ingest(database, tenant.user_id, [_message(contact_id, late_ms, direction, "late")])

    # One session, the late message stored in it, its figures those of every message.
    assert await check_stored_figures(database, tenant.user_id) == (1, 2 * TURNS + 1)
    assert reads == ([] if read is None else [read])
