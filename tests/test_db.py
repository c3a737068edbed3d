"""Write transactions: commit, rollback, races retried, and per-transaction plan settings."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from typing import Any

import aiosqlite
import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import TimeoutError as PoolTimeout

from chatsessions import tables
from chatsessions.config import Settings
from chatsessions.contacts import service as contacts_service
from chatsessions.contacts.schemas import ContactIn
from chatsessions.db import (
    Database,
    fetch_rows,
    is_unavailable,
    joined_numbers,
    pg_joined_numbers,
    sent_ahead,
    sqlite_executemany,
)
from chatsessions.messages import service as messages_service
from chatsessions.messages.schemas import MessageIn
from tests.conftest import BACKENDS, PG_ADMIN_URL, T0, Tenant
from tests.polling import wait_until

_PLAN_MODE = text("SELECT current_setting('plan_cache_mode')")


async def _contact(database: Database, tenant: Tenant, phone: str) -> str:
    async def work(conn: Any) -> str:
        contact = await contacts_service.create_contact(
            conn, user_id=tenant.user_id, fields=ContactIn(phoneNumber=phone), now_ms=T0
        )
        return contact.id

    return await database.run_write(work)


async def _one_item(database: Database, tenant: Tenant, phone: str) -> messages_service.NewMessage:
    """A prepared inbound message for a new contact of ``tenant``."""
    contact_id = await _contact(database, tenant, phone)
    return messages_service.prepare_message(
        MessageIn(contactId=contact_id, direction="inbound", timestamp=T0, content="x"),
        now_ms=T0,
    )


async def _message_count(database: Database, tenant: Tenant) -> int:
    m = tables.messages.c
    async with database.read() as conn:
        stmt = select(func.count()).where(m.user_id == tenant.user_id)
        return int((await conn.execute(stmt)).scalar_one())


@pytest.mark.parametrize("generic_plans", [False, True])
async def test_one_external_id_posted_at_once_for_many_contacts_is_stored_once(
    database: Database, tenant: Tenant, generic_plans: bool
) -> None:
    # Different contacts do not lock each other out: both writers miss the externalId,
    # both insert it, the unique index refuses one, and the retry replays the winner's.
    contacts = [await _contact(database, tenant, f"+1555000{i:04d}") for i in range(6)]

    async def post(contact_id: str) -> messages_service.StoredMessage:
        item = messages_service.prepare_message(
            MessageIn(
                contactId=contact_id,
                direction="inbound",
                timestamp=T0,
                content="once",
                externalId="ext-race",
            ),
            now_ms=T0,
        )

        async def work(conn: Any) -> list[messages_service.StoredMessage]:
            return await messages_service.ingest(
                conn, user_id=tenant.user_id, items=[item], now_ms=T0
            )

        [stored] = await database.run_write(work, generic_plans=generic_plans)
        return stored

    results = await asyncio.gather(*(post(c) for c in contacts))

    assert len({r.message_id for r in results}) == 1
    assert sum(not r.duplicate for r in results) == 1
    assert await _message_count(database, tenant) == 1


@pytest.mark.parametrize("generic_plans", [False, True])
async def test_a_failed_write_is_rolled_back_and_the_connection_stays_usable(
    database: Database, tenant: Tenant, generic_plans: bool
) -> None:
    # Ingest's statements run straight on the driver: they must still be inside the
    # transaction (SQLAlchemy alone would begin one only at its own first statement).
    item = await _one_item(database, tenant, "+15550009999")

    async def store_then_fail(conn: Any) -> None:
        await messages_service.ingest(conn, user_id=tenant.user_id, items=[item], now_ms=T0)
        raise RuntimeError("the request failed after its statements")

    for _ in range(3):  # more than once: the pooled connection is reused each time
        with pytest.raises(RuntimeError):
            await database.run_write(store_then_fail, generic_plans=generic_plans)
    assert await _message_count(database, tenant) == 0

    async def store(conn: Any) -> list[messages_service.StoredMessage]:
        return await messages_service.ingest(conn, user_id=tenant.user_id, items=[item], now_ms=T0)

    await database.run_write(store, generic_plans=generic_plans)
    assert await _message_count(database, tenant) == 1


# plan_cache_mode is PostgreSQL's: this test runs on PostgreSQL only (no tables needed).
@pytest.mark.parametrize("backend_name", [b for b in BACKENDS if b == "postgresql"])
async def test_generic_plans_hold_inside_their_transaction_only(backend_name: str) -> None:
    database = Database(Settings(database_url=PG_ADMIN_URL))

    async def mode(conn: Any) -> str:
        return str((await fetch_rows(conn, _PLAN_MODE, {}))[0][0])

    try:
        inside = await database.run_write(mode, generic_plans=True)
        ordinary = await database.run_write(mode)
        async with database.read() as conn:
            afterwards = await mode(conn)
    finally:
        await database.dispose()

    assert inside == "force_generic_plan"
    # The connection's own setting (custom plans, for the listing) is back after it.
    assert ordinary == afterwards == "force_custom_plan"


_SEQSCAN = text("SELECT current_setting('enable_seqscan')")


@pytest.mark.parametrize("backend_name", [b for b in BACKENDS if b == "postgresql"])
@pytest.mark.parametrize("cancelled", ["after BEGIN", "at COMMIT"])
async def test_a_write_cancelled_at_its_begin_or_commit_leaves_no_transaction_in_the_pool(
    backend_name: str, cancelled: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task cancelled once its BEGIN has run on the server (the reply not yet read), or
    at its COMMIT, must not give its connection back to the pool inside that transaction:
    the next request on it would run in it, under the ingest's plan settings (sequential
    scans off), and its writes would wait for a COMMIT that nobody sends. The connection
    is closed instead (its state is unknown) and the pool opens another."""
    database = Database(
        Settings(database_url=PG_ADMIN_URL, database_pool_size=1, database_max_overflow=0)
    )
    execute = asyncpg.Connection.execute
    armed = True

    async def cancelled_on_the_way(self: asyncpg.Connection, sql: str, *args: Any) -> Any:
        # Fault injected on progress: the cancellation arrives exactly there.
        if armed and cancelled == "after BEGIN" and sql.startswith("BEGIN"):
            await execute(self, sql, *args)
            raise asyncio.CancelledError
        if armed and cancelled == "at COMMIT" and sql == "COMMIT":
            raise asyncio.CancelledError
        return await execute(self, sql, *args)

    monkeypatch.setattr(asyncpg.Connection, "execute", cancelled_on_the_way)

    async def seqscan(conn: Any) -> str:
        return str((await fetch_rows(conn, _SEQSCAN, {}))[0][0])

    try:
        with pytest.raises(asyncio.CancelledError):
            await database.run_write(seqscan, index_scans=True, probe_plans=True)
        armed = False
        async with database.read() as conn:  # the pool's one connection
            driver = (await conn.get_raw_connection()).driver_connection
            assert not driver.is_in_transaction()
            assert await seqscan(conn) == "on"
        assert await database.run_write(seqscan) == "on"
    finally:
        await database.dispose()


@pytest.mark.parametrize("backend_name", [b for b in BACKENDS if b == "postgresql"])
async def test_a_connection_given_back_in_a_driver_transaction_is_rolled_back(
    backend_name: str,
) -> None:
    """The pool's transactions are the driver's, which SQLAlchemy's reset on return does
    not see: a connection given back in one (a path that missed its end) is rolled back,
    its SET LOCALs with it, before the next request gets it."""
    database = Database(
        Settings(database_url=PG_ADMIN_URL, database_pool_size=1, database_max_overflow=0)
    )
    try:
        async with database.read() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            await driver.execute("BEGIN; SET LOCAL enable_seqscan = off")
            assert driver.is_in_transaction()
        async with database.read() as conn:  # the pool's one connection, the same one
            assert (await conn.get_raw_connection()).driver_connection is driver
            assert not driver.is_in_transaction()
            assert str((await fetch_rows(conn, _SEQSCAN, {}))[0][0]) == "on"
    finally:
        await database.dispose()


_BITMAP = text("SELECT current_setting('enable_bitmapscan')")


@pytest.mark.parametrize("backend_name", [b for b in BACKENDS if b == "postgresql"])
async def test_ingest_transactions_plan_with_index_scans_only(backend_name: str) -> None:
    """store_messages' transactions turn bitmap scans off for themselves only."""
    database = Database(Settings(database_url=PG_ADMIN_URL))

    async def bitmap(conn: Any) -> str:
        return str((await fetch_rows(conn, _BITMAP, {}))[0][0])

    try:
        inside = await database.run_write(bitmap, index_scans=True)
        ordinary = await database.run_write(bitmap)
    finally:
        await database.dispose()
    assert (inside, ordinary) == ("off", "on")


async def test_sqlite_a_connection_given_back_in_a_transaction_is_rolled_back(
    tmp_path: Any,
) -> None:
    """SQLite's pool resets only connections still in a transaction (no rollback hop after
    every commit): one given back in a transaction SQLAlchemy does not know of (as after a
    rollback that failed) is rolled back, so its write lock is not kept."""
    database = Database(Settings(database_url=f"sqlite:///{tmp_path / 'reset.db'}"))
    try:
        async with database.engine.connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            await driver.execute("BEGIN IMMEDIATE")
            assert driver.in_transaction
        assert not driver.in_transaction

        async def in_transaction(conn: Any) -> bool:
            return bool(conn.in_transaction())

        assert await database.run_write(in_transaction)  # the write lock was free
    finally:
        await database.dispose()


async def test_sqlite_sql_text_outside_a_transaction_begins_one_for_its_snapshot(
    tmp_path: Any,
) -> None:
    """fetch_rows runs SQL text on SQLite's driver only inside a transaction; a read's
    first statement goes through SQLAlchemy, which begins the read's transaction (its one
    snapshot for every statement that follows)."""
    database = Database(Settings(database_url=f"sqlite:///{tmp_path / 'snap.db'}"))
    try:
        async with database.read() as conn:
            assert not conn.in_transaction()
            assert list(await fetch_rows(conn, "SELECT 1 + :n", {"n": 1})) == [(2,)]
            assert conn.in_transaction()
            driver = (await conn.get_raw_connection()).driver_connection
            assert driver.in_transaction
            assert list(await fetch_rows(conn, "SELECT 2 * :n", {"n": 2})) == [(4,)]
    finally:
        await database.dispose()


async def test_sqlite_statements_of_a_write_run_on_the_loop_thread_reads_on_aiosqlites(
    tmp_path: Any,
) -> None:
    """Holding the write lock, a write transaction's statements (fetch_rows and
    sqlite_executemany) run on the event loop's thread: no hop to aiosqlite's thread and
    back (~70 us each, most of a single message's write). A read's run on aiosqlite's."""
    database = Database(Settings(database_url=f"sqlite:///{tmp_path / 'thread.db'}"))
    loop_thread = threading.get_ident()

    @event.listens_for(database.engine.sync_engine, "connect")
    def _with_thread_id(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.create_function("thread_id", 0, threading.get_ident)

    try:
        async with database.read() as conn:
            [(reader,)] = await fetch_rows(conn, "SELECT thread_id()", {})
        assert reader != loop_thread

        async def work(conn: Any) -> tuple[int, list[Any]]:
            await sqlite_executemany(conn, "CREATE TABLE IF NOT EXISTS t (thread INTEGER)", [()])
            await sqlite_executemany(conn, "INSERT INTO t VALUES (thread_id())", [(), ()])
            [(writer,)] = await fetch_rows(conn, "SELECT thread_id()", {})
            return writer, list(await fetch_rows(conn, "SELECT thread FROM t", {}))

        writer, inserted = await database.run_write(work)
        assert writer == loop_thread
        assert inserted == [(loop_thread,), (loop_thread,)]
    finally:
        await database.dispose()


async def test_sqlite_a_write_waiting_for_the_lock_leaves_the_loop_running(
    tmp_path: Any,
) -> None:
    """BEGIN IMMEDIATE, which waits while another process holds the write lock, stays on
    aiosqlite's thread: the event loop goes on serving meanwhile, and the write proceeds
    once the lock is free."""
    path = tmp_path / "locked.db"
    database = Database(Settings(database_url=f"sqlite:///{path}", database_busy_timeout=30))

    async def work(conn: Any) -> list[Any]:
        return list(await fetch_rows(conn, "SELECT 1", {}))

    await database.run_write(work)  # the file exists, in WAL mode, before the blocker opens it
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        write = asyncio.create_task(database.run_write(work))
        for _ in range(200):  # the loop keeps turning while the write waits for the lock
            await asyncio.sleep(0)
        assert not write.done()
        blocker.execute("COMMIT")
        assert await asyncio.wait_for(write, timeout=60) == [(1,)]
    finally:
        blocker.close()
        await database.dispose()


async def test_sqlite_a_write_cancelled_while_its_begin_waits_leaves_no_transaction_behind(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BEGIN IMMEDIATE runs on aiosqlite's thread to its end whatever happens to the task
    that sent it. A write cancelled while its BEGIN waits for the lock (a worker stopped
    mid-write on a busy machine) must not give its connection back to the pool with the
    transaction that BEGIN opens once the lock is free: the next writers would find the
    database locked, and the next write on that connection a transaction already begun."""
    path = tmp_path / "cancelled.db"
    database = Database(Settings(database_url=f"sqlite:///{path}", database_busy_timeout=30))

    async def work(conn: Any) -> list[Any]:
        return list(await fetch_rows(conn, "SELECT 1", {}))

    await database.run_write(work)  # the file exists, in WAL mode, before the blocker opens it
    beginning = threading.Event()
    execute = aiosqlite.Connection.execute

    def noting_begin(self: aiosqlite.Connection, sql: str, *args: Any) -> Any:
        # Called where the BEGIN is put on aiosqlite's queue: once it has been, the write
        # task waits for it at its next yield.
        if sql == "BEGIN IMMEDIATE":
            beginning.set()
        return execute(self, sql, *args)

    monkeypatch.setattr(aiosqlite.Connection, "execute", noting_begin)
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        write = asyncio.create_task(database.run_write(work))
        await wait_until(beginning.is_set, what="the write to send its BEGIN")
        write.cancel()
        blocker.execute("COMMIT")  # the waiting BEGIN IMMEDIATE now takes the lock
        with pytest.raises(asyncio.CancelledError):
            await write
        # Every connection of the pool writes again: none holds a transaction or the lock.
        writes = [database.run_write(work) for _ in range(database.settings.database_pool_size)]
        assert await asyncio.wait_for(asyncio.gather(*writes), timeout=60) == [[(1,)]] * len(writes)
        blocker.execute("BEGIN IMMEDIATE")  # and no connection of ours holds the lock
        blocker.execute("COMMIT")
    finally:
        blocker.close()
        await database.dispose()


# PRAGMA -> (the setting, a value to set it to, what the PRAGMA reads by default, and
# with that value set)
_SQLITE_PRAGMAS = {
    # 30,000 pages, not SQLite's 1,000: large loads slowed down ~2.8x as the database grew.
    "wal_autocheckpoint": ("sqlite_wal_autocheckpoint", 500, 30_000, 500),
    # 64 MiB, not SQLite's 2 MiB, which a batch's index pages outgrew (negative: KiB).
    "cache_size": ("sqlite_cache_mib", 8, -64 * 1024, -8 * 1024),
}


@pytest.mark.parametrize("pragma", sorted(_SQLITE_PRAGMAS))
@pytest.mark.parametrize("configured", [False, True])
async def test_sqlite_connections_get_the_configured_pragmas(
    tmp_path: Any, pragma: str, configured: bool
) -> None:
    """CHATSESSIONS_SQLITE_WAL_AUTOCHECKPOINT and CHATSESSIONS_SQLITE_CACHE_MIB reach every
    connection, reader and writer, with their defaults or as set."""
    setting, value, default, set_to = _SQLITE_PRAGMAS[pragma]
    url = f"sqlite:///{tmp_path / 'pragmas.db'}"
    settings = Settings(database_url=url, **({setting: value} if configured else {}))
    database = Database(settings)
    try:
        async with database.read() as reader, database.write() as writer:
            for conn in (reader, writer):
                [(read,)] = (await conn.execute(text(f"PRAGMA {pragma}"))).all()
                assert read == (set_to if configured else default)
    finally:
        await database.dispose()


_SLOW_PG = text("SELECT 1 FROM pg_sleep(0.05)")


async def test_a_statement_sent_ahead_gives_its_rows_and_leaves_the_connection_usable(
    database: Database, tenant: Tenant
) -> None:
    # What ingest reads while it places messages (db.sent_ahead): the rows come back
    # after the block's own work, and the connection then runs the next statement.
    contact_id = await _contact(database, tenant, "+15550001111")
    stmt = text("SELECT id FROM contacts WHERE user_id = :user_id")
    params = {"user_id": tenant.user_id}

    async def work(conn: Any) -> tuple[Any, Any]:
        async with sent_ahead(fetch_rows(conn, stmt, params)) as reading:
            assert reading is not None
            done_in_block = sum(range(10_000))  # the client's work meanwhile
            rows = await reading
        after = await fetch_rows(conn, stmt, params)
        return done_in_block, [tuple(r) for r in rows] + [tuple(r) for r in after]

    done, rows = await database.run_write(work)
    assert done == sum(range(10_000))
    assert rows == [(contact_id,), (contact_id,)]

    async def nothing(conn: Any) -> None:
        async with sent_ahead(None) as reading:
            assert reading is None

    await database.run_write(nothing)


async def test_a_block_that_fails_waits_for_its_statement_and_raises_its_own_error(
    database: Database, tenant: Tenant, backend: str
) -> None:
    # The statement sent ahead must be finished before the rollback runs on the same
    # connection; the error the caller sees is the block's, not the statement's.
    finished: list[bool] = []

    async def slow(conn: Any) -> None:
        if backend == "postgresql":
            await fetch_rows(conn, _SLOW_PG, {})
        else:
            await asyncio.sleep(0.05)  # nothing runs beside it on the loop's thread anyway
        finished.append(True)

    async def work(conn: Any) -> None:
        async with sent_ahead(slow(conn)):
            raise RuntimeError("the block failed")

    for _ in range(2):  # the pooled connection is reused: it must be clean
        with pytest.raises(RuntimeError, match="the block failed"):
            await database.run_write(work)
    assert finished == [True, True]
    contact_id = await _contact(database, tenant, "+15550002222")
    assert contact_id


async def test_a_statement_sent_ahead_that_fails_raises_at_the_block_end(
    database: Database, tenant: Tenant
) -> None:
    # Never lost: an error of a statement the block did not await still fails the
    # transaction (nothing it wrote is kept).
    item = await _one_item(database, tenant, "+15550003333")

    async def failing(conn: Any) -> None:
        raise ValueError("the statement failed")

    async def work(conn: Any) -> None:
        await messages_service.ingest(conn, user_id=tenant.user_id, items=[item], now_ms=T0)
        async with sent_ahead(failing(conn)):
            pass

    with pytest.raises(ValueError, match="the statement failed"):
        await database.run_write(work)
    assert await _message_count(database, tenant) == 0


# -- the probe pool's kept connections (PostgreSQL) ------------------------------------------

_PID = text("SELECT pg_backend_pid()")
_PROBE_BACKENDS = (
    "SELECT pid FROM pg_stat_activity WHERE application_name = 'chatsessions-probes'"
    " AND datname = current_database()"
)


async def _pid(conn: Any) -> int:
    return int((await fetch_rows(conn, _PID, {}))[0][0])


@pytest.mark.parametrize("backend_name", [b for b in BACKENDS if b == "postgresql"])
async def test_probe_connections_are_kept_between_uses_and_plan_as_probes(
    backend_name: str,
) -> None:
    database = Database(Settings(database_url=PG_ADMIN_URL))
    try:
        async with database.read(probes=True) as conn:
            first, kept = await _pid(conn), conn
            assert str((await fetch_rows(conn, _PLAN_MODE, {}))[0][0]) == "force_generic_plan"
            assert str((await fetch_rows(conn, _SEQSCAN, {}))[0][0]) == "off"
            assert str((await fetch_rows(conn, _BITMAP, {}))[0][0]) == "off"
        async with database.read(probes=True) as conn:
            assert conn is kept and await _pid(conn) == first
            await conn.execute(_PID)  # through SQLAlchemy, which begins its own transaction
        async with database.read(probes=True) as conn:
            assert conn is kept and not conn.in_transaction()
        # A use that raised gives its connection back to the pool: never kept.
        with pytest.raises(RuntimeError):
            async with database.read(probes=True) as conn:
                raise RuntimeError("the request failed")
        async with database.read(probes=True) as conn:
            assert conn is not kept
            # One given back inside a transaction is not kept either, and the next use
            # is not in it.
            in_transaction = conn
            driver = (await conn.get_raw_connection()).driver_connection
            await driver.execute("BEGIN; SET LOCAL enable_seqscan = on")
        async with database.read(probes=True) as conn:
            assert conn is not in_transaction
            assert not (await conn.get_raw_connection()).driver_connection.is_in_transaction()
            assert str((await fetch_rows(conn, _SEQSCAN, {}))[0][0]) == "off"
        # The main pool's connections keep their own settings.
        async with database.read() as conn:
            assert str((await fetch_rows(conn, _SEQSCAN, {}))[0][0]) == "on"
    finally:
        await database.dispose()


@pytest.mark.parametrize("backend_name", [b for b in BACKENDS if b == "postgresql"])
async def test_after_a_lost_server_one_use_fails_and_the_kept_connections_are_replaced(
    backend_name: str,
) -> None:
    database = Database(Settings(database_url=PG_ADMIN_URL))
    admin = await asyncpg.connect(PG_ADMIN_URL.replace("+asyncpg", ""))
    try:
        # Three connections kept (three uses at once).
        gate = asyncio.Event()

        async def use() -> int:
            async with database.read(probes=True) as conn:
                pid = await _pid(conn)
                await gate.wait()
                return pid

        tasks = [asyncio.create_task(use()) for _ in range(3)]
        await wait_until(
            lambda: (
                sum(t.done() for t in tasks) == 0 and len(database._probe_connections._idle) == 0
            ),
            what="three uses in flight",
        )
        await wait_until(lambda: _three_backends(admin), what="three probe connections to be open")
        gate.set()
        pids = set(await asyncio.gather(*tasks))
        assert len(pids) == 3
        # The server loses them all (a restart, a failover).
        for pid in pids:
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
        await wait_until(lambda: _no_backends(admin), what="the backends to be gone")
        with pytest.raises(Exception) as failed:
            async with database.read(probes=True) as conn:
                await _pid(conn)
        assert is_unavailable(failed.value)  # a 503: retry
        # That failure invalidated the pool: the other kept ones are not used again.
        async with database.read(probes=True) as conn:
            assert await _pid(conn) not in pids
    finally:
        await admin.close()
        await database.dispose()


async def _three_backends(admin: Any) -> bool:
    return len(await admin.fetch(_PROBE_BACKENDS)) >= 3


@pytest.mark.parametrize("backend_name", [b for b in BACKENDS if b == "postgresql"])
async def test_probe_connections_in_use_are_bounded_and_a_wait_times_out_as_a_503(
    backend_name: str,
) -> None:
    database = Database(
        Settings(
            database_url=PG_ADMIN_URL,
            database_pool_size=2,
            database_max_overflow=0,
            database_connect_timeout=0.2,
        )
    )
    admin = await asyncpg.connect(PG_ADMIN_URL.replace("+asyncpg", ""))
    try:
        async with database.read(probes=True), database.read(probes=True):
            with pytest.raises(PoolTimeout):
                async with database.read(probes=True):
                    pass
        # Both kept, and a third caller gets one of them: no more than two ever opened.
        async with database.read(probes=True) as conn:
            await _pid(conn)
        assert len(await admin.fetch(_PROBE_BACKENDS)) == 2
        await database.dispose()  # gives the kept ones back and closes them
        await wait_until(lambda: _no_backends(admin), what="the probe connections to be closed")
    finally:
        await admin.close()
        await database.dispose()


async def _no_backends(admin: Any) -> bool:
    return not await admin.fetch(_PROBE_BACKENDS)


# Numbers and booleans a write sends as one joined text (db.joined_numbers), read back by
# the SQL that splits them (db.pg_joined_numbers): what could shift, drop or misread one.
_JOINED = {
    "bigint": [
        [],
        [None],
        [0, None, -1, None],
        [2**63 - 1, -(2**63), 1_796_000_000_000],
    ],
    "int": [[1, 2, 3], [None, None]],
    "boolean": [[True, False, None, True], [False]],
}


@pytest.mark.parametrize("backend_name", [b for b in BACKENDS if b == "postgresql"])
async def test_joined_numbers_are_read_back_as_sent(backend_name: str) -> None:
    database = Database(Settings(database_url=PG_ADMIN_URL))
    try:
        async with database.read() as conn:
            for kind, cases in _JOINED.items():
                stmt = text(f"SELECT {pg_joined_numbers('v', kind)}")
                for values in cases:
                    [[back]] = await fetch_rows(conn, stmt, {"v": joined_numbers(values)})
                    assert back == values, kind
    finally:
        await database.dispose()


def test_sqlite_binds_none_and_booleans_as_it_always_did() -> None:
    """db registers sqlite3 adapters for None and bool (speed only): NULL, and 1 or 0 as
    integers, exactly as sqlite3 binds them without (a fresh interpreter, for the
    comparison)."""
    import subprocess
    import sys

    probe = (
        "import sqlite3{extra}\n"
        "db = sqlite3.connect(':memory:')\n"
        "print(db.execute('SELECT ?, typeof(?), ?, typeof(?), ?, typeof(?)', "
        "(None, None, True, True, False, False)).fetchone())\n"
    )
    plain, adapted = (
        subprocess.run(
            [sys.executable, "-c", probe.format(extra=extra)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for extra in ("", "; import chatsessions.db")
    )
    assert adapted == plain == "(None, 'null', 1, 'integer', 0, 'integer')\n"
