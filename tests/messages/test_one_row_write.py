"""The write of one session or one message (a single message's) in its one-row form stores
the same rows as the write of arrays it stands for.

PostgreSQL only: the one-row form is a rendering of PostgreSQL's write statement (SQLite
writes rows one by one either way).
"""

from __future__ import annotations

from typing import Any

import pytest

from chatsessions.db import Raced
from chatsessions.messages import service
from chatsessions.messages import store as messages_store
from chatsessions.messages.schemas import MessageIn
from chatsessions.sessions.figures import Figures
from tests.conftest import BACKENDS, T0, create_tenant
from tests.messages.test_probe_plans import _fresh_database

MIN = 60_000


def _session(sid: str) -> messages_store.TrackedSession:
    return messages_store.TrackedSession(
        sid, "c" * 20, T0, T0, T0 + 1, None, T0, 1, 1, 0, T0, Figures(T0, None, 0, 0, None)
    )


def _message(mid: str) -> messages_store.MessageWrite:
    return messages_store.MessageWrite(
        mid, "c" * 20, "s" * 20, "inbound", "user", "text", "hi", None, T0, None
    )


def test_the_one_row_form_is_chosen_by_the_rows_of_each_part() -> None:
    one = messages_store.one_row_parts
    single = messages_store.Writes(updated=[_session("s" * 20)], messages=[_message("m" * 20)])
    assert one(single) == {"added", "changed", "inserted"}
    opened = messages_store.Writes(inserted=[_session("s" * 20)], messages=[_message("m" * 20)])
    assert one(opened) == {"added", "changed", "inserted"}
    # A message that splits a session: two sessions written, one message.
    split = messages_store.Writes(
        inserted=[_session("s" * 20)], updated=[_session("t" * 20)], messages=[_message("m" * 20)]
    )
    assert one(split) == {"inserted"}
    batch = messages_store.Writes(
        updated=[_session("s" * 20)], messages=[_message("m" * 20), _message("n" * 20)]
    )
    assert one(batch) == {"added", "changed"}
    assert one(messages_store.Writes()) == frozenset()

    # Planned in the probe phase: only a write made of one-row key probes and inserts.
    probes = messages_store.is_probes
    assert probes(messages_store.write_parts(single), one(single))
    assert probes(messages_store.write_parts(opened), one(opened))
    assert not probes(messages_store.write_parts(split), one(split))
    assert not probes(messages_store.write_parts(batch), one(batch))
    merged = messages_store.Writes(
        deleted=["t" * 20], updated=[_session("s" * 20)], messages=[_message("m" * 20)]
    )
    assert not probes(messages_store.write_parts(merged), one(merged))


# Single messages and small batches of one contact, in an order that opens sessions,
# appends to them, fills a gap (a merge of two sessions) and splits one (an out-of-order
# message after a long silence), with replays: each request a list of (minute, direction).
_REQUESTS: list[list[tuple[int, str]]] = [
    [(0, "inbound")],
    [(1, "outbound")],
    [(200, "inbound")],
    [(2, "inbound"), (3, "outbound")],  # one session, two messages
    [(100, "inbound")],  # a session of its own between the two
    [(60, "outbound")],  # fills the gap: merges the first two
    [(400, "inbound")],
    [(399, "inbound")],
    [(1, "outbound")],  # a replay (same externalId as the second request)
]


async def _store_all(database: Any, user_id: str, contact_id: str) -> None:
    for request in _REQUESTS:
        items = [
            MessageIn(
                contactId=contact_id,
                direction=direction,
                content=f"m{minute}",
                timestamp=T0 - 1000 * MIN + minute * MIN,
                externalId=f"ext-{minute}-{direction}",
            )
            for minute, direction in request
        ]
        prepared = [service.prepare_message(i, now_ms=T0) for i in items]
        await service.store_messages(database, user_id=user_id, items=prepared, now_ms=T0)


async def _rows(conn: Any, user_id: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Sessions and messages of the tenant, sessions named by their rank by start."""
    sessions = await conn.fetch(
        "SELECT id, start_ms, last_ms, expires_ms, closed_at_ms, activity_ms, message_count,"
        " inbound_count, outbound_count, first_inbound_ms, first_response_ms, reply_sum_ms,"
        " reply_count, unanswered_since_ms FROM sessions WHERE user_id = $1 ORDER BY start_ms",
        user_id,
    )
    rank = {row["id"]: n for n, row in enumerate(sessions)}
    messages = await conn.fetch(
        "SELECT session_id, direction, role, type, content, ts_ms, external_id FROM messages"
        " WHERE user_id = $1 ORDER BY ts_ms, external_id",
        user_id,
    )
    return (
        [tuple(row)[1:] for row in sessions],
        [(rank[row["session_id"]], *tuple(row)[1:]) for row in messages],
    )


@pytest.mark.parametrize("backend_name", [b for b in BACKENDS if b == "postgresql"])
async def test_one_row_writes_store_what_the_arrays_store(
    backend_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with _fresh_database() as (database, conn):
        stored: list[Any] = []
        # Single messages without the lock (their one-row guarded write), then under the
        # lock in the one-row form, then in arrays: the same rows each time.
        for path in ("unlocked", "one_row", "arrays"):
            if path != "unlocked":
                monkeypatch.setattr(service, "WRITE_SINGLES_UNLOCKED", False)
            if path == "arrays":
                monkeypatch.setattr(messages_store, "one_row_parts", lambda w: frozenset())
            tenant = await create_tenant(database)
            contact_id = "c" * 20
            await conn.execute(
                "INSERT INTO contacts (user_id, id, is_bot_active, do_not_disturb,"
                " created_at_ms, updated_at_ms) VALUES ($1, $2, true, false, 0, 0)",
                tenant.user_id,
                contact_id,
            )
            await _store_all(database, tenant.user_id, contact_id)
            stored.append(await _rows(conn, tenant.user_id))
        unlocked_rows, one_row_rows, array_rows = stored
        assert unlocked_rows == one_row_rows == array_rows
        sessions, messages = one_row_rows
        assert len(messages) == 9  # ten items; the replay stored nothing
        assert len(sessions) == 3  # (0–100 merged by 60), 200, 399–400


@pytest.mark.parametrize("backend_name", [b for b in BACKENDS if b == "postgresql"])
async def test_a_one_row_update_that_misses_its_session_is_a_race_retried(
    backend_name: str,
) -> None:
    # The one-row UPDATE finds its session by a key probe and updates it by ctid; had an
    # update without the contact lock moved the row in between, it would update nothing.
    # That is never silent: the write raises a race, which the transaction retries (and
    # gives up after its attempts, as for a deadlock). Here the session is not stored.
    async with _fresh_database() as (database, _conn):
        tenant = await create_tenant(database)
        attempts: list[int] = []

        async def work(tx: Any) -> None:
            attempts.append(1)
            writes = messages_store.Writes(updated=[_session("s" * 20)])
            assert messages_store.one_row_parts(writes) >= {"changed"}
            await messages_store.write(tx, tenant.user_id, writes, now_ms=T0)

        with pytest.raises(Raced, match=r"s{20}"):
            await database.run_write(work)
        assert len(attempts) == 4
