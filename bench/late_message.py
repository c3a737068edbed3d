"""A late message in a long session: what storing it costs as the session grows.

    .venv/bin/python bench/late_message.py [--messages 100000] [--late 50]
        [--backends postgresql,sqlite] [--out bench/results/late-message.json]

One contact's back-fill (``c_backfill_one`` of bench/ingest_shapes.py: messages 2 minutes
apart, inbound and outbound in turn, one session) is stored through the service's write
path on a fresh database; then ``--late`` single messages, each stamped between two stored
messages at a random place in the session, are stored one at a time, as a late webhook
delivery would be. A late message makes its session's figures stale: before the write
they are recomputed from the stored messages around it
(``sessions.figures.figures_after_inserts``), so its cost should not grow with the
session. Prints and records the p50 and the slowest, in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop
from ingest_shapes import (
    MIN,
    drop_database,
    fresh_database,
    ours,
    request_bodies,
    shapes,
    tenant,
)

HERE = Path(__file__).resolve().parent


async def run_backend(backend: str, base_url: str, messages: int, late: int) -> dict[str, Any]:
    """Back-fill one session of ``messages``, then time ``late`` late single messages."""
    now_ms = int(time.time() * 1000)
    [backfill] = [
        s for s in shapes(now_ms, messages, random.Random(1)) if s.name == "c_backfill_one"
    ]
    batches = backfill.batches[-max(1, messages // 1000) :]  # the shape holds 100,000 or more
    rng = random.Random(2)
    with tempfile.TemporaryDirectory() as tmp:
        name = "chatsessions_late_message"
        db = await fresh_database(backend, base_url, name, Path(tmp))
        try:
            user_id, contacts = await tenant(db, 1, now_ms - 400 * 24 * 60 * MIN)
            for batch in batches:
                await ours(db, user_id, request_bodies(contacts, batch), now_ms)
            first, last = batches[0][0][1], batches[-1][-1][1]
            times = []
            for n in range(late):
                # Between two stored messages (2 minutes apart), anywhere in the session.
                ts = first + rng.randrange((last - first) // (2 * MIN)) * 2 * MIN + 30_000
                bodies = request_bodies(contacts, [(0, ts, n % 2 == 0)])
                t = time.perf_counter()
                await ours(db, user_id, bodies, now_ms)
                times.append((time.perf_counter() - t) * 1000)
        finally:
            await drop_database(db, backend, base_url, name)
    return {
        "backend": backend,
        "session_messages": sum(len(b) for b in batches),
        "late_messages": late,
        "p50_ms": round(statistics.median(times), 2),
        "max_ms": round(max(times), 2),
    }


async def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Run each backend; print the results."""
    results = []
    for backend in args.backends.split(","):
        r = await run_backend(backend, args.database_url, args.messages, args.late)
        r["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        results.append(r)
        print(
            f"late message, {backend}, session of {r['session_messages']:,}: "
            f"p50 {r['p50_ms']} ms, slowest {r['max_ms']} ms",
            flush=True,
        )
    return results


def run(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Parse the arguments, measure, write the results file."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432")
    p.add_argument("--backends", default="postgresql,sqlite")
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--late", type=int, default=50)
    p.add_argument("--out", default=str(HERE / "results" / "late-message.json"))
    args = p.parse_args(argv)
    uvloop.install()
    results = asyncio.run(measure(args))
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    run()
