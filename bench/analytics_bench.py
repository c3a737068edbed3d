"""Analytics response times on a bench dataset (PostgreSQL), through a real server.

Serves the dataset loaded by ``bench/generate.py`` (its ``<scale>-tenant.json``) with
``chatsessions serve`` and times, one request at a time, each endpoint the console and API
users call: the 30-day summary, the 90-day daily time series (sessions, and the first
response median), the 30-day heatmap, in UTC and in Europe/Amsterdam. For scale, the same
run times the statement that computed the 30-day figures from the messages before they
were kept on the session rows (window functions over every message of the range's
sessions), straight on the database. Not part of the test suite; standalone.

    .venv/bin/python bench/analytics_bench.py [--scale large] [--requests 15]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
PORT = 8767
BASE = f"http://127.0.0.1:{PORT}"
DAY_MS = 86_400_000

# The statement analytics ran before the figures were kept on the session rows (0005):
# per-session figures recomputed from the messages of the range's sessions.
RECOMPUTED = """
WITH chosen AS (
    SELECT id, contact_id, start_ms, last_ms, inbound_count, outbound_count FROM sessions
    WHERE user_id = $1 AND activity_ms >= $2 AND start_ms >= $2 AND start_ms < $3
), ordered AS (
    SELECT m.session_id, m.direction, m.ts_ms,
           SUM(CASE WHEN m.direction = 'outbound' THEN 1 ELSE 0 END)
               OVER (PARTITION BY m.session_id ORDER BY m.ts_ms, m.id)
           - CASE WHEN m.direction = 'outbound' THEN 1 ELSE 0 END AS outs_before
    FROM messages AS m JOIN chosen ON m.user_id = $1 AND m.session_id = chosen.id
), turns AS (
    SELECT session_id, outs_before AS turn,
           MIN(CASE WHEN direction = 'inbound' THEN ts_ms END) AS asked_ms,
           MIN(CASE WHEN direction = 'outbound' THEN ts_ms END) AS answered_ms
    FROM ordered GROUP BY session_id, outs_before
), replies AS (
    SELECT session_id, answered_ms - asked_ms AS reply_ms,
           ROW_NUMBER() OVER (PARTITION BY session_id ORDER BY turn) AS rank
    FROM turns WHERE asked_ms IS NOT NULL AND answered_ms IS NOT NULL
), per_session AS (
    SELECT session_id, MAX(CASE WHEN rank = 1 THEN reply_ms END) AS first_response_ms,
           SUM(reply_ms) AS reply_sum_ms, COUNT(*) AS reply_count
    FROM replies GROUP BY session_id
)
SELECT c.*, p.first_response_ms, p.reply_sum_ms, p.reply_count
FROM chosen AS c LEFT JOIN per_session AS p ON p.session_id = c.id
"""


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def _wait_ready(proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(BASE + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError("the server did not become ready in 120 s")


def _time_requests(
    client: httpx.Client, path: str, params: dict[str, str], n: int
) -> tuple[list[float], Any]:
    client.get(path, params=params).raise_for_status()  # warm-up (plans, caches)
    times, body = [], None
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.get(path, params=params)
        times.append((time.perf_counter() - t0) * 1000)
        r.raise_for_status()
        body = r.json()["data"]
    return times, body


async def _time_recomputed(url: str, user_id: str, lo: int, hi: int, n: int) -> list[float]:
    conn = await asyncpg.connect(url)
    try:
        await conn.fetch(RECOMPUTED, user_id, lo, hi)
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            await conn.fetch(RECOMPUTED, user_id, lo, hi)
            times.append((time.perf_counter() - t0) * 1000)
        return times
    finally:
        await conn.close()


def main() -> None:
    """Run the timings and print (and save) the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", default="large")
    ap.add_argument("--requests", type=int, default=15)
    a = ap.parse_args()
    tenant = json.loads((RESULTS / f"{a.scale}-tenant.json").read_text())
    now = int(tenant["now_ms"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATSESSIONS_")}
    env["CHATSESSIONS_DATABASE_URL"] = tenant["database_url"]
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "chatsessions"), "serve", "--port", str(PORT)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    rows: list[dict[str, Any]] = []
    try:
        _wait_ready(proc)
        headers = {"Authorization": f"Bearer {tenant['api_key']}"}
        d30 = {"from": _iso(now - 30 * DAY_MS), "to": _iso(now)}
        d90 = {"from": _iso(now - 90 * DAY_MS), "to": _iso(now)}
        cases = [
            ("summary, 30 days", "/v1/analytics/summary", d30),
            ("summary, 30 days, Europe/Amsterdam", "/v1/analytics/summary", d30),
            (
                "timeseries sessions, 90 days daily",
                "/v1/analytics/timeseries",
                {**d90, "metric": "sessions", "interval": "day"},
            ),
            (
                "timeseries firstResponseMedian, 90 days daily",
                "/v1/analytics/timeseries",
                {**d90, "metric": "firstResponseMedian", "interval": "day"},
            ),
            (
                "timeseries firstResponseMedian, 90 days daily, Europe/Amsterdam",
                "/v1/analytics/timeseries",
                {
                    **d90,
                    "metric": "firstResponseMedian",
                    "interval": "day",
                    "tz": "Europe/Amsterdam",
                },
            ),
            ("heatmap, 30 days", "/v1/analytics/heatmap", d30),
            (
                "heatmap, 30 days, Europe/Amsterdam",
                "/v1/analytics/heatmap",
                {**d30, "tz": "Europe/Amsterdam"},
            ),
        ]
        with httpx.Client(base_url=BASE, headers=headers, timeout=120) as client:
            for label, path, params in cases:
                if "Amsterdam" in label and "tz" not in params:
                    params = {**params, "tz": "Europe/Amsterdam"}
                times, body = _time_requests(client, path, params, a.requests)
                n = body.get("sessions")
                if n is None and "buckets" in body:
                    n = sum(b["n"] for b in body["buckets"])
                rows.append(
                    {
                        "request": label,
                        "p50_ms": round(statistics.median(times), 1),
                        "max_ms": round(max(times), 1),
                        "sessions": n,
                    }
                )
                print(f"{label}: p50 {rows[-1]['p50_ms']} ms (max {rows[-1]['max_ms']}), n={n}")
        recomputed = asyncio.run(
            _time_recomputed(
                tenant["database_url"],
                tenant["user_id"],
                now - 30 * DAY_MS,
                now,
                max(3, a.requests // 3),
            )
        )
        rows.append(
            {
                "request": "before: 30-day figures recomputed from the messages (SQL only)",
                "p50_ms": round(statistics.median(recomputed), 1),
                "max_ms": round(max(recomputed), 1),
                "sessions": None,
            }
        )
        print(f"{rows[-1]['request']}: p50 {rows[-1]['p50_ms']} ms")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    out = RESULTS / f"analytics-{a.scale}.json"
    out.write_text(json.dumps(rows, indent=1))
    print("| request | p50 ms | max ms | sessions counted |\n| --- | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['request']} | {r['p50_ms']} | {r['max_ms']} | {r['sessions'] or '–'} |")


if __name__ == "__main__":
    main()
