"""Where a single message's time goes on PostgreSQL, under the contact's lock and without
it: layer by layer and protocol by protocol, alternated in one run.

    .venv/bin/python bench/single_message.py [--messages 2000] [--rounds 3]
        [--database-url postgresql://postgres@127.0.0.1:5432] [--out bench/results/...json]

One contact with one open session on a fresh database; every message is appended to
that session (the commonest single message: the next one of a conversation), durably
committed, one at a time on one connection. Each case runs ``--messages`` messages after
100 of warm-up; the cases take turns, ``--rounds`` times, so that a machine whose speed
drifts over minutes moves them alike. Client CPU is this process's (``process_time``).

Under the lock (the path of batches, and of a single message whose unlocked write
failed), built up:

* ``bare_5rt`` — the five round trips ingest makes (BEGIN with its plan settings, the
  lock and load, the read of sessions and replays, the write, COMMIT), their statements
  and parameters precomputed, straight on the asyncpg connection under the pool: what
  the protocol costs with no Python of ours at all;
* ``fetch_rows`` — the same statements through ``db.fetch_rows`` and
  ``db._driver_transaction`` on a held connection;
* ``run_write`` — the same through ``Database.run_write`` (a pool checkout per message);
* ``locked_held`` — ``messages.service.store_messages`` under the lock on a held
  connection (the whole write path: the rule, the placement, parameters, answers);
* ``locked`` — the same with its own checkout (the single-message route before the
  sixteenth round, without its authentication).

Without the lock (``messages.service._store_unlocked``, the single-message route's way):

* ``bare_2rt`` — its two statements (``messages.store._READ_UNLOCKED_PG``, then the
  guarded write), precomputed, on a connection of the probe pool's settings;
* ``unlocked_held`` — ``store_messages`` on a held connection of the probe pool;
* ``unlocked`` — ``store_messages`` with its own checkout from the probe pool: what
  ``bench/ingest_shapes.py``'s ``single`` shape times.

And ``floor`` — the floor of ``ingest_shapes.py``'s ``single`` shape: BEGIN, an upsert of
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
from sqlalchemy import TextClause
from sqlalchemy.dialects import postgresql

from chatsessions import ids
from chatsessions.db import (
    _PROBE_SETTINGS,
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
    await raw.close()
    # The unlocked protocol's connection plans as the probe pool's do.
    probes = await asyncpg.connect(f"{base_url}/{NAME}", server_settings=dict(_PROBE_SETTINGS))
    floor_conn = await asyncpg.connect(f"{base_url}/{NAME}")
    ts = iter(range(start, now_ms))

    parts = frozenset({"changed", "inserted"})
    write = messages_store._write_pg(("bumped", "changed", "inserted"), False, parts, True)
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
        params.update(channel="c", notify=False, b_contacts=contact_id, b_enable=True)
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
    unlocked_read = _asyncpg_sql(messages_store._READ_UNLOCKED_PG)
    unlocked_write = _asyncpg_sql(messages_store._unlocked_write_pg("changed"))
    body = request_bodies([contact_id], [(0, start, True)])[0]
    cases: dict[str, Case] = {}

    async with db.read() as held, db.read(probes=True) as held_probes:
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

        async def store(*, unlocked: bool, conn: Any = None) -> None:
            service.WRITE_SINGLES_UNLOCKED = unlocked
            [stored] = await service.store_messages(
                db, user_id=user_id, items=[item()], now_ms=now_ms, conn=conn
            )
            assert not stored.duplicate

        async def locked_held() -> None:
            await store(unlocked=False, conn=held)

        async def locked() -> None:
            await store(unlocked=False)

        async def bare_2rt() -> None:
            sql, names = unlocked_read
            params = {**read_params(), "contact_id": contact_id}
            rows = await probes.fetch(sql, *[params[n] for n in names])
            seen = next(r[3] for r in rows if r[0] == 4)
            sql, names = unlocked_write
            params = {**write_params(), "g_contact": contact_id, "g_seen": seen}
            [(guarded, inserted)] = await probes.fetch(sql, *[params[n] for n in names])
            assert guarded == 1 and inserted == 1, (guarded, inserted)

        async def unlocked_held() -> None:
            await store(unlocked=True, conn=held_probes)

        async def unlocked() -> None:
            await store(unlocked=True)

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
            locked_held=locked_held,
            locked=locked,
            bare_2rt=bare_2rt,
            unlocked_held=unlocked_held,
            unlocked=unlocked,
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
