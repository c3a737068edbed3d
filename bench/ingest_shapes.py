"""Ingest throughput at every shape of data, against a floor measured in the same run.

    python bench/ingest_shapes.py [--database-url postgresql://postgres@127.0.0.1:5432]
        [--backends postgresql,sqlite] [--growth 100000] [--out bench/results/...json]

Each case runs on a freshly created and migrated database (PostgreSQL: one database per
case; SQLite: one file per case), on uvloop (the service's event loop), through the
service's one write path without HTTP: from the request's parsed body (``MessageIn``,
built off the clock, as the floor's rows are), ``messages.service.prepare_message`` (the
route's checks and normalisation, timed) and ``messages.service.store_messages``
(``ingest`` as the routes run it), every transaction durably committed. The shapes
(1,000-message batches):

* ``a_random_now`` — random contacts (of 1,000), stamped within the last minute;
* ``b_history_300`` — a week of history, time-sorted, across 300 contacts (30,900
  messages; with ``--growth N`` the history goes on until N are stored);
* ``c_backfill_one`` — one contact's back-fill, messages 2 minutes apart (100,000; or N);
* ``d_bursts`` — 10 contacts × 100 messages within 100 s per batch;
* ``e_new_contacts`` — 1,000 new contacts found-or-created by phone in one batch (20
  batches, 20,000 contacts);
* ``single`` — single messages, sequential (and at concurrency 32 on PostgreSQL, each of
  the 32 workers a tenant of its own);
* ``single_one_tenant`` — single messages at concurrency 32 from 32 workers of one tenant
  (one contact each: a business's customers writing at once), through group commit
  (``messages.group_commit``) as the route stores them; the floor writes each message in
  a transaction of its own, as a request does.

The *floor* of a case writes the same rows (contacts, sessions as the rule cuts them,
messages) with hand-written set-based SQL, one transaction per batch, on its own fresh
database: what storing those rows costs at all. Each batch writes the sessions it creates
or changes as they stand after it (counts and figures included), as ours does;
``tests/test_bench_floor.py`` checks that the two leave the same rows after every batch. The ratio is ours / floor. At
concurrency 4 each worker has its own tenant (its own contacts) and the same shape.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions import ids
from chatsessions.app import freeze_startup_objects
from chatsessions.auth import service as auth_service
from chatsessions.config import Settings
from chatsessions.contacts import service as contacts_service
from chatsessions.contacts.schemas import ContactFields, ContactIn
from chatsessions.db import Database, migrate, sqlite_executemany
from chatsessions.messages import service as messages_service
from chatsessions.messages.group_commit import GroupCommit
from chatsessions.messages.schemas import MessageIn
from chatsessions.sessions.figures import EMPTY as EMPTY_FIGURES
from chatsessions.sessions.figures import Figures, extend_figures
from chatsessions.sessions.rule import DEFAULT_TIMEOUT_MS

MIN = 60_000
HERE = Path(__file__).resolve().parent
GROWTH_SHAPES = ("b_history_300", "c_backfill_one")  # judged on flatness as they grow
DB_PREFIX = "chatsessions_shape"  # --db-prefix: runs side by side need their own databases

# An item: (contact index or a new phone number, timestamp ms, inbound?)
Item = tuple[int | str, int, bool]
P = TypeVar("P")


@dataclass
class Shape:
    """A case: the contacts a tenant needs, then its batches in order."""

    name: str
    contacts: int
    batches: list[list[Item]]
    # At concurrency: the workers share one tenant, worker w sending batches b ≡ w (mod n).
    one_tenant: bool = False


def shapes(now_ms: int, growth: int, rng: random.Random) -> list[Shape]:
    """Every shape's batches (timestamps up to ``now_ms``)."""
    out = [
        Shape(
            "a_random_now",
            1000,
            [
                [
                    (rng.randrange(1000), now_ms - rng.randrange(60_000), rng.random() < 0.5)
                    for _ in range(1000)
                ]
                for _ in range(20)
            ],
        )
    ]
    week = 30_900
    total = max(week, growth)
    step = 7 * 24 * 60 * MIN / week  # a week of history ending now (--growth: longer)
    history: list[Item] = [
        (n % 300, now_ms - int((total - n) * step), n % 3 != 0) for n in range(total)
    ]
    out.append(Shape("b_history_300", 300, _chunks(history, 1000)))
    count = max(100_000, growth)
    backfill: list[Item] = [(0, now_ms - (count - n) * 2 * MIN, n % 2 == 0) for n in range(count)]
    out.append(Shape("c_backfill_one", 1, _chunks(backfill, 1000)))
    bursts: list[list[Item]] = []
    for b in range(30):
        who = rng.sample(range(300), 10)
        base = now_ms - (30 - b) * 3 * MIN
        bursts.append(
            [
                (c, base + rng.randrange(100_000), rng.random() < 0.5)
                for c in who
                for _ in range(100)
            ]
        )
    out.append(Shape("d_bursts", 300, bursts))
    out.append(
        Shape(
            "e_new_contacts",
            0,
            [
                [
                    (f"+1555{b:02d}{n:05d}", now_ms - rng.randrange(60_000), True)
                    for n in range(1000)
                ]
                # 20 batches, as a's: at 5, the first (its statements prepared, its
                # tables analyzed from empty) weighed a fifth of the case, and three
                # runs in a row gave ratios of 0.50 to 0.91 at concurrency 4.
                for b in range(20)
            ],
        )
    )
    singles: list[list[Item]] = [[(n % 32, now_ms - (1000 - n), True)] for n in range(1000)]
    out.append(Shape("single", 32, singles))
    # 200 per worker, as ``single`` at concurrency 32; each contact's messages in order.
    shared: list[list[Item]] = [[(n % 32, now_ms - (6400 - n) * 10, True)] for n in range(6400)]
    out.append(Shape("single_one_tenant", 32, shared, one_tenant=True))
    return out


def _chunks(items: list[Item], size: int) -> list[list[Item]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# -- databases ------------------------------------------------------------------------------


async def fresh_database(backend: str, base_url: str, name: str, tmp: Path) -> Database:
    """A new, migrated database for one case."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp / (name + '.db')}"
    else:
        admin = await asyncpg.connect(base_url + "/postgres")
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        url = f"{base_url}/{name}"
    settings = Settings(database_url=url, database_pool_size=40)
    await migrate(settings)
    return Database(settings)


async def drop_database(db: Database, backend: str, base_url: str, name: str) -> None:
    """Dispose of a case's database (PostgreSQL: dropped)."""
    await db.dispose()
    if backend == "postgresql":
        admin = await asyncpg.connect(base_url + "/postgres")
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def tenant(db: Database, contacts: int, now_ms: int) -> tuple[str, list[str]]:
    """A user and its contacts, made by the service (not timed)."""

    async def work(conn: AsyncConnection) -> tuple[str, list[str]]:
        user = await auth_service.create_user(conn, name="shape", timeout_minutes=60, now_ms=now_ms)
        made = []
        for n in range(contacts):
            c = await contacts_service.create_contact(
                conn,
                user_id=user.user_id,
                fields=ContactIn(email=f"c{n}@example.com"),
                now_ms=now_ms,
            )
            made.append(c.id)
        return user.user_id, made

    return await db.run_write(work)


# -- ours -----------------------------------------------------------------------------------


def request_bodies(contacts: list[str], batch: list[Item]) -> list[MessageIn]:
    """A batch as the route receives it: the request's parsed body (what FastAPI hands
    over), built before the clock starts, as the floor's rows are."""
    return [
        MessageIn(
            contactId=contacts[who] if isinstance(who, int) else None,
            contact=ContactFields(phoneNumber=who) if isinstance(who, str) else None,
            direction="inbound" if inbound else "outbound",
            timestamp=ts,
            content="hello there",
            externalId=random_external_id(),
        )
        for who, ts, inbound in batch
    ]


def random_external_id() -> str:
    """An externalId as channels send them (WhatsApp's, Twilio's: random), for ours and
    the floor alike: not one of our ids, which begin with the time they were made and
    would fill the externalId index in order."""
    return secrets.token_urlsafe(15)  # 20 characters


async def ours(
    db: Database,
    user_id: str,
    bodies: list[MessageIn],
    now_ms: int,
    group_commit: GroupCommit | None = None,
) -> None:
    """One request through the service's write path, from its parsed body: the route's
    checks and normalisation (``prepare_message``), then ``store_messages`` (a single
    message's route: through ``group_commit``)."""
    items = [messages_service.prepare_message(body, now_ms=now_ms) for body in bodies]
    if group_commit is not None:
        await group_commit.store(user_id, items, now_ms)
        return
    await messages_service.store_messages(db, user_id=user_id, items=items, now_ms=now_ms)


# -- the floor: the same rows, hand-written set-based SQL -----------------------------------


@dataclass
class FloorRows:
    """Per batch: the contacts to insert, the sessions it inserts or changes (each as it
    stands once the batch is stored) and its messages."""

    contacts: list[list[tuple[str, str]]] = field(default_factory=list)
    sessions: list[list[tuple[Any, ...]]] = field(default_factory=list)
    messages: list[list[tuple[Any, ...]]] = field(default_factory=list)


SESSION_COLUMNS = (
    "id", "contact_id", "start_ms", "last_ms", "expires_ms", "activity_ms", "message_count",
    "inbound_count", "outbound_count", "first_inbound_ms", "first_response_ms",
    "reply_sum_ms", "reply_count", "unanswered_since_ms",
)  # fmt: skip
"""The columns of a floor's session row, in its tuples' order."""


@dataclass
class _Seg:
    """A session of the floor: its id, its messages ``(ts, id, direction)`` in order, and
    its inbound count and figures (kept as messages are appended: a back-fill's one
    session grows to 1,000,000 messages)."""

    id: str
    keys: list[tuple[int, str, str]]
    inbound: int = 0
    figures: Figures = EMPTY_FIGURES

    @classmethod
    def of(cls, sid: str, keys: list[tuple[int, str, str]]) -> _Seg:
        """A session of these ordered messages."""
        seg = cls(sid, [])
        seg.append(keys)
        return seg

    def append(self, keys: list[tuple[int, str, str]]) -> None:
        """Add ordered messages that come after every message it holds."""
        self.keys.extend(keys)
        for ts, _mid, direction in keys:
            inbound = direction == "inbound"
            self.inbound += inbound
            self.figures = extend_figures(self.figures, ts, inbound=inbound)


def _cut(keys: list[tuple[int, str, str]], timeout_ms: int) -> list[list[tuple[int, str, str]]]:
    """Ordered messages cut where the gap reaches the timeout (the rule, constant timeout,
    no closes)."""
    groups = [[keys[0]]]
    for key in keys[1:]:
        if key[0] - groups[-1][-1][0] >= timeout_ms:
            groups.append([])
        groups[-1].append(key)
    return groups


def _session_row(seg: _Seg, contact_id: str, timeout_ms: int) -> tuple[Any, ...]:
    last = seg.keys[-1][0]
    return (
        seg.id, contact_id, seg.keys[0][0], last, last + timeout_ms, last, len(seg.keys),
        seg.inbound, len(seg.keys) - seg.inbound, *seg.figures,
    )  # fmt: skip


def floor_rows(shape: Shape, contacts: list[str], now_ms: int) -> FloorRows:
    """The rows each batch writes: its contacts and messages, and every session it creates
    or changes as that session stands once the batch is stored (start, last, counts,
    figures), which is what ours writes too.

    Writing each session's final state at every batch instead would make most of the
    floor's updates rewrite unchanged values, which PostgreSQL does as HOT updates that
    touch no index (87 % of shape a's, against none of ours): not the same work. The
    floor does not merge sessions (no shape needs it; it raises if one would)."""
    timeout = DEFAULT_TIMEOUT_MS
    phone_ids: dict[str, str] = {}
    state: dict[str, list[_Seg]] = {}
    out = FloorRows()
    for batch in shape.batches:
        new_contacts: list[tuple[str, str]] = []
        arrived: dict[str, list[tuple[int, str, str]]] = {}
        for who, ts, inbound in batch:
            if isinstance(who, str):
                if who not in phone_ids:
                    phone_ids[who] = ids.new_id()
                    new_contacts.append((phone_ids[who], who))
                cid = phone_ids[who]
            else:
                cid = contacts[who]
            key = (ts, ids.new_id(), "inbound" if inbound else "outbound")
            arrived.setdefault(cid, []).append(key)
        sessions: list[tuple[Any, ...]] = []
        messages: list[tuple[Any, ...]] = []
        for cid, keys in arrived.items():
            keys.sort()
            for seg, new in _place(state.setdefault(cid, []), keys, timeout):
                sessions.append(_session_row(seg, cid, timeout))
                messages.extend(
                    (mid, cid, seg.id, direction, ts, random_external_id())
                    for ts, mid, direction in new
                )
        out.contacts.append(new_contacts)
        out.sessions.append(sessions)
        out.messages.append(messages)
    return out


def _place(
    segs: list[_Seg], keys: list[tuple[int, str, str]], timeout: int
) -> list[tuple[_Seg, list[tuple[int, str, str]]]]:
    """Add one contact's ordered new messages to its sessions ``segs`` (in order, changed
    in place); return each session created or changed with the new messages it holds."""
    if not segs or keys[0] > segs[-1].keys[-1]:
        # After every stored message (history, back-fill, bursts): only the tail changes.
        groups = _cut(keys, timeout)
        changed = []
        if segs and groups[0][0][0] - segs[-1].keys[-1][0] < timeout:
            segs[-1].append(groups[0])
            changed.append((segs[-1], groups.pop(0)))
        for group in groups:
            segs.append(_Seg.of(ids.new_id(), group))
            changed.append((segs[-1], group))
        return changed
    # Among the stored messages (random arrival): re-cut the sessions within a timeout.
    lo, hi = keys[0][0] - timeout, keys[-1][0] + timeout
    first = next((i for i, seg in enumerate(segs) if seg.keys[-1][0] >= lo), len(segs))
    end = first
    while end < len(segs) and segs[end].keys[0][0] <= hi:
        end += 1
    window = segs[first:end]
    fresh = set(keys)
    placed = []
    for group in _cut(sorted([k for seg in window for k in seg.keys] + keys), timeout):
        holds = [seg for seg in window if group[0] <= seg.keys[0] <= group[-1]]
        if len(holds) > 1:
            raise ValueError("the floor does not merge sessions")
        placed.append(_Seg.of(holds[0].id if holds else ids.new_id(), group))
    segs[first:end] = placed
    changed = [(seg, [k for k in seg.keys if k in fresh]) for seg in placed]
    return [(seg, new) for seg, new in changed if new]


_FLOOR_PG = [
    """INSERT INTO contacts (user_id, id, phone, is_bot_active, do_not_disturb, created_at_ms,
           updated_at_ms)
       SELECT $1, c.id, c.phone, true, false, $2, $2
       FROM unnest($3::varchar[], $4::varchar[]) AS c(id, phone)""",
    """INSERT INTO sessions (user_id, id, contact_id, start_ms, last_ms, expires_ms,
           activity_ms, message_count, inbound_count, outbound_count, first_inbound_ms,
           first_response_ms, reply_sum_ms, reply_count, unanswered_since_ms, created_at_ms,
           updated_at_ms)
       SELECT $1, s.*, $2, $2 FROM unnest($3::varchar[], $4::varchar[], $5::bigint[],
           $6::bigint[], $7::bigint[], $8::bigint[], $9::int[], $10::int[], $11::int[],
           $12::bigint[], $13::bigint[], $14::bigint[], $15::int[], $16::bigint[]) AS s
       ON CONFLICT (user_id, id) DO UPDATE SET start_ms = excluded.start_ms,
           last_ms = excluded.last_ms, expires_ms = excluded.expires_ms,
           activity_ms = excluded.activity_ms, message_count = excluded.message_count,
           inbound_count = excluded.inbound_count, outbound_count = excluded.outbound_count,
           first_inbound_ms = excluded.first_inbound_ms,
           first_response_ms = excluded.first_response_ms,
           reply_sum_ms = excluded.reply_sum_ms, reply_count = excluded.reply_count,
           unanswered_since_ms = excluded.unanswered_since_ms,
           updated_at_ms = excluded.updated_at_ms""",
    """INSERT INTO messages (user_id, id, contact_id, session_id, direction, role, type,
           content, ts_ms, external_id, created_at_ms)
       SELECT $1, m.id, m.contact_id, m.session_id, m.direction, 'user', 'text',
           'hello there', m.ts_ms, m.external_id, $2
       FROM unnest($3::varchar[], $4::varchar[], $5::varchar[], $6::varchar[], $7::bigint[],
           $8::varchar[]) AS m(id, contact_id, session_id, direction, ts_ms, external_id)""",
]


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    return [[r[i] for r in rows] for i in range(width)]


class _FloorConnection(asyncpg.Connection):  # type: ignore[misc]
    """A connection of the floor's pool given back as it is: asyncpg's pool otherwise
    resets each one it gets back (``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN
    *; RESET ALL``), a round trip per transaction that the floor's statements never need
    (they take no advisory lock, open no cursor, listen to nothing and set nothing) and
    that ours does not pay: ~0.1 ms of a single message's ~1 ms."""

    def get_reset_query(self) -> str:
        return ""


async def floor_pg(pool: Any, user_id: str, rows: FloorRows, b: int, now_ms: int) -> None:
    """One batch of the floor on PostgreSQL: one transaction, three set-based statements."""
    async with pool.acquire() as conn, conn.transaction():
        if rows.contacts[b]:
            await conn.execute(_FLOOR_PG[0], user_id, now_ms, *_columns(rows.contacts[b], 2))
        if rows.sessions[b]:
            await conn.execute(
                _FLOOR_PG[1], user_id, now_ms, *_columns(rows.sessions[b], len(SESSION_COLUMNS))
            )
        await conn.execute(_FLOOR_PG[2], user_id, now_ms, *_columns(rows.messages[b], 6))


_FLOOR_SQLITE = [
    "INSERT INTO contacts (user_id, id, phone, is_bot_active, do_not_disturb, created_at_ms, "
    "updated_at_ms) VALUES (?, ?, ?, 1, 0, ?, ?)",
    "INSERT INTO sessions (user_id, id, contact_id, start_ms, last_ms, expires_ms, activity_ms, "
    "message_count, inbound_count, outbound_count, first_inbound_ms, first_response_ms, "
    "reply_sum_ms, reply_count, unanswered_since_ms, created_at_ms, updated_at_ms) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (user_id, id) DO UPDATE SET start_ms = excluded.start_ms, "
    "last_ms = excluded.last_ms, expires_ms = excluded.expires_ms, "
    "activity_ms = excluded.activity_ms, message_count = excluded.message_count, "
    "inbound_count = excluded.inbound_count, outbound_count = excluded.outbound_count, "
    "first_inbound_ms = excluded.first_inbound_ms, "
    "first_response_ms = excluded.first_response_ms, reply_sum_ms = excluded.reply_sum_ms, "
    "reply_count = excluded.reply_count, unanswered_since_ms = excluded.unanswered_since_ms, "
    "updated_at_ms = excluded.updated_at_ms",
    "INSERT INTO messages (user_id, id, contact_id, session_id, direction, role, type, content, "
    "ts_ms, external_id, created_at_ms) VALUES (?, ?, ?, ?, ?, 'user', 'text', 'hello there', "
    "?, ?, ?)",
]


async def floor_sqlite(db: Database, user_id: str, rows: FloorRows, b: int, now_ms: int) -> None:
    """One batch of the floor on SQLite: one transaction, ``executemany`` per table on the
    driver, the way ours writes its rows (``db.sqlite_executemany``)."""

    async def work(conn: AsyncConnection) -> None:
        await sqlite_executemany(
            conn,
            _FLOOR_SQLITE[0],
            [(user_id, c, p, now_ms, now_ms) for c, p in rows.contacts[b]],
        )
        await sqlite_executemany(
            conn, _FLOOR_SQLITE[1], [(user_id, *r, now_ms, now_ms) for r in rows.sessions[b]]
        )
        await sqlite_executemany(
            conn,
            _FLOOR_SQLITE[2],
            [(user_id, m[0], m[1], m[2], m[3], m[4], m[5], now_ms) for m in rows.messages[b]],
        )

    await db.run_write(work)


# -- running a case -------------------------------------------------------------------------


async def run_case(
    backend: str, shape: Shape, base_url: str, tmp: Path, now_ms: int, workers: int
) -> dict[str, Any]:
    """Ours and the floor for one shape, backend and concurrency."""
    messages = sum(len(b) for b in shape.batches)
    result: dict[str, Any] = {
        "shape": shape.name,
        "backend": backend,
        "workers": workers,
        "messages": messages,
    }
    for side in ("ours", "floor"):
        result[side] = await _run_side(side, backend, shape, base_url, tmp, now_ms, workers)
    result["ratio"] = round(result["ours"]["msg_per_s"] / result["floor"]["msg_per_s"], 3)
    ms = result["ours"]["batch_ms"]
    if shape.name in GROWTH_SHAPES and len(ms) >= 30:
        # Growth: the last 10 batches against the first 10 after 10 of warm-up.
        result["growth"] = round(statistics.median(ms[-10:]) / statistics.median(ms[10:20]), 3)
    return result


async def _run_side(
    side: str, backend: str, shape: Shape, base_url: str, tmp: Path, now_ms: int, workers: int
) -> dict[str, Any]:
    name = f"{DB_PREFIX}_{shape.name}_{side}_{workers}"
    db = await fresh_database(backend, base_url, name, tmp)
    tenants = [
        await tenant(db, shape.contacts, now_ms - 400 * 24 * 60 * MIN)
        for _ in range(1 if shape.one_tenant else workers)
    ]
    if shape.one_tenant:  # the workers share the tenant and split its batches
        plan = [(b % workers, b) for b in range(len(shape.batches))]
    else:  # every worker runs the whole shape for its own tenant, its batches in order
        plan = [(w, b) for b in range(len(shape.batches)) for w in range(workers)]
    rows = [floor_rows(shape, contacts, now_ms) for _user, contacts in tenants]
    # The single-message route's way (messages.api): concurrent requests of a tenant share
    # a transaction.
    group_commit = GroupCommit(db) if shape.name.startswith("single") else None
    pool = None
    if side == "floor" and backend == "postgresql":
        pool = await asyncpg.create_pool(
            f"{base_url}/{name}",
            min_size=workers,
            max_size=workers,
            connection_class=_FloorConnection,
        )

    if side == "ours" and backend == "postgresql":
        await open_connections(db, workers)
    # The harness holds every shape's items (~10^6 objects) for the whole run, which a
    # serving process does not (it freezes its start-up objects,
    # app.freeze_startup_objects): out of the garbage collector's full collections too,
    # and the collector's thresholds the serving process sets.
    freeze_startup_objects()

    def prepare(k: int) -> list[MessageIn] | None:
        w, b = plan[k]
        if side != "ours":
            return None
        return request_bodies(tenants[0 if shape.one_tenant else w][1], shape.batches[b])

    async def one(k: int, bodies: list[MessageIn] | None) -> None:
        w, b = plan[k]
        t = 0 if shape.one_tenant else w
        user_id, _contacts = tenants[t]
        if bodies is not None:
            await ours(db, user_id, bodies, now_ms, group_commit)
        elif pool is not None:
            await floor_pg(pool, user_id, rows[t], b, now_ms)
        else:
            await floor_sqlite(db, user_id, rows[t], b, now_ms)

    elapsed, times = await _in_order(plan, prepare, one, workers)
    await db.statistics.settled()  # a check in flight belongs to this case
    # Ours: the service's ANALYZE runs (planner_stats) and their seconds, by table.
    analyzed = {
        t: [n, round(db.statistics.analyze_seconds[t], 3)]
        for t, n in db.statistics.analyzed.items()
    }
    if pool is not None:
        await pool.close()
    await drop_database(db, backend, base_url, name)
    sent = sum(len(b) for b in shape.batches) * (1 if shape.one_tenant else workers)
    return {
        "msg_per_s": round(sent / elapsed, 1),
        "p50_ms": round(statistics.median(times), 2),
        "max_ms": round(max(times), 2),  # a stall shows here at any concurrency
        "batch_ms": [round(t, 2) for t in times] if workers == 1 else [],
        "analyzed": analyzed,
    }


async def open_connections(db: Database, workers: int) -> None:
    """Open ``workers`` connections of each of the service's pools before the clock
    starts, as the floor's pool opens its own: a serving process's pools are open, and
    opening one costs a backend start (at concurrency 32 on a short case, a tenth of the
    time). Both pools keep them (the probe pool's kept connections, the main pool's
    size), so the case runs on open connections, as the floor does."""
    opened = 0
    all_open = asyncio.Event()
    release = asyncio.Event()

    async def hold(probes: bool) -> None:
        nonlocal opened
        async with db.read(probes=probes) as conn:
            await conn.exec_driver_sql("SELECT 1")  # through SQLAlchemy: kept all the same
            opened += 1
            if opened == 2 * workers:
                all_open.set()
            await release.wait()

    tasks = [asyncio.create_task(hold(p)) for p in (False, True) for _ in range(workers)]
    await all_open.wait()
    release.set()
    await asyncio.gather(*tasks)


async def _in_order(
    plan: list[tuple[int, int]],
    prepare: Callable[[int], P],
    one: Callable[[int, P], Awaitable[None]],
    workers: int,
) -> tuple[float, list[float]]:
    """Each worker runs its own batches in order; the workers run side by side. What
    ``prepare`` makes for a batch (the request bodies) is made off the clock: just before
    the batch on one worker (the seconds are the batches' own), all before the clock
    starts at concurrency (growth runs are sequential: their batches are not all held)."""
    times: list[float] = []
    ready = {k: prepare(k) for k in range(len(plan))} if workers > 1 else {}

    async def worker(w: int) -> None:
        for k, (ww, _b) in enumerate(plan):
            if ww == w:
                prepared = ready.pop(k) if workers > 1 else prepare(k)
                t = time.perf_counter()
                await one(k, prepared)
                times.append((time.perf_counter() - t) * 1000)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(workers)))
    if workers == 1:
        return sum(times) / 1000, times
    return time.perf_counter() - t0, times


def table(results: list[dict[str, Any]]) -> str:
    """The closing table: shape × backend × concurrency → msg/s, floor, ratio (growth)."""
    lines = [
        "| shape | backend | concurrency | ours msg/s | floor msg/s | ratio | p50 ms ours/floor"
        " | growth (last 10 / first 10) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        lines.append(
            f"| {r['shape']} | {r['backend']} | {r['workers']} | {r['ours']['msg_per_s']:,.0f} "
            f"| {r['floor']['msg_per_s']:,.0f} | {r['ratio']:.2f} | {r['ours']['p50_ms']:.1f} / "
            f"{r['floor']['p50_ms']:.1f} | {r.get('growth', '')} |"
        )
    return "\n".join(lines)


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """ms per batch against messages stored, one line per shape and backend (c=1)."""
    try:
        import matplotlib  # type: ignore[import-not-found,unused-ignore]

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        print("matplotlib missing: no plot")
        return
    fig, ax = plt.subplots(figsize=(9, 5))
    for r in results:
        ms = r["ours"]["batch_ms"]
        if r["workers"] != 1 or len(ms) < 10:
            continue
        per = r["messages"] / len(ms)
        ax.plot([per * (i + 1) for i in range(len(ms))], ms, label=f"{r['shape']} {r['backend']}")
    ax.set_xlabel("messages stored")
    ax.set_ylabel("ms per batch of 1,000")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.set_title("Ingest: ms per batch as the database grows (fresh database per line)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


async def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run every case; print the table; write the results and the growth plot."""
    global DB_PREFIX
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432")
    p.add_argument("--backends", default="postgresql,sqlite")
    p.add_argument("--shapes", default="")
    p.add_argument("--growth", type=int, default=0)
    p.add_argument("--concurrency", default="1,4")
    p.add_argument("--out", default="")
    p.add_argument("--db-prefix", default=DB_PREFIX, help="names of the databases created")
    p.add_argument("--plot", default="", help="also draw the growth plot here")
    p.add_argument(
        "--merge",
        action="store_true",
        help="replace these cases in the newest results file instead of writing a new one",
    )
    args = p.parse_args(argv)
    DB_PREFIX = args.db_prefix
    now_ms = int(time.time() * 1000)
    wanted = [s for s in args.shapes.split(",") if s]
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for shape in shapes(now_ms, args.growth, random.Random(1)):
            if wanted and shape.name not in wanted:
                continue
            for backend in args.backends.split(","):
                for workers in [int(c) for c in args.concurrency.split(",")]:
                    if shape.one_tenant:
                        if workers == 1:
                            continue  # the same as ``single``
                        workers = 32  # one writer at a time on SQLite, but grouped
                    elif workers > 1 and backend == "sqlite":
                        continue  # one writer at a time: concurrency adds nothing
                    if shape.name == "single" and workers > 1:
                        workers = 32
                    # At concurrency, each worker's tenant gets the shape's first batches.
                    shape_c = shape
                    if workers > 1 and not shape.one_tenant:
                        keep = 200 if shape.name == "single" else 25
                        shape_c = Shape(shape.name, shape.contacts, shape.batches[:keep])
                    r = await run_case(
                        backend, shape_c, args.database_url, Path(tmp), now_ms, workers
                    )
                    r["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                    results.append(r)
                    print(
                        f"{r['shape']:>15} {backend:>10} c={workers:<2} ours "
                        f"{r['ours']['msg_per_s']:>9,.0f} msg/s floor "
                        f"{r['floor']['msg_per_s']:>9,.0f} ratio {r['ratio']:.2f} "
                        f"growth {r.get('growth', '-')}",
                        flush=True,
                    )
    print(table(results))
    out = Path(args.out or HERE / "results" / f"ingest-shapes-{time.strftime('%Y-%m-%d')}.json")
    if args.merge:
        earlier = sorted((HERE / "results").glob("ingest-shapes-*.json"))
        if earlier:
            out = earlier[-1]
            ran = {(r["shape"], r["backend"], r["workers"]) for r in results}
            kept = [
                r
                for r in json.loads(await asyncio.to_thread(out.read_text))
                if (r["shape"], r["backend"], r["workers"]) not in ran
            ]
            results = sorted(
                kept + results,
                key=lambda r: (r["shape"], r["backend"] != "postgresql", r["workers"]),
            )
    await asyncio.to_thread(out.write_text, json.dumps(results))
    print(f"wrote {out}")
    if args.plot:
        plot(results, Path(args.plot))
    return results


def run(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """:func:`main` on the loop the service's processes run (cli.serve: uvicorn's
    loop="uvloop"), for ours and the floor alike; the standard loop where uvloop does not
    exist."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main(argv))
    return uvloop.run(main(argv))


if __name__ == "__main__":
    run()
