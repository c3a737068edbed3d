"""The same payload delivered 8 times at once is stored once: in one process (the ASGI app)
and across two real ``chatsessions serve`` processes on one database, on both backends."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from chatsessions.config import Settings
from tests.channels.payloads import (
    create_channel,
    dumps,
    messages_of,
    meta_signature,
    wa_change,
    wa_contact,
    wa_message,
    wa_payload,
)
from tests.conftest import Tenant
from tests.resilience.harness import Server, create_user

PARALLEL = 8


def _payload(tag: str) -> bytes:
    """Two messages of a contact nobody has seen yet (so its creation races too)."""
    phone = "1555" + str(abs(hash(tag)) % 10**7).zfill(7)
    messages = [
        wa_message(f"wamid.{tag}.1", sender=phone),
        wa_message(f"wamid.{tag}.2", sender=phone),
    ]
    return dumps(wa_payload([wa_change(messages, contacts=[wa_contact(phone, "Racer")])]))


def _check(responses: list[httpx.Response], stored: list[dict[str, Any]], tag: str) -> None:
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    bodies = [r.json() for r in responses]
    assert sum(b["stored"] for b in bodies) == 2
    assert sum(b["duplicates"] for b in bodies) == 2 * (PARALLEL - 1)
    assert sorted(m["external_id"] for m in stored) == [f"wamid.{tag}.1", f"wamid.{tag}.2"]
    assert len({m["contact_id"] for m in stored}) == 1
    assert len({m["session_id"] for m in stored}) == 1


async def test_eight_parallel_deliveries_store_once_in_process(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    channel = await create_channel(client, tenant.auth, "whatsapp")
    body = _payload("inproc")
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": meta_signature(body)}
    responses = await asyncio.gather(
        *(
            client.post(channel["webhookPath"], content=body, headers=headers)
            for _ in range(PARALLEL)
        )
    )
    _check(list(responses), await messages_of(client, tenant.auth), "inproc")
    r = await client.get(f"/v1/channels/{channel['channelId']}", headers=tenant.auth)
    counters = r.json()["data"]["counters"]
    assert (counters["received"], counters["stored"], counters["duplicates"]) == (8, 2, 14)


async def test_eight_parallel_deliveries_store_once_across_two_server_processes(
    backend_settings: Settings, tmp_path: Path
) -> None:
    url = backend_settings.database_url
    env = {"CHATSESSIONS_SECRET_KEY": "shared-by-both-processes"}
    servers = [Server(url, tmp_path, **env), Server(url, tmp_path, **env)]
    for i, server in enumerate(servers):
        server.log_dir = tmp_path / f"s{i}"
        server.log_dir.mkdir()
        server.start()
    try:
        _user, key = await asyncio.to_thread(create_user, url)
        auth = {"X-API-Key": key}
        async with httpx.AsyncClient(base_url=servers[0].base_url, timeout=30) as first:
            channel = await create_channel(first, auth, "whatsapp")
            body = _payload("procs")
            headers = {
                "Content-Type": "application/json",
                "X-Hub-Signature-256": meta_signature(body),
            }
            clients = [httpx.AsyncClient(base_url=s.base_url, timeout=30) for s in servers]
            try:
                responses = await asyncio.gather(
                    *(
                        clients[n % 2].post(channel["webhookPath"], content=body, headers=headers)
                        for n in range(PARALLEL)
                    )
                )
            finally:
                for c in clients:
                    await c.aclose()
            _check(list(responses), await messages_of(first, auth), "procs")
    finally:
        for server in servers:
            server.kill()
