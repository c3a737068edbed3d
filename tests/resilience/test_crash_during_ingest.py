"""Crash during ingest: clients retry with idempotency keys while the server is SIGKILLed
and restarted; afterwards every acknowledged message is stored exactly once and the
sessions equal the offline segmentation of the stored timestamps."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from chatsessions import tables
from chatsessions.config import Settings
from chatsessions.db import Database
from chatsessions.sessions import rule
from chatsessions.settings import service as settings_service
from chatsessions.timeutil import format_ms, system_clock
from tests.conftest import _create_pg_database, _drop_pg_database
from tests.resilience.harness import FULL, Server, create_user

MIN = 60_000
MESSAGES = 1200 if FULL else 240
KILLS = 8 if FULL else 3
CLIENTS = 8


stats: dict[str, int] = {}


async def _send_all(
    server: Server, key: str, plan: list[dict[str, object]], kill_after: list[int]
) -> dict[str, str]:
    """Post every message from ``CLIENTS`` concurrent clients, retrying each until a 2xx;
    returns externalId → messageId.

    The server is SIGKILLed (and restarted) on progress, never on a timer: once the number
    of acknowledged messages reaches each threshold of ``kill_after``, by the client whose
    acknowledgement reached it, at a moment when other clients' requests are in flight.
    """
    acknowledged: dict[str, str] = {}
    stats.update(attempts=0, failed=0, kills=0, in_flight_at_kill=0)
    queue: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    for item in plan:
        queue.put_nowait(item)
    in_flight = 0
    crashing = asyncio.Lock()

    async def crash_if_due() -> None:
        if stats["kills"] >= len(kill_after) or len(acknowledged) < kill_after[stats["kills"]]:
            return
        if in_flight == 0 or crashing.locked():
            return  # no request in flight to cut: the next acknowledgement tries again
        async with crashing:
            stats["in_flight_at_kill"] += in_flight
            await asyncio.to_thread(server.kill)
            stats["kills"] += 1
            await asyncio.to_thread(server.start)

    async def client() -> None:
        nonlocal in_flight
        async with httpx.AsyncClient(timeout=60) as http:
            while not queue.empty():
                item = queue.get_nowait()
                while True:
                    stats["attempts"] += 1
                    in_flight += 1
                    try:
                        r = await http.post(
                            server.base_url + "/v1/messages", json=item, headers={"X-API-Key": key}
                        )
                    except httpx.HTTPError:
                        stats["failed"] += 1
                        await asyncio.sleep(0.05)  # back-off while the server restarts
                        continue
                    finally:
                        in_flight -= 1
                    if r.status_code in (200, 201):
                        acknowledged[str(item["externalId"])] = r.json()["messageId"]
                        await crash_if_due()
                        break
                    assert r.status_code >= 500, r.text  # only the crash may fail a request
                    stats["failed"] += 1
                    await asyncio.sleep(0.05)

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return acknowledged


@pytest.mark.parametrize("backend_name", ["sqlite", "postgresql"])
async def test_acknowledged_messages_survive_sigkill(backend_name: str, tmp_path: Path) -> None:
    pg_name = None
    if backend_name == "sqlite":
        url = f"sqlite:///{tmp_path}/crash.db"
    else:
        pg_name, url = await _create_pg_database()
    try:
        user_id, key = create_user(url)
        server = Server(url, tmp_path)
        server.start()
        async with httpx.AsyncClient() as http:
            contacts = []
            for i in range(4):
                r = await http.post(
                    server.base_url + "/v1/contacts",
                    json={"phoneNumber": f"+1555000{i:04d}"},
                    headers={"X-API-Key": key},
                )
                contacts.append(r.json()["data"]["contactId"])
        rng = random.Random(11)
        now = system_clock()
        plan: list[dict[str, object]] = [
            {
                "contactId": rng.choice(contacts),
                "direction": rng.choice(["inbound", "outbound"]),
                "timestamp": format_ms(now - rng.randrange(0, 2 * 24 * 60) * MIN),
                "externalId": f"ext-{i}",
                "content": f"message {i}",
            }
            for i in range(MESSAGES)
        ]
        # Kill at evenly spaced points of progress (acknowledged messages), never on a timer.
        kill_after = [MESSAGES * (k + 1) // (KILLS + 1) for k in range(KILLS)]
        acknowledged = await _send_all(server, key, plan, kill_after)
        server.kill()
        assert stats["kills"] == KILLS, "the server was not killed as planned"
        assert stats["in_flight_at_kill"] >= KILLS  # each kill cut requests in flight

        db = Database(Settings(database_url=url))
        m, s = tables.messages.c, tables.sessions.c
        async with db.read() as conn:
            rows = (
                await conn.execute(
                    select(m.id, m.external_id, m.ts_ms, m.contact_id, m.session_id).where(
                        m.user_id == user_id
                    )
                )
            ).all()
            history = await settings_service.timeout_history(conn, user_id)
            session_rows = (
                await conn.execute(select(s.id, s.message_count).where(s.user_id == user_id))
            ).all()
        await db.dispose()

        assert len(acknowledged) == MESSAGES
        by_external = {r.external_id: r.id for r in rows}
        assert len(rows) == MESSAGES  # exactly once: no duplicates from retries
        assert by_external == acknowledged  # every acknowledged message, with the acked id
        expected: set[tuple[tuple[int, str], ...]] = set()
        for contact in {r.contact_id for r in rows}:
            mine = [(r.ts_ms, r.id) for r in rows if r.contact_id == contact]
            expected |= {seg.messages for seg in rule.segment(mine, [], history)}
        got: dict[str, list[tuple[int, str]]] = {}
        for r in rows:
            got.setdefault(r.session_id, []).append((r.ts_ms, r.id))
        assert {tuple(sorted(v)) for v in got.values()} == expected
        assert sorted(r.message_count for r in session_rows) == sorted(len(v) for v in got.values())
        print(
            f"\ncrash[{backend_name}]: {stats['kills']} SIGKILLs survived, {stats['attempts']} requests "
            f"sent ({stats['failed']} failed by the crashes and retried), {len(acknowledged)} "
            f"acknowledged, {len(acknowledged) - len(set(by_external) & set(acknowledged))} lost"
        )
    finally:
        if pg_name is not None:
            await _drop_pg_database(pg_name)
