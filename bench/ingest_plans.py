"""The plans of ingest's statements as the service runs them, at growing sizes.

    python bench/ingest_plans.py --database-url postgresql://postgres@127.0.0.1:5432 \
        [--sizes 0,10000,1000000] [--out docs/ingest-plans.md] [--generic/--custom]

Creates a fresh database (``chatsessions_plans``), migrates it, and grows one tenant's
history with the service's own ingest (1,000-message batches, time-sorted over 300
contacts, each with an ``externalId``). At each size in ``--sizes`` (stored messages) it
sends one probe batch (500 replayed ``externalId``s, 500 new messages), then a batch of
100 messages naming their contacts by phone (70 new contacts, 30 found: the lookup by
phone, and the statement that inserts the contacts ahead of the rest, as from
``messages.service.CONTACTS_AHEAD_FROM`` new contacts), then a single message (the
write's one-row form), then 100 late messages among 100 contacts' stored ones (the
messages written ahead of the sessions, in a statement of their own), through
``messages.service.ingest`` in the same kind of transaction as the HTTP routes, with
PostgreSQL's ``auto_explain`` logging every statement's ``EXPLAIN (ANALYZE, BUFFERS)``
to this client: the plans shown are those the service executed, with the plan cache
mode of the routes. Nothing is analysed before the last size: the service's own ANALYZE
after large loads is off here (``analyze_after_loads=False``, as an operator may set it;
autovacuum may run, as in production; where it is off, the tables have no statistics at
all), so the plans shown are those of the worst case, statistics of nothing; at the last
size a second probe follows an ``ANALYZE``, the state the service's keeper keeps.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions.auth import service as auth_service
from chatsessions.config import Settings
from chatsessions.contacts import service as contacts_service
from chatsessions.contacts.schemas import ContactFields, ContactIn
from chatsessions.db import Database, migrate
from chatsessions.messages import service as messages_service
from chatsessions.messages.schemas import MessageIn

MIN = 60_000
CONTACTS = 300
NOW = 1_790_000_000_000
DB_NAME = "chatsessions_plans"


async def _fresh_database(base: str) -> str:
    admin = await asyncpg.connect(base.replace("postgresql://", "postgres://") + "/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{DB_NAME}"')
        for setting, value in (
            ("session_preload_libraries", "'auto_explain'"),
            ("auto_explain.log_min_duration", "0"),
            ("auto_explain.log_analyze", "on"),
            ("auto_explain.log_buffers", "on"),
            ("auto_explain.log_nested_statements", "on"),
            ("client_min_messages", "log"),
        ):
            await admin.execute(f'ALTER DATABASE "{DB_NAME}" SET {setting} = {value}')
    finally:
        await admin.close()
    return f"{base}/{DB_NAME}"


def _items(
    start_ms: int, count: int, contacts: list[str], *, first: int
) -> list[messages_service.NewMessage]:
    """``count`` messages a minute apart over the contacts in turn, externalIds e<n>."""
    return [
        messages_service.prepare_message(
            MessageIn(
                contactId=contacts[(first + n) % len(contacts)],
                direction="inbound" if n % 3 else "outbound",
                timestamp=start_ms + n * MIN // 10,
                content="hello",
                externalId=f"e{first + n}",
            ),
            now_ms=NOW,
        )
        for n in range(count)
    ]


def _inline_items(start_ms: int, round_: int) -> list[messages_service.NewMessage]:
    """70 messages from new contacts (phones of round ``round_``) and 30 from the contacts
    the previous round created (the first round: created by its first 30 items)."""
    found = round_ - 1 if round_ > 0 else round_
    phones = [f"+1555{round_:03d}{n:04d}" for n in range(70)]
    phones += [f"+1555{found:03d}{n:04d}" for n in range(30)]
    return [
        messages_service.prepare_message(
            MessageIn(
                contact=ContactFields(phoneNumber=phone),
                direction="inbound",
                timestamp=start_ms + n,
                content="hello",
            ),
            now_ms=NOW,
        )
        for n, phone in enumerate(phones)
    ]


def _among_items(
    start_ms: int, stored: int, contacts: list[str]
) -> list[messages_service.NewMessage]:
    """100 late messages, one for each of 100 contacts, stamped among the last 600 stored
    (inside each contact's one long session: its figures made stale, so the batch writes
    its messages ahead of its sessions, messages.service.WRITE_AHEAD_FROM)."""
    return [
        messages_service.prepare_message(
            MessageIn(
                contactId=contacts[n],
                direction="inbound" if n % 2 else "outbound",
                timestamp=start_ms + (stored - 600 + 5 * n) * MIN // 10 + 1,
                content="late",
                externalId=f"late{stored}-{n}",
            ),
            now_ms=NOW,
        )
        for n in range(100)
    ]


def _plans(logged: list[str]) -> list[str]:
    """The service's statements (not the driver's catalog queries); of the foreign-key
    checks PostgreSQL runs per inserted row, the first of each kind."""
    out: list[str] = []
    seen_checks: set[str] = set()
    for plan in logged:
        if "Query Text" not in plan:
            continue
        text = plan.split("Query Text:", 1)[1].strip()
        if "pg_catalog.pg_" in text or "typeinfo" in text:  # the driver's type lookups
            continue
        if text.startswith("SELECT 1 FROM ONLY"):
            kind = text.split(" x WHERE")[0]
            if kind in seen_checks:
                continue
            seen_checks.add(kind)
        out.append("```\n" + plan.strip() + "\n```\n")
    return out


async def _analyze(db: Database) -> None:
    async with db.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        await driver.execute("ANALYZE")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--sizes", default="0,10000,100000")
    parser.add_argument("--out", default="docs/ingest-plans.md")
    parser.add_argument(
        "--generic",
        action="store_true",
        help="generic plans (as the routes ran ingest before; for the comparison)",
    )
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    url = await _fresh_database(args.database_url)
    settings = Settings(database_url=url, database_pool_size=1, analyze_after_loads=False)
    await migrate(settings)
    db = Database(settings)
    logged: list[str] = []

    async def setup(conn: AsyncConnection) -> tuple[str, list[str]]:
        user = await auth_service.create_user(conn, name="plans", timeout_minutes=60, now_ms=NOW)
        contacts = []
        for n in range(CONTACTS):
            made = await contacts_service.create_contact(
                conn, user_id=user.user_id, fields=ContactIn(email=f"c{n}@example.com"), now_ms=NOW
            )
            contacts.append(made.id)
        return user.user_id, contacts

    user_id, contacts = await db.run_write(setup)
    async with db.engine.connect() as conn:  # the pool's one connection: hear its plans
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        driver.add_log_listener(lambda _c, message: logged.append(str(message)))

    async def ingest(items: list[messages_service.NewMessage]) -> None:
        if not args.generic:  # as the routes store messages
            await messages_service.store_messages(db, user_id=user_id, items=items, now_ms=NOW)
            return

        async def work(conn: AsyncConnection) -> list[messages_service.StoredMessage]:
            return await messages_service.ingest(conn, user_id=user_id, items=items, now_ms=NOW)

        await db.run_write(work, generic_plans=True)

    async def timed(items: list[messages_service.NewMessage]) -> float:
        """Ingest ``items`` with the log cleared first; the ms it took."""
        logged.clear()
        t0 = time.perf_counter()
        await ingest(items)
        return (time.perf_counter() - t0) * 1000

    stored = 0
    base_ms = NOW - 400 * 24 * 60 * MIN
    report = [
        "# Ingest statement plans"
        + (" (generic plans)\n" if args.generic else " (as the routes run them)\n"),
        "Produced by `bench/ingest_plans.py`; each probe: 500 replayed externalIds and "
        "500 new messages over 300 contacts, as the routes run it: the lock and the reads "
        "under it in the probe phase (plans made once per connection, key probes only; "
        "`db.PG_PROBES`) and, for a single message, its write too (one-row key probes and "
        "inserts); the rest with plans made for the values.\n",
    ]
    for size in sizes:
        started = time.perf_counter()
        while stored < size:
            n = min(1000, size - stored)
            await ingest(_items(base_ms + stored * MIN // 10, n, contacts, first=stored))
            stored += n
        grow_s = time.perf_counter() - started
        probe = _items(base_ms + (stored - 500) * MIN // 10, 1000, contacts, first=stored - 500)
        if stored < 500:
            probe = _items(base_ms, 1000, contacts, first=stored)
        took_ms = await timed(probe)
        stored += 1000 - min(500, stored)
        print(f"{size:>9} stored: probe batch {took_ms:.1f} ms (growth {grow_s:.0f} s)")
        report.append(f"\n## {size:,} stored messages: the probe batch took {took_ms:.1f} ms\n")
        report += _plans(logged)
        took_ms = await timed(_inline_items(base_ms + stored * MIN // 10, sizes.index(size)))
        stored += 100
        print(f"{size:>9} stored: contacts-by-phone batch {took_ms:.1f} ms")
        report.append(
            f"\n### {size:,} stored messages: 100 messages naming their contacts by phone "
            f"(70 new, 30 found): {took_ms:.1f} ms\n"
        )
        report += _plans(logged)
        took_ms = await timed(_items(base_ms + stored * MIN // 10, 1, contacts, first=stored))
        stored += 1
        print(f"{size:>9} stored: single message {took_ms:.1f} ms")
        report.append(
            f"\n### {size:,} stored messages: one message, to a contact's open session (the "
            f"write's one-row form): {took_ms:.1f} ms\n"
        )
        report += _plans(logged)
        took_ms = await timed(_among_items(base_ms, stored, contacts))
        stored += 100
        print(f"{size:>9} stored: late messages batch {took_ms:.1f} ms")
        report.append(
            f"\n### {size:,} stored messages: 100 late messages among 100 contacts' stored "
            f"ones (their figures stale: the messages written ahead of the sessions): "
            f"{took_ms:.1f} ms\n"
        )
        report += _plans(logged)
        if size == sizes[-1]:
            await _analyze(db)
            took_ms = await timed(
                _items(base_ms + stored * MIN // 10, 1000, contacts, first=stored)
            )
            stored += 1000
            print(f"{size:>9} stored, after ANALYZE: probe batch {took_ms:.1f} ms")
            report.append(
                f"\n## {size:,} stored messages after ANALYZE (1,000 new): {took_ms:.1f} ms\n"
            )
            report += _plans(logged)
    await db.dispose()
    await asyncio.to_thread(Path(args.out).write_text, "\n".join(report))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    asyncio.run(main())
