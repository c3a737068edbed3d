"""Graceful shutdown: SIGTERM lets an in-flight request finish and refuses new ones."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.resilience.harness import Server, create_user


async def test_sigterm_finishes_in_flight_requests_and_refuses_new(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/graceful.db"
    _user, key = create_user(url)
    server = Server(url, tmp_path, CHATSESSIONS_SHUTDOWN_GRACE_SECONDS="20")
    server.start()
    try:
        headers = {"X-API-Key": key, "Content-Type": "application/json"}
        body = orjson.dumps({"phoneNumber": "+15550100200", "firstName": "Slow"})
        first_chunk_sent = asyncio.Event()
        terminated = asyncio.Event()

        async def slow_body() -> AsyncIterator[bytes]:
            yield body[:10]
            first_chunk_sent.set()
            await terminated.wait()
            await asyncio.sleep(1.0)  # still streaming well after SIGTERM
            yield body[10:]

        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            in_flight = asyncio.create_task(
                http.post("/v1/contacts", content=slow_body(), headers=headers)
            )
            await first_chunk_sent.wait()
            await asyncio.sleep(0.3)  # the server has the request's head
            assert server.proc is not None
            server.proc.send_signal(15)
            terminated.set()
            await asyncio.sleep(0.3)
            with pytest.raises(httpx.ConnectError):
                async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as fresh:
                    await fresh.get("/healthz")
            response = await in_flight
        assert response.status_code == 200, response.text
        assert response.json()["data"]["contactId"]
        # uvicorn re-raises SIGTERM once it has shut down cleanly (exit status -15).
        assert server.proc.wait(timeout=30) in (0, -15)
        log = (tmp_path / "serve-1.log").read_text()
        assert "Finished server process" in log  # a clean shutdown, not a crash
    finally:
        server.kill()

    # The acknowledged contact was stored.
    server = Server(url, tmp_path)
    server.start()
    try:
        r = httpx.get(
            server.base_url + "/v1/contacts",
            params={"phoneNumber": "+15550100200"},
            headers={"X-API-Key": key},
        )
        assert r.status_code == 200
    finally:
        server.kill()
