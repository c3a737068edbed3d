"""Planner statistics that keep up with ingest: ANALYZE after large loads (PostgreSQL).

PostgreSQL plans from the statistics ANALYZE last took: autovacuum's, when it is on, once
10 % of a table changed and its next round comes (a minute apart by default). A load
faster than that, or a server with autovacuum off, leaves a grown tenant looking as small
as it was. Statistics taken when each tenant had one session make ``user_id`` look
unique; a tenant then grown to 200,000 sessions still looks like one row, and a custom
plan reads all of them to update one by id (docs/performance.md, "plans that cannot
rot"). Ingest's reads are written to be key probes whatever the statistics say
(``messages.store``), but its write, the API's reads and the console's are not all so.

So the write path tells the keeper what it wrote, by tenant and table
(:func:`count_writes`, inside :func:`chatsessions.messages.service.run_ingest_transaction`).
Each time a tenant has written another :data:`CHECK_ROWS` rows to a table, the keeper asks
the planner how many rows it believes that tenant has there (the estimate of ``WHERE
user_id = $1``). When that is under half of what this process wrote there for the tenant
since its last check (:func:`tenant_is_stale`), it analyzes the table's ``user_id`` column:
the tenants' sizes and the table's row count, ~5 ms at 20,000 messages where the whole
table takes ~65. When the table's row count doubled (or halved) since its last ANALYZE
(:func:`table_is_stale`), it analyzes the whole table: a backstop for a server without
autovacuum, whose histograms of times would otherwise end where the table stood. The check
and the ANALYZE run in the background, one at a time per process, on a connection of
their own (ANALYZE takes no lock that writes wait for); no request waits for them, and a
failure is logged, never raised. SQLite is left alone: its planner uses no statistics
unless ANALYZE was run once, and ingest's SQLite statements are written for that planner.

>>> tenant_is_stale(written=5_000, estimated=1.0)
True
>>> table_is_stale(live=1_005_000.0, analyzed=1_000_000.0)
False
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterator
from contextvars import ContextVar

import orjson
from prometheus_client import Counter as MetricCounter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = [
    "CHECK_ROWS",
    "MAX_PENDING_TENANTS",
    "TABLES",
    "StatisticsKeeper",
    "WriteTally",
    "count_writes",
    "estimated_rows",
    "table_is_stale",
    "tallying",
    "tenant_is_stale",
]

log = logging.getLogger("chatsessions.planner_stats")

TABLES = ("contacts", "sessions", "messages")
"""The tables ingest grows, each with a ``user_id`` column."""
CHECK_ROWS = 1_000
"""A tenant's rows written to a table between two checks of its estimate there."""
MAX_PENDING_TENANTS = 100_000
"""Tenants whose rows since their last check a keeper holds per table, at most: past it the
counts start again (a check comes later for those tenants; the memory stays bounded)."""
ANALYZED_TOTAL = MetricCounter(
    "chatsessions_planner_analyze",
    "ANALYZE runs the service made after large loads (planner statistics behind the data)",
    ["table"],
)


def tenant_is_stale(*, written: int, estimated: float) -> bool:
    """Whether the planner believes a tenant has fewer than half the ``written`` rows this
    process alone wrote for it in a table since the tenant's last check there
    (``estimated``: the planner's row estimate for the tenant): those rows alone are in the
    table, so statistics that know them say at least as much."""
    return estimated * 2 < written


def table_is_stale(*, live: float, analyzed: float) -> bool:
    """Whether a table's ``live`` rows moved by more than 1,000 and by more than half its
    ``analyzed`` ones (its rows at the last ANALYZE or VACUUM; -1: never) either way: it
    doubled or halved. Autovacuum, where it is on, analyzes at 10 % and gets there first;
    geometric steps keep the full ANALYZEs of a load from empty to N rows to a few, the
    last of them the largest (they sample up to 30,000 rows). Updates move no row count
    (shape a of the bench updates every session of its tenant each batch)."""
    analyzed = max(analyzed, 0.0)
    moved = abs(live - analyzed)
    return moved > 1_000 and (live > 2 * analyzed or live < analyzed / 2)


class WriteTally:
    """Rows one transaction inserted, by ``(table, tenant)``."""

    __slots__ = ("rows",)

    def __init__(self) -> None:
        self.rows: Counter[tuple[str, str]] = Counter()


_current: ContextVar[WriteTally | None] = ContextVar("chatsessions_write_tally", default=None)


@contextlib.contextmanager
def tallying(tally: WriteTally) -> Iterator[WriteTally]:
    """Count what :func:`count_writes` reports inside the block into ``tally`` (emptied
    first: a transaction retried counts once)."""
    tally.rows.clear()
    token = _current.set(tally)
    try:
        yield tally
    finally:
        _current.reset(token)


def count_writes(user_id: str, **rows: int) -> None:
    """Report rows inserted for a tenant, by table (``messages=…``), to the tally of the
    transaction running (none: nothing to do)."""
    tally = _current.get()
    if tally is None:
        return
    for table, n in rows.items():
        if n:
            tally.rows[table, user_id] += n


_LIVE_AND_ANALYZED = text(
    "SELECT t.name, s.n_live_tup, c.reltuples"
    " FROM unnest(CAST(:tables AS text[])) AS t(name)"
    " JOIN pg_class AS c ON c.oid = to_regclass(t.name)"
    " JOIN pg_stat_user_tables AS s ON s.relid = c.oid"
)


class StatisticsKeeper:
    """Keeps the statistics of :data:`TABLES` in step with what the process writes.

    ``engine``: an autocommit engine on the PostgreSQL database (None: SQLite, or switched
    off; every call is then a no-op)."""

    def __init__(self, engine: AsyncEngine | None, *, check_rows: int = CHECK_ROWS) -> None:
        self._engine = engine
        self._check_rows = check_rows
        # Rows written since the tenant's last check, by table and tenant.
        self._pending: dict[str, Counter[str]] = {t: Counter() for t in TABLES}
        # Rows written since the table's last check, all tenants: many small tenants never
        # make one due, but their rows still move the table's row count.
        self._since_check: Counter[str] = Counter()
        # Table -> tenant -> rows written since its last check: what the next check looks at.
        self._due: dict[str, dict[str, int]] = {}
        self._task: asyncio.Task[None] | None = None
        self.checks = 0
        """Checks made (for tests)."""
        self.analyzed: Counter[str] = Counter()
        """ANALYZE runs by table (for tests; /metrics has the counter)."""
        self.analyze_seconds: dict[str, float] = {}
        """Their time, by table (for the bench)."""

    def wrote(self, tally: WriteTally) -> None:
        """Take a committed transaction's tally; start a check when one is due."""
        if self._engine is None or not tally.rows:
            return
        check_rows = self._check_rows
        for (table, user_id), n in tally.rows.items():
            pending = self._pending[table]
            pending[user_id] += n
            self._since_check[table] += n
            if pending[user_id] >= check_rows or self._since_check[table] >= 10 * check_rows:
                due = self._due.setdefault(table, {})
                due[user_id] = due.get(user_id, 0) + pending.pop(user_id)
            elif len(pending) > MAX_PENDING_TENANTS:
                pending.clear()
        if self._due and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._check_logged())

    def _take_due(self) -> dict[str, dict[str, int]]:
        due, self._due = self._due, {}
        for table in due:
            self._since_check[table] = 0
        return due

    async def settled(self) -> None:
        """Wait for the check in flight, if any (tests; shutdown)."""
        while self._task is not None and not self._task.done():
            await asyncio.wait([self._task])

    async def close(self) -> None:
        """Finish the check in flight, then take no more: the ANALYZE after a CLI import's
        last batches is what the next reader's plans need (it takes a second or less)."""
        await self.settled()
        self._engine = None

    async def _check_logged(self) -> None:
        # Until nothing is due: what became due during a check follows it at once (no
        # write may come to start it).
        while due := self._take_due():
            try:
                await self.check(due)
            except Exception as exc:  # the database may be down: a later check tries again
                log.warning("planner statistics not checked: %s: %s", type(exc).__name__, exc)

    async def check(self, due: dict[str, dict[str, int]]) -> list[str]:
        """Check the tables' row counts and the planner's estimate of each tenant of
        ``due`` (table -> tenant -> rows written since its last check); ANALYZE the whole
        table or its ``user_id``. Returns what was analyzed."""
        assert self._engine is not None
        self.checks += 1
        stale: list[tuple[str, str]] = []  # (table, what to ANALYZE)
        async with self._engine.connect() as conn:
            counts = {
                str(name): (float(live or 0), float(analyzed))
                for name, live, analyzed in (
                    await conn.execute(_LIVE_AND_ANALYZED, {"tables": sorted(due)})
                ).all()
            }
            for table in sorted(due):
                live, analyzed = counts.get(table, (0.0, 0.0))
                if table_is_stale(live=live, analyzed=analyzed):
                    stale.append((table, table))
                    continue
                for user_id, written in sorted(due[table].items()):
                    if written < self._check_rows:
                        continue  # due with its table (the table's rows): not the tenant
                    estimated = await estimated_rows(conn, table, user_id)
                    if tenant_is_stale(written=written, estimated=estimated):
                        stale.append((table, f"{table} (user_id)"))
                        break
            for table, what in stale:
                started = time.perf_counter()
                await conn.execute(text(f"ANALYZE {what}"))
                took = time.perf_counter() - started
                self.analyzed[table] += 1
                self.analyze_seconds[table] = self.analyze_seconds.get(table, 0.0) + took
                ANALYZED_TOTAL.labels(table).inc()
                log.info(
                    "analyzed %s in %.2f s: its statistics were behind the rows written",
                    what,
                    took,
                )
        return [what for _, what in stale]


_ESTIMATES = {
    table: text(f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {table} WHERE user_id = :user_id")
    for table in TABLES
}
"""One prepared statement per table (a statement per tenant would churn the connection's
cache of prepared statements, which requests share). Planned for the value: the pool's
connections run ``plan_cache_mode = force_custom_plan`` (db.create_engine_for)."""


async def estimated_rows(conn: AsyncConnection, table: str, user_id: str) -> float:
    """The planner's estimate of the tenant's rows in ``table``, planned for the value."""
    raw = (await conn.execute(_ESTIMATES[table], {"user_id": user_id})).scalar_one()
    plan = orjson.loads(raw) if isinstance(raw, str | bytes) else raw
    return float(plan[0]["Plan"]["Plan Rows"])
