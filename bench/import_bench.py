"""Import speed and memory: a generated WhatsApp export through ``chatsessions import-chat``.

    .venv/bin/python bench/import_bench.py                 # 100k on SQLite and PostgreSQL, 1M RSS
    .venv/bin/python bench/import_bench.py --messages 20000 --rss-messages 0

Each run generates an Android-style export (24-hour clock, day-first dates, a multi-line
message and a media placeholder now and then) of one conversation, creates a fresh
database and a user, and times the CLI end to end in a child process (migrations and
start-up included), reading the child's peak RSS from ``resource.getrusage``. Parse-only
speed (both passes, no database) is measured in this process. Targets: 100,000 messages
in ≤ 10 s (≥ 10,000 msg/s) and peak RSS ≤ 300 MB at 1,000,000 messages.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
CLI = str(Path(sys.executable).with_name("chatsessions"))
PG_ADMIN = os.environ.get(
    "CHATSESSIONS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
WORDS = [
    "hello",
    "thanks",
    "order",
    "delivery",
    "price",
    "today",
    "tomorrow",
    "please",
    "yes",
    "no",
    "ok",
    "great",
    "when",
    "where",
    "👍",
    "✅",
]


def generate(path: Path, messages: int, *, seed: int = 7) -> None:
    """Write an Android WhatsApp export of ``messages`` messages between Jane and Shop."""
    rng = random.Random(seed)
    t = datetime(2016, 1, 1, 8, 0)
    with path.open("w", encoding="utf-8") as out:
        out.write(f"{t:%d/%m/%Y, %H:%M} - Messages and calls are end-to-end encrypted.\n")
        for i in range(messages):
            # Conversations in bursts: a minute or two apart, now and then hours or days.
            t += timedelta(
                minutes=rng.choice((0, 1, 1, 2)) if rng.random() < 0.99 else rng.randint(61, 600)
            )
            author = "Jane Smith" if rng.random() < 0.5 else "Shop"
            if i % 50 == 0:
                text = "<Media omitted>"
            else:
                text = " ".join(rng.choices(WORDS, k=rng.randint(1, 12)))
                if i % 37 == 0:
                    text += "\nsecond line\nthird line"
            out.write(f"{t:%d/%m/%Y, %H:%M} - {author}: {text}\n")


def parse_only(path: Path) -> tuple[float, float, int]:
    """Both passes of the import without a database (the rows built, nothing stored):
    wall seconds, CPU seconds, messages."""
    sys.path.insert(0, str(ROOT / "src"))
    from chatsessions.imports import service
    from chatsessions.imports.model import Source

    sources = [Source.from_path(str(path))]
    started, cpu = time.perf_counter(), time.process_time()
    plan = service.prepare(
        sources,
        service.ImportOptions(format="whatsapp", me="Shop", date_order="dmy"),
        now_ms=int(time.time() * 1000),
    )
    count = sum(1 for _ in service.rows(plan))
    return time.perf_counter() - started, time.process_time() - cpu, count


def _env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATSESSIONS_")}
    env["CHATSESSIONS_DATABASE_URL"] = url
    return env


def run_cli(url: str, path: Path) -> tuple[float, float, float, str]:
    """Create a user, then time ``import-chat``: seconds, the child's peak RSS (MB) and CPU
    seconds (its own work, less sensitive than wall time to a busy machine), its output."""
    made = subprocess.run(
        [CLI, "users", "create", "--name", "bench", "--json"],
        env=_env(url),
        capture_output=True,
        text=True,
        check=True,
    )
    user_id = json.loads(made.stdout)["userId"]
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    before, cpu_before = usage.ru_maxrss, usage.ru_utime + usage.ru_stime
    started = time.perf_counter()
    done = subprocess.run(
        [
            CLI,
            "import-chat",
            str(path),
            "--format",
            "whatsapp",
            "--me",
            "Shop",
            "--date-order",
            "dmy",
            "--user-id",
            user_id,
        ],
        env=_env(url),
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"import failed:\n{done.stdout}\n{done.stderr}")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    # ru_maxrss of children is the largest child so far (KiB on Linux); the import is the largest.
    cpu = usage.ru_utime + usage.ru_stime - cpu_before
    return elapsed, max(usage.ru_maxrss, before) / 1024, cpu, done.stdout.strip()


async def _pg(statement: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def bench_backend(backend: str, path: Path, messages: int, tmp: Path) -> dict[str, object]:
    name = "cs_import_" + secrets.token_hex(4)
    if backend == "sqlite":
        url = f"sqlite:///{tmp}/{name}.db"
    else:
        asyncio.run(_pg(f"CREATE DATABASE {name}"))
        base = PG_ADMIN.rsplit("/", 1)[0]
        url = f"{base}/{name}"
    try:
        elapsed, rss, cpu, out = run_cli(url, path)
    finally:
        if backend == "postgresql":
            asyncio.run(_pg(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    return {
        "backend": backend,
        "messages": messages,
        "seconds": round(elapsed, 2),
        "msg_per_s": round(messages / elapsed),
        "cli_cpu_s": round(cpu, 2),
        "peak_rss_mb": round(rss),
        "output": out,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rss-messages", type=int, default=1_000_000, help="0 to skip")
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        export = tmp / "WhatsApp Chat with Jane Smith.txt"
        generate(export, args.messages)
        seconds, cpu, count = parse_only(export)
        print(
            f"parse only (both passes): {count} messages in {seconds:.2f} s ({cpu:.2f} s CPU)"
            f" = {count / seconds:,.0f} msg/s",
            flush=True,
        )
        for backend in args.backends.split(","):
            result = bench_backend(backend, export, args.messages, tmp)
            results.append(result)
            print(json.dumps(result, ensure_ascii=False), flush=True)
        if args.rss_messages:
            big = tmp / "big.txt"
            generate(big, args.rss_messages)
            size_mb = big.stat().st_size / 1e6
            seconds, cpu, count = parse_only(big)
            print(
                f"parse only: {count} messages ({size_mb:.0f} MB) in {seconds:.2f} s ({cpu:.2f} s CPU)",
                flush=True,
            )
            result = bench_backend("sqlite", big, args.rss_messages, tmp)
            results.append(result)
            print(json.dumps(result, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
