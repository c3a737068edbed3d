"""Soak: mixed read/write load on a real server process. Zero 5xx; under
`make resilience` (10 minutes) also RSS growth under 10 % after warm-up and a stable p99."""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from pathlib import Path

import httpx

from chatsessions.timeutil import format_ms, system_clock
from tests.conftest import _create_pg_database, _drop_pg_database
from tests.resilience.harness import FULL, Server, create_user

DURATION_S = 600.0 if FULL else 12.0
CLIENTS = 16


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_mixed_load_has_no_server_errors(tmp_path: Path) -> None:
    pg_name, url = await _create_pg_database()
    server = Server(url, tmp_path)
    try:
        _user, key = create_user(url)
        server.start()
        assert server.proc is not None
        headers = {"X-API-Key": key}
        rng = random.Random(5)
        statuses: dict[int, int] = {}
        latencies: list[tuple[float, float]] = []  # (time since start, seconds)
        rss: list[tuple[float, int]] = []
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            contacts = []
            for i in range(40):
                r = await http.post(
                    "/v1/contacts", json={"phoneNumber": f"+1555020{i:04d}"}, headers=headers
                )
                contacts.append(r.json()["data"]["contactId"])
            started = time.monotonic()
            deadline = started + DURATION_S
            counter = 0

            async def client() -> None:
                nonlocal counter
                while time.monotonic() < deadline:
                    roll = rng.random()
                    counter += 1
                    t0 = time.monotonic()
                    if roll < 0.3:
                        r = await http.post(
                            "/v1/messages",
                            json={
                                "contactId": rng.choice(contacts),
                                "direction": rng.choice(["inbound", "outbound"]),
                                "content": "soak " * rng.randrange(1, 20),
                                "timestamp": format_ms(system_clock() - rng.randrange(0, 86_400_000)),
                                "externalId": f"soak-{counter}",
                            },
                            headers=headers,
                        )
                    elif roll < 0.6:
                        r = await http.get(
                            "/v1/chat-sessions/recent",
                            # Bounded pages (≤ 50 × 20 messages): the response size reaches a
                            # steady state, so memory growth would mean a leak, not bigger data.
                            params={
                                "hours": 24,
                                "limit": 50,
                                "includeMessages": "true",
                                "messageLimit": 20,
                            },
                            headers=headers,
                        )
                    elif roll < 0.85:
                        r = await http.get(
                            "/v1/chat-sessions/recent", params={"hours": 24}, headers=headers
                        )
                    else:
                        r = await http.get(
                            f"/v1/chat-sessions/{rng.choice(contacts)}", headers=headers
                        )
                    latencies.append((t0 - started, time.monotonic() - t0))
                    statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

            async def sampler() -> None:
                assert server.proc is not None
                while time.monotonic() < deadline:
                    rss.append((time.monotonic() - started, _rss_kb(server.proc.pid)))
                    await asyncio.sleep(1.0)

            await asyncio.gather(sampler(), *(client() for _ in range(CLIENTS)))
        errors = {code: n for code, n in statuses.items() if code >= 500}
        assert not errors, statuses
        assert set(statuses) <= {200, 201}, statuses
        assert sum(statuses.values()) > 100  # the load really ran
        trajectory = [kb for t, kb in rss][:: max(1, len(rss) // 10)]
        print(f"\nsoak RSS (kB, every ~{DURATION_S / 10:.0f} s): {trajectory}")
        if FULL:
            warm = [kb for t, kb in rss if t >= DURATION_S * 0.3]
            assert max(warm) <= warm[0] * 1.10, (warm[0], max(warm))
            first = sorted(s for t, s in latencies if DURATION_S * 0.3 <= t < DURATION_S * 0.5)
            last = sorted(s for t, s in latencies if t >= DURATION_S * 0.8)
            p99 = lambda xs: xs[int(len(xs) * 0.99)]  # noqa: E731
            assert p99(last) <= 2 * p99(first), (p99(first), p99(last))
            print(
                f"soak: {sum(statuses.values())} requests, RSS {warm[0]}→{max(warm)} kB, "
                f"p99 {p99(first) * 1000:.1f}→{p99(last) * 1000:.1f} ms, "
                f"median {statistics.median(s for _, s in latencies) * 1000:.1f} ms"
            )
    finally:
        server.kill()
        await _drop_pg_database(pg_name)
