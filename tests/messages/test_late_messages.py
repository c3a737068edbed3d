"""A late message in a long session: its figures come from the stored messages around it
(sessions.store.read_message_keys_around), not from every message of the session, and are
those of the whole session recomputed."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from chatsessions import tables
from chatsessions.config import Settings
from chatsessions.contacts import service as contacts_service
from chatsessions.contacts.schemas import ContactFields, ContactIn
from chatsessions.db import Database, migrate
from chatsessions.messages import placement as placement_module
from chatsessions.messages import service as messages_service
from chatsessions.messages.placement import AROUND_FROM, ContactPlacement
from chatsessions.messages.schemas import MessageIn
from chatsessions.messages.store import TrackedSession
from chatsessions.sessions import store as sessions_store
from chatsessions.sessions.rule import TimeoutHistory
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
    real = sessions_store.read_message_keys_around

    async def counted(conn: Any, user_id: str, spans: Any) -> Any:
        build = await real(conn, user_id, spans)

        def built() -> Any:
            out = build()
            reads.append(sum(len(keys) for keys in out.values()))
            return out

        return built

    # Every read of stored messages around inserts (the read ahead's too) goes through it.
    monkeypatch.setattr(sessions_store, "read_message_keys_around", counted)
    await _ingest(database, tenant.user_id, [_message(contact_id, late_ms, direction, "late")])

    # One session, the late message stored in it, its figures those of every message.
    assert await check_stored_figures(database, tenant.user_id) == (1, 2 * TURNS + 1)
    assert reads == ([] if read is None else [read])


async def _contacts_with_history(
    database: Database, user_id: str, count: int
) -> tuple[list[str], list[MessageIn]]:
    """``count`` contacts, each with one session of four messages (two turns)."""

    async def setup(conn: Any) -> list[str]:
        made = []
        for n in range(count):
            contact = await contacts_service.create_contact(
                conn,
                user_id=user_id,
                fields=ContactIn(email=f"c{n}@x.example"),
                now_ms=BASE,
            )
            made.append(contact.id)
        return made

    contact_ids = await database.run_write(setup)
    history = [
        _message(cid, BASE + t * 2 * MIN + (MIN if reply else 0), d, f"h{n}-{t}{d}")
        for n, cid in enumerate(contact_ids)
        for t in range(2)
        for reply, d in ((False, "inbound"), (True, "outbound"))
    ]
    return contact_ids, history


def _late_batch(contact_ids: list[str]) -> list[MessageIn]:
    # Per contact: one message appended, one inside its session, one before its start,
    # and one after the appended one (its own batch made it late): all in its session.
    out = []
    for n, cid in enumerate(contact_ids):
        out += [
            _message(cid, BASE + 5 * MIN, "inbound", f"a{n}"),
            _message(cid, BASE + 30_000, "outbound", f"b{n}"),
            _message(cid, BASE - MIN, "inbound", f"c{n}"),
            _message(cid, BASE + 4 * MIN, "outbound", f"d{n}"),
        ]
    return out


async def test_the_messages_a_batch_needs_are_read_while_it_is_placed(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Late messages for many contacts: the stored messages their figures need are read
    # in one statement, sent before the messages are placed (messages.service: the guess
    # of placement.figures_likely_wanted), and none is read again after.
    tenant = await create_tenant(database, timeout_minutes=60, now_ms=BASE - MIN)
    contact_ids, history = await _contacts_with_history(database, tenant.user_id, 12)
    await _ingest(database, tenant.user_id, history)

    reads: list[dict[str, tuple[int, int]]] = []
    placing: list[bool] = []  # whether each read was sent before the placement began
    real_read = sessions_store.read_message_keys_around
    real_place = ContactPlacement.place

    async def counted(conn: Any, user_id: str, spans: Any) -> Any:
        reads.append(dict(spans))
        placing.append(not placed)
        return await real_read(conn, user_id, spans)

    placed: list[int] = []

    def place(self: ContactPlacement, *message: Any) -> Any:
        placed.append(1)
        return real_place(self, *message)

    monkeypatch.setattr(sessions_store, "read_message_keys_around", counted)
    monkeypatch.setattr(ContactPlacement, "place", place)
    await _ingest(database, tenant.user_id, _late_batch(contact_ids))

    assert await check_stored_figures(database, tenant.user_id) == (12, 12 * 8)
    assert len(reads) == 1 and placing == [True]
    assert len(reads[0]) == 12  # each contact's one session, read whole (4 messages)
    assert set(reads[0].values()) == {sessions_store.EVERY}


@pytest.mark.parametrize(
    "guess",
    [
        "none",  # nothing read ahead: everything after the placement
        "narrow",  # spans that do not cover the messages: read again, wider
        "others",  # sessions the batch does not touch
    ],
)
# Written ahead (PostgreSQL): the batch's messages in a statement of their own, sent once
# its reads are done (messages.service.WRITE_AHEAD_FROM): a read after it would find
# them, and count them twice in the figures. The contacts it creates may go before them
# (CONTACTS_AHEAD_FROM), sent after the read ahead: a read the guess missed waits for them.
@pytest.mark.parametrize(
    "ahead", ["one write", "written ahead", "contacts ahead", "contacts and messages ahead"]
)
async def test_figures_are_right_whatever_was_read_ahead(
    database: Database, monkeypatch: pytest.MonkeyPatch, guess: str, ahead: str
) -> None:
    # The read ahead is a guess: a wrong one costs a statement, never a wrong figure.
    messages_ahead = ahead in ("written ahead", "contacts and messages ahead")
    monkeypatch.setattr(messages_service, "WRITE_AHEAD_FROM", 2 if messages_ahead else 10**9)
    monkeypatch.setattr(messages_service, "WRITE_AHEAD_STALE_FROM", 0)
    monkeypatch.setattr(
        messages_service, "CONTACTS_AHEAD_FROM", 1 if "contacts" in ahead else 10**9
    )
    tenant = await create_tenant(database, timeout_minutes=60, now_ms=BASE - MIN)
    contact_ids, history = await _contacts_with_history(database, tenant.user_id, 7)
    untouched = contact_ids.pop()  # not in the batch
    # Long sessions for half the contacts, so that some are read around (not whole).
    history += [
        _message(cid, BASE + (3 + t) * 2 * MIN + (MIN if reply else 0), d, f"x{cid}{t}{d}")
        for cid in contact_ids[:3]
        for t in range(AROUND_FROM)
        for reply, d in ((False, "inbound"), (True, "outbound"))
    ]
    await _ingest(database, tenant.user_id, history)
    s = tables.sessions.c
    async with database.read() as conn:
        other = (await conn.execute(select(s.id).where(s.contact_id == untouched))).scalar_one()
    real_guess = placement_module.figures_likely_wanted

    def wrong(sessions: Any, times: list[int], history: Any) -> dict[str, tuple[int, int]]:
        right = real_guess(sessions, times, history)
        if guess == "none":
            return {}
        if guess == "narrow":
            return {sid: (BASE + 20 * MIN, BASE + 20 * MIN) for sid in right}
        return {other: sessions_store.EVERY}

    reads: list[set[str]] = []
    real_read = sessions_store.read_message_keys_around

    async def counted(conn: Any, user_id: str, spans: Any) -> Any:
        reads.append(set(spans))
        return await real_read(conn, user_id, spans)

    monkeypatch.setattr(messages_service, "figures_likely_wanted", wrong)
    monkeypatch.setattr(sessions_store, "read_message_keys_around", counted)
    # Two contacts created by the batch, one of them with two messages.
    created = [
        MessageIn(
            contact=ContactFields(phoneNumber=phone),
            direction=d,
            timestamp=BASE + 3 * MIN,
            externalId=f"new-{n}",
        )
        for n, (phone, d) in enumerate(
            [("+15550170001", "inbound"), ("+15550170002", "inbound"), ("+15550170002", "outbound")]
        )
    ]
    await _ingest(database, tenant.user_id, _late_batch(contact_ids) + created)

    assert await check_stored_figures(database, tenant.user_id) == (
        7 + 2,
        6 * 8 + 4 + 3 * 2 * AROUND_FROM + 3,
    )
    # Whatever was read ahead, every session the batch touched was read after it,
    # but where the read ahead covered it (never, here).
    touched = reads[-1]
    assert len(touched) == 6
    assert len(reads) == (1 if guess == "none" else 2)


def _session(sid: str, start: int, last: int, count: int) -> TrackedSession:
    return TrackedSession(sid, "c", start, last, last + 60 * MIN, None, last, count, 0, 0, 0)


@pytest.mark.parametrize(
    ("times", "expected"),
    [
        # Appended only, after every stored message: nothing (a tie is not after).
        ([201, 300], {}),
        # Inside the first session: it, whole (few messages).
        ([150], {"s1": sessions_store.EVERY}),
        # Before the first session: it joins its front.
        ([50], {"s1": sessions_store.EVERY}),
        # Appended, then one before the appended one: the request made it late.
        ([250, 240], {"s1": sessions_store.EVERY}),
        # Inside the long second session: the span of the request's messages in it.
        ([5_000, 9_000], {"s2": (5_000, 9_000)}),
        # Past the first session's timeout (1 s here): a session of its own, nothing read.
        ([2_000, 1_900], {}),
        # Before the first session by more than the timeout: the same.
        ([-5_000], {}),
    ],
)
def test_the_guess_names_the_sessions_messages_land_inside(
    times: list[int], expected: dict[str, tuple[int, int]]
) -> None:
    sessions = [
        _session("s2", 4_000, 10_000, AROUND_FROM + 1),
        _session("s1", 100, 200, 4),
    ]
    history = TimeoutHistory.constant(1_000)
    assert placement_module.figures_likely_wanted(sessions, times, history) == expected


async def test_sqlite_reads_the_figures_message_keys_from_the_index_alone(tmp_path: Any) -> None:
    # The reads of a session's message keys (time, id, direction) for its figures are
    # served by ix_messages_session_keys without a lookup of each message's row, which
    # cost half of a batch's read ahead (shape a of bench/ingest_shapes.py). SQLite's
    # index, on a database the migrations built; PostgreSQL's reads are planned in
    # test_probe_plans.
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'keys.db'}")
    await migrate(settings)
    database = Database(settings)
    reads = {
        "around": (
            sessions_store._MESSAGE_KEYS_AROUND_SQLITE,
            {"user_id": "u", "windows": '[["s", 1, 2]]'},
        ),
        "whole": (sessions_store._MESSAGE_KEYS_SQLITE, {"user_id": "u", "ids": '["s"]'}),
    }
    try:
        async with database.read() as conn:
            for name, (sql, params) in reads.items():
                plan = await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params)
                details = [row[-1] for row in plan]
                searches = [d for d in details if d.startswith("SEARCH")]
                # around: the bounds before and after, then the range; whole: the range
                assert len(searches) == (3 if name == "around" else 1), (name, details)
                for detail in searches:
                    assert "USING COVERING INDEX ix_messages_session_keys" in detail, (name, detail)
    finally:
        await database.dispose()
