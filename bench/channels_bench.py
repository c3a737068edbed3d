"""Channel webhook latency and throughput against a real server, SQLite and PostgreSQL.

For each backend: a fresh database, ``chatsessions serve`` on it, a user and a WhatsApp
channel; then, with payloads built and signed before the clock starts:

- single-message payloads (each a new ``wamid``, 200 contacts) from 1 sender, then from
  32 concurrent senders: p50/p99 of the time to the 200 (committed);
- 100-message payloads (one ``entry``, 100 ``messages``) from 4 concurrent senders:
  messages stored per second;

the same 32-sender load through ``POST /v1/messages`` (what the machine gives the core
write path at that moment, for comparison); and the channel's counters at the end. Not part of the test suite; standalone.

    .venv/bin/python bench/channels_bench.py [--single 400] [--per-sender 25] [--bulk 20]
        [--backends sqlite,postgresql] [--admin-url postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
import orjson

APP_SECRET = "bench-app-secret-" + secrets.token_hex(8)
NOW = int(time.time())


def free_port() -> int:
    """A port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(-(-p * len(ordered) // 100)) - 1))]


def payload(first: int, count: int) -> tuple[bytes, dict[str, str]]:
    """A WhatsApp payload with ``count`` messages (ids from ``first``), and its headers."""
    messages, contacts = [], {}
    for n in range(first, first + count):
        phone = f"1555{n % 200:07d}"
        contacts[phone] = {"profile": {"name": f"Bench {n % 200}"}, "wa_id": phone}
        messages.append(
            {"from": phone, "id": f"wamid.bench.{n}", "timestamp": str(NOW - 3600 + n % 3000),
             "type": "text", "text": {"body": f"message {n}"}}
        )  # fmt: skip
    body = orjson.dumps(
        {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
            {"field": "messages", "value": {"messaging_product": "whatsapp",
             "metadata": {"phone_number_id": "1"}, "contacts": list(contacts.values()),
             "messages": messages}}]}]}
    )  # fmt: skip
    mac = hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={mac}"}


class Lane:
    """One keep-alive HTTP/1.1 connection sending pre-built requests one after another.

    The load generator runs on the same 2 cores as the server: httpx cost ~4.7 ms of
    client CPU per request (more than the server's), so at c=32 the client's own queue
    was most of the measured latency. Requests are built before the clock starts; a
    response is its status line, headers and Content-Length body (~0.1 ms per request).
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    def request(self, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        """The bytes of a POST."""
        head = [f"POST {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        head.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(head) + "\r\n\r\n").encode() + body

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        """Send one request and read its response: ``(status, body)``."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        """Close the connection."""
        if self.writer is not None:
            self.writer.close()


async def _send(base_url: str, path: str, items: list[tuple[bytes, dict[str, str]]],
                out: list[float], expect: int = 200) -> None:  # fmt: skip
    host, port = base_url.split("//", 1)[1].rsplit(":", 1)
    lane = Lane(host, int(port))
    requests = [lane.request(path, body, headers) for body, headers in items]
    try:
        for raw in requests:
            started = time.perf_counter()
            status, body = await lane.send(raw)
            out.append((time.perf_counter() - started) * 1000)
            assert status == expect, body
    finally:
        lane.close()


def _message(n: int) -> bytes:
    """The same single message as ``payload(n, 1)``, as a POST /v1/messages body."""
    return orjson.dumps(
        {"contact": {"phoneNumber": f"+1555{n % 200:07d}", "firstName": f"Bench {n % 200}"},
         "direction": "inbound", "content": f"message {n}", "externalId": f"ref.{n}",
         "timestamp": (NOW - 3600 + n % 3000) * 1000}
    )  # fmt: skip


def cpu_seconds(pid: int) -> float:
    """User + system CPU the process has used (Linux ``/proc``)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(
    base_url: str, api_key: str, single: int, per_sender: int, bulk: int, pid: int
) -> dict[str, Any]:
    """Create the channel, run the three loads, read the counters. The server's CPU per
    payload is measured too: on a shared machine the latencies mostly say how busy it was,
    the CPU what one request costs."""
    auth = {"X-API-Key": api_key}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        r = await client.post(
            "/v1/channels",
            json={"type": "whatsapp", "config": {"appSecret": APP_SECRET, "verifyToken": "v"}},
            headers=auth,
        )
        assert r.status_code == 201, r.text
        channel = r.json()["data"]
        path = channel["webhookPath"]
        n = 0
        warm = [payload(n + i, 1) for i in range(50)]
        n += 50
        await _send(base_url, path, warm, [])  # connections, prepared statements, caches

        one: list[float] = []
        items = [payload(n + i, 1) for i in range(single)]
        n += single
        await _send(base_url, path, items, one)

        many: list[float] = []
        lanes = [[payload(n + s * per_sender + i, 1) for i in range(per_sender)] for s in range(32)]
        n += 32 * per_sender
        started, cpu, mine = time.perf_counter(), cpu_seconds(pid), time.process_time()
        await asyncio.gather(*(_send(base_url, path, lane, many) for lane in lanes))
        c32_seconds = time.perf_counter() - started
        c32_cpu_ms = (cpu_seconds(pid) - cpu) * 1000 / len(many)
        client_cpu_ms = (time.process_time() - mine) * 1000 / len(many)
        print(f"  client CPU per payload at c=32: {client_cpu_ms:.2f} ms", flush=True)

        bulk_lat: list[float] = []
        bulk_lanes = [
            [payload(n + (s * bulk + i) * 100, 100) for i in range(bulk)] for s in range(4)
        ]
        n += 4 * bulk * 100
        started = time.perf_counter()
        await asyncio.gather(*(_send(base_url, path, lane, bulk_lat) for lane in bulk_lanes))
        bulk_seconds = time.perf_counter() - started

        # The same load through POST /v1/messages (inline contact by phone), on the same
        # server at the same moment: what the machine gives the core write path.
        reference: list[float] = []
        ref_lanes = [
            [_message(n + s * per_sender + i) for i in range(per_sender)] for s in range(32)
        ]
        n += 32 * per_sender
        started, cpu = time.perf_counter(), cpu_seconds(pid)
        ref_headers = {**auth, "Content-Type": "application/json"}
        await asyncio.gather(
            *(_send(base_url, "/v1/messages", [(b, ref_headers) for b in lane], reference, 201)
              for lane in ref_lanes)
        )  # fmt: skip
        ref_seconds = time.perf_counter() - started
        ref_cpu_ms = (cpu_seconds(pid) - cpu) * 1000 / len(reference)

        r = await client.get(f"/v1/channels/{channel['channelId']}", headers=auth)
        counters = r.json()["data"]["counters"]
    return {
        "c1": (percentile(one, 50), percentile(one, 99), len(one)),
        "c32": (
            percentile(many, 50),
            percentile(many, 99),
            len(many),
            len(many) / c32_seconds,
            c32_cpu_ms,
        ),
        "bulk": (4 * bulk * 100 / bulk_seconds, percentile(bulk_lat, 50), percentile(bulk_lat, 99)),
        "reference": (
            percentile(reference, 50),
            percentile(reference, 99),
            len(reference) / ref_seconds,
            ref_cpu_ms,
        ),
        "counters": counters,
    }


def run(backend: str, admin_url: str, single: int, per_sender: int, bulk: int) -> dict[str, Any]:
    """A fresh database of ``backend``, a server on it; measure; clean up."""
    workdir = tempfile.mkdtemp(prefix="channels-bench-")
    pg_name = None
    if backend == "sqlite":
        url = f"sqlite:///{workdir}/bench.db"
    else:
        pg_name = "cs_bench_" + secrets.token_hex(4)
        asyncio.run(_admin(admin_url, f'CREATE DATABASE "{pg_name}"'))
        url = admin_url.rsplit("/", 1)[0] + "/" + pg_name
    env = {**os.environ, "CHATSESSIONS_DATABASE_URL": url, "CHATSESSIONS_LOG_LEVEL": "warning",
           "CHATSESSIONS_SECRET_KEY_FILE": f"{workdir}/secret.key"}  # fmt: skip
    cli = [sys.executable, "-m", "chatsessions.cli"]
    server = None
    try:
        user = orjson.loads(
            subprocess.run([*cli, "users", "create", "--name", "bench", "--json"],
                           env=env, capture_output=True, check=True).stdout
        )  # fmt: skip
        port = free_port()
        server = subprocess.Popen(
            [*cli, "serve", "--port", str(port)], env=env, start_new_session=True
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        return asyncio.run(measure(base, user["apiKey"], single, per_sender, bulk, server.pid))
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)
        if pg_name is not None:
            asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))


async def _admin(admin_url: str, statement: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def main() -> None:
    """Parse the options, run each backend, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--single", type=int, default=400, help="payloads sent by one sender")
    parser.add_argument("--per-sender", type=int, default=25, help="payloads per sender of 32")
    parser.add_argument("--bulk", type=int, default=20, help="100-message payloads per sender of 4")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "CHATSESSIONS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; client and server on this machine")
    print(
        "| backend | c=1 p50 / p99 (ms) | c=32 p50 / p99 (ms), payloads/s, server CPU per payload "
        "| 100-message payloads: messages/s (p50 / p99 ms) "
        "| at the same moment, POST /v1/messages at c=32: p50 / p99 (ms), msg/s, server CPU per message |"
    )
    print("| --- | --- | --- | --- | --- |")
    for backend in args.backends.split(","):
        res = run(backend, args.admin_url, args.single, args.per_sender, args.bulk)
        c1, c32, bulk, ref = res["c1"], res["c32"], res["bulk"], res["reference"]
        print(
            f"| {backend} | {c1[0]:.1f} / {c1[1]:.1f} (n={c1[2]}) | {c32[0]:.1f} / {c32[1]:.1f} "
            f"(n={c32[2]}), {c32[3]:.0f}/s, {c32[4]:.2f} ms | {bulk[0]:.0f}/s ({bulk[1]:.0f} / {bulk[2]:.0f}) | "
            f"{ref[0]:.1f} / {ref[1]:.1f}, {ref[2]:.0f}/s, {ref[3]:.2f} ms |"
        )
        print(f"  counters[{backend}]: {orjson.dumps(res['counters']).decode()}")


if __name__ == "__main__":
    main()
