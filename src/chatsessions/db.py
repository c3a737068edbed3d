"""Engines, transactions and migrations for SQLite (embedded) and PostgreSQL.

Reads use a plain connection. Writes go through :meth:`Database.write`, which on SQLite
takes the database write lock up front (``BEGIN IMMEDIATE`` in WAL mode, serialised in
process by an asyncio lock) and on PostgreSQL relies on row locks taken by the stores
(``SELECT … FOR UPDATE`` on the contact), so concurrent writers never interleave a
contact's session decisions.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hmac
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import orjson
from sqlalchemy import event, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import PoolProxiedConnection

from chatsessions import tables
from chatsessions.config import Settings
from chatsessions.planner_stats import StatisticsKeeper

__all__ = [
    "Database",
    "fetch_rows",
    "insert_for",
    "is_race",
    "is_unavailable",
    "migrate",
    "sqlite_fetch",
]

T = TypeVar("T")
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_MIGRATION_LOCK_KEY = 0x43_53_4D_47  # "CSMG": one advisory lock id for migrations


def _sqlite_path(url: str) -> Path | None:
    database = make_url(url).database
    if not database or database == ":memory:":
        return None
    return Path(database)


def create_engine_for(
    settings: Settings, *, autocommit: bool = False, probes: bool = False
) -> AsyncEngine:
    """Build the async engine for the configured backend, with its connection settings.

    ``autocommit`` (PostgreSQL): every pooled connection is in autocommit, for the
    service's :class:`Database`, whose transactions are the driver's (BEGIN and COMMIT of
    its own, ``_driver_transaction``). Set once on the connection instead of at every
    checkout (``execution_options``), which cost ~0.04 ms of CPU a checkout, set and reset
    (bench/findings.md, fifteenth round). Migrations keep SQLAlchemy's transactions.

    ``probes`` (PostgreSQL, with ``autocommit``): the connections' own settings are those
    of the probe phase (:data:`PG_PROBES`: generic plans, no sequential or bitmap scans),
    for statements made of key probes that run outside a transaction, where a SET LOCAL
    would last one statement (:meth:`Database.read` with ``probes=True``)."""
    url = settings.async_database_url
    if url.startswith("sqlite"):
        path = _sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url,
            hide_parameters=True,  # error logs must never show user ids or other values
            # check_same_thread: the statements of a write transaction run on the event
            # loop's thread (sqlite_fetch, sqlite_executemany), the rest on aiosqlite's.
            connect_args={"timeout": settings.database_busy_timeout, "check_same_thread": False},
            pool_size=settings.database_pool_size,
            max_overflow=0,
            pool_reset_on_return=None,  # _install_sqlite_hooks resets, when needed
            # The connection used last, whose page cache is the warmest: SQLite keeps a
            # connection's cache across transactions while no other connection writes.
            pool_use_lifo=True,
        )
        _install_sqlite_hooks(
            engine,
            busy_timeout_ms=int(settings.database_busy_timeout * 1000),
            wal_autocheckpoint=settings.sqlite_wal_autocheckpoint,
            cache_kib=settings.sqlite_cache_mib * 1024,
        )
        return engine
    engine = create_async_engine(
        url,
        hide_parameters=True,  # error logs must never show user ids or other values
        **({"isolation_level": "AUTOCOMMIT"} if autocommit else {}),
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        pool_timeout=settings.database_connect_timeout,
        pool_pre_ping=settings.database_pre_ping,
        pool_recycle=1800,
        connect_args={
            "timeout": settings.database_connect_timeout,
            "command_timeout": 60,
            "server_settings": {
                "application_name": "chatsessions",
                "timezone": "UTC",
                # asyncpg prepares every statement; after five runs PostgreSQL may switch
                # to a generic plan costed for an average tenant, which for the listing
                # join reads every contact of a big tenant (27 ms instead of 0.5 ms at 1M
                # sessions, docs/performance.md). Planning per execution costs ~0.1 ms.
                "plan_cache_mode": "force_custom_plan",
                **(_PROBE_SETTINGS if probes else {}),
            },
        },
    )
    if autocommit:
        _install_pg_hooks(engine)
    return engine


_PROBE_SETTINGS = {
    "application_name": "chatsessions-probes",
    "plan_cache_mode": "force_generic_plan",
    "enable_seqscan": "off",
    "enable_bitmapscan": "off",
}
"""The probe pool's connection settings (see :func:`create_engine_for`)."""


def _install_pg_hooks(engine: AsyncEngine) -> None:
    # In autocommit every transaction is the driver's (_driver_transaction), which
    # SQLAlchemy's reset on return does not see. One given back still open (a path that
    # missed its end) is rolled back here, its SET LOCALs with it: the next request on the
    # connection never runs inside it. Reading the flag costs nothing on the way back.
    @event.listens_for(engine.sync_engine.pool, "reset")
    def _on_reset(dbapi_connection: Any, _record: Any, reset_state: Any) -> None:
        if reset_state.asyncio_safe and dbapi_connection.driver_connection.is_in_transaction():
            # Fails if the driver is still busy (cancelled mid-statement): the pool then
            # closes the connection instead.
            dbapi_connection.run_async(lambda driver: driver.execute("ROLLBACK"))


_BEGIN_IN_FLIGHT = "chatsessions_begin_in_flight"
"""Key of a pooled SQLite connection's ``info``: its BEGIN was sent and has not returned."""


def _install_sqlite_hooks(
    engine: AsyncEngine, *, busy_timeout_ms: int, wal_autocheckpoint: int, cache_kib: int
) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's own is deferred-only).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: an acknowledged (committed) write survives power loss, not only a crash.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms:d}")
        # Checkpoints every N pages of WAL rather than SQLite's 1,000: an index page written
        # by many batches goes back to the database file once per checkpoint, not per batch.
        cursor.execute(f"PRAGMA wal_autocheckpoint={wal_autocheckpoint:d}")
        cursor.execute(f"PRAGMA cache_size=-{cache_kib:d}")  # negative: KiB, not pages
        cursor.close()

    # Each statement through SQLAlchemy's cursor is four hops to aiosqlite's thread (~40 us
    # each); the driver's own execute is one.
    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        begin = (
            "BEGIN IMMEDIATE" if conn.get_execution_options().get("sqlite_immediate") else "BEGIN"
        )
        pooled = conn.connection
        # Cleared once BEGIN has returned. A task cancelled while it waits (BEGIN IMMEDIATE
        # waits for the write lock) leaves it set: the BEGIN still runs on aiosqlite's
        # thread, to its end, and opens a transaction after the connection is given back.
        pooled.info[_BEGIN_IN_FLIGHT] = True
        pooled.dbapi_connection.run_async(lambda driver: driver.execute(begin))
        pooled.info[_BEGIN_IN_FLIGHT] = False

    # Instead of the pool's rollback of every connection it gets back (one more hop per
    # committed write): a rollback only of a connection still in a transaction (one whose
    # Connection did not end it, e.g. after a failed rollback while cancelled) or whose
    # BEGIN may still be running. That ROLLBACK is queued on aiosqlite's thread behind the
    # BEGIN, before the connection is back in the pool: it ends what the BEGIN opens (a
    # no-op if the BEGIN failed), and the next user of the connection finds none.
    @event.listens_for(engine.sync_engine.pool, "reset")
    def _on_reset(dbapi_connection: Any, record: Any, reset_state: Any) -> None:
        if not reset_state.asyncio_safe:
            return
        in_flight = record is not None and record.info.pop(_BEGIN_IN_FLIGHT, False)
        if in_flight or dbapi_connection.driver_connection.in_transaction:
            dbapi_connection.rollback()


_pg_compiled: dict[int, tuple[Any, str, tuple[str, ...]]] = {}


def _compiled_for_asyncpg(stmt: Any, dialect: Any) -> tuple[str, tuple[str, ...]]:
    """SQL text and positional parameter names of a pre-built statement (compiled once)."""
    hit = _pg_compiled.get(id(stmt))
    if hit is not None and hit[0] is stmt:
        return hit[1], hit[2]
    compiled = stmt.compile(dialect=dialect)
    names = tuple(compiled.positiontup or ())
    _pg_compiled[id(stmt)] = (stmt, compiled.string, names)  # holds stmt: ids stay unique
    return compiled.string, names


def pg_joined_ids(name: str) -> str:
    """SQL of the array of ids in parameter ``name``, sent as one comma-joined text
    (:func:`joined_ids`): the driver checks and encodes an array element by element, ~0.3 ms
    for 1,000 ids, against ~0.05 ms to join them and split them in PostgreSQL."""
    return f"CAST(string_to_array(CAST(:{name} AS text), ',') AS varchar[])"


def joined_ids(values: list[str]) -> str:
    """The text of :func:`pg_joined_ids`: ids (base62, or a message's direction), no commas
    (checked: a comma inside one would shift every column after it, silently)."""
    joined = ",".join(values)
    if joined.count(",") != max(len(values) - 1, 0):
        raise ValueError("an id holds a comma: it cannot be sent joined")
    return joined


def pg_joined_numbers(name: str, kind: str) -> str:
    """SQL of the array of numbers (or booleans) in parameter ``name``, sent as one
    comma-joined text with NULL as ``null`` (:func:`joined_numbers`): the driver checks
    every element of an array against ``collections.abc`` classes in Python, and a batch
    of 1,000 new sessions sends 16,000 numbers: 8.1 ms of the client's CPU as arrays,
    3.3 ms joined with ``str`` (and 2.5 ms more of PostgreSQL's, to split them), 0.3 ms
    written by orjson."""
    return f"CAST(string_to_array(CAST(:{name} AS text), ',', 'null') AS {kind}[])"


def joined_numbers(values: list[Any]) -> str:
    """The text of :func:`pg_joined_numbers`: ints as decimals, booleans as true/false,
    None as null (an empty text is an empty array, which ``unnest`` pads with NULL as
    well). Written by orjson, in C (a JSON array without its brackets): ~0.02 us a number
    against ~0.2 for ``str``."""
    return orjson.dumps(values)[1:-1].decode()


def pg_json_texts(param: str, kind: str) -> str:
    """SQL of a PostgreSQL array of ``kind`` (a text type) sent in parameter ``param`` as
    one JSON array of strings and nulls (:func:`json_texts`), its order kept.

    asyncpg checks every element of an array parameter against ``collections.abc``
    classes in Python (~0.3 us a string): four columns of 1,000 strings cost 1.1 ms of the
    client's CPU as arrays, 0.1 ms as JSON texts, and 1.6 against 1.2 ms a statement in
    all, measured on this machine (PostgreSQL takes longer to read the JSON, ~1.1 against
    ~0.5 ms: less work in all, more of it on the server)."""
    return (
        "CAST(ARRAY(SELECT j.e FROM json_array_elements_text(CAST(:"
        + param
        + " AS json)) WITH ORDINALITY AS j(e, n) ORDER BY j.n) AS "
        + kind
        + "[])"
    )


def json_texts(values: Sequence[str | None]) -> str | None:
    """The parameter of :func:`pg_json_texts` for ``values``: ``None`` (an empty array,
    which ``unnest`` pads with NULLs like the shorter arrays beside it) when every value
    is ``None``."""
    if values.count(None) == len(values):
        return None
    return orjson.dumps(values).decode()


@asynccontextmanager
async def sent_ahead(statement: Awaitable[T] | None) -> AsyncIterator[asyncio.Task[T] | None]:
    """Send ``statement`` (a coroutine running statements on one connection) now and
    await its result later, inside the block: the client's CPU work in the block overlaps
    the server's work on the statement, where one request otherwise leaves the database
    idle while it computes and itself idle while the database works. ``None``: nothing
    sent (the block gets ``None``).

    A connection runs one statement at a time: the block awaits the task before it runs
    any other statement on that connection. The block's end waits for the statement
    (nothing else may run on the connection, a rollback included, until it is done),
    however the block ends; an error of the statement the block did not await is
    raised there when the block itself succeeded."""
    if statement is None:
        yield None
        return
    task = asyncio.ensure_future(statement)
    # One turn of the loop: the task runs until it waits on the server, its statement
    # sent (on SQLite in a write transaction it runs to its end: no overlap, no harm).
    await asyncio.sleep(0)
    try:
        yield task
    except BaseException:
        if not task.done():
            await asyncio.wait([task])
        if not task.cancelled():
            task.exception()  # retrieved: the block's own error is the one raised
        raise
    await task  # the block succeeded: the statement's error, if any, is raised here


async def fetch_rows(
    conn: AsyncConnection, stmt: Any, params: Mapping[str, Any]
) -> Sequence[Sequence[Any]]:
    """Run a pre-built read statement (module-level, values as bound parameters); rows
    come back as tuples in column order.

    On PostgreSQL the statement runs straight on the asyncpg connection (prepared and
    cached by asyncpg): SQLAlchemy's execution and result layers cost ~1.3 ms of CPU for
    a 100-session page, the driver alone ~0.3 ms (docs/performance.md). Only for reads
    whose columns need no type processing (ints, strings, nulls), on a connection from
    :meth:`Database.read` or :meth:`Database.write` (whose transactions are the
    driver's, so that these statements run inside them). Errors are the driver's own
    (``asyncpg``'s, not SQLAlchemy's). A connection that fails is invalidated, as
    SQLAlchemy would.

    On SQLite a statement given as SQL text (``:name`` parameters, plain values; lists as
    JSON for ``json_each``) runs on the driver when ``conn`` is in a transaction
    (:func:`sqlite_fetch`); otherwise, and for SQLAlchemy statements, through SQLAlchemy.
    """
    if conn.dialect.name != "postgresql":
        if isinstance(stmt, str):
            if conn.in_transaction():
                return await sqlite_fetch(conn, stmt, params)
            stmt = text(stmt)  # SQLAlchemy begins the read transaction (its snapshot)
        return (await conn.execute(stmt, dict(params))).all()
    sql, names = _compiled_for_asyncpg(stmt, conn.dialect)
    fairy = await _pooled_connection(conn)
    driver = fairy.driver_connection
    assert driver is not None
    try:
        rows: Sequence[Sequence[Any]] = await driver.fetch(sql, *[params[n] for n in names])
    except Exception as exc:
        if not _is_server_error(exc):
            _retire_connections(conn, fairy, exc)
        raise
    return rows


async def sqlite_fetch(
    conn: AsyncConnection, sql: str, params: Mapping[str, Any]
) -> Sequence[Sequence[Any]]:
    """Run a read (``:name`` parameters, plain values) on the SQLite driver under ``conn``,
    in the transaction ``conn`` holds: in a write transaction, on the event loop's thread
    (:func:`_sqlite_locked`); otherwise one hop to aiosqlite's thread for the statement
    and its rows, where SQLAlchemy's cursor makes four (create, execute, fetch, close;
    ~40 us each, a single message's write made 19)."""
    driver: Any = (await conn.get_raw_connection()).driver_connection
    if _sqlite_locked(conn):
        return driver._conn.execute(sql, params).fetchall()  # type: ignore[no-any-return]
    return list(await driver.execute_fetchall(sql, params))


# sqlite3 binds ints, floats and texts at once, but looks every other value up as one to
# adapt: None and booleans, ~0.6 us each (two attribute lookups that find nothing), up to
# 13 of them a new contact's row. Registered here, each is bound as before (NULL; 1 or 0)
# after one lookup in sqlite3's table of adapters: a batch of 1,000 new contacts wrote
# 2x faster. Registering no base type (int, float, str) keeps their fast path.
_NULL_ADAPTER: dict[None, None] = {}
sqlite3.register_adapter(type(None), _NULL_ADAPTER.get)
sqlite3.register_adapter(bool, int)


async def sqlite_executemany(
    conn: AsyncConnection, sql: str, rows: Sequence[Mapping[str, Any]] | Sequence[Sequence[Any]]
) -> None:
    """Run one statement for each of ``rows`` on the SQLite driver under ``conn``, in the
    write transaction ``conn`` holds (:func:`_sqlite_locked`: on the event loop's thread),
    without SQLAlchemy's per-row parameter handling (~25 us a row)."""
    if not rows:
        return
    driver: Any = (await conn.get_raw_connection()).driver_connection
    if _sqlite_locked(conn):
        driver._conn.executemany(sql, rows)
        return
    await driver.executemany(sql, rows)


def _sqlite_locked(conn: AsyncConnection) -> bool:
    """True when ``conn`` is in a SQLite write transaction (``Database.write``: BEGIN
    IMMEDIATE, the write lock held until COMMIT). Its statements then run on the event
    loop's thread instead of aiosqlite's: a hop there and back costs ~55 us of CPU and
    ~70 us of latency, and a single message made seven, now two (bench/findings.md,
    eleventh round); and holding the write lock, a statement never waits for
    another connection (``busy_timeout`` cannot block the loop); it lasts what the
    request's own rows take. BEGIN IMMEDIATE, which may wait for the lock, and COMMIT,
    which syncs the file, stay on aiosqlite's thread."""
    sync = conn.sync_connection
    return (
        sync is not None
        and sync.in_transaction()
        and bool(sync.get_execution_options().get("sqlite_immediate"))
    )


async def _pooled_connection(conn: AsyncConnection) -> PoolProxiedConnection:
    """The pooled connection under ``conn``: read off its sync connection while that
    holds one (no greenlet hop, ~0.01 ms a call, two or more per request), else from
    SQLAlchemy, which revalidates an invalidated one."""
    sync = conn.sync_connection
    if sync is not None and not sync.closed and not sync.invalidated:
        return sync.connection
    return await conn.get_raw_connection()


def _retire_connections(conn: AsyncConnection, fairy: Any, exc: BaseException) -> None:
    """What SQLAlchemy does on a disconnect it sees itself: this connection is closed and
    every pooled one opened before it is replaced at its next checkout (after a database
    restart they are all dead: one failed request per process, not one per connection)."""
    conn.engine.pool._invalidate(fairy, exc)  # SQLAlchemy's own disconnect handling


def _is_server_error(exc: BaseException) -> bool:
    """True for an error PostgreSQL reported on a healthy connection (bad value, etc.)."""
    import asyncpg  # type: ignore[import-untyped]

    return isinstance(exc, asyncpg.PostgresError) and not isinstance(
        exc, asyncpg.PostgresConnectionError
    )


def insert_for(conn: AsyncConnection, table: Any) -> Any:
    """A dialect-specific INSERT (for ``on_conflict_do_nothing``)."""
    if conn.dialect.name == "postgresql":
        return pg_insert(table)
    return sqlite_insert(table)


# How Database.write and .read begin a transaction on PostgreSQL. With generic plans,
# SET LOCAL ends with the transaction: the connection keeps its default afterwards.
PG_BEGIN = "BEGIN ISOLATION LEVEL READ COMMITTED"
PG_BEGIN_GENERIC_PLANS = f"{PG_BEGIN}; SET LOCAL plan_cache_mode = force_generic_plan"
# Probes only: with statistics, PostgreSQL may misjudge a contact's sessions as one row and
# read all of them through a bitmap (then sort) instead of the index in order.
PG_INDEX_SCANS = "; SET LOCAL enable_bitmapscan = off"
# The probe phase of an ingest transaction (Database.write(probe_plans=True)): its first
# statements, the lock and the reads under it, are index probes by key (one row each,
# driven by the given ids, see messages.store): planned once per connection (generic
# plans: planning was ~1 ms of PostgreSQL's ~2 ms per single message), with neither
# sequential nor bitmap scans, and written so that even a plan made on empty tables or
# on one-row-per-tenant statistics probes the key's index (messages.store,
# tests/messages/test_probe_plans.py). The statement that ends the
# phase (END_PROBES) puts back, for the rest of the transaction, the plan mode recorded at
# BEGIN and sequential scans.
_AFTER_PROBES = "chatsessions.plan_cache_mode_after_probes"
PG_PROBES = (
    "; SET LOCAL plan_cache_mode = force_generic_plan; SET LOCAL enable_seqscan = off"
    f"; SET LOCAL {_AFTER_PROBES} = "
)
END_PROBES = (
    "(set_config('plan_cache_mode', COALESCE(NULLIF(current_setting("
    f"'{_AFTER_PROBES}', true), ''), current_setting('plan_cache_mode')), true)"
    " || set_config('enable_seqscan', 'on', true))"
)
"""An SQL expression (never NULL) that ends the probe phase: a no-op outside one."""
PG_BEGIN_SNAPSHOT = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"  # Database.read


@asynccontextmanager
async def _driver_transaction(conn: AsyncConnection, begin: str) -> AsyncIterator[None]:
    """A transaction begun and ended on the asyncpg connection under ``conn`` (which must be
    in autocommit, so that SQLAlchemy begins none of its own): committed when the block
    ends without error, rolled back otherwise. A connection that fails is retired as
    SQLAlchemy would retire it."""
    fairy = await _pooled_connection(conn)
    driver = fairy.driver_connection
    assert driver is not None
    try:
        await driver.execute(begin)
    except Exception as exc:
        if not _is_server_error(exc):
            _retire_connections(conn, fairy, exc)
        raise
    except BaseException as exc:
        # Cancelled: the BEGIN may have run, and the pool would give the connection to the
        # next request inside this transaction (its plan settings too). Its state is
        # unknown: this connection only is closed.
        fairy.invalidate(exc)
        raise
    try:
        yield
    except BaseException as exc:
        # A ROLLBACK that fails or is cancelled again leaves the checks below to decide.
        with contextlib.suppress(BaseException):
            await driver.execute("ROLLBACK")
        if driver.is_closed():
            _retire_connections(conn, fairy, exc)
        elif driver.is_in_transaction():  # e.g. cancelled mid-statement
            fairy.invalidate(exc)  # this connection only: its state is unknown
        raise
    try:
        await driver.execute("COMMIT")
    except Exception as exc:
        if not _is_server_error(exc):
            _retire_connections(conn, fairy, exc)
        elif driver.is_in_transaction():
            fairy.invalidate(exc)
        raise
    except BaseException as exc:  # cancelled at COMMIT: committed or not, unacknowledged
        fairy.invalidate(exc)
        raise


class KeptConnections:
    """Connections of one engine kept checked out between uses: taking one costs a list
    pop instead of SQLAlchemy's checkout and return (two greenlet hops, a Connection
    object, the pool's events, a task for the return: ~0.12 ms of CPU a use, a fifth of
    a single message's; bench/findings.md, sixteenth round).

    What the pool would check at a checkout is checked before a connection is used
    again: one that is closed, invalidated (its own failure, or the pool's after a lost
    server), older than ``max_age_s``, or left inside a transaction is given back to the
    pool instead (which recycles or resets it), as is any connection whose use raised.
    A semaphore of the pool's capacity bounds the connections in use and idle here, so
    that no caller ever waits inside the pool for a connection idle in this list; one
    that waits longer than ``timeout_s`` gets the pool's own timeout error (a 503)."""

    def __init__(self, engine: AsyncEngine, *, capacity: int, timeout_s: float) -> None:
        self._engine = engine
        # (connection, when taken from the pool, its record's "invalidated?" check)
        self._idle: list[tuple[AsyncConnection, float, Callable[[], bool]]] = []
        self._slots = asyncio.Semaphore(capacity)
        self._timeout_s = timeout_s
        self.max_age_s = 60.0

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A connection (autocommit, not in a transaction) for the block."""
        if self._slots.locked():  # wait_for makes a task: only when there is a wait
            try:
                await asyncio.wait_for(self._slots.acquire(), self._timeout_s)
            except TimeoutError:
                raise PoolTimeout("no connection of the probe pool came free in time") from None
        else:
            await self._slots.acquire()
        try:
            conn, taken_at = await self._take()
            try:
                yield conn
                if conn.in_transaction():
                    # SQLAlchemy's own, begun by a statement run through it (autocommit:
                    # nothing of it on the server); what its return to the pool ends.
                    await conn.rollback()
            except BaseException:
                await asyncio.shield(conn.close())  # the pool resets or discards it
                raise
            invalidated = self._kept_check(conn, taken_at)
            if invalidated is not None:
                self._idle.append((conn, taken_at, invalidated))
            else:
                await asyncio.shield(conn.close())
        finally:
            self._slots.release()

    async def _take(self) -> tuple[AsyncConnection, float]:
        now = time.monotonic()
        while self._idle:
            conn, taken_at, invalidated = self._idle.pop()
            # Idle here, it was used by no one: only the pool (invalidated after a lost
            # server) or its age can have made it unfit since it was given back.
            if now - taken_at <= self.max_age_s and not invalidated():
                return conn, taken_at
            await asyncio.shield(conn.close())
        return await self._engine.connect(), now

    def _kept_check(self, conn: AsyncConnection, taken_at: float) -> Callable[[], bool] | None:
        """Whether ``conn``, given back, may be kept: its record's invalidation check if so
        (run again when it is taken), None if not."""
        sync = conn.sync_connection
        if sync is None or sync.closed or sync.invalidated or sync.in_transaction():
            return None
        if time.monotonic() - taken_at > self.max_age_s:
            return None
        fairy = sync.connection
        record = getattr(fairy, "_connection_record", None)
        invalidated = getattr(record, "_is_hard_or_soft_invalidated", None)
        if not callable(invalidated) or invalidated():  # unknown: not kept
            return None
        driver = fairy.driver_connection
        if driver is None or driver.is_closed() or driver.is_in_transaction():
            return None
        return invalidated  # type: ignore[no-any-return]

    async def close(self) -> None:
        """Give every idle connection back to the pool (before the engine's dispose)."""
        idle, self._idle = self._idle, []
        for conn, _taken_at, _invalidated in idle:
            await conn.close()


class Database:
    """The process's handle on the database: engine, read and write transactions."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # PostgreSQL: in autocommit. Reads of one statement (or whose statements need not
        # agree) skip BEGIN/ROLLBACK, two round trips fewer per request; every transaction
        # is begun and ended on the driver (_driver_transaction).
        self.engine = create_engine_for(settings, autocommit=True)
        self.is_sqlite = settings.is_sqlite
        # PostgreSQL: a second pool whose connections plan as the probe phase does, for
        # the single message's route (its key lookup, its read and write without a
        # transaction: messages.service.store_messages). None on SQLite.
        self.probe_engine: AsyncEngine | None = None
        self._probe_connections: KeptConnections | None = None
        if not self.is_sqlite:
            self.probe_engine = create_engine_for(settings, autocommit=True, probes=True)
            self._probe_connections = KeptConnections(
                self.probe_engine,
                capacity=settings.database_pool_size + settings.database_max_overflow,
                timeout_s=settings.database_connect_timeout,
            )
        self._sqlite_write_lock = asyncio.Lock()
        self._secret: bytes | None = None
        self.statistics = StatisticsKeeper(
            None if self.is_sqlite or not settings.analyze_after_loads else self.engine
        )
        """Told what ingest wrote; ANALYZE after large loads (``planner_stats``)."""

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return "sqlite" if self.is_sqlite else "postgresql"

    @asynccontextmanager
    async def read(
        self, *, snapshot: bool = False, probes: bool = False
    ) -> AsyncIterator[AsyncConnection]:
        """A connection for reads.

        On PostgreSQL each statement runs on its own (autocommit: no BEGIN/ROLLBACK round
        trips) unless ``snapshot=True``, which makes every statement of the block see one
        snapshot (REPEATABLE READ; a SQLite read transaction in WAL mode already does), so
        that e.g. a page of sessions and their messages agree even if a merge commits
        between them.

        ``probes=True`` (PostgreSQL): from the probe pool, whose statements plan as in the
        probe phase (generic plans, no sequential or bitmap scans): only for statements
        written as key probes (tests/messages/test_probe_plans.py). A write transaction
        on it (:meth:`write` with ``conn``) sets what it needs with SET LOCAL as on any
        connection: ingest's plan settings are all explicit.
        """
        kept = self._probe_connections if probes else None
        async with kept.connection() if kept is not None else self.engine.connect() as conn:
            if not snapshot:
                yield conn
                return
            async with self.snapshot(conn):
                yield conn

    @asynccontextmanager
    async def snapshot(self, conn: AsyncConnection) -> AsyncIterator[None]:
        """Make the statements of the block, on a connection from :meth:`read`, see one
        snapshot: a request that authenticated on the connection in autocommit goes on
        with a consistent read on the same one (one pool checkout).

        PostgreSQL: a REPEATABLE READ READ ONLY transaction on the driver, so that
        statements run through SQLAlchemy and through :func:`fetch_rows` share it
        (SQLAlchemy would begin lazily, at its own first statement only); read only, its
        COMMIT is as cheap as a ROLLBACK. SQLite: the read connection's transaction (WAL)
        already reads one snapshot.
        """
        if self.is_sqlite:
            yield
            return
        async with _driver_transaction(conn, PG_BEGIN_SNAPSHOT):
            yield

    @asynccontextmanager
    async def write(
        self,
        *,
        generic_plans: bool = False,
        index_scans: bool = False,
        probe_plans: bool = False,
        conn: AsyncConnection | None = None,
    ) -> AsyncIterator[AsyncConnection]:
        """One write transaction, committed when the block ends without error.

        On PostgreSQL the transaction is the driver's (READ COMMITTED), begun before the
        block: statements run through SQLAlchemy and through :func:`fetch_rows` share it
        (SQLAlchemy would begin lazily, at its own first statement only).

        ``generic_plans=True`` (PostgreSQL) plans each prepared statement of the
        transaction once per connection instead of at every run, set in the same round
        trip as BEGIN. Only for statements whose best plan does not depend on the values
        (ingest's: a probe per given id, ids as index conditions); planning was half of
        PostgreSQL's CPU per ingested message (docs/performance.md).

        ``index_scans=True`` (PostgreSQL) turns bitmap scans off for the transaction (same
        round trip): for statements made of index probes and ordered range reads only.

        ``probe_plans=True`` (PostgreSQL) begins with the probe phase (:data:`PG_PROBES`):
        generic plans and no sequential scans until a statement evaluates
        :data:`END_PROBES`; then ``generic_plans`` decides, as for the whole transaction.

        ``conn`` (PostgreSQL): a connection from :meth:`read` (not in a transaction) to run
        the transaction on, e.g. the one a request authenticated on: one pool checkout per
        request. Ignored on SQLite, whose writes take the write lock on a connection of
        their own.
        """
        if self.is_sqlite:
            async with self._sqlite_write_lock, self.engine.connect() as conn:
                await conn.execution_options(sqlite_immediate=True)
                async with conn.begin():
                    yield conn
        else:
            begin = PG_BEGIN_GENERIC_PLANS if generic_plans else PG_BEGIN
            if index_scans:
                begin += PG_INDEX_SCANS
            if probe_plans:
                after = "force_generic_plan" if generic_plans else "force_custom_plan"
                begin += PG_PROBES + after
            if conn is not None:
                async with _driver_transaction(conn, begin):
                    yield conn
                return
            async with (
                self.engine.connect() as own,
                _driver_transaction(own, begin),
            ):
                yield own

    async def run_write(
        self,
        work: Callable[[AsyncConnection], Awaitable[T]],
        *,
        attempts: int = 4,
        generic_plans: bool = False,
        index_scans: bool = False,
        probe_plans: bool = False,
        conn: AsyncConnection | None = None,
    ) -> T:
        """Run ``work`` in a write transaction, retrying races the database reported.

        A race is a unique violation from a concurrent insert (e.g. two writers creating
        the same contact) or a deadlock/serialisation failure on PostgreSQL; the retry sees
        the winner's row. ``generic_plans``, ``index_scans``, ``probe_plans``, ``conn``: as
        for :meth:`write`.
        """
        for attempt in range(attempts):
            try:
                async with self.write(
                    generic_plans=generic_plans,
                    index_scans=index_scans,
                    probe_plans=probe_plans,
                    conn=conn,
                ) as tx:
                    return await work(tx)
            except Exception as exc:
                if attempt == attempts - 1 or not is_race(exc):
                    raise
            await asyncio.sleep(0.005 * (attempt + 1))
        raise AssertionError("unreachable")

    async def ping(self) -> None:
        """Raise when the database cannot answer ``SELECT 1``."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def signing_secret(self) -> bytes:
        """The server-wide secret used to sign cursors (configured, or stored in the db)."""
        if self._secret is not None:
            return self._secret
        if self.settings.secret_key:
            self._secret = self.settings.secret_key.encode()
            return self._secret

        async def load(conn: AsyncConnection) -> str:
            stmt = insert_for(conn, tables.server_secrets).values(
                name="cursor_signing_key", value=secrets.token_urlsafe(48)
            )
            await conn.execute(stmt.on_conflict_do_nothing())
            row = await conn.execute(
                select(tables.server_secrets.c.value).where(
                    tables.server_secrets.c.name == "cursor_signing_key"
                )
            )
            return str(row.scalar_one())

        self._secret = (await self.run_write(load)).encode()
        return self._secret

    def is_probe_connection(self, conn: AsyncConnection) -> bool:
        """Whether ``conn`` is the probe pool's (:meth:`read` with ``probes=True``)."""
        return self.probe_engine is not None and conn.engine is self.probe_engine

    async def dispose(self) -> None:
        """Finish the statistics check in flight and close every pooled connection."""
        await self.statistics.close()
        await self.engine.dispose()
        if self._probe_connections is not None:
            await self._probe_connections.close()
        if self.probe_engine is not None:
            await self.probe_engine.dispose()


def is_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` says the database cannot be reached (→ 503), not that a statement
    or a value was wrong."""
    if isinstance(exc, (OperationalError, InterfaceError, PoolTimeout, ConnectionError, OSError)):
        return True
    # SQLite's driver's own (statements run on it, db.sqlite_fetch, and BEGIN): what
    # SQLAlchemy wraps as OperationalError, e.g. "database is locked" after the busy wait.
    if isinstance(exc, sqlite3.OperationalError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    name = type(exc).__name__
    if name in {"CannotConnectNowError", "ConnectionDoesNotExistError", "TooManyConnectionsError"}:
        return True
    # asyncpg's client-side errors on a connection the server dropped (statements run on
    # the driver, fetch_rows): "connection is closed", or, when the drop races the next
    # statement, "cannot switch to state …; another operation is in progress". Either
    # way the connection is retired (fetch_rows) and the request may be retried.
    return type(exc).__module__.startswith("asyncpg") and name in {
        "InterfaceError",
        "InternalClientError",
    }


class Raced(Exception):
    """A statement found a row changed by a concurrent transaction where it could not
    follow it (e.g. an UPDATE of a row by its ``ctid``, which a concurrent update moves):
    the transaction is retried (:meth:`Database.run_write`), as for a deadlock."""


def is_race(exc: BaseException) -> bool:
    """A unique violation, deadlock or serialisation failure (or :class:`Raced`): the
    retry sees the winner.

    Statements run through SQLAlchemy (wrapped errors) or straight on asyncpg
    (:func:`fetch_rows`, the driver's own errors): both are recognised.
    """
    if isinstance(exc, (IntegrityError, Raced)):
        return True
    if isinstance(exc, DBAPIError):
        orig = getattr(exc, "orig", None)
        code = getattr(orig, "sqlstate", None) or getattr(
            getattr(orig, "__cause__", None), "sqlstate", None
        )
        return code in {"40001", "40P01"}
    if _is_server_error(exc):
        code = getattr(exc, "sqlstate", None)
        return code in {"40001", "40P01"} or (code or "").startswith("23")
    return False


def constant_time_equal(a: str, b: str) -> bool:
    """Compare two strings in constant time."""
    return hmac.compare_digest(a.encode(), b.encode())


async def migrate(settings: Settings) -> None:
    """Bring the schema to the newest migration, once, even with many processes at once.

    PostgreSQL: a session advisory lock; SQLite: an exclusive file lock beside the db file.
    """
    engine = create_engine_for(settings)
    try:
        if engine.dialect.name == "postgresql":
            async with engine.connect() as conn:
                await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
                try:
                    await conn.run_sync(_upgrade_to_head)
                    await conn.commit()
                finally:
                    await conn.execute(
                        text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK_KEY}
                    )
                    await conn.commit()
        else:
            path = _sqlite_path(settings.async_database_url)
            lock_path = Path(str(path) + ".migrate-lock") if path else None
            lock_file = open(lock_path, "a+") if lock_path else None  # noqa: SIM115, ASYNC230
            try:
                if lock_file is not None:
                    await asyncio.to_thread(fcntl.flock, lock_file.fileno(), fcntl.LOCK_EX)
                async with engine.connect() as conn:
                    await conn.execution_options(sqlite_immediate=True)
                    await conn.run_sync(_upgrade_to_head)
                    await conn.commit()
            finally:
                if lock_file is not None:
                    fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)
                    lock_file.close()
    finally:
        await engine.dispose()


def _upgrade_to_head(sync_conn: Any) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, "head")
