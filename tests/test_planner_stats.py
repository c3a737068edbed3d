"""The statistics keeper: what ingest writes is counted once per committed transaction, a
tenant that outgrew the planner's estimate gets its tables analyzed, a load the
statistics already describe does not, SQLite is left alone, and a failed check never
reaches a request. (The plans this protects: tests/messages/test_probe_plans.py.)"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from chatsessions import planner_stats
from chatsessions.config import Settings
from chatsessions.contacts.schemas import ContactFields
from chatsessions.db import Database, migrate
from chatsessions.messages import service
from chatsessions.messages.schemas import MessageIn
from chatsessions.planner_stats import (
    StatisticsKeeper,
    WriteTally,
    count_writes,
    estimated_rows,
    table_is_stale,
    tallying,
    tenant_is_stale,
)
from tests.conftest import (
    BACKENDS,
    T0,
    _create_pg_database,
    _drop_pg_database,
    create_tenant,
    without_autovacuum,
)
from tests.polling import wait_until


@pytest.mark.parametrize(
    ("written", "estimated", "stale"),
    [
        (1_000, 1.0, True),  # the planner believes one row
        (1_000, 499.0, True),
        (1_000, 500.0, False),  # half of what was written: close enough
        (1_000, 50_000.0, False),  # the tenant had more before
    ],
)
def test_a_tenant_is_stale_when_the_planner_believes_it_under_half_what_was_written(
    written: int, estimated: float, stale: bool
) -> None:
    assert tenant_is_stale(written=written, estimated=estimated) is stale


@pytest.mark.parametrize(
    ("live", "analyzed", "stale"),
    [
        (1_001.0, -1.0, True),  # never analyzed (reltuples -1), over 1,000 rows
        (1_000.0, -1.0, False),
        (2_001.0, 1_000.0, True),  # doubled, by more than 1,000
        (2_000.0, 1_000.0, False),
        (1_500.0, 500.0, False),  # tripled, but by 1,000 only
        (1_000_000.0, 600_000.0, False),  # grew by 2/3: autovacuum's business
        (1_200_001.0, 600_000.0, True),
        (299_999.0, 600_000.0, True),  # halved (contacts erased)
    ],
)
def test_a_table_is_stale_when_its_row_count_doubled_or_halved(
    live: float, analyzed: float, stale: bool
) -> None:
    assert table_is_stale(live=live, analyzed=analyzed) is stale


def test_a_tally_counts_what_its_transaction_reports_and_starts_again_on_retry() -> None:
    tally = WriteTally()
    count_writes("u1", messages=5)  # no transaction tallying: nowhere to count
    with tallying(tally):
        count_writes("u1", contacts=0, sessions=2, messages=3)
        count_writes("u1", messages=1)
        count_writes("u2", messages=7)
    assert dict(tally.rows) == {("sessions", "u1"): 2, ("messages", "u1"): 4, ("messages", "u2"): 7}
    with tallying(tally):  # the transaction retried: counted once
        count_writes("u1", messages=4)
    assert dict(tally.rows) == {("messages", "u1"): 4}


@asynccontextmanager
async def _database(backend: str, tmp: Any, **settings: Any) -> AsyncIterator[Database]:
    """A fresh, migrated database of the backend (dropped after)."""
    name = None
    if backend == "sqlite":
        url = f"sqlite:///{tmp / 'keeper.db'}"
    else:
        name, url = await _create_pg_database()
    await migrate(Settings(database_url=url))
    database = Database(Settings(database_url=url, **settings))
    if name is not None:
        await without_autovacuum(database)
    try:
        yield database
    finally:
        await database.dispose()
        if name is not None:
            await _drop_pg_database(name)


async def _load(database: Database, user_id: str, count: int, start: int = 0) -> None:
    """``count`` messages of new contacts (a contact, a session and a message each)."""
    items = [
        service.prepare_message(
            MessageIn(
                contact=ContactFields(phoneNumber=f"+1555{n:07d}"),
                direction="inbound",
                content="hi",
                timestamp=T0 - 10**7 + n,
                externalId=f"ext-{n}",
            ),
            now_ms=T0,
        )
        for n in range(start, start + count)
    ]
    for i in range(0, count, 500):
        await service.store_messages(database, user_id=user_id, items=items[i : i + 500], now_ms=T0)


async def _estimate(database: Database, table: str, user_id: str) -> float:
    async with database.read() as conn:
        return await estimated_rows(conn, table, user_id)


async def _analyze_all_counted(database: Database, rows: int) -> None:
    """ANALYZE once every row written so far is in the row counts: a backend reports its
    counts a second or more after its writes, or when it exits (so: close the pool's
    connections, and wait for ``rows`` inserts a table to show). Then the statistics hold
    every row, and the live count grows only by what follows."""
    await database.engine.dispose()

    async def counted() -> bool:
        async with database.read() as conn:
            got = await conn.exec_driver_sql(
                "SELECT min(n_tup_ins) FROM pg_stat_user_tables"
                " WHERE relname IN ('contacts', 'sessions', 'messages')"
            )
            return int(got.scalar_one() or 0) >= rows

    await wait_until(counted, what=f"{rows} inserts a table in pg_stat_user_tables")
    async with database.read() as conn:
        await conn.exec_driver_sql("ANALYZE contacts, sessions, messages")


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_load_into_a_fresh_database_leaves_statistics_that_know_the_tenant(
    backend: str, tmp_path: Any
) -> None:
    async with _database(backend, tmp_path) as database:
        tenant = await create_tenant(database)
        await _load(database, tenant.user_id, 1_500)
        await database.statistics.settled()
        if backend == "sqlite":  # left alone: no statistics, the planner's fixed rules
            assert not database.statistics.analyzed
            async with database.read() as conn:
                tables = await conn.exec_driver_sql(
                    "SELECT name FROM sqlite_master WHERE name LIKE 'sqlite_stat%'"
                )
                assert tables.all() == []
            return
        # Never analyzed, the planner guessed 0.5 % of the table per tenant: stale at the
        # first 1,000 rows. Afterwards it knows the tenant is the table.
        assert set(database.statistics.analyzed) == {"contacts", "sessions", "messages"}
        for table in ("contacts", "sessions", "messages"):
            assert await _estimate(database, table, tenant.user_id) >= 1_000, table


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b == "postgresql"])
async def test_a_load_the_statistics_already_describe_is_checked_not_analyzed(
    backend: str, tmp_path: Any
) -> None:
    async with _database(backend, tmp_path) as database:
        tenant = await create_tenant(database)
        await _load(database, tenant.user_id, 5_000)
        await database.statistics.settled()
        await _analyze_all_counted(database, 5_000)  # 5,000 rows a table, all the tenant's
        analyzed, checks = dict(database.statistics.analyzed), database.statistics.checks
        # 1,000 more: a check is due, and finds the planner believes the tenant has ~6,000
        # rows (more than half of what was written) and the tables did not double.
        await _load(database, tenant.user_id, 1_000, start=5_000)
        await database.statistics.settled()
        assert database.statistics.checks > checks
        assert dict(database.statistics.analyzed) == analyzed
        # 299 more: no check is due (under 1,000 rows of the tenant since the last one).
        checks = database.statistics.checks
        await _load(database, tenant.user_id, 299, start=6_000)
        await database.statistics.settled()
        assert database.statistics.checks == checks


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b == "postgresql"])
async def test_the_estimate_is_the_tenants_own_not_the_average(backend: str, tmp_path: Any) -> None:
    # A prepared statement's generic plan would give every tenant the average (1,510 here)
    # once PostgreSQL stopped making custom plans (after five): checked past that.
    async with _database(backend, tmp_path) as database:
        big, small = await create_tenant(database), await create_tenant(database)
        await _load(database, big.user_id, 3_000)
        await _load(database, small.user_id, 20, start=5_000)
        async with database.read() as conn:
            await conn.exec_driver_sql("ANALYZE")
            for _ in range(7):
                assert await estimated_rows(conn, "messages", big.user_id) >= 2_500
                assert await estimated_rows(conn, "messages", small.user_id) <= 100


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b == "postgresql"])
async def test_switched_off_by_the_setting(backend: str, tmp_path: Any) -> None:
    async with _database(backend, tmp_path, analyze_after_loads=False) as database:
        tenant = await create_tenant(database)
        await _load(database, tenant.user_id, 1_500)
        await database.statistics.settled()
        assert not database.statistics.analyzed
        assert await _estimate(database, "messages", tenant.user_id) < 100


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b == "postgresql"])
async def test_a_check_that_fails_is_logged_and_the_write_is_not_disturbed(
    backend: str, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with _database(backend, tmp_path) as database:
        tenant = await create_tenant(database)
        # The keeper's own connections go to a database that does not exist.
        name, url = await _create_pg_database()
        await _drop_pg_database(name)
        unreachable = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://"))
        database.statistics = StatisticsKeeper(unreachable)
        with caplog.at_level(logging.WARNING, logger="chatsessions.planner_stats"):
            await _load(database, tenant.user_id, 1_000)
            await database.statistics.settled()
        await unreachable.dispose()
        assert "planner statistics not checked" in caplog.text
        assert not database.statistics.analyzed
        async with database.read() as conn:
            stored = await conn.exec_driver_sql(
                f"SELECT count(*) FROM messages WHERE user_id = '{tenant.user_id}'"
            )
            assert stored.scalar_one() == 1_000


async def test_a_check_due_while_one_runs_follows_it() -> None:
    # No database needed to see the hand-over: a keeper whose checks are recorded, the
    # first held until the second tally is in.
    seen: list[dict[str, dict[str, int]]] = []
    entered, release = asyncio.Event(), asyncio.Event()

    class Recording(StatisticsKeeper):
        async def check(self, due: dict[str, dict[str, int]]) -> list[str]:
            seen.append(due)
            entered.set()
            await release.wait()
            return []

    keeper = Recording(create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none"))
    first, second = WriteTally(), WriteTally()
    first.rows["messages", "u1"] = 1_000
    second.rows["messages", "u2"] = 1_000
    keeper.wrote(first)
    await entered.wait()
    keeper.wrote(second)  # a check is running: this one follows it
    release.set()
    await keeper.settled()
    assert seen == [{"messages": {"u1": 1_000}}, {"messages": {"u2": 1_000}}]
    await keeper.close()  # the database is disposed: no more checks
    keeper.wrote(first)
    await keeper.settled()
    assert len(seen) == 2


async def test_a_tenant_is_checked_every_check_rows_and_the_counts_stay_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[dict[str, dict[str, int]]] = []

    class Recording(StatisticsKeeper):
        async def check(self, due: dict[str, dict[str, int]]) -> list[str]:
            seen.append(due)
            return []

    def tally(user_id: str, n: int) -> WriteTally:
        t = WriteTally()
        t.rows["messages", user_id] = n
        return t

    monkeypatch.setattr(planner_stats, "MAX_PENDING_TENANTS", 5)
    keeper = Recording(
        create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none"), check_rows=10
    )
    for n in (6, 3):  # 9 rows: not yet
        keeper.wrote(tally("u0", n))
    await keeper.settled()
    assert seen == []
    keeper.wrote(tally("u0", 4))  # 13: due, with what it wrote since its last check
    await keeper.settled()
    assert seen == [{"messages": {"u0": 13}}]
    keeper.wrote(tally("u0", 9))  # counted again from the check
    await keeper.settled()
    assert len(seen) == 1
    for t in range(6):  # a sixth tenant waiting for a check: the counts start again
        keeper.wrote(tally(f"v{t}", 1))
    keeper.wrote(tally("u0", 1))  # 1 since the counts started again, not 10
    await keeper.settled()
    assert len(seen) == 1
    keeper.wrote(tally("u0", 9))
    await keeper.settled()
    assert seen[1:] == [{"messages": {"u0": 10}}]
