"""Where a single message's time goes on PostgreSQL, and what a two-round-trip write
would give: layer by layer and protocol by protocol, alternated in one run.

    .venv/bin/python bench/single_message.py [--messages 2000] [--rounds 3]
        [--database-url postgresql://postgres@127.0.0.1:5432] [--out bench/results/...json]

One contact with one open session on a fresh database; every message is appended to
that session (the commonest single message: the next one of a conversation), durably
committed, one at a time on one connection. Each case runs ``--messages`` messages after
100 of warm-up; the cases take turns, ``--rounds`` times, so that a machine whose speed
drifts over minutes moves them alike. Client CPU is this process's (``process_time``).

Layers (the service's own path, built up):

* ``bare_5rt`` — the five round trips ingest makes (BEGIN with its plan settings, the
  lock and load, the read of sessions and replays, the write, COMMIT), their statements
  and parameters precomputed, straight on the asyncpg connection under the pool: what
  the protocol costs with no Python of ours at all;
* ``fetch_rows`` — the same statements through ``db.fetch_rows`` and
  ``db._driver_transaction`` on a held connection;
* ``run_write`` — the same through ``Database.run_write`` (a pool checkout per message);
* ``ingest_held`` — ``messages.service.store_messages`` on a held connection (the whole
  write path: the rule, the placement, parameters, answers; no checkout);
* ``ingest`` — ``store_messages`` as the single-message route runs it without a
  request's connection (its own checkout): what ``bench/ingest_shapes.py`` times.

Protocols (statements only, no Python rule; on asyncpg connections of their own):

* ``optimistic_2rt`` — a design not built: the contact (with a write counter), the
  tenant's timeout history and endpoints, the sessions around and the replays read in
  one autocommit statement with no lock; then one autocommit statement that commits the
  write only if the contact's counter is still the one read (an UPDATE of the contact,
  which waits for a writer holding it and then sees its latest version), the session
  update and the message insert conditioned on it. Every writer would bump the counter
  where it locks the contact today, so a change committed after the read fails the check
  and the message takes the locked path. The connection runs generic plans with neither
  sequential nor bitmap scans, as ingest's probe phase does;
* ``floor`` — the floor of ``ingest_shapes.py``'s ``single`` shape: BEGIN, an upsert of
  the session, an insert of the message, COMMIT.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import uvloop
from ingest_shapes import (
    _FLOOR_PG,
    MIN,
    _columns,
    drop_database,
    fresh_database,
    ours,
    request_bodies,
    tenant,
)
from sqlalchemy import TextClause, text
from sqlalchemy.dialects import postgresql

from chatsessions import ids
from chatsessions.db import (
    PG_BEGIN,
    PG_INDEX_SCANS,
    PG_PROBES,
    Database,
    _driver_transaction,
    _pooled_connection,
    fetch_rows,
)
from chatsessions.messages import service
from chatsessions.messages import store as messages_store

HERE = Path(__file__).resolve().parent
NAME = "chatsessions_single_message"
Case = Callable[[], Awaitable[None]]


def _asyncpg_sql(stmt: TextClause) -> tuple[str, list[str]]:
    compiled = stmt.compile(dialect=postgresql.asyncpg.dialect())  # type: ignore[no-untyped-call]
    return compiled.string, list(compiled.positiontup or ())


def _optimistic_read() -> TextClause:
    """The contact with its counter, the timeout history and the endpoints, in the columns
    of ingest's read (``messages.store._READ_IN_PROBES_PG``), then that read."""
    big = "CAST(NULL AS bigint)"
    var = "CAST(NULL AS varchar)"
    return text(
        f"""
        SELECT 9 AS kind, CAST(c.id AS varchar), CAST(c.first_name AS varchar),
               CAST(c.write_seq AS bigint), {", ".join([big] * 14)},
               CAST(c.phone AS varchar), CAST(c.email AS varchar)
        FROM contacts AS c WHERE c.user_id = :user_id
          AND c.id BETWEEN (CAST(:contact_ids AS varchar) COLLATE "C")
                       AND (CAST(:contact_ids AS varchar) COLLATE "C")
        UNION ALL
        SELECT 8, {var}, {var}, effective_from_ms, CAST(timeout_ms AS bigint),
               {", ".join([big] * 13)}, {var}, {var}
        FROM timeout_changes WHERE user_id = :user_id
        UNION ALL
        SELECT 7, CAST(id AS varchar), {var}, created_at_ms, {", ".join([big] * 14)},
               CAST(events AS varchar), {var}
        FROM webhook_endpoints WHERE user_id = :user_id AND enabled
        UNION ALL"""
        + messages_store._AROUND_PG
        + "UNION ALL"
        + messages_store._EXTERNAL_PG
    )


def _optimistic_write() -> TextClause:
    """The single message's write (one session updated, one message) guarded by the
    contact's counter: written, and committed, only if it is still the one read."""
    guard = """guard AS (
        UPDATE contacts SET write_seq = write_seq + 1
        WHERE user_id = :user_id
          AND id BETWEEN (CAST(:s_contact AS varchar) COLLATE "C")
                     AND (CAST(:s_contact AS varchar) COLLATE "C")
          AND write_seq = :seen
        RETURNING 1)"""
    parts = messages_store._ONE_ROW_PARTS
    changed = parts["changed"].replace(
        "WHERE NOT v.is_new AND", "WHERE EXISTS (SELECT 1 FROM guard) AND NOT v.is_new AND"
    )
    inserted = parts["inserted"].rstrip() + " WHERE EXISTS (SELECT 1 FROM guard)"
    assert changed != parts["changed"]
    return text(
        f"WITH {guard}, changed AS ({changed}), inserted AS ({inserted}) "
        "SELECT (SELECT count(*) FROM guard), (SELECT count(*) FROM changed)"
    )


async def run(base_url: str, messages: int, rounds: int) -> dict[str, Any]:
    """Every case, ``rounds`` times in turn; per case the ms a message (wall, client CPU)."""
    now_ms = int(time.time() * 1000)
    with tempfile.TemporaryDirectory() as tmp:
        db: Database = await fresh_database("postgresql", base_url, NAME, Path(tmp))
        try:
            return await _measure(db, base_url, now_ms, messages, rounds)
        finally:
            await drop_database(db, "postgresql", base_url, NAME)


async def _measure(
    db: Database, base_url: str, now_ms: int, messages: int, rounds: int
) -> dict[str, Any]:
    user_id, [contact_id] = await tenant(db, 1, now_ms - 400 * 24 * 60 * MIN)
    start = now_ms - 10**7  # every message after the one before: one session
    await ours(db, user_id, request_bodies([contact_id], [(0, start - 10, True)]), now_ms)
    raw = await asyncpg.connect(f"{base_url}/{NAME}")
    session_id = await raw.fetchval("SELECT id FROM sessions WHERE user_id = $1", user_id)
    await raw.execute("ALTER TABLE contacts ADD COLUMN write_seq bigint NOT NULL DEFAULT 0")
    await raw.close()
    # The optimistic protocol's connection plans as ingest's probe phase does.
    probes = await asyncpg.connect(
        f"{base_url}/{NAME}",
        server_settings={
            "plan_cache_mode": "force_generic_plan",
            "enable_seqscan": "off",
            "enable_bitmapscan": "off",
        },
    )
    floor_conn = await asyncpg.connect(f"{base_url}/{NAME}")
    ts = iter(range(start, now_ms))

    parts = frozenset({"changed", "inserted"})
    write = messages_store._write_pg(tuple(sorted(parts)), False, parts, True)
    begin = PG_BEGIN + PG_INDEX_SCANS + PG_PROBES + "force_custom_plan"
    load = {"user_id": user_id, "contact_ids": contact_id, "end_probes": False}

    def read_params() -> dict[str, Any]:
        at = next(ts)
        return {
            "user_id": user_id,
            "contact_ids": contact_id,
            "los": str(at),
            "his": str(at),
            "external_ids": json.dumps([secrets.token_urlsafe(15)]),
            "since_ms": None,
            "now_ms": now_ms,
        }

    def write_params() -> dict[str, Any]:
        at = next(ts)
        params: dict[str, Any] = {"user_id": user_id, "now_ms": now_ms}
        params.update(channel="c", notify=False)
        for name, kind in (*messages_store._SESSION_PARAMS, *messages_store._MESSAGE_ROW_PARAMS):
            params[name] = {"boolean": False, "int": 1, "bigint": at}.get(kind or "", "t")
        params.update(s_id=session_id, s_contact=contact_id, m_contact=contact_id)
        params.update(m_session=session_id, m_id=ids.new_id(), m_direction="inbound")
        params.update(m_external=secrets.token_urlsafe(15), s_start=start, s_closed=None)
        params.update(s_expires=at + 60 * MIN, s_created=start)
        return params

    statements: list[tuple[TextClause, Callable[[], dict[str, Any]]]] = [
        (messages_store._LOAD_PG, lambda: load),
        (messages_store._READ_IN_PROBES_PG, read_params),
        (write, write_params),
    ]
    compiled = [(_asyncpg_sql(stmt), make) for stmt, make in statements]
    optimistic_read, optimistic_write = (
        _asyncpg_sql(_optimistic_read()),
        _asyncpg_sql(_optimistic_write()),
    )
    body = request_bodies([contact_id], [(0, start, True)])[0]
    cases: dict[str, Case] = {}

    async with db.read() as held:
        driver = (await _pooled_connection(held)).driver_connection
        assert driver is not None

        async def bare_5rt() -> None:
            await driver.execute(begin)
            for (sql, names), make in compiled:
                params = make()
                await driver.fetch(sql, *[params[n] for n in names])
            await driver.execute("COMMIT")

        async def with_fetch_rows() -> None:
            async with _driver_transaction(held, begin):
                for stmt, make in statements:
                    await fetch_rows(held, stmt, make())

        async def with_run_write() -> None:
            async def work(conn: Any) -> None:
                for stmt, make in statements:
                    await fetch_rows(conn, stmt, make())

            await db.run_write(work, index_scans=True, probe_plans=True)

        def item() -> service.NewMessage:
            update = {"externalId": secrets.token_urlsafe(15), "timestamp": next(ts)}
            return service.prepare_message(body.model_copy(update=update), now_ms=now_ms)

        async def ingest_held() -> None:
            await service.store_messages(
                db, user_id=user_id, items=[item()], now_ms=now_ms, conn=held
            )

        async def ingest() -> None:
            await service.store_messages(db, user_id=user_id, items=[item()], now_ms=now_ms)

        async def optimistic_2rt() -> None:
            sql, names = optimistic_read
            params = read_params()
            rows = await probes.fetch(sql, *[params[n] for n in names])
            seen = next(r[3] for r in rows if r[0] == 9)
            sql, names = optimistic_write
            params = {**write_params(), "seen": seen}
            [(guarded, changed)] = await probes.fetch(sql, *[params[n] for n in names])
            assert guarded == 1 and changed == 1, (guarded, changed)

        async def floor() -> None:
            at = next(ts)
            session = (session_id, contact_id, start, at, at + 60 * MIN, at, 2, 2, 0, start)
            async with floor_conn.transaction():
                await floor_conn.execute(
                    _FLOOR_PG[1], user_id, now_ms, *_columns([(*session, None, 0, 0, at)], 14)
                )
                message = (ids.new_id(), contact_id, session_id, "inbound", at)
                await floor_conn.execute(
                    _FLOOR_PG[2],
                    user_id,
                    now_ms,
                    *_columns([(*message, secrets.token_urlsafe(15))], 6),
                )

        cases.update(
            bare_5rt=bare_5rt,
            fetch_rows=with_fetch_rows,
            run_write=with_run_write,
            ingest_held=ingest_held,
            ingest=ingest,
            optimistic_2rt=optimistic_2rt,
            floor=floor,
        )
        measured: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
        for _ in range(rounds):
            for name, case in cases.items():
                for _ in range(100):
                    await case()
                cpu0, wall0 = time.process_time(), time.perf_counter()
                for _ in range(messages):
                    await case()
                measured[name].append(
                    (
                        1e3 * (time.perf_counter() - wall0) / messages,
                        1e3 * (time.process_time() - cpu0) / messages,
                    )
                )
    await probes.close()
    await floor_conn.close()
    return {
        "messages": messages,
        "rounds": rounds,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cases": {
            name: {
                "wall_ms": [round(w, 3) for w, _ in runs],
                "cpu_ms": [round(c, 3) for _, c in runs],
                "wall_ms_median": round(statistics.median(w for w, _ in runs), 3),
                "cpu_ms_median": round(statistics.median(c for _, c in runs), 3),
            }
            for name, runs in measured.items()
        },
    }


def main() -> None:
    """Run, print the table, write the results."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432")
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default=str(HERE / "results" / "single-message.json"))
    args = p.parse_args()
    result = uvloop.run(run(args.database_url, args.messages, args.rounds))
    floor = result["cases"]["floor"]["wall_ms_median"]
    print("| case | wall ms a message (each round) | client CPU ms | floor / case |")
    print("| --- | --- | --- | --- |")
    for name, case in result["cases"].items():
        walls = ", ".join(f"{w:.2f}" for w in case["wall_ms"])
        cpus = ", ".join(f"{c:.2f}" for c in case["cpu_ms"])
        print(f"| {name} | {walls} | {cpus} | {floor / case['wall_ms_median']:.2f} |")
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
