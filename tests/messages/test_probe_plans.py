"""Ingest's probes do not rot: the plans PostgreSQL makes once per connection for the lock
and the reads under it (generic plans, db.PG_PROBES) probe the key indexes on empty,
never-analyzed tables, on statistics of one row per tenant (where every index of a tenant
looks like one row), on a tenant of thousands of messages, analysed or never analysed;
they never scan a table (nor a bitmap). And the phase ends where it should: the
statements after it plan as before. The statements planned for their values (a batch's
write, the read around late messages) reach their rows by key in those states too.

PostgreSQL only: generic plans and their settings are PostgreSQL's (SQLite plans each
statement when it is prepared, from its own fixed rules).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import fields, replace
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import orjson
import pytest
from sqlalchemy import select, text
from sqlalchemy.dialects import postgresql

from chatsessions import tables
from chatsessions.config import Settings
from chatsessions.contacts import store as contacts_store
from chatsessions.contacts.schemas import ContactFields
from chatsessions.db import (
    PG_INDEX_SCANS,
    PG_PROBES,
    Database,
    fetch_rows,
    joined_ids,
    joined_numbers,
    migrate,
)
from chatsessions.exports import store as exports_store
from chatsessions.messages import service
from chatsessions.messages import store as messages_store
from chatsessions.messages.schemas import MessageIn
from chatsessions.messages.store import MessageWrite, TrackedSession, Writes
from chatsessions.planner_stats import StatisticsKeeper
from chatsessions.sessions import store as sessions_store
from chatsessions.sessions.figures import EMPTY as EMPTY_FIGURES
from tests.conftest import (
    BACKENDS,
    T0,
    _create_pg_database,
    _drop_pg_database,
    create_tenant,
    without_autovacuum,
)

# Every table access of the probes, by table: the one index it may use.
EXPECTED = {
    "contacts": {"pk_contacts"},
    "timeout_changes": {"pk_timeout_changes"},
    "webhook_endpoints": {"pk_webhook_endpoints"},
    "sessions": {"ix_sessions_contact_start", "pk_sessions"},
    "messages": {"uq_messages_user_id_external_id", "ix_messages_session_ts"},
}


_SESSION_FIELDS = [f.name for f in fields(TrackedSession) if f.name in tables.sessions.c]


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "'{" + ",".join(str(v) for v in value) + "}'"
    return "'" + str(value).replace("'", "''") + "'"


async def explain_prepared(
    conn: asyncpg.Connection, stmt: Any, params: dict[str, Any], settings: str
) -> dict[str, Any]:
    """The plan PostgreSQL makes for ``stmt`` prepared with these values, under
    ``settings`` (SQL run first in the same transaction): PREPARE, then EXPLAIN EXECUTE."""
    compiled = stmt.compile(dialect=postgresql.asyncpg.dialect())
    names = list(compiled.positiontup or ())
    args = ", ".join(_literal(params[n]) for n in names)
    async with conn.transaction():
        await conn.execute(settings)
        await conn.execute(f"PREPARE probe AS {compiled.string}")
        try:
            raw = await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE probe({args})")
        finally:
            await conn.execute("DEALLOCATE probe")
    plan: dict[str, Any] = orjson.loads(raw)[0]["Plan"]
    return plan


_CUSTOM_PLANS = (PG_INDEX_SCANS + "; SET LOCAL plan_cache_mode = force_custom_plan").lstrip("; ")
"""What an ingest transaction plans with after its probe phase: plans made for the values,
no bitmap scans."""


async def _generic_plan(
    conn: asyncpg.Connection, stmt: Any, params: dict[str, Any]
) -> dict[str, Any]:
    """The plan a connection of the probe phase makes for ``stmt`` (generic plans forced:
    the values play no part), with what Database.write(index_scans=True,
    probe_plans=True) sets after its BEGIN."""
    settings = (PG_INDEX_SCANS + PG_PROBES + "force_custom_plan").lstrip("; ")
    return await explain_prepared(conn, stmt, params, settings)


async def _check(
    conn: asyncpg.Connection, user_id: str, contact_ids: list[str], *, keys: bool
) -> None:
    statements = [
        (
            messages_store._LOAD_PG,
            {"user_id": user_id, "contact_ids": joined_ids(contact_ids), "end_probes": False},
        ),
        (
            messages_store._READ_PG,
            {
                "user_id": user_id,
                "contact_ids": joined_ids(contact_ids),
                "los": joined_numbers([T0] * len(contact_ids)),
                "his": joined_numbers([T0] * len(contact_ids)),
                "external_ids": orjson.dumps(["ext-1", "ext-2"]).decode(),
            },
        ),
        # The stored messages of sessions whose figures (or cut) must be recomputed.
        (sessions_store._MESSAGE_KEYS_PG, {"user_id": user_id, "ids": joined_ids(contact_ids)}),
        # Those around inserted messages (the figures after a late message), and whole
        # sessions through the same statement.
        *(
            (
                sessions_store._MESSAGE_KEYS_AROUND_PG,
                {
                    "user_id": user_id,
                    "ids": joined_ids(contact_ids),
                    "los": joined_numbers([lo] * len(contact_ids)),
                    "his": joined_numbers([hi] * len(contact_ids)),
                },
            )
            for lo, hi in ((T0, T0), sessions_store.EVERY)
        ),
        # A single message's write (one session updated or inserted, one message), which
        # stays in the probe phase (messages_store.write(probes=True)).
        *(
            _single_write(parts, user_id, contact_ids[0])
            for parts in (
                ("changed", "inserted"),
                ("added", "inserted"),
                # with the move of the contacts' write_seq (every locked write's)
                ("bumped", "changed", "inserted"),
            )
        ),
        (contacts_store._BUMP_PG, {"user_id": user_id, "ids": contact_ids}),
        # A single message without the lock: its read and its guarded write, on the probe
        # pool's connections (the same settings as the probe phase).
        (
            messages_store._READ_UNLOCKED_PG,
            {
                "user_id": user_id,
                "contact_id": contact_ids[0],
                "contact_ids": joined_ids(contact_ids[:1]),
                "los": joined_numbers([T0]),
                "his": joined_numbers([T0]),
                "external_ids": orjson.dumps(["ext-1"]).decode(),
            },
        ),
        *(_unlocked_write(part, user_id, contact_ids[0]) for part in ("changed", "added")),
    ]
    for stmt, params in statements:
        plan = await _generic_plan(conn, stmt, params)
        used: dict[str, set[str]] = {}
        for node in _nodes(plan):
            kind = node["Node Type"]
            assert kind not in {"Seq Scan", "Bitmap Heap Scan", "Hash Join", "Merge Join"}, plan
            if "Relation Name" in node and kind not in {"ModifyTable", "Tid Scan"}:
                assert kind in {"Index Scan", "Index Only Scan"}, plan
                used.setdefault(node["Relation Name"], set()).add(node["Index Name"])
        if keys:
            for table, indexes in used.items():
                assert indexes <= EXPECTED[table], (table, indexes, orjson.dumps(plan).decode())


def _single_write(
    parts: tuple[str, ...], user_id: str, contact_id: str
) -> tuple[Any, dict[str, Any]]:
    """The write statement of a single message (these parts, in their one-row forms, which
    messages_store.is_probes accepts) and parameters for it."""
    one_row = frozenset(parts) - {"bumped"}  # the bump has no one-row form
    assert messages_store.is_probes(parts, one_row)
    stmt = messages_store._write_pg(parts, False, one_row)
    params: dict[str, Any] = {"user_id": user_id, "now_ms": T0, "channel": "c", "notify": False}
    params["b_contacts"] = joined_ids([contact_id])
    params["b_enable"] = True
    for name, kind in (*messages_store._SESSION_PARAMS, *messages_store._MESSAGE_ROW_PARAMS):
        params[name] = {None: "x" * 20, "boolean": False, "bigint": T0, "int": 1}.get(kind, "t")
    params["s_contact"] = params["m_contact"] = contact_id
    return stmt, params


def _unlocked_write(part: str, user_id: str, contact_id: str) -> tuple[Any, dict[str, Any]]:
    """The guarded write of a single message without the lock, and parameters for it."""
    _, params = _single_write((part, "inserted"), user_id, contact_id)
    params.update(g_contact=contact_id, g_seen=3)
    return messages_store._unlocked_write_pg(part), params


async def _store(database: Database, user_id: str, messages: list[MessageIn]) -> None:
    items = [service.prepare_message(m, now_ms=T0) for m in messages]
    await service.store_messages(database, user_id=user_id, items=items, now_ms=T0)


def _message(phone: str, n: int, ts: int) -> MessageIn:
    return MessageIn(
        contact=ContactFields(phoneNumber=phone),
        direction="inbound",
        content=f"m{n}",
        timestamp=ts,
        externalId=f"ext-{n}",
    )


@asynccontextmanager
async def _fresh_database() -> AsyncIterator[tuple[Database, Any]]:
    """A fresh, migrated PostgreSQL database and a driver connection to it (dropped after)."""
    name, url = await _create_pg_database()
    settings = Settings(database_url=url)
    await migrate(settings)
    database = Database(settings)
    await without_autovacuum(database)
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        yield database, conn
    finally:
        await conn.close()
        await database.dispose()
        await _drop_pg_database(name)


@pytest.mark.parametrize("backend_name", [b for b in BACKENDS if b == "postgresql"])
async def test_the_probes_plan_the_same_index_probes_at_any_statistics(backend_name: str) -> None:
    async with _fresh_database() as (database, conn):
        first = await create_tenant(database)
        # Empty tables, never analyzed.
        await _check(conn, first.user_id, ["a" * 20, "b" * 20], keys=True)

        # One message per tenant, analyzed: every index of a tenant looks like one row.
        await _store(database, first.user_id, [_message("+15550000000", 0, T0 - 1000)])
        for t in range(60):
            other = await create_tenant(database)
            await _store(database, other.user_id, [_message(f"+1555100{t:04d}", t, T0 - 1000)])
        await conn.execute("ANALYZE")
        contact_ids = [r[0] for r in await conn.fetch("SELECT id FROM contacts LIMIT 2")]
        await _check(conn, first.user_id, sorted(contact_ids), keys=True)

        # A tenant of thousands of messages, analyzed.
        for batch in range(4):
            await _store(
                database,
                first.user_id,
                [
                    _message(f"+1555200{n:04d}", 1000 + batch * 1000 + n, T0 - 10**8 + n * 60_000)
                    for n in range(1000)
                ],
            )
        rows = await conn.fetch(
            "SELECT id FROM contacts WHERE user_id = $1 ORDER BY id LIMIT 3", first.user_id
        )
        # Grown since the statistics that said user_id is unique, and no one ran ANALYZE:
        # the write path's keeper did (planner_stats), once the planner believed the tenant
        # smaller than half of what was written for it. Without it no plan (custom plans
        # neither) could tell the key's index from another one of the tenant.
        await database.statistics.settled()
        assert set(database.statistics.analyzed) == {"contacts", "sessions", "messages"}
        await _check(conn, first.user_id, [r[0] for r in rows], keys=True)


async def _settings(conn: Any) -> tuple[str, str]:
    row = (
        await fetch_rows(
            conn,
            text("SELECT current_setting('plan_cache_mode'), current_setting('enable_seqscan')"),
            {},
        )
    )[0]
    return str(row[0]), str(row[1])


@pytest.mark.parametrize("backend_name", [b for b in BACKENDS if b == "postgresql"])
@pytest.mark.parametrize("probes_follow", [True, False])
async def test_the_probe_phase_ends_with_the_read_or_the_lock(
    backend_name: str, probes_follow: bool
) -> None:
    name, url = await _create_pg_database()
    await migrate(Settings(database_url=url))
    database = Database(Settings(database_url=url))
    seen: list[tuple[str, str]] = []

    async def work(conn: Any) -> None:
        seen.append(await _settings(conn))
        await messages_store.lock_and_load(conn, "u" * 20, [], probes_follow=probes_follow)
        seen.append(await _settings(conn))
        await messages_store.read_state(
            conn, "u" * 20, ranges={}, external_ids=[], owing_since_ms=None, now_ms=T0
        )
        seen.append(await _settings(conn))

    async def single(conn: Any) -> None:
        # A single message's read keeps the phase; a write that is not probes ends it
        # before its statement (here, a session deleted by a merge).
        await messages_store.lock_and_load(conn, "u" * 20, [], probes_follow=True)
        await messages_store.read_state(
            conn,
            "u" * 20,
            ranges={},
            external_ids=[],
            owing_since_ms=None,
            now_ms=T0,
            end_probes=False,
        )
        seen.append(await _settings(conn))
        writes = messages_store.Writes(deleted=["s" * 20])
        await messages_store.write(conn, "u" * 20, writes, now_ms=T0, probes=True)
        seen.append(await _settings(conn))

    try:
        await database.run_write(work, index_scans=True, probe_plans=True)
        await database.run_write(work, index_scans=True, probe_plans=True, generic_plans=True)
        await database.run_write(single, index_scans=True, probe_plans=True)
        async with database.read() as conn:
            afterwards = await _settings(conn)
    finally:
        await database.dispose()
        await _drop_pg_database(name)
    probing, custom, generic = (
        ("force_generic_plan", "off"),
        ("force_custom_plan", "on"),
        ("force_generic_plan", "on"),
    )
    middle = probing if probes_follow else custom
    assert seen[:3] == [probing, middle, custom]
    # With generic plans for the whole transaction, the phase ends into them.
    assert seen[3:6] == [probing, probing if probes_follow else generic, generic]
    assert seen[6:] == [probing, custom]
    assert afterwards == custom  # the connection's own settings


# PostgreSQL's own foreign-key check of every inserted message and session (ri_triggers.c
# writes it this way): a generic plan once it is cached.
_FK_CHECK = text(
    'SELECT 1 FROM ONLY "public"."contacts" x WHERE "user_id" OPERATOR(pg_catalog.=) :user_id'
    ' AND "id" OPERATOR(pg_catalog.=) :id FOR KEY SHARE OF x'
)


@pytest.mark.parametrize("backend_name", [b for b in BACKENDS if b == "postgresql"])
async def test_a_probe_by_contact_id_uses_the_primary_key_whatever_identifiers_are_set(
    backend_name: str,
) -> None:
    # A tenant whose contacts have an email and no phone, never analyzed: with full unique
    # indexes on (user_id, phone) etc. the one on phones (all NULL: the smallest) tied with
    # the primary key and won; the lock and every foreign-key check then scanned the
    # tenant's contacts. The identifier indexes are partial (tables.py): only the primary
    # key can serve a probe by id.
    async with _fresh_database() as (database, conn):
        tenant = await create_tenant(database)
        await conn.execute(
            "INSERT INTO contacts (user_id, id, email, is_bot_active, do_not_disturb,"
            " created_at_ms, updated_at_ms)"
            " SELECT $1, lpad(n::text, 20, 'c'), 'c' || n || '@example.com', true, false, 0, 0"
            " FROM generate_series(1, 1000) AS n",
            tenant.user_id,
        )
        ids = [r[0] for r in await conn.fetch("SELECT id FROM contacts ORDER BY id LIMIT 3")]
        for stmt, params in (
            (
                messages_store._LOAD_PG,
                {"user_id": tenant.user_id, "contact_ids": ids, "end_probes": False},
            ),
            (_FK_CHECK, {"user_id": tenant.user_id, "id": ids[0]}),
        ):
            plan = await _generic_plan(conn, stmt, params)
            scans = [n for n in _nodes(plan) if n.get("Relation Name") == "contacts"]
            assert scans, plan
            for node in scans:
                assert node["Node Type"] == "Index Scan", plan
                assert node["Index Name"] == "pk_contacts", plan
                assert "Filter" not in node, plan  # the id is an index condition
        # The identifiers are still unique per user, and still probed by their index.
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(
                "UPDATE contacts SET email = 'c1@example.com' WHERE user_id = $1 AND id = $2",
                tenant.user_id,
                ids[1],
            )
        plan = orjson.loads(
            await conn.fetchval(
                "EXPLAIN (FORMAT JSON) SELECT id FROM contacts WHERE user_id = $1"
                " AND email IN ('c1@example.com', 'c2@example.com')",
                tenant.user_id,
            )
        )[0]["Plan"]
        assert {n.get("Index Name") for n in _nodes(plan)} & {
            "uq_contacts_user_id_email_present"
        }, plan


def _session_update(one_row: bool, user_id: str, session_id: str) -> tuple[Any, dict[str, Any]]:
    """The write's UPDATE of one stored session (its "changed" part, in either form) and
    parameters for it."""
    parts = messages_store._ONE_ROW_PARTS if one_row else messages_store._WRITE_PARTS
    stmt = text(f"WITH changed AS ({parts['changed']}) SELECT 1")
    params: dict[str, Any] = {"user_id": user_id, "now_ms": T0}
    for name, kind in messages_store._SESSION_PARAMS:
        value: Any = {None: "x", "boolean": False}.get(kind, 1)
        # Arrays' form: numbers sent joined, as pg_params sends them.
        params[name] = value if one_row else joined_numbers([value])
    params["s_id"] = session_id  # arrays' form: the ids joined (one id: the id itself)
    return stmt, params


@pytest.mark.parametrize("backend_name", [b for b in BACKENDS if b == "postgresql"])
@pytest.mark.parametrize("keeper", [True, False], ids=["keeper", "no-keeper"])
async def test_after_a_load_outgrew_the_statistics_the_write_updates_a_session_by_key(
    backend_name: str, keeper: bool
) -> None:
    # Statistics of one session per tenant (user_id looks unique), then a load of 3,000
    # sessions into one tenant and no ANALYZE from anyone but the service: the write's
    # UPDATE of a session by id, planned for its values, must probe the primary key by
    # (user_id, id), not read the tenant's sessions and filter the id. The keeper
    # (planner_stats) makes it so; without it, the plan reads the tenant.
    async with _fresh_database() as (database, conn):
        if not keeper:
            database.statistics = StatisticsKeeper(None)
        first = await create_tenant(database)
        await _store(database, first.user_id, [_message("+15550000000", 0, T0 - 1000)])
        for t in range(60):
            other = await create_tenant(database)
            await _store(database, other.user_id, [_message(f"+1555100{t:04d}", t, T0 - 1000)])
        await conn.execute("ANALYZE")
        session_id = await conn.fetchval(
            "SELECT id FROM sessions WHERE user_id = $1", first.user_id
        )
        for batch in range(3):
            await _store(
                database,
                first.user_id,
                [
                    _message(f"+1555{batch:03d}{n:04d}", 100 + batch * 1000 + n, T0 - 10**8 + n)
                    for n in range(1000)
                ],
            )
        await database.statistics.settled()
        assert (
            await conn.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1", first.user_id)
            == 3001
        )
        for one_row in (True, False):
            stmt, params = _session_update(one_row, first.user_id, session_id)
            plan = await explain_prepared(
                conn, stmt, params, "SET LOCAL plan_cache_mode = force_custom_plan"
            )
            scans = [
                n
                for n in _nodes(plan)
                if n.get("Relation Name") == "sessions" and n["Node Type"] != "ModifyTable"
            ]
            probes = [n for n in scans if n["Node Type"] != "Tid Scan"]
            by_key = len(probes) == 1 and (
                probes[0].get("Index Name") == "pk_sessions"
                and "Filter" not in probes[0]
                and "(id)" in probes[0].get("Index Cond", "")
            )
            if one_row:
                # A key probe, then the row where it was found: whatever the statistics.
                assert by_key, (one_row, scans)
                assert [n["Node Type"] for n in scans].count("Tid Scan") == 1, scans
            else:
                assert by_key is keeper, (one_row, scans)


def _messages_indexes(plan: dict[str, Any]) -> set[str]:
    """The indexes the plan reads ``messages`` through (no other access allowed)."""
    used: set[str] = set()
    for node in _nodes(plan):
        if node.get("Relation Name") == "messages":
            assert node["Node Type"] in {"Index Scan", "Index Only Scan"}, plan
            used.add(node["Index Name"])
    return used


async def _grown_never_analysed(database: Database, conn: asyncpg.Connection) -> Any:
    """A tenant grown to 11,000 messages over 300 contacts (a session each: one message a
    contact every 30 minutes) and never analysed (the service's ANALYZE off, autovacuum
    not come round)."""
    database.statistics = StatisticsKeeper(None)
    tenant = await create_tenant(database)
    for batch in range(11):
        await _store(
            database,
            tenant.user_id,
            [
                _message(f"+1555300{n % 300:04d}", n, T0 - 10**8 + n * 6_000)
                for n in range(batch * 1000, batch * 1000 + 1000)
            ],
        )
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM pg_stats WHERE tablename IN ('messages', 'sessions')"
        )
        == 0
    )  # never analysed
    return tenant


@pytest.mark.parametrize("backend_name", [b for b in BACKENDS if b == "postgresql"])
async def test_a_sessions_messages_by_time_are_read_through_its_index_without_statistics(
    backend_name: str,
) -> None:
    # A tenant grown and never analysed (_grown_never_analysed). The read of the messages
    # around late ones takes each session as an equality and the time as a range; the
    # exports' time index (user_id, ts_ms) could serve that range too, and without
    # statistics both looked like one row and the smaller one won: a scan of the tenant's
    # messages of that time per session. That index is partial, on a predicate only the exports state (tables.py):
    # planned for the values or generically, the read probes ix_messages_session_ts.
    async with _fresh_database() as (database, conn):
        tenant = await _grown_never_analysed(database, conn)
        rows = await conn.fetch(
            "SELECT id, contact_id, start_ms, last_ms FROM sessions WHERE user_id = $1 ORDER BY id",
            tenant.user_id,
        )
        assert len(rows) == 300
        params = {
            "user_id": tenant.user_id,
            "ids": joined_ids([r["id"] for r in rows]),
            "los": joined_numbers([(r["start_ms"] + r["last_ms"]) // 2 for r in rows]),
            "his": joined_numbers([r["last_ms"] for r in rows]),
        }
        stmt = sessions_store._MESSAGE_KEYS_AROUND_PG
        for plan in (
            await _generic_plan(conn, stmt, params),
            await explain_prepared(conn, stmt, params, _CUSTOM_PLANS),
        ):
            assert _messages_indexes(plan) == {"ix_messages_session_ts"}, plan
        # Every probe of the phase, the lock and the single message's write included,
        # still probes the key indexes in this state.
        await _check(conn, tenant.user_id, sorted(r["contact_id"] for r in rows[:3]), keys=True)


@pytest.mark.parametrize("backend_name", [b for b in BACKENDS if b == "postgresql"])
async def test_the_exports_window_is_read_through_the_time_index(backend_name: str) -> None:
    # The exports' window states the time index's predicate, so PostgreSQL can read it
    # through that index, with plans made for the values or generic ones.
    async with _fresh_database() as (database, conn):
        tenant = await create_tenant(database)
        stmt = select(tables.messages.c.id).where(
            *exports_store._window(tenant.user_id, T0 - 3_600_000, "all")
        )
        params = {"user_id_1": tenant.user_id, "ts_ms_1": T0 - 3_600_000}
        settings = "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; "
        for mode in ("force_custom_plan", "force_generic_plan"):
            plan = await explain_prepared(
                conn, stmt, params, settings + f"SET LOCAL plan_cache_mode = {mode}"
            )
            assert _messages_indexes(plan) == {"ix_messages_user_ts_exports"}, (mode, plan)


@pytest.mark.parametrize("backend_name", [b for b in BACKENDS if b == "postgresql"])
async def test_without_statistics_the_batch_write_reaches_its_rows_by_key(
    backend_name: str,
) -> None:
    # A batch's write (after the probe phase: planned for its values, sequential scans
    # allowed, bitmaps not) on a tenant grown and never analysed: every part of it, a
    # merge's deletion and moved messages, reassigned messages, sessions updated,
    # inserted and marked, and new messages, reaches the rows it changes through a key,
    # never by reading the tenant's sessions or messages.
    async with _fresh_database() as (database, conn):
        tenant = await _grown_never_analysed(database, conn)
        rows = await conn.fetch(
            "SELECT * FROM sessions WHERE user_id = $1 ORDER BY id LIMIT 4", tenant.user_id
        )
        kept = [
            TrackedSession(**{f: r[f] for f in _SESSION_FIELDS}, figures=EMPTY_FIGURES)
            for r in rows
        ]
        message_id = await conn.fetchval(
            "SELECT id FROM messages WHERE user_id = $1 AND session_id = $2",
            tenant.user_id,
            kept[0].id,
        )
        new_session = replace(kept[3], id="n" * 20)
        writes = Writes(
            deleted=[kept[0].id],
            moved=[(kept[0].id, kept[1].id)],
            reassigned=[(message_id, kept[2].id)],
            inserted=[new_session],
            updated=[kept[1], kept[2]],
            notified=[(kept[3].id, T0)],
            messages=[
                MessageWrite(
                    f"{n}" * 20,
                    kept[1].contact_id,
                    kept[1].id,
                    "inbound",
                    "user",
                    "text",
                    "hi",
                    None,
                    T0,
                    None,
                )
                for n in range(2)
            ],
        )
        parts = messages_store.write_parts(writes)
        assert set(parts) == {
            "gone", "moved", "reassigned", "added", "changed", "marked", "inserted"
        }  # fmt: skip
        stmt = messages_store._write_pg(parts, False)
        params = {
            **messages_store.pg_params(tenant.user_id, writes, T0),
            "channel": "c",
            "notify": False,
        }
        plan = await explain_prepared(conn, stmt, params, _CUSTOM_PLANS)
        reads = [
            n
            for n in _nodes(plan)
            if n.get("Relation Name") in {"sessions", "messages"}
            and n["Node Type"] != "ModifyTable"
        ]
        assert reads, plan
        for node in reads:
            assert node["Node Type"] in {"Index Scan", "Index Only Scan"}, (node, plan)
            assert "Index Cond" in node and "user_id" in node["Index Cond"], node
            assert "id" in node["Index Cond"].replace("user_id", ""), node
