"""Durability and sharing across processes: a server killed between the outbox write and
the delivery loses nothing; two workers on one database never send an event twice."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chatsessions.config import Settings
from chatsessions.db import Database
from chatsessions.webhooks.worker import DeliveryWorker
from tests.conftest import T0, Tenant
from tests.factories import make_contact
from tests.polling import DEFAULT_DEADLINE_S, wait_until
from tests.webhooks.conftest import subscribe
from tests.webhooks.receiver import Receiver, dump


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Serve:
    """``chatsessions serve`` as a subprocess (its own process group, so we can kill it)."""

    def __init__(self, database_url: str, log: Path) -> None:
        self.port = _free_port()
        self.log = log
        self.env = {
            **os.environ,
            "CHATSESSIONS_DATABASE_URL": database_url,
            "CHATSESSIONS_WEBHOOK_ALLOW_PRIVATE": "true",
            "CHATSESSIONS_LOG_LEVEL": "warning",
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "chatsessions.cli", "serve", "--port", str(self.port)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + DEFAULT_DEADLINE_S
        async with httpx.AsyncClient(base_url=self.base_url, timeout=1) as c:
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, self.log.read_text()[-3000:]
                try:
                    if (await c.get("/healthz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError("server did not start: " + self.log.read_text()[-3000:])

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)


@pytest.fixture
def servers(tmp_path: Path, backend_settings: Settings) -> Iterator[list[Serve]]:
    made: list[Serve] = []
    yield made
    for s in made:
        s.kill()


async def test_event_survives_a_killed_server(
    backend_settings: Settings,
    tenant: Tenant,
    receiver: Receiver,
    servers: list[Serve],
    tmp_path: Path,
) -> None:
    first = Serve(backend_settings.database_url, tmp_path / "serve.log")
    servers.append(first)
    await first.start()
    async with httpx.AsyncClient(base_url=first.base_url, timeout=10) as api:
        hook = (await subscribe(api, tenant, receiver))["webhookId"]
        port = receiver.port
        receiver.stop()
        contact = await make_contact(api, tenant.auth)
        r = await api.post(
            "/v1/messages",
            json={"contactId": contact, "direction": "inbound", "content": "are you there?"},
            headers=tenant.auth,
        )
        assert r.status_code == 201, r.text

        async def attempted() -> bool:
            page = (await api.get(f"/v1/webhooks/{hook}/deliveries", headers=tenant.auth)).json()
            return any(d["attempts"] >= 1 for d in page["data"])

        # The in-process worker tried at once (refused) and scheduled a retry in ~5 s.
        await wait_until(attempted, what="a first delivery attempt")
    first.kill()
    revived = Receiver(secret=receiver.secret, port=port).start()
    try:
        second = Serve(backend_settings.database_url, tmp_path / "serve.log")
        servers.append(second)
        await second.start()

        async def arrived() -> bool:
            return len(revived.unique()) >= 2

        await wait_until(arrived, what="both events at the revived receiver")
        second.kill(signal.SIGTERM)
        assert revived.rejected == []
        assert revived.types() == ["ChatSessionOpened", "MessageReceived"], dump(revived)
        assert revived.unique()[1].body["data"]["message"]["content"] == "are you there?"
    finally:
        revived.stop()


async def test_two_workers_share_without_duplicates(
    pclient: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    backend_settings: Settings,
) -> None:
    await subscribe(pclient, tenant, receiver)
    contacts = [await make_contact(pclient, tenant.auth) for _ in range(12)]
    items = [
        {
            "contactId": c,
            "direction": "inbound",
            "content": f"{c}:{i}",
            "timestamp": T0 - 600_000 + i,
        }
        for i in range(4)
        for c in contacts
    ]
    r = await pclient.post("/v1/messages/batch", json={"messages": items}, headers=tenant.auth)
    assert r.status_code == 200, r.text
    expected = len(contacts) * 5  # Opened + 4 MessageReceived each
    dbs = [Database(backend_settings), Database(backend_settings)]
    workers = [DeliveryWorker(db, allow_private=True, batch_size=4) for db in dbs]
    sent = [0, 0]

    async def run(i: int) -> None:
        deadline = time.monotonic() + DEFAULT_DEADLINE_S
        while len(receiver.received) < expected and time.monotonic() < deadline:
            n = await workers[i].run_once()
            sent[i] += n
            if n == 0:
                await asyncio.sleep(0.01)

    try:
        await asyncio.gather(run(0), run(1))
    finally:
        for w in workers:
            await w.aclose()
        for db in dbs:
            await db.dispose()
    assert receiver.rejected == []
    assert len(receiver.received) == expected, dump(receiver)  # none twice
    assert len(receiver.unique()) == expected  # none skipped
    assert sum(sent) == expected and min(sent) > 0, sent  # both took part
    for c in contacts:
        mine = [g for g in receiver.received if g.body["data"]["session"]["contact_id"] == c]
        assert [g.type for g in mine] == ["ChatSessionOpened"] + ["MessageReceived"] * 4
        assert [g.body["data"]["message"]["content"] for g in mine[1:]] == [
            f"{c}:{i}" for i in range(4)
        ]


async def test_worker_command_delivers_and_stops_on_sigterm(
    pclient: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    backend_settings: Settings,
    tmp_path: Path,
) -> None:
    await subscribe(pclient, tenant, receiver)
    contact = await make_contact(pclient, tenant.auth)
    r = await pclient.post(
        "/v1/messages",
        json={"contactId": contact, "direction": "outbound", "content": "hi", "timestamp": T0},
        headers=tenant.auth,
    )
    assert r.status_code == 201, r.text
    log = tmp_path / "worker.log"
    env = {
        **os.environ,
        "CHATSESSIONS_DATABASE_URL": backend_settings.database_url,
        "CHATSESSIONS_WEBHOOK_ALLOW_PRIVATE": "true",
    }
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "chatsessions.cli", "worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        async def arrived() -> bool:
            return len(receiver.unique()) >= 3

        # The message is at the test clock's T0, days before the worker's real clock: its
        # sweeper announces the silence close at once, after the first two.
        await wait_until(arrived, what="the three events from the worker")
        assert receiver.types() == ["ChatSessionOpened", "MessageReceived", "ChatSessionClosed"]
        closed = receiver.unique()[2].body["data"]["session"]
        assert closed["closed_reason"] == "inactivity"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        code = proc.wait(timeout=30)
    assert code == 0, log.read_text()[-2000:]
