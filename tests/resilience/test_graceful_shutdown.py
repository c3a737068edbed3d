"""Graceful shutdown: SIGTERM lets an in-flight request finish and refuses new ones."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import httpx
import orjson

from tests.polling import wait_until
from tests.resilience.harness import Server, create_user


async def _positive(value: Awaitable[float]) -> bool:
    return await value > 0


async def test_sigterm_finishes_in_flight_requests_and_refuses_new(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/graceful.db"
    _user, key = create_user(url)
    server = Server(url, tmp_path, CHATSESSIONS_SHUTDOWN_GRACE_SECONDS="20")
    server.start()
    try:
        headers = {"X-API-Key": key, "Content-Type": "application/json"}
        body = orjson.dumps({"phoneNumber": "+15550100200", "firstName": "Slow"})
        terminated = asyncio.Event()

        async def slow_body() -> AsyncIterator[bytes]:
            yield body[:10]
            await terminated.wait()  # the rest only once the server refuses new connections
            yield body[10:]

        async def in_flight_requests() -> float:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as probe:
                text = (await probe.get("/metrics")).text
            [line] = [
                ln
                for ln in text.splitlines()
                if ln.startswith("chatsessions_http_requests_in_flight ")
            ]
            return float(line.split()[1]) - 1  # not counting this /metrics request

        async def refuses_connections() -> bool:
            try:
                async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as fresh:
                    await fresh.get("/healthz")
            except httpx.ConnectError:
                return True  # the listener is closed
            except httpx.TransportError:
                return False  # accepted just before it closed, then dropped: not yet
            return False

        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
            in_flight = asyncio.create_task(
                http.post("/v1/contacts", content=slow_body(), headers=headers)
            )
            # Progress, not a timer: the server is serving the request (it has its head).
            await wait_until(
                lambda: _positive(in_flight_requests()), what="the slow request to be in flight"
            )
            assert server.proc is not None
            server.proc.send_signal(15)
            await wait_until(refuses_connections, what="the server to refuse new connections")
            terminated.set()
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
