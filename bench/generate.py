"""Synthetic benchmark data, stored exactly as the service would store it.

    python bench/generate.py --scale small|medium|large --database-url URL [--seed N]

One *bench tenant* (the one the load driver queries) with Zipf-like activity per contact,
plus many small tenants around it:

| scale  | bench tenant contacts | messages (bench tenant) | sessions (≈) | small tenants |
| ------ | --------------------- | ----------------------- | ------------ | ------------- |
| small  | 300                   | 10k                     | 1k           | 10            |
| medium | 10k                   | 1M                      | 100k         | 100           |
| large  | 100k                  | 10M                     | 1M           | 1,000         |

Each contact gets a number of conversations drawn from a Zipf-like law (a few heavy
contacts, a long tail of one-off ones); each conversation is a burst of messages (gaps of
about a minute) started at a time of day drawn from a day/night cycle, a few of them
explicitly closed, and about one contact in a hundred talking right now (sessions open at
load time). Sessions are then cut offline per contact with the service's own rule
(:func:`chatsessions.sessions.rule.segment`, constant 60-minute timeout), and the
``sessions`` rows (span, expiry, activity, counters) are derived from its segments, so the
rows are those the service would have written had the messages arrived one by one.

Deterministic: the same ``--seed`` and ``--now-ms`` give the same rows (ids included);
``--now-ms`` defaults to the current minute, and is recorded. Contacts are generated from
per-contact random streams, so the data does not depend on ``--jobs``.

PostgreSQL: the schema comes from the service's migrations; secondary indexes, unique
constraints and foreign keys are dropped, the rows are loaded with ``COPY`` (asyncpg
``copy_records_to_table``) by ``--jobs`` processes, then every index and constraint is
rebuilt from its saved definition (same names, same definitions) and the tables are
vacuumed and analysed. SQLite (small scales): ``executemany`` in one transaction.

A database already loaded with the same scale and seed (table ``bench_meta``) is reused
unless its data is older than ``--max-age-hours`` or ``--force`` is given. The bench
tenant's user id, API key and heaviest contact go to ``<results>/<scale>-tenant.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import sqlite3
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np  # type: ignore[import-not-found,unused-ignore]

from chatsessions.auth.service import hash_key
from chatsessions.config import Settings, normalise_database_url
from chatsessions.db import migrate
from chatsessions.ids import API_KEY_RE, ID_RE
from chatsessions.sessions.figures import figures_of
from chatsessions.sessions.rule import TimeoutHistory, segment
from chatsessions.tables import MIN_TIME_MS

__all__ = ["SCALES", "Scale", "main"]

RESULTS_DIR = Path(__file__).parent / "results"
TIMEOUT_MS = 60 * 60_000
HISTORY = TimeoutHistory.constant(TIMEOUT_MS)
DAY_MS = 86_400_000
MINUTE_MS = 60_000
ALPHABET = np.frombuffer(
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", dtype=np.uint8
)
# Relative activity per hour of day (UTC): quiet nights, busy afternoons.
HOUR_WEIGHTS = np.array(
    [
        0.15,
        0.1,
        0.08,
        0.07,
        0.08,
        0.15,
        0.3,
        0.55,
        0.8,
        0.95,
        1.0,
        1.0,
        0.95,
        1.0,
        1.0,
        0.95,
        0.9,
        0.85,
        0.8,
        0.75,
        0.65,
        0.5,
        0.35,
        0.25,
    ]
)
HOUR_P = HOUR_WEIGHTS / HOUR_WEIGHTS.sum()


@dataclass(frozen=True)
class Scale:
    """Sizes of one scale."""

    contacts: int
    messages: int  # of the bench tenant (target; the exact count is reported)
    span_days: int
    small_tenants: int
    small_tenant_contacts: int = 5
    small_tenant_messages: int = 60
    max_conversations: int = 1500  # per contact, so that a heavy contact still fits the span


SCALES = {
    "small": Scale(contacts=300, messages=10_000, span_days=7, small_tenants=10),
    "medium": Scale(contacts=10_000, messages=1_000_000, span_days=90, small_tenants=100),
    "large": Scale(contacts=100_000, messages=10_000_000, span_days=180, small_tenants=1000),
}
INGEST_CONTACTS = 2000
MEAN_BURST = 10  # messages per conversation (geometric)
ZIPF_S = 0.6

FIRST = [
    "Ana",
    "Ben",
    "Chloé",
    "David",
    "Eva",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jonas",
    "Kofi",
    "Lena",
    "Mateo",
    "Nadia",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sven",
    "Tariq",
    "Uma",
    "Victor",
    "Wen",
    "Ximena",
    "Yusuf",
    "Zoë",
    None,
]
LAST = [
    "Smith",
    "García",
    "Müller",
    "Rossi",
    "Kowalski",
    "Nguyen",
    "Okafor",
    "Silva",
    "Jensen",
    "Haddad",
    "Tanaka",
    "Dubois",
    "Novak",
    "Costa",
    "Ivanova",
    None,
]
CHANNELS = ["whatsapp", "whatsapp", "whatsapp", "instagram", "messenger", "sms", "custom"]
INBOUND = [
    "Hi! Is the blue one still in stock?",
    "What are your opening hours on Saturday?",
    "I ordered last week and nothing has arrived yet, order #{n}.",
    "Can I change my booking to Friday?",
    "Thanks, that's perfect.",
    "How much is delivery to Rotterdam?",
    "ok",
    "Do you ship abroad?",
    "Is there a discount for students?",
    "My code {n} doesn't work at checkout",
    "Can I talk to a human please?",
    "Great, see you then!",
    "What sizes do you have?",
    "I'd like a refund for my last order.",
    "Where can I park near the shop?",
]
OUTBOUND = [
    "Hello! Thanks for reaching out. How can I help you today?",
    "Yes, it's in stock in sizes S to XL. Shall I reserve one for you?",
    "We're open 9:00–17:00 on Saturdays.",
    "I've checked order #{n}: it ships today and should arrive within two working days.",
    "Done! Your booking is now on Friday at 14:00.",
    "Delivery is free above €50, otherwise €4.95.",
    "Let me connect you with a colleague.",
    "You're welcome! Anything else I can do for you?",
    "Here's the link to the size guide.",
    "I've started the refund; you'll see it within 5 days.",
]


def ids_from(rng: np.random.Generator, n: int, length: int = 20) -> list[str]:
    """``n`` random base62 strings of ``length`` characters (the shape of ``ids.new_id``)."""
    if n == 0:
        return []
    raw = ALPHABET[rng.integers(0, 62, size=(n, length), dtype=np.uint8)].tobytes().decode()
    return [raw[i : i + length] for i in range(0, n * length, length)]


def zipf_conversations(scale: Scale, rng: np.random.Generator) -> np.ndarray:
    """Conversations per contact (rank order: contact 0 is the heaviest), summing to about
    ``messages / MEAN_BURST``, each at least 1 and at most ``max_conversations``."""
    target = scale.messages / MEAN_BURST
    weights = 1.0 / np.arange(1, scale.contacts + 1) ** ZIPF_S
    factor = target / weights.sum()
    for _ in range(30):  # rescale until the cap no longer eats the total
        counts = np.clip(weights * factor, 1, scale.max_conversations)
        factor *= target / counts.sum()
    frac = np.clip(weights * factor, 1, scale.max_conversations)
    base = np.floor(frac)
    counts_out: np.ndarray = (base + (rng.random(scale.contacts) < frac - base)).astype(np.int64)
    return counts_out


# -- one contact's rows -------------------------------------------------------------------


@dataclass
class ContactRows:
    """The rows of one contact: its contact row, sessions and messages."""

    contact: tuple[Any, ...]
    sessions: list[tuple[Any, ...]]
    messages: list[tuple[Any, ...]]


CONTACT_COLUMNS = (
    "user_id",
    "id",
    "first_name",
    "last_name",
    "phone",
    "email",
    "channel",
    "external_id",
    "instagram_id",
    "is_bot_active",
    "do_not_disturb",
    "created_at_ms",
    "updated_at_ms",
)
SESSION_COLUMNS = (
    "user_id",
    "id",
    "contact_id",
    "start_ms",
    "last_ms",
    "expires_ms",
    "closed_at_ms",
    "activity_ms",
    "message_count",
    "inbound_count",
    "outbound_count",
    "created_at_ms",
    "updated_at_ms",
    "first_inbound_ms",
    "first_response_ms",
    "reply_sum_ms",
    "reply_count",
    "unanswered_since_ms",
)
MESSAGE_COLUMNS = (
    "user_id",
    "id",
    "contact_id",
    "session_id",
    "direction",
    "role",
    "type",
    "content",
    "media_url",
    "ts_ms",
    "external_id",
    "created_at_ms",
)


def contact_rows(
    *,
    seed: int,
    tenant: int,
    index: int,
    user_id: str,
    contact_id: str,
    conversations: int,
    span_days: int,
    now_ms: int,
) -> ContactRows:
    """Generate one contact, its conversations, and cut them into sessions with the rule."""
    rng = np.random.default_rng([seed, tenant, index])
    span_start = now_ms - span_days * DAY_MS
    if conversations == 0:
        created = now_ms - span_days * DAY_MS
        contact: tuple[Any, ...] = (
            user_id,
            contact_id,
            None,
            None,
            f"+1557{tenant:04d}{index:06d}",
            None,
            "custom",
            f"ingest:{index}",
            None,
            True,
            False,
            created,
            created,
        )
        return ContactRows(contact, [], [])
    # Conversation start times: a day, then an hour of that day on the day/night cycle.
    days = rng.integers(0, span_days, size=conversations)
    hours = rng.choice(24, size=conversations, p=HOUR_P)
    within = rng.integers(0, 3_600_000, size=conversations)
    midnight0 = span_start - span_start % DAY_MS
    starts = midnight0 + days * DAY_MS + hours * 3_600_000 + within
    if rng.random() < 0.01 or (tenant == 0 and index < 3):
        # Talking right now: a conversation that started within the last 50 minutes.
        starts[-1] = now_ms - int(rng.integers(1, 50 * MINUTE_MS))
    starts = np.sort(np.clip(starts, span_start, now_ms - 1))
    sizes = rng.geometric(1.0 / MEAN_BURST, size=conversations)
    total = int(sizes.sum())
    gaps = np.minimum(rng.exponential(80_000, size=total).astype(np.int64) + 1_000, 25 * MINUTE_MS)
    first_of_burst = np.zeros(total, dtype=bool)
    first_of_burst[np.concatenate(([0], np.cumsum(sizes)[:-1]))] = True
    burst_start = np.repeat(starts, sizes)
    gaps[first_of_burst] = 0
    # Offsets within each burst: cumulative gaps, restarted at each burst.
    cum = np.cumsum(gaps)
    cum -= np.repeat(cum[first_of_burst], sizes)
    ts = burst_start + cum
    keep = ts <= now_ms
    ts = ts[keep]
    n = int(ts.size)
    msg_ids = ids_from(rng, n)
    ext_ids = ids_from(rng, n, 24)
    dir_draw = rng.random(n)
    kind_draw = rng.random(n)
    text_draw = rng.integers(0, 1 << 30, size=n)
    # Explicit closes: 3% of conversations, a few minutes after their last message.
    ends = np.repeat(np.arange(conversations), sizes)[keep]
    last_of_conv = np.r_[ends[1:] != ends[:-1], True] if n else np.array([], dtype=bool)
    close_draw = rng.random(n)
    close_after = rng.integers(MINUTE_MS, 30 * MINUTE_MS, size=n)
    pick = last_of_conv & (close_draw < 0.03) & (ts + close_after <= now_ms)
    closes = (ts[pick] + close_after[pick]).tolist()

    first = FIRST[index % len(FIRST)] if rng.random() < 0.9 else None
    last = LAST[(index // 7) % len(LAST)] if rng.random() < 0.8 else None
    channel = CHANNELS[int(rng.integers(0, len(CHANNELS)))]
    phone = f"+1555{tenant:03d}{index:07d}" if tenant < 1000 else f"+1556{tenant:04d}{index:06d}"
    email = (
        f"{(first or 'c').lower()}.{index}@t{tenant}.example.com" if rng.random() < 0.5 else None
    )
    external = f"{channel}:{index}" if channel in ("instagram", "messenger", "custom") else None
    first_ts = int(ts[0]) if n else now_ms
    created = first_ts - int(rng.integers(0, DAY_MS))
    contact = (
        user_id,
        contact_id,
        first,
        last,
        phone,
        email,
        channel,
        external,
        external if channel == "instagram" else None,
        True,
        False,
        created,
        created,
    )

    # Directions: conversations open inbound; then the bot or an agent mostly answers.
    direction: list[str] = []
    prev = "outbound"
    opens = first_of_burst[keep].tolist()
    draws = dir_draw.tolist()
    for i in range(n):
        if opens[i]:
            d = "inbound"
        else:
            d = (
                ("outbound" if draws[i] < 0.6 else "inbound")
                if prev == "inbound"
                else ("inbound" if draws[i] < 0.6 else "outbound")
            )
        direction.append(d)
        prev = d
    kinds = kind_draw.tolist()
    texts = text_draw.tolist()
    by_id: dict[str, int] = {mid: i for i, mid in enumerate(msg_ids)}
    ts_list = ts.tolist()
    segments = segment(zip(ts_list, msg_ids, strict=True), closes, HISTORY)
    sessions: list[tuple[Any, ...]] = []
    messages: list[tuple[Any, ...]] = []
    sess_ids = ids_from(rng, len(segments))
    for seg, sid in zip(segments, sess_ids, strict=True):
        inbound = 0
        for t, mid in seg.messages:
            i = by_id[mid]
            d = direction[i]
            k = kinds[i]
            media = None
            if d == "inbound":
                inbound += 1
                role = "user"
                content = INBOUND[texts[i] % len(INBOUND)]
            else:
                role = "agent" if k > 0.88 else "assistant"
                content = OUTBOUND[texts[i] % len(OUTBOUND)]
            typ = "text"
            if k < 0.05:
                typ, media = "media", f"https://cdn.example.com/m/{mid}.jpg"
                content = None if k < 0.03 else "photo"
            elif k < 0.07 and d == "inbound":
                typ, content = "reaction", "👍"
            elif "{n}" in content:
                content = content.replace("{n}", str(texts[i] % 100_000))
            ext = f"wamid.{ext_ids[i]}" if d == "inbound" or k < 0.5 else None
            messages.append(
                (user_id, mid, contact_id, sid, d, role, typ, content, media, t, ext, t + 150)
            )
        count = len(seg.messages)
        figures = figures_of((t, direction[by_id[mid]] == "inbound") for t, mid in seg.messages)
        closed = seg.closed_at_ms
        last_ms = seg.last_ms
        activity = max(last_ms, closed) if closed is not None else last_ms
        sessions.append(
            (
                user_id,
                sid,
                contact_id,
                seg.start_ms,
                last_ms,
                HISTORY.expires(last_ms),
                closed,
                activity,
                count,
                inbound,
                count - inbound,
                seg.start_ms + 150,
                activity + 150,
                *figures,
            )
        )
    return ContactRows(contact, sessions, messages)


@dataclass(frozen=True)
class Tenant:
    """A tenant: its index (0 is the bench tenant), ids and key."""

    index: int
    user_id: str
    api_key: str
    key_id: str
    contact_ids: list[str]
    conversations: list[int]


def tenants(scale: Scale, seed: int) -> list[Tenant]:
    """Every tenant of the scale, with its contacts' ids and conversation counts."""
    out = []
    ingest = scale.small_tenants + 1
    for t in range(scale.small_tenants + 2):
        rng = np.random.default_rng([seed, t, 1 << 40])
        user_id, key_id = ids_from(rng, 2)
        api_key = "csk_" + ids_from(rng, 1, 40)[0]
        if t == 0:
            n = scale.contacts
            conv = zipf_conversations(scale, rng)
        elif t == ingest:
            # The ingest tenant: contacts without history, the target of the write
            # scenarios, so that they never change what the read scenarios see.
            n = min(scale.contacts, INGEST_CONTACTS)
            conv = np.zeros(n, dtype=np.int64)
        else:
            n = scale.small_tenant_contacts
            conv = np.maximum(1, rng.poisson(scale.small_tenant_messages / MEAN_BURST / n, size=n))
        out.append(Tenant(t, user_id, api_key, key_id, ids_from(rng, n), conv.tolist()))
    assert ID_RE.match(out[0].user_id) and API_KEY_RE.match(out[0].api_key)
    return out


def tenant_rows(
    scale: Scale, seed: int, now_ms: int, tenant_list: list[Tenant]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """users, api_keys and timeout_changes rows (hashing as ``auth.service``)."""
    users, keys, timeouts = [], [], []
    for t in tenant_list:
        created = now_ms - scale.span_days * DAY_MS - DAY_MS
        users.append((t.user_id, "bench tenant" if t.index == 0 else f"tenant {t.index}", created))
        keys.append((t.key_id, t.user_id, hash_key(t.api_key), t.api_key[:8], created, None))
        timeouts.append((t.user_id, MIN_TIME_MS, TIMEOUT_MS))
    return users, keys, timeouts


def shard_rows(
    scale: Scale, seed: int, now_ms: int, tenant_list: list[Tenant], shard: int, jobs: int
) -> Iterator[ContactRows]:
    """The contacts of one shard (contact number modulo ``jobs``), every tenant."""
    k = 0
    for t in tenant_list:
        for i, (cid, conv) in enumerate(zip(t.contact_ids, t.conversations, strict=True)):
            if k % jobs == shard:
                yield contact_rows(
                    seed=seed,
                    tenant=t.index,
                    index=i,
                    user_id=t.user_id,
                    contact_id=cid,
                    conversations=int(conv),
                    span_days=scale.span_days,
                    now_ms=now_ms,
                )
            k += 1


# -- PostgreSQL ----------------------------------------------------------------------------

TABLES = ("users", "api_keys", "timeout_changes", "contacts", "sessions", "messages")
BIG_TABLES = ("contacts", "sessions", "messages")
COPY_BATCH = 100_000


def pg_dsn(url: str) -> str:
    """asyncpg's DSN for a ``postgresql://`` URL in any of its forms."""
    return "postgresql://" + normalise_database_url(url).split("://", 1)[1]


async def ensure_database(url: str) -> None:
    """Create the database named by ``url`` if it does not exist."""
    import asyncpg  # type: ignore[import-untyped]

    dsn = pg_dsn(url)
    base, _, name = dsn.rpartition("/")
    name = name.split("?")[0]
    conn = await asyncpg.connect(base + "/postgres")
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


META_DDL = """CREATE TABLE IF NOT EXISTS bench_meta (
    scale text NOT NULL, seed bigint NOT NULL, now_ms bigint NOT NULL,
    complete boolean NOT NULL, info text NOT NULL)"""


async def bench_message_count(conn: Any, user_id: str) -> int:
    """Messages of the bench tenant (a changed count means the data is no longer as loaded)."""
    return int(await conn.fetchval("SELECT count(*) FROM messages WHERE user_id = $1", user_id))


async def pg_loaded(url: str, scale: str, seed: int) -> dict[str, Any] | None:
    """The recorded load of this scale and seed, if complete."""
    import asyncpg

    conn = await asyncpg.connect(pg_dsn(url))
    try:
        if not await conn.fetchval("SELECT to_regclass('bench_meta') IS NOT NULL"):
            return None
        row = await conn.fetchrow(
            "SELECT now_ms, info FROM bench_meta WHERE scale=$1 AND seed=$2 AND complete",
            scale,
            seed,
        )
        if row is None:
            return None
        info = {"now_ms": row["now_ms"], **json.loads(row["info"])}
        bench_user = tenants(SCALES[scale], seed)[0].user_id
        if info.get("bench_messages") != await bench_message_count(conn, bench_user):
            log("the bench tenant's messages changed since the load: reloading")
            return None
        return info
    finally:
        await conn.close()


async def saved_schema(
    conn: Any,
) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]], list[tuple[str, str, str]]]:
    """(keys to re-attach, indexes to re-create, foreign keys) of the big tables.

    Keys and indexes of ``contacts``, ``sessions`` and ``messages``; foreign keys from or to
    them (whatever tables the migrations have added since).
    """
    rows = await conn.fetch(
        """SELECT c.conrelid::regclass::text AS tbl, c.conname, c.contype::text AS contype,
                  pg_get_constraintdef(c.oid) AS def
             FROM pg_constraint c
            WHERE c.contype IN ('p', 'u', 'f')
              AND (c.conrelid = ANY($1::regclass[]) OR c.confrelid = ANY($1::regclass[]))""",
        list(BIG_TABLES),
    )
    constraints = [
        (r["tbl"], r["conname"], r["def"])
        for r in rows
        if r["contype"] in ("p", "u") and r["tbl"] in BIG_TABLES
    ]
    fks = [(r["tbl"], r["conname"], r["def"]) for r in rows if r["contype"] == "f"]
    names = {c[1] for c in constraints}
    idx = await conn.fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname='public' AND tablename = ANY($1)",
        list(BIG_TABLES),
    )
    plain = [(r["indexname"], r["indexdef"]) for r in idx if r["indexname"] not in names]
    # Unique/primary keys are rebuilt as a unique index, then attached by name.
    uniq = [(r["indexname"], r["indexdef"]) for r in idx if r["indexname"] in names]
    return constraints, plain + uniq, fks


async def pg_copy_shard(
    url: str, scale_name: str, seed: int, now_ms: int, shard: int, jobs: int
) -> tuple[int, int, int]:
    """Generate and COPY one shard's contacts, sessions and messages."""
    import asyncpg

    scale = SCALES[scale_name]
    tenant_list = tenants(scale, seed)
    conn = await asyncpg.connect(pg_dsn(url))
    await conn.execute("SET synchronous_commit = off")
    counts = [0, 0, 0]
    buf: dict[str, list[tuple[Any, ...]]] = {"contacts": [], "sessions": [], "messages": []}
    cols = {"contacts": CONTACT_COLUMNS, "sessions": SESSION_COLUMNS, "messages": MESSAGE_COLUMNS}

    async def flush(table: str) -> None:
        if buf[table]:
            await conn.copy_records_to_table(table, records=buf[table], columns=list(cols[table]))
            buf[table] = []

    try:
        for rows in shard_rows(scale, seed, now_ms, tenant_list, shard, jobs):
            buf["contacts"].append(rows.contact)
            buf["sessions"].extend(rows.sessions)
            buf["messages"].extend(rows.messages)
            counts[0] += 1
            counts[1] += len(rows.sessions)
            counts[2] += len(rows.messages)
            for table in ("messages", "sessions", "contacts"):
                if len(buf[table]) >= COPY_BATCH:
                    await flush(table)
        for table in ("contacts", "sessions", "messages"):
            await flush(table)
    finally:
        await conn.close()
    return counts[0], counts[1], counts[2]


def _shard_process(args: tuple[str, str, int, int, int, int]) -> tuple[int, int, int]:
    return asyncio.run(pg_copy_shard(*args))


async def _run_ddl(url: str, statements: list[str], jobs: int) -> None:
    """Run DDL statements on ``jobs`` connections at once (index builds in parallel)."""
    import asyncpg

    queue = list(statements)

    async def worker() -> None:
        conn = await asyncpg.connect(pg_dsn(url))
        await conn.execute("SET maintenance_work_mem = '1GB'")
        await conn.execute("SET max_parallel_maintenance_workers = 0")
        try:
            while queue:
                stmt = queue.pop(0)
                t0 = time.perf_counter()
                await conn.execute(stmt)
                log(f"  {time.perf_counter() - t0:6.1f}s  {stmt[:110]}")
        finally:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(jobs)))


async def load_postgres(
    url: str, scale_name: str, seed: int, now_ms: int, jobs: int
) -> dict[str, Any]:
    """Reset the schema, load every row, rebuild indexes and constraints."""
    import asyncpg

    scale = SCALES[scale_name]
    await ensure_database(url)
    conn = await asyncpg.connect(pg_dsn(url))
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()
    await migrate(Settings(database_url=url))
    conn = await asyncpg.connect(pg_dsn(url))
    try:
        await conn.execute(META_DDL)
        await conn.execute(
            "INSERT INTO bench_meta VALUES ($1, $2, $3, false, '{}')", scale_name, seed, now_ms
        )
        constraints, indexes, fks = await saved_schema(conn)
        for tbl, name, _ in fks:
            await conn.execute(f'ALTER TABLE {tbl} DROP CONSTRAINT "{name}"')
        for tbl, name, _ in constraints:
            await conn.execute(f'ALTER TABLE {tbl} DROP CONSTRAINT "{name}"')
        for name, _ in indexes:
            await conn.execute(f'DROP INDEX IF EXISTS "{name}"')
        tenant_list = tenants(scale, seed)
        users, keys, timeouts = tenant_rows(scale, seed, now_ms, tenant_list)
        await conn.copy_records_to_table(
            "users", records=users, columns=["id", "name", "created_at_ms"]
        )
        await conn.copy_records_to_table(
            "api_keys",
            records=keys,
            columns=["id", "user_id", "key_hash", "prefix", "created_at_ms", "revoked_at_ms"],
        )
        await conn.copy_records_to_table("timeout_changes", records=timeouts)
    finally:
        await conn.close()

    t0 = time.perf_counter()
    args = [(url, scale_name, seed, now_ms, shard, jobs) for shard in range(jobs)]
    if jobs == 1:
        results = [await pg_copy_shard(*args[0])]
    else:
        with mp.get_context("spawn").Pool(jobs) as pool:
            results = pool.map(_shard_process, args)
    n_contacts, n_sessions, n_messages = (sum(r[i] for r in results) for i in range(3))
    copy_s = time.perf_counter() - t0
    log(
        f"copied {n_contacts} contacts, {n_sessions} sessions, {n_messages} messages in {copy_s:.0f}s"
    )

    t1 = time.perf_counter()
    # Biggest first so that the two builders finish together.
    order = sorted(
        indexes,
        key=lambda ix: (
            not ix[1].split(" ON ")[1].startswith("public.messages"),
            not ix[1].split(" ON ")[1].startswith("public.sessions"),
        ),
    )
    await _run_ddl(url, [defn for _, defn in order], jobs)
    attach: dict[str, list[str]] = {}
    for tbl, name, defn in constraints:
        kind = "PRIMARY KEY" if defn.startswith("PRIMARY KEY") else "UNIQUE"
        attach.setdefault(tbl, []).append(f'ADD CONSTRAINT "{name}" {kind} USING INDEX "{name}"')
    await _run_ddl(url, [f"ALTER TABLE {t} " + ", ".join(ps) for t, ps in attach.items()], 1)
    # Foreign keys last (each validates against the referenced key), two tables at a time.
    refs: dict[str, list[str]] = {}
    for tbl, name, defn in fks:
        refs.setdefault(tbl, []).append(f'ADD CONSTRAINT "{name}" {defn}')
    await _run_ddl(url, [f"ALTER TABLE {t} " + ", ".join(ps) for t, ps in refs.items()], jobs)
    index_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    await _run_ddl(
        url,
        [
            f"VACUUM (ANALYZE) {t}"
            for t in ("messages", "sessions", "contacts", "users", "api_keys", "timeout_changes")
        ],
        jobs,
    )
    vacuum_s = time.perf_counter() - t2
    info = {
        "contacts": n_contacts,
        "sessions": n_sessions,
        "messages": n_messages,
        "copy_s": round(copy_s, 1),
        "index_s": round(index_s, 1),
        "vacuum_s": round(vacuum_s, 1),
        "jobs": jobs,
        "small_tenants": scale.small_tenants,
    }
    conn = await asyncpg.connect(pg_dsn(url))
    try:
        info["bench_messages"] = await bench_message_count(conn, tenant_list[0].user_id)
        await conn.execute("UPDATE bench_meta SET complete = true, info = $1", json.dumps(info))
    finally:
        await conn.close()
    return info


# -- SQLite --------------------------------------------------------------------------------


def load_sqlite(url: str, scale_name: str, seed: int, now_ms: int) -> dict[str, Any]:
    """Create the schema and insert every row in one transaction (small scales)."""
    scale = SCALES[scale_name]
    path = Path(normalise_database_url(url).split("///", 1)[1])
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    asyncio.run(migrate(Settings(database_url=url)))
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")
    tenant_list = tenants(scale, seed)
    users, keys, timeouts = tenant_rows(scale, seed, now_ms, tenant_list)
    db.executemany("INSERT INTO users (id, name, created_at_ms) VALUES (?,?,?)", users)
    db.executemany(
        "INSERT INTO api_keys (id, user_id, key_hash, prefix, created_at_ms, "
        "revoked_at_ms) VALUES (?,?,?,?,?,?)",
        keys,
    )
    db.executemany("INSERT INTO timeout_changes VALUES (?,?,?)", timeouts)
    n = [0, 0, 0]
    for rows in shard_rows(scale, seed, now_ms, tenant_list, 0, 1):
        for table, cols, data in (
            ("contacts", CONTACT_COLUMNS, [rows.contact]),
            ("sessions", SESSION_COLUMNS, rows.sessions),
            ("messages", MESSAGE_COLUMNS, rows.messages),
        ):
            db.executemany(
                f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                data,
            )
        n[0] += 1
        n[1] += len(rows.sessions)
        n[2] += len(rows.messages)
    db.execute(META_DDL)
    info = {
        "contacts": n[0],
        "sessions": n[1],
        "messages": n[2],
        "small_tenants": scale.small_tenants,
    }
    db.execute(
        "INSERT INTO bench_meta VALUES (?, ?, ?, 1, ?)",
        (scale_name, seed, now_ms, json.dumps(info)),
    )
    db.execute("COMMIT")
    db.execute("ANALYZE")
    db.close()
    return info


# -- entry point ---------------------------------------------------------------------------


def log(text: str) -> None:
    """Progress to stderr."""
    print(text, file=sys.stderr, flush=True)


def tenant_file(scale: str, results_dir: Path = RESULTS_DIR) -> Path:
    """Where the bench tenant's credentials are written."""
    return results_dir / f"{scale}-tenant.json"


def write_tenant_file(
    scale_name: str, seed: int, now_ms: int, url: str, info: dict[str, Any], results_dir: Path
) -> dict[str, Any]:
    """The bench tenant's user id, key, heavy contact and a sample of contact ids."""
    scale = SCALES[scale_name]
    tenant_list = tenants(scale, seed)
    bench = tenant_list[0]
    heavy = bench.contact_ids[int(np.argmax(bench.conversations))]
    rng = np.random.default_rng([seed, 99])
    sample = [
        bench.contact_ids[i]
        for i in rng.choice(
            len(bench.contact_ids), size=min(2000, len(bench.contact_ids)), replace=False
        )
    ]
    data = {
        "scale": scale_name,
        "seed": seed,
        "now_ms": now_ms,
        "database_url": url,
        "user_id": bench.user_id,
        "api_key": bench.api_key,
        "heavy_contact_id": heavy,
        "heavy_contact_conversations": int(max(bench.conversations)),
        "contact_ids": sample,
        "ingest_user_id": tenant_list[-1].user_id,
        "ingest_api_key": tenant_list[-1].api_key,
        "ingest_contact_ids": tenant_list[-1].contact_ids,
        "loaded": info,
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    path = tenant_file(scale_name, results_dir)
    path.write_text(json.dumps(data, indent=1))
    os.chmod(path, 0o600)
    return data


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", choices=sorted(SCALES), default="small")
    p.add_argument("--database-url", required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--now-ms", type=int, default=None, help="the load's 'now' (default: this minute)"
    )
    p.add_argument("--jobs", type=int, default=2, help="loader processes (PostgreSQL)")
    p.add_argument("--force", action="store_true", help="reload even if already loaded")
    p.add_argument(
        "--max-age-hours",
        type=float,
        default=24.0,
        help="reload a matching load older than this (its 'recent' window drifts)",
    )
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    a = p.parse_args(argv)
    now_ms = (
        a.now_ms if a.now_ms is not None else (int(time.time() * 1000) // MINUTE_MS) * MINUTE_MS
    )
    is_pg = normalise_database_url(a.database_url).startswith("postgresql")
    t0 = time.perf_counter()
    if is_pg:
        asyncio.run(ensure_database(a.database_url))
        existing = asyncio.run(pg_loaded(a.database_url, a.scale, a.seed))
        age_h = (time.time() * 1000 - existing["now_ms"]) / 3_600_000 if existing else None
        if existing and not a.force and age_h is not None and age_h <= a.max_age_hours:
            log(f"{a.scale} (seed {a.seed}) already loaded {age_h:.1f} h ago: reusing it")
            # Loaded by an older version: bring its schema (and data) up to date first.
            asyncio.run(migrate(Settings(database_url=a.database_url)))
            write_tenant_file(
                a.scale, a.seed, existing["now_ms"], a.database_url, existing, a.results_dir
            )
            return
        info = asyncio.run(load_postgres(a.database_url, a.scale, a.seed, now_ms, a.jobs))
    else:
        info = load_sqlite(a.database_url, a.scale, a.seed, now_ms)
    info["total_s"] = round(time.perf_counter() - t0, 1)
    log(f"loaded {a.scale}: {info}")
    write_tenant_file(a.scale, a.seed, now_ms, a.database_url, info, a.results_dir)


if __name__ == "__main__":
    main()
