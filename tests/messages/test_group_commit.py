"""Group commit on the real databases: requests of one tenant that queue behind a write in
flight are stored as one transaction, with exactly the results and the stored sessions of
storing them one by one in arrival order; a request that cannot be stored fails alone; a
cancelled queued request is not stored; an unreachable database fails the group without a
request-by-request retry."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions import tables
from chatsessions.app import create_app
from chatsessions.config import Settings
from chatsessions.contacts.schemas import ContactFields
from chatsessions.db import Database
from chatsessions.errors import NotFound
from chatsessions.messages import service
from chatsessions.messages.group_commit import GROUP_FALLBACKS, GroupCommit
from chatsessions.messages.schemas import MessageIn
from tests.channels.payloads import create_channel, post_meta, wa_change, wa_message, wa_payload
from tests.conftest import T0, FakeClock, create_tenant
from tests.polling import wait_until
from tests.segmentation import assert_offline_segmentation

MIN = 60_000
BASE = T0 - 12 * 60 * MIN

# (contact, minutes after BASE, inbound?, externalId or None): few contacts, a coarse grid
# around the 60-minute timeout, a small pool of externalIds so that replays are common.
item = st.tuples(
    st.integers(0, 2),
    st.integers(0, 8).map(lambda slot: slot * 35),
    st.booleans(),
    st.none() | st.integers(0, 5).map(lambda n: f"ext-{n}"),
)
Spec = tuple[int, int, bool, str | None]


def _new(spec: Spec, tag: str) -> service.NewMessage:
    contact, minutes, inbound, external_id = spec
    return service.prepare_message(
        MessageIn(
            contact=ContactFields(phoneNumber=f"+1555000{contact:04d}"),
            direction="inbound" if inbound else "outbound",
            content=tag,
            timestamp=BASE + minutes * MIN,
            externalId=external_id,
        ),
        now_ms=T0,
    )


def _units(specs: list[list[Spec]]) -> list[list[service.NewMessage]]:
    return [[_new(s, f"u{u}m{i}") for i, s in enumerate(unit)] for u, unit in enumerate(specs)]


class Canon:
    """Ids renamed by order of first appearance: two tenants' results compare equal when
    they say the same thing."""

    def __init__(self) -> None:
        self.names: dict[str, int] = {}

    def __call__(self, id_: str) -> int:
        return self.names.setdefault(id_, len(self.names))


def _said(results: list[list[service.StoredMessage]]) -> list[Any]:
    """What each answer says of its message (sessions aside: see ``_holding``)."""
    canon = Canon()
    return [
        [(canon(r.message_id), r.duplicate, r.session_opened) for r in unit] for unit in results
    ]


async def _holding(db: Database, user_id: str) -> dict[str, str]:
    """Each stored message's session."""
    m = tables.messages.c
    async with db.read() as conn:
        rows = await conn.execute(select(m.id, m.session_id).where(m.user_id == user_id))
        return {mid: sid for mid, sid in rows}


async def _stored(db: Database, user_id: str) -> tuple[set[Any], int]:
    """The sessions as sets of message contents (with their bounds), and the message count."""
    m, s = tables.messages.c, tables.sessions.c
    async with db.read() as conn:
        rows = (
            await conn.execute(
                select(m.content, m.session_id, s.start_ms, s.last_ms, s.message_count)
                .join(tables.sessions, (s.user_id == m.user_id) & (s.id == m.session_id))
                .where(m.user_id == user_id)
            )
        ).all()
    sessions: dict[str, tuple[list[str], int, int, int]] = {}
    for content, sid, start, last, count in rows:
        sessions.setdefault(sid, ([], start, last, count))[0].append(content)
    return {(frozenset(c), a, b, n) for c, a, b, n in sessions.values()}, len(rows)


async def _serially(db: Database, units: list[list[service.NewMessage]]) -> tuple[Any, Any]:
    tenant = await create_tenant(db)
    results = [
        await service.store_messages(db, user_id=tenant.user_id, items=unit, now_ms=T0)
        for unit in units
    ]
    return _said(results), await _stored(db, tenant.user_id)


class HeldWrite:
    """A write of the tenant held open (inside its transaction) until released, so that
    the requests sent meanwhile queue behind it: the moment group commit exists for."""

    def __init__(self, group_commit: GroupCommit, user_id: str, unit: list[service.NewMessage]):
        self.inside = asyncio.Event()
        self.release = asyncio.Event()

        async def finish(
            tx: AsyncConnection, done: list[tuple[Any, list[service.StoredMessage]]]
        ) -> list[Any]:
            self.inside.set()
            await self.release.wait()
            return [results for _context, results in done]

        self.task = asyncio.create_task(
            group_commit.store(user_id, unit, T0, finish=finish, context=None)
        )


def _queued(group_commit: GroupCommit, user_id: str, n: int) -> Callable[[], bool]:
    return lambda: group_commit.queued(user_id) == n


async def _grouped(
    db: Database, units: list[list[service.NewMessage]]
) -> tuple[GroupCommit, str, HeldWrite, list[asyncio.Task[list[service.StoredMessage]]]]:
    """The first unit held in flight, the others queued behind it."""
    tenant = await create_tenant(db)
    group_commit = GroupCommit(db)
    held = HeldWrite(group_commit, tenant.user_id, units[0])
    await asyncio.wait_for(held.inside.wait(), 60)
    queued = []
    for unit in units[1:]:
        queued.append(asyncio.create_task(group_commit.store(tenant.user_id, unit, T0)))
        await wait_until(_queued(group_commit, tenant.user_id, len(queued)), what="queued")
    return group_commit, tenant.user_id, held, queued


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(specs=st.lists(st.lists(item, min_size=1, max_size=3), min_size=2, max_size=7))
async def test_a_queued_group_stores_what_storing_the_requests_one_by_one_stores(
    database: Database, specs: list[list[Spec]]
) -> None:
    units = _units(specs)
    expected = await _serially(database, units)

    group_commit, user_id, held, queued = await _grouped(database, units)
    held.release.set()
    results = [await held.task, *[await task for task in queued]]

    assert (_said(results), await _stored(database, user_id)) == expected
    # Each answer of the queued group names the session holding its message once the
    # group committed (a later request of the group may have merged the one it opened).
    holding = await _holding(database, user_id)
    assert all(holding[r.message_id] == r.session_id for unit in results[1:] for r in unit)
    # The held write alone, then everything queued behind it in one transaction.
    assert group_commit.group_sizes == Counter([1, len(units) - 1])
    assert group_commit.queued(user_id) == 0


async def test_a_request_that_cannot_be_stored_fails_alone(database: Database) -> None:
    good: list[list[Spec]] = [[(0, 0, True, "a")], [(1, 35, True, "b")], [(2, 70, False, None)]]
    units = _units(good)
    unknown = service.prepare_message(
        MessageIn(contactId="c_" + "0" * 20, direction="inbound", content="lost"), now_ms=T0
    )
    units.insert(2, [unknown])
    fallbacks = GROUP_FALLBACKS._value.get()

    group_commit, user_id, held, queued = await _grouped(database, units)
    held.release.set()
    await held.task
    outcomes = await asyncio.gather(*queued, return_exceptions=True)

    assert isinstance(outcomes[1], NotFound)
    assert all(isinstance(o, list) and not o[0].duplicate for i, o in enumerate(outcomes) if i != 1)
    sessions, count = await _stored(database, user_id)
    assert count == 3 and "lost" not in {c for s in sessions for c in s[0]}
    # The queued group of three failed once; each was then written alone (the held write
    # and the two good ones committed).
    assert GROUP_FALLBACKS._value.get() == fallbacks + 1
    assert group_commit.group_sizes == {1: 3}


async def test_a_cancelled_queued_request_is_not_stored_and_the_rest_are(
    database: Database,
) -> None:
    units = _units(
        [[(0, 0, True, None)], [(0, 35, True, None)], [(1, 0, True, None)], [(2, 0, True, None)]]
    )
    group_commit, user_id, held, queued = await _grouped(database, units)
    queued[1].cancel()
    await wait_until(lambda: group_commit.queued(user_id) == 2, what="the cancelled one left")
    held.release.set()
    await held.task
    await queued[0]
    await queued[2]
    with pytest.raises(asyncio.CancelledError):
        await queued[1]
    sessions, count = await _stored(database, user_id)
    assert count == 3
    assert "u2m0" not in {c for s in sessions for c in s[0]}
    assert group_commit.group_sizes == {1: 1, 2: 1}


async def test_an_unreachable_database_fails_the_group_without_writing_each_alone(
    database: Database,
) -> None:
    units = _units([[(0, 0, True, None)], [(1, 0, True, None)], [(2, 0, True, None)]])
    group_commit, user_id, held, queued = await _grouped(database, units[:2])

    async def unreachable(
        tx: AsyncConnection, done: list[tuple[Any, list[service.StoredMessage]]]
    ) -> list[None]:
        raise ConnectionResetError("the database went away")

    broken = asyncio.create_task(
        group_commit.store(user_id, units[2], T0, finish=unreachable, context=None)
    )
    await wait_until(lambda: group_commit.queued(user_id) == 2, what="both queued")
    fallbacks = GROUP_FALLBACKS._value.get()
    held.release.set()
    await held.task
    outcomes = await asyncio.gather(queued[0], broken, return_exceptions=True)

    assert all(isinstance(o, ConnectionResetError) for o in outcomes)
    assert GROUP_FALLBACKS._value.get() == fallbacks
    assert (await _stored(database, user_id))[1] == 1  # the held write alone committed
    assert group_commit.queued(user_id) == 0


async def test_concurrent_writers_through_group_commit_give_the_sequential_sessions(
    database: Database,
) -> None:
    """Sixteen writers on one contact, each awaiting its answer before its next message:
    they queue behind each other's writes and are stored in groups; nothing acknowledged is
    lost and the sessions are the offline segmentation of what was stored."""
    tenant = await create_tenant(database)
    group_commit = GroupCommit(database)
    rng = random.Random(11)
    plans = [
        [BASE - rng.randrange(0, 2 * 24 * 60) * MIN - rng.randrange(60_000) for _ in range(40)]
        for _ in range(16)
    ]

    async def writer(w: int, stamps: list[int]) -> list[str]:
        acknowledged = []
        for n, ts in enumerate(stamps):
            item = service.prepare_message(
                MessageIn(
                    contact=ContactFields(phoneNumber="+15550009999"),
                    direction="inbound" if n % 2 else "outbound",
                    timestamp=ts,
                    content=f"w{w}n{n}",
                ),
                now_ms=T0,
            )
            [stored] = await group_commit.store(tenant.user_id, [item], T0)
            acknowledged.append(stored.message_id)
        return acknowledged

    acknowledged = await asyncio.gather(*(writer(w, p) for w, p in enumerate(plans)))

    stored = await assert_offline_segmentation(database, tenant.user_id)
    assert stored == {mid for ids in acknowledged for mid in ids}
    assert len(stored) == 16 * 40
    # The writers did share transactions (the first write of each wave leads alone).
    assert max(group_commit.group_sizes) > 1
    assert sum(size * n for size, n in group_commit.group_sizes.items()) == 16 * 40


@pytest.mark.parametrize("route", ["message", "whatsapp"])
async def test_a_tenants_queued_requests_hold_no_pooled_connection(
    backend_settings: Settings, clock: FakeClock, route: str
) -> None:
    """One tenant's burst (single messages, or a channel's deliveries) queues behind its
    write in flight without holding connections, so another tenant is served meanwhile
    even by a pool of two."""
    settings = backend_settings.model_copy(
        update={"database_pool_size": 2, "database_connect_timeout": 10.0}
    )
    db = Database(settings)
    try:
        app = create_app(settings, clock=clock, database=db)
        busy, other = await create_tenant(db), await create_tenant(db)
        group_commit: GroupCommit = app.state.group_commit
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:

            async def send(n: int) -> httpx.Response:
                if route == "whatsapp":
                    message = wa_message(f"wamid.queued.{n}", sender=f"1555000{n:04d}")
                    return await post_meta(client, path, wa_payload([wa_change([message])]))
                body = {
                    "contact": {"phoneNumber": f"+1555000{n:04d}"},
                    "direction": "inbound",
                    "content": f"queued {n}",
                }
                return await client.post("/v1/messages", json=body, headers=busy.auth)

            path = (await create_channel(client, busy.auth, "whatsapp"))["webhookPath"]
            held = HeldWrite(group_commit, busy.user_id, _units([[(0, 0, True, None)]])[0])
            await asyncio.wait_for(held.inside.wait(), 60)  # one pooled connection, held
            posts = [asyncio.create_task(send(n)) for n in range(3)]
            await wait_until(_queued(group_commit, busy.user_id, 3), what="three queued")
            r = await client.get("/v1/chat-sessions/recent?hours=1", headers=other.auth)
            assert r.status_code == 200, r.text
            held.release.set()
            await held.task
            responses = await asyncio.gather(*posts)
        assert all(r.status_code in (200, 201) for r in responses), [r.text for r in responses]
        assert group_commit.group_sizes == Counter([1, 3])
    finally:
        await db.dispose()


async def test_a_finish_shared_by_a_group_runs_once_with_every_request_in_order(
    database: Database,
) -> None:
    """Work a group's requests share (a channel's counters) is done once per transaction,
    and each request still gets its own answer."""
    units = _units([[(0, 0, True, None)], [(0, 35, True, "x")], [(1, 0, False, None)], []])
    calls: list[list[str]] = []

    async def label(
        tx: AsyncConnection, done: list[tuple[Any, list[service.StoredMessage]]]
    ) -> list[str]:
        calls.append([context for context, _results in done])
        return [f"{context}:{len(results)}" for context, results in done]

    tenant = await create_tenant(database)
    group_commit = GroupCommit(database)
    held = HeldWrite(group_commit, tenant.user_id, units[0])
    await asyncio.wait_for(held.inside.wait(), 60)
    queued = []
    for n, unit in enumerate(units[1:]):
        queued.append(
            asyncio.create_task(
                group_commit.store(tenant.user_id, unit, T0, finish=label, context=f"r{n}")
            )
        )
        await wait_until(_queued(group_commit, tenant.user_id, n + 1), what="queued")
    held.release.set()
    await held.task

    assert [await task for task in queued] == ["r0:1", "r1:1", "r2:0"]
    assert calls == [["r0", "r1", "r2"]]
