"""Operational endpoints and HTTP defaults: health, readiness, metrics, OpenAPI, limits."""

from __future__ import annotations

import httpx

from chatsessions.app import create_app
from chatsessions.config import Settings
from chatsessions.db import Database
from tests.conftest import FakeClock, Tenant


def _client(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")  # type: ignore[arg-type]


async def test_health_and_readiness(client) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200 and r.json()["success"] is True
    r = await client.get("/readyz")
    assert r.status_code == 200 and r.json()["success"] is True


async def test_readiness_is_503_when_the_database_is_unreachable() -> None:
    settings = Settings(
        database_url="postgresql://postgres@127.0.0.1:1/none", database_connect_timeout=2
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await c.get("/readyz")
        assert r.status_code == 503 and r.json()["code"] == "unavailable"
        r = await c.get(
            "/v1/chat-sessions/recent", params={"hours": 1, "apiKey": "csk_" + "a" * 40}
        )
        assert r.status_code == 503
        assert r.json() == {
            "success": False,
            "error": "the database is unreachable; retry shortly",
            "code": "unavailable",
        }
    await app.state.db.dispose()


async def test_metrics_need_the_token_when_configured(
    backend_settings: Settings, database: Database, client
) -> None:
    r = await client.get("/metrics")
    assert r.status_code == 200 and "chatsessions_http_requests_total" in r.text
    app = create_app(
        backend_settings.model_copy(update={"metrics_token": "s3cret"}), database=database
    )
    async with _client(app) as c:
        assert (await c.get("/metrics")).status_code == 401
        r = await c.get("/metrics", headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 200


async def test_hot_routes_are_counted_by_route_template(client, tenant: Tenant) -> None:
    """/metrics labels the listings and ingest routes (served ahead of the router) by
    their route template, never by the contact id in the path, and counts each status."""
    from prometheus_client import REGISTRY

    def count(route: str, status: str, method: str = "GET") -> float:
        labels = {"method": method, "route": route, "status": status}
        return REGISTRY.get_sample_value("chatsessions_http_requests_total", labels) or 0.0

    contact = "/v1/chat-sessions/{contactId}"
    before = {
        "recent 200": count("/v1/chat-sessions/recent", "200"),
        "recent 400": count("/v1/chat-sessions/recent", "400"),
        "contact 404": count(contact, "404"),
        "messages 400": count("/v1/messages", "400", "POST"),
    }
    r = await client.post("/v1/messages", json={"direction": "inbound"}, headers=tenant.auth)
    assert r.status_code == 400
    assert count("/v1/messages", "400", "POST") == before["messages 400"] + 1
    assert (
        await client.get("/v1/chat-sessions/recent?hours=1", headers=tenant.auth)
    ).status_code == 200
    assert (
        await client.get("/v1/chat-sessions/recent?hours=x", headers=tenant.auth)
    ).status_code == 400
    r = await client.get("/v1/chat-sessions/ZZZZZZZZZZZZZZZZZZZZ", headers=tenant.auth)
    assert r.status_code == 404
    assert count("/v1/chat-sessions/recent", "200") == before["recent 200"] + 1
    assert count("/v1/chat-sessions/recent", "400") == before["recent 400"] + 1
    assert count(contact, "404") == before["contact 404"] + 1
    assert "ZZZZZZZZZZZZZZZZZZZZ" not in (await client.get("/metrics")).text


async def test_openapi_is_3_1_and_documents_the_api(client) -> None:
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    assert spec["openapi"].startswith("3.1")
    for path in ("/v1/chat-sessions/recent", "/v1/chat-sessions/{contactId}", "/v1/messages"):
        assert path in spec["paths"]
    params = {p["name"] for p in spec["paths"]["/v1/chat-sessions/recent"]["get"]["parameters"]}
    assert {"hours", "status", "limit", "includeMessages", "messageLimit", "cursor"} <= params
    assert (await client.get("/docs")).status_code == 200


async def test_docs_can_be_turned_off(backend_settings: Settings, database: Database) -> None:
    app = create_app(backend_settings.model_copy(update={"docs_enabled": False}), database=database)
    async with _client(app) as c:
        assert (await c.get("/docs")).status_code == 404
        assert (await c.get("/openapi.json")).status_code == 404


async def test_security_headers_and_no_cors_by_default(client, tenant: Tenant) -> None:
    r = await client.get(
        "/v1/chat-sessions/recent?hours=1",
        headers={**tenant.auth, "Origin": "https://evil.example"},
    )
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "access-control-allow-origin" not in r.headers
    assert "server" not in r.headers


async def test_per_key_rate_limit(
    backend_settings: Settings, database: Database, tenant: Tenant
) -> None:
    app = create_app(
        backend_settings.model_copy(update={"rate_limit": "3/minute"}),
        clock=FakeClock(),
        database=database,
    )
    async with _client(app) as c:
        codes = [
            (await c.get("/v1/chat-sessions/recent?hours=1", headers=tenant.auth)).status_code
            for _ in range(4)
        ]
        assert codes == [200, 200, 200, 429]
        r = await c.get("/v1/chat-sessions/recent?hours=1", headers=tenant.auth)
        assert r.json()["code"] == "rate_limited"
        assert 1 <= int(r.headers["Retry-After"]) <= 61


async def test_rate_limit_holds_across_processes(
    backend_settings: Settings, backend: str, tenant: Tenant
) -> None:
    """Two apps with their own engines (as two processes would have) share one budget."""
    settings = backend_settings.model_copy(update={"rate_limit": "4/minute"})
    dbs = [Database(settings), Database(settings)]
    apps = [create_app(settings, clock=FakeClock(), database=db) for db in dbs]
    codes = []
    async with _client(apps[0]) as a, _client(apps[1]) as b:
        for c in (a, b, a, b, a, b):
            r = await c.get("/v1/chat-sessions/recent?hours=1", headers=tenant.auth)
            codes.append(r.status_code)
    for db in dbs:
        await db.dispose()
    assert codes == [200, 200, 200, 200, 429, 429]


async def test_listings_run_on_a_pool_of_one_connection_with_the_limiter_in_the_database(
    backend_settings: Settings, tenant: Tenant
) -> None:
    """A listing authenticates and reads on one pooled connection; the database rate
    limiter's write takes its own, so the listing must not hold one meanwhile (with a
    pool of one it would wait for itself and fail with 503)."""
    settings = backend_settings.model_copy(
        update={
            "rate_limit": "100/minute",
            "database_pool_size": 1,
            "database_max_overflow": 0,
            "database_connect_timeout": 2.0,
        }
    )
    db = Database(settings)
    app = create_app(settings, clock=FakeClock(), database=db)
    try:
        async with _client(app) as c:
            for url in (
                "/v1/chat-sessions/recent?hours=1",
                "/v1/chat-sessions/recent?hours=1&includeMessages=true",
            ):
                r = await c.get(url, headers=tenant.auth)
                assert r.status_code == 200, r.text
                assert r.json()["success"] is True
    finally:
        await db.dispose()


async def test_rate_limit_is_per_key_and_can_live_in_redis(
    backend_settings: Settings, database: Database, tenant: Tenant
) -> None:
    """Each key has its own budget; with CHATSESSIONS_REDIS_URL the counters are in Redis."""
    import uuid

    from chatsessions.auth import service as auth_service

    async def second_key(conn: object) -> str:
        return await auth_service.create_key(conn, user_id=tenant.user_id, now_ms=0)  # type: ignore[arg-type]

    other_key = await database.run_write(second_key)
    settings = backend_settings.model_copy(
        update={"rate_limit": "2/minute", "redis_url": "redis://127.0.0.1:6379/0"}
    )
    # A clock of its own makes a fresh window in Redis for this run.
    clock = FakeClock(1_900_000_000_000 + uuid.uuid4().int % 10**6 * 60_000)
    app = create_app(settings, clock=clock, database=database)
    async with _client(app) as c:
        url = "/v1/chat-sessions/recent?hours=1"
        first = [(await c.get(url, headers=tenant.auth)).status_code for _ in range(3)]
        second = [
            (await c.get(url, headers={"X-API-Key": other_key})).status_code for _ in range(3)
        ]
    assert first == [200, 200, 429]
    assert second == [200, 200, 429]
