"""A single message without the contact's lock (PostgreSQL): a read, then one write that
commits only if no writer of the contact committed since the read. Every way that check
can fail is injected here on progress (between the read and the write, or while the
write waits for a writer holding the contact), and each must leave the sessions and
answers the locked path gives, and lose nothing.

PostgreSQL only: SQLite has one writer at a time, and stores every message under it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
from prometheus_client import REGISTRY

from chatsessions import ids
from chatsessions.config import Settings
from chatsessions.contacts import service as contacts_service
from chatsessions.contacts import store as contacts_store
from chatsessions.contacts.schemas import ContactIn
from chatsessions.db import Database
from chatsessions.errors import NotFound
from chatsessions.messages import service
from chatsessions.messages import store as messages_store
from chatsessions.messages.schemas import MessageIn
from chatsessions.settings import service as settings_service
from chatsessions.webhooks import service as webhooks_service
from chatsessions.webhooks.schemas import WebhookIn
from tests.conftest import BACKENDS, T0, create_tenant
from tests.messages.test_one_row_write import _rows
from tests.messages.test_probe_plans import _fresh_database
from tests.polling import wait_until

MIN = 60_000
POSTGRESQL = [b for b in BACKENDS if b == "postgresql"]


class _Counts:
    """The unlocked path's metrics, as differences since this was made."""

    def __init__(self) -> None:
        self._start = self._now()

    @staticmethod
    def _now() -> tuple[float, float]:
        return (
            REGISTRY.get_sample_value("chatsessions_ingest_unlocked_total") or 0.0,
            REGISTRY.get_sample_value("chatsessions_ingest_unlocked_fallbacks_total") or 0.0,
        )

    @property
    def unlocked(self) -> float:
        return self._now()[0] - self._start[0]

    @property
    def fallbacks(self) -> float:
        return self._now()[1] - self._start[1]


async def _contact(conn: asyncpg.Connection, user_id: str) -> str:
    contact_id = ids.new_id()
    await conn.execute(
        "INSERT INTO contacts (user_id, id, is_bot_active, do_not_disturb, created_at_ms,"
        " updated_at_ms) VALUES ($1, $2, true, false, 0, 0)",
        user_id,
        contact_id,
    )
    return contact_id


def _item(contact_id: str, minute: int, external_id: str | None = None) -> service.NewMessage:
    return service.prepare_message(
        MessageIn(
            contactId=contact_id,
            direction="inbound" if minute % 2 == 0 else "outbound",
            content=f"m{minute}",
            timestamp=T0 - 1000 * MIN + minute * MIN,
            externalId=external_id or f"ext-{minute}",
        ),
        now_ms=T0,
    )


async def _single(
    database: Database, user_id: str, contact_id: str, minute: int, external_id: str | None = None
) -> service.StoredMessage:
    """One message through store_messages (the routes' way): the unlocked path first."""
    [stored] = await service.store_messages(
        database, user_id=user_id, items=[_item(contact_id, minute, external_id)], now_ms=T0
    )
    return stored


async def _locked(
    database: Database, user_id: str, contact_id: str, minute: int, external_id: str | None = None
) -> service.StoredMessage:
    """One message under the contact's lock (ingest in its own transaction)."""

    async def work(tx: Any) -> list[service.StoredMessage]:
        items = [_item(contact_id, minute, external_id)]
        return await service.ingest(tx, user_id=user_id, items=items, now_ms=T0)

    [stored] = await service.run_ingest_transaction(database, work)
    return stored


async def _write_seq(conn: asyncpg.Connection, contact_id: str) -> int:
    value = await conn.fetchval("SELECT write_seq FROM contacts WHERE id = $1", contact_id)
    return int(value)


async def _conversation(database: Database, conn: asyncpg.Connection) -> tuple[Any, str]:
    """A tenant and a contact (inserted as messages or an import would find it: write_seq
    0) with one message, stored under the lock, which enabled the contact's unlocked
    writes."""
    tenant = await create_tenant(database)
    contact_id = await _contact(conn, tenant.user_id)
    await _single(database, tenant.user_id, contact_id, 0)
    return tenant, contact_id


def _before_the_write(
    monkeypatch: pytest.MonkeyPatch, meanwhile: Callable[[], Awaitable[None]]
) -> list[bool]:
    """Run ``meanwhile`` once, between the unlocked read and its write; the list gets what
    each unlocked write returned."""
    original = messages_store.write_unlocked
    returned: list[bool] = []

    async def write_after(*args: Any, **kwargs: Any) -> bool:
        if not returned:
            await meanwhile()
        returned.append(await original(*args, **kwargs))
        return returned[-1]

    monkeypatch.setattr(messages_store, "write_unlocked", write_after)
    return returned


async def _sequential(
    database: Database, conn: asyncpg.Connection, minutes: list[int]
) -> tuple[list[Any], list[Any]]:
    """The rows a fresh tenant holds after these messages, one after another, locked."""
    tenant = await create_tenant(database)
    contact_id = await _contact(conn, tenant.user_id)
    for minute in minutes:
        await _locked(database, tenant.user_id, contact_id, minute)
    return await _rows(conn, tenant.user_id)


@pytest.mark.parametrize("backend_name", POSTGRESQL)
async def test_a_single_message_is_read_and_written_without_the_lock(backend_name: str) -> None:
    async with _fresh_database() as (database, conn):
        tenant = await create_tenant(database)
        contact_id = await _contact(conn, tenant.user_id)
        counts = _Counts()
        # The contact's first single message takes the lock, and enables the others.
        opened = await _single(database, tenant.user_id, contact_id, 0)  # a new session
        assert (counts.unlocked, counts.fallbacks) == (0, 1)
        assert await _write_seq(conn, contact_id) == 1
        joined = await _single(database, tenant.user_id, contact_id, 1)  # the same one
        later = await _single(database, tenant.user_id, contact_id, 200)  # after the timeout
        assert (counts.unlocked, counts.fallbacks) == (2, 1)
        assert opened.session_opened and not joined.session_opened and later.session_opened
        assert joined.session_id == opened.session_id != later.session_id
        assert await _write_seq(conn, contact_id) == 3  # each write moved it
        assert await _rows(conn, tenant.user_id) == await _sequential(database, conn, [0, 1, 200])


@pytest.mark.parametrize("backend_name", POSTGRESQL)
async def test_a_contact_made_through_the_api_is_written_without_the_lock_from_the_first(
    backend_name: str,
) -> None:
    async with _fresh_database() as (database, conn):
        tenant = await create_tenant(database)

        async def create(tx: Any) -> str:
            fields = ContactIn(phoneNumber="+15550004444")
            made = await contacts_service.create_contact(
                tx, user_id=tenant.user_id, fields=fields, now_ms=T0
            )
            return made.id

        contact_id = await database.run_write(create)
        assert await _write_seq(conn, contact_id) == 1
        counts = _Counts()
        first = await _single(database, tenant.user_id, contact_id, 0)
        assert first.session_opened and (counts.unlocked, counts.fallbacks) == (1, 0)
        assert await _rows(conn, tenant.user_id) == await _sequential(database, conn, [0])


@pytest.mark.parametrize("backend_name", POSTGRESQL)
@pytest.mark.parametrize("writer", ["single", "batch"])
async def test_a_writer_that_committed_after_the_read_sends_the_message_under_the_lock(
    backend_name: str, writer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with _fresh_database() as (database, conn):
        tenant = await create_tenant(database)
        contact_id = await _contact(conn, tenant.user_id)
        await _single(database, tenant.user_id, contact_id, 0)  # enables unlocked writes
        meanwhile = [2] if writer == "single" else [2, 3]

        async def another_writer() -> None:  # the same session: its count, its figures
            if writer == "single":
                await _locked(database, tenant.user_id, contact_id, 2)
                return
            items = [_item(contact_id, m) for m in meanwhile]

            async def work(tx: Any) -> Any:
                return await service.ingest(tx, user_id=tenant.user_id, items=items, now_ms=T0)

            await service.run_ingest_transaction(database, work)

        returned = _before_the_write(monkeypatch, another_writer)
        counts = _Counts()
        stored = await _single(database, tenant.user_id, contact_id, 1)
        assert returned == [False]  # the guard saw the other write
        assert (counts.unlocked, counts.fallbacks) == (0, 1)
        assert not stored.duplicate and not stored.session_opened
        # Nothing of the other writer's lost: as if stored 0, the others, then 1.
        expected = await _sequential(database, conn, [0, *meanwhile, 1])
        assert await _rows(conn, tenant.user_id) == expected
        sessions, messages = await _rows(conn, tenant.user_id)
        assert len(messages) == len(meanwhile) + 2 == sessions[0][5]  # message_count


@pytest.mark.parametrize("backend_name", POSTGRESQL)
@pytest.mark.parametrize("holder_ends", ["commit", "rollback"])
async def test_the_write_waits_for_a_writer_holding_the_contact_and_sees_how_it_ended(
    backend_name: str, holder_ends: str
) -> None:
    async with _fresh_database() as (database, conn):
        tenant, contact_id = await _conversation(database, conn)
        counts = _Counts()

        async def guard_waits_for_a_lock() -> bool:
            waiting = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name = 'chatsessions-probes' AND wait_event_type = 'Lock'"
            )
            return bool(waiting)

        class Rollback(Exception):
            pass

        single: asyncio.Task[service.StoredMessage] | None = None
        ending = pytest.raises(Rollback) if holder_ends == "rollback" else nullcontext()
        with ending:
            async with database.write(index_scans=True, probe_plans=True) as tx:
                # A writer of the contact, holding its lock, its message not committed.
                await service.ingest(
                    tx, user_id=tenant.user_id, items=[_item(contact_id, 2)], now_ms=T0
                )
                single = asyncio.create_task(_single(database, tenant.user_id, contact_id, 1))
                await wait_until(guard_waits_for_a_lock, what="the guarded write to wait")
                if holder_ends == "rollback":
                    raise Rollback
        assert single is not None
        stored = await single
        assert not stored.duplicate
        if holder_ends == "commit":  # the guard saw the holder's write: under the lock
            assert (counts.unlocked, counts.fallbacks) == (0, 1)
            expected = await _sequential(database, conn, [0, 2, 1])
        else:  # the holder wrote nothing: the guard passed after the wait
            assert (counts.unlocked, counts.fallbacks) == (1, 0)
            expected = await _sequential(database, conn, [0, 1])
        assert await _rows(conn, tenant.user_id) == expected


@pytest.mark.parametrize("backend_name", POSTGRESQL)
async def test_an_external_id_stored_meanwhile_for_another_contact_is_answered_as_a_replay(
    backend_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with _fresh_database() as (database, conn):
        tenant = await create_tenant(database)
        first, second = await _contact(conn, tenant.user_id), await _contact(conn, tenant.user_id)
        await _single(database, tenant.user_id, first, 0)
        original: list[service.StoredMessage] = []

        async def the_same_message_elsewhere() -> None:
            original.append(await _locked(database, tenant.user_id, second, 5, "wamid.1"))

        returned = _before_the_write(monkeypatch, the_same_message_elsewhere)
        counts = _Counts()
        replay = await _single(database, tenant.user_id, first, 1, "wamid.1")
        assert returned == [False]  # the unique externalId refused the write as it ran
        assert counts.fallbacks == 1
        assert replay.duplicate
        assert (replay.message_id, replay.session_id) == (
            original[0].message_id,
            original[0].session_id,
        )
        _sessions, messages = await _rows(conn, tenant.user_id)
        assert len(messages) == 2  # the first contact's message and the original


@pytest.mark.parametrize("backend_name", POSTGRESQL)
async def test_a_contact_erased_after_the_read_is_not_found_and_nothing_is_written(
    backend_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with _fresh_database() as (database, conn):
        tenant, contact_id = await _conversation(database, conn)

        async def erase() -> None:
            async def work(tx: Any) -> None:
                await contacts_service.erase_contact(
                    tx, user_id=tenant.user_id, contact_id=contact_id
                )

            await database.run_write(work)

        returned = _before_the_write(monkeypatch, erase)
        with pytest.raises(NotFound):
            await _single(database, tenant.user_id, contact_id, 1)
        assert returned == [False]
        assert await _rows(conn, tenant.user_id) == ([], [])


@pytest.mark.parametrize("backend_name", POSTGRESQL)
async def test_a_replay_is_answered_from_the_read_alone(
    backend_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with _fresh_database() as (database, conn):
        tenant = await create_tenant(database)
        contact_id = await _contact(conn, tenant.user_id)
        first = await _single(database, tenant.user_id, contact_id, 0)
        seq = await _write_seq(conn, contact_id)

        async def nothing() -> None:
            pass

        returned = _before_the_write(monkeypatch, nothing)  # records any write
        counts = _Counts()
        replay = await _single(database, tenant.user_id, contact_id, 0)
        assert replay.duplicate and replay.message_id == first.message_id
        assert returned == [] and counts.unlocked == 1
        assert await _write_seq(conn, contact_id) == seq
        assert replay == await _locked(database, tenant.user_id, contact_id, 0)  # its answer


@pytest.mark.parametrize("backend_name", POSTGRESQL)
async def test_writes_of_more_than_a_session_and_tenants_with_endpoints_take_the_lock(
    backend_name: str,
) -> None:
    async with _fresh_database() as (database, conn):
        tenant = await create_tenant(database)
        contact_id = await _contact(conn, tenant.user_id)
        for minute in (0, 100):  # two sessions, 100 minutes apart
            await _single(database, tenant.user_id, contact_id, minute)
        counts = _Counts()
        await _single(database, tenant.user_id, contact_id, 50)  # joins them: a merge
        assert (counts.unlocked, counts.fallbacks) == (0, 1)
        assert await _rows(conn, tenant.user_id) == await _sequential(database, conn, [0, 100, 50])

        async def add_endpoint(tx: Any) -> str:
            body = WebhookIn(url="http://127.0.0.1:9/hook", events=["ChatSessionOpened"])
            made = await webhooks_service.create_endpoint(
                tx, user_id=tenant.user_id, body=body, now_ms=T0
            )
            return made.id

        endpoint = await database.run_write(add_endpoint)
        counts = _Counts()
        opened = await _single(database, tenant.user_id, contact_id, 300)
        assert (counts.unlocked, counts.fallbacks) == (0, 1)
        # Known now to have endpoints: its next single messages skip the unlocked read.
        await _single(database, tenant.user_id, contact_id, 301)
        assert (counts.unlocked, counts.fallbacks) == (0, 1)
        events = await conn.fetch(
            "SELECT type, payload FROM webhook_events WHERE user_id = $1", tenant.user_id
        )
        # Its ChatSessionOpened, which only the locked path writes.
        assert [(row["type"], opened.session_id in row["payload"]) for row in events] == [
            ("ChatSessionOpened", True)
        ]
        # Its endpoint gone, the next message (under the lock) finds none: the one after
        # is written without the lock again.
        await conn.execute("DELETE FROM webhook_endpoints WHERE id = $1", endpoint)
        await _single(database, tenant.user_id, contact_id, 302)
        await _single(database, tenant.user_id, contact_id, 303)
        assert (counts.unlocked, counts.fallbacks) == (1, 1)


@pytest.mark.parametrize("backend_name", POSTGRESQL)
async def test_every_writer_under_the_lock_moves_write_seq(backend_name: str) -> None:
    async with _fresh_database() as (database, conn):
        tenant = await create_tenant(database)
        a, b = await _contact(conn, tenant.user_id), await _contact(conn, tenant.user_id)

        async def batch(tx: Any, items: list[service.NewMessage]) -> None:
            await service.ingest(tx, user_id=tenant.user_id, items=items, now_ms=T0)

        async def seqs() -> tuple[int, int]:
            return await _write_seq(conn, a), await _write_seq(conn, b)

        # Contacts fed by batches only: no single message written without the lock for
        # them, nothing to show it, nothing moved (no row updated).
        items = [_item(a, 0), _item(b, 0, "ext-b"), _item(a, 1)]
        await service.run_ingest_transaction(database, lambda tx: batch(tx, items))
        assert await seqs() == (0, 0)
        # A single message under the lock enables its contact's...
        await _locked(database, tenant.user_id, a, 2)
        assert await seqs() == (1, 0)
        # ...after which every write of it under the lock moves it.
        more = [_item(a, 3), _item(b, 3, "ext-b3")]
        await service.run_ingest_transaction(database, lambda tx: batch(tx, more))
        assert await seqs() == (2, 0)
        # A batch of replays writes nothing, and moves nothing.
        await service.run_ingest_transaction(database, lambda tx: batch(tx, more))
        assert await seqs() == (2, 0)

        # The other lockers of contacts (closing a session, the close sweep) move it as
        # they lock, unless told that they change no session.
        async def lock(tx: Any, bump: bool) -> None:
            await contacts_store.lock_contacts(tx, tenant.user_id, [a, b], bump=bump)

        await database.run_write(lambda tx: lock(tx, True))
        assert await seqs() == (3, 0)
        await database.run_write(lambda tx: lock(tx, False))
        assert await seqs() == (3, 0)

        # A change of the timeout re-cuts, under the lock, the sessions whose gaps start
        # after it (a message stamped ahead of the clock).
        recent = service.prepare_message(
            MessageIn(contactId=a, direction="inbound", content="x", timestamp=T0 + 2 * MIN),
            now_ms=T0,
        )
        await service.run_ingest_transaction(database, lambda tx: batch(tx, [recent]))
        assert await seqs() == (4, 0)

        async def shorter_timeout(tx: Any) -> None:
            await settings_service.set_timeout(tx, user_id=tenant.user_id, minutes=5, now_ms=T0)

        await database.run_write(shorter_timeout)
        assert await seqs() == (5, 0)
        expires = await conn.fetchval(
            "SELECT max(expires_ms) FROM sessions WHERE contact_id = $1", a
        )
        assert expires == T0 + 2 * MIN + 5 * MIN  # re-cut: the new timeout


@pytest.mark.parametrize("backend_name", POSTGRESQL)
async def test_the_unlocked_path_can_be_turned_off_for_a_rolling_upgrade(
    backend_name: str,
) -> None:
    async with _fresh_database() as (database, conn):
        tenant, contact_id = await _conversation(database, conn)
        locked_only = Database(
            Settings(database_url=database.settings.database_url, unlocked_single_writes=False)
        )
        try:
            counts = _Counts()
            stored = await _single(locked_only, tenant.user_id, contact_id, 1)
            assert not stored.duplicate
            assert (counts.unlocked, counts.fallbacks) == (0, 0)  # never tried
            assert await _write_seq(conn, contact_id) == 2  # moved under the lock
        finally:
            await locked_only.dispose()


def test_the_memory_of_tenants_with_endpoints_is_bounded_and_corrected() -> None:
    memory = service.TenantsWithEndpoints(limit=2)
    memory.note("t1", True)
    memory.note("t2", True)
    memory.note("t1", True)  # already known: no change of order
    memory.note("t3", True)  # over the limit: the oldest noted (t1) is forgotten
    assert ("t1" in memory, "t2" in memory, "t3" in memory) == (False, True, True)
    memory.note("t2", False)  # seen without endpoints
    assert "t2" not in memory and "t3" in memory
