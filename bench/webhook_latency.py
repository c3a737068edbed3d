"""Webhook delivery latency: event created → receiver got it, over N events.

Runs ``chatsessions serve`` (its delivery loop in-process, as in production) on a fresh
PostgreSQL database, a local receiver (its own process; every signature is verified), and
posts N messages;
each ``MessageReceived`` event's latency is the receiver's arrival time minus the event's
``timestamp`` (the request's time, taken when the request that wrote it began). A second
figure starts the clock when the API answered that request (commit done), which leaves
out the time the request itself spent queued in a busy server. Not part of the test suite.

    .venv/bin/python bench/webhook_latency.py [--events 1000] [--concurrency 1]
        [--admin-url postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
import orjson
from standardwebhooks import Webhook


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(conn: Any, path: str) -> None:
    """The receiver process: answer 204 at once, append each request to ``path``."""
    lock = threading.Lock()
    out = open(path, "ab")  # noqa: SIM115 - closed when the process ends

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            arrived = time.time()
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            self.send_response(204)
            self.end_headers()
            record = {"t": arrived, "h": {k.lower(): v for k, v in self.headers.items()}}
            record["b"] = raw.decode()
            with lock:
                out.write(orjson.dumps(record) + b"\n")
                out.flush()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    conn.send(server.server_address[1])
    server.serve_forever()


class Receiver:
    """A receiver in its own process (so its timing does not share the poster's GIL);
    signatures are verified afterwards, from what it recorded."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.secret = ""
        parent, child = multiprocessing.Pipe()
        self.proc = multiprocessing.get_context("fork").Process(
            target=_serve, args=(child, path), daemon=True
        )
        self.proc.start()
        self.port = int(parent.recv())

    def count(self) -> int:
        try:
            with open(self.path, "rb") as f:
                return sum(1 for _ in f)
        except FileNotFoundError:
            return 0

    def latencies_ms(self, answered: dict[str, float]) -> tuple[list[float], list[float], int]:
        """Per event (first arrival): ms since its ``timestamp`` and ms since the API answered
        the POST that stored its message; and how many signatures failed."""
        since_created: dict[str, float] = {}
        since_answer: dict[str, float] = {}
        bad = 0
        with open(self.path, "rb") as f:
            for line in f:
                rec = orjson.loads(line)
                try:
                    body = Webhook(self.secret).verify(rec["b"], rec["h"])
                except Exception:
                    bad += 1
                    continue
                event_id = rec["h"]["webhook-id"]
                created = datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00"))
                since_created.setdefault(event_id, (rec["t"] - created.timestamp()) * 1000)
                answer = answered.get(body["data"]["message"]["message_id"])
                if answer is not None:
                    since_answer.setdefault(event_id, (rec["t"] - answer) * 1000)
        return list(since_created.values()), list(since_answer.values()), bad

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.join(timeout=10)


async def _create_database(admin_url: str, name: str) -> None:
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()


async def _drop_database(admin_url: str, name: str) -> None:
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


async def measure(
    base_url: str, api_key: str, receiver: Receiver, events: int, concurrency: int
) -> None:
    """Subscribe, post ``events`` messages, wait for them all, print the latencies."""
    auth = {"X-API-Key": api_key}
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as api:
        for _ in range(300):
            try:
                if (await api.get("/healthz")).status_code == 200:
                    break
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
        r = await api.post(
            "/v1/webhooks",
            json={"url": f"http://127.0.0.1:{receiver.port}/hook", "events": ["MessageReceived"]},
            headers=auth,
        )
        receiver.secret = r.json()["data"]["secret"]
        contacts = []
        for i in range(50):
            r = await api.post("/v1/contacts", json={"phoneNumber": f"+1555{i:07d}"}, headers=auth)
            contacts.append(r.json()["data"]["contactId"])
        answered: dict[str, float] = {}
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(events):
            queue.put_nowait(i)

        async def poster() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                body = {"contactId": contacts[i % len(contacts)], "direction": "inbound",
                        "content": f"message {i}"}  # fmt: skip
                r = await api.post("/v1/messages", json=body, headers=auth)
                assert r.status_code == 201, r.text
                answered[r.json()["messageId"]] = time.time()

        started = time.perf_counter()
        await asyncio.gather(*(poster() for _ in range(concurrency)))
        posted = time.perf_counter() - started
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if receiver.count() >= events:
                break
            await asyncio.sleep(0.05)
    since_created, since_answer, bad = receiver.latencies_ms(answered)
    print(
        f"events={len(since_created)}/{events} concurrency={concurrency} "
        f"posted in {posted:.1f}s ({events / posted:.0f} msg/s) bad_signatures={bad}"
    )
    for label, values in (
        ("event created -> received", since_created),
        ("API answered  -> received", since_answer),
    ):
        lat = sorted(values)
        p99 = lat[max(0, int(len(lat) * 0.99) - 1)]
        print(
            f"{label} (ms): median={statistics.median(lat):.1f} p99={p99:.1f} "
            f"max={lat[-1]:.1f} min={lat[0]:.1f}"
        )


def run(events: int, concurrency: int, admin_url: str) -> None:
    """A fresh database, ``chatsessions serve`` on it, a receiver; measure; clean up."""
    name = "cs_bench_" + secrets.token_hex(4)
    asyncio.run(_create_database(admin_url, name))
    env = {
        **os.environ,
        "CHATSESSIONS_DATABASE_URL": admin_url.rsplit("/", 1)[0] + "/" + name,
        "CHATSESSIONS_WEBHOOK_ALLOW_PRIVATE": "true",
        "CHATSESSIONS_LOG_LEVEL": "warning",
    }
    cli = [sys.executable, "-m", "chatsessions.cli"]
    server = None
    workdir = tempfile.mkdtemp(prefix="webhook-bench-")
    receiver = Receiver(os.path.join(workdir, "received.jsonl"))
    try:
        user = orjson.loads(
            subprocess.run(
                [*cli, "users", "create", "--name", "bench", "--json"],
                env=env, capture_output=True, check=True,
            ).stdout
        )  # fmt: skip
        port = free_port()
        server = subprocess.Popen(
            [*cli, "serve", "--port", str(port)], env=env, start_new_session=True
        )
        asyncio.run(
            measure(f"http://127.0.0.1:{port}", user["apiKey"], receiver, events, concurrency)
        )
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        receiver.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        asyncio.run(_drop_database(admin_url, name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "CHATSESSIONS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    args = parser.parse_args()
    run(args.events, args.concurrency, args.admin_url)


if __name__ == "__main__":
    main()
