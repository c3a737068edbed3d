"""The error shape of every failure (docs/contract.md#authentication, docs/contract.md#listings): JSON, the right code, never a 422."""

from __future__ import annotations

import sqlite3
from typing import Any

import httpx
import pytest

from chatsessions.app import create_app
from chatsessions.auth import service as auth_service
from chatsessions.config import Settings
from chatsessions.db import Database, migrate
from tests.conftest import T0, Tenant, create_tenant

RECENT = "/v1/chat-sessions/recent?hours=1"


def assert_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """A JSON error body of the documented shape (docs/contract.md#parameters-and-errors), with ``nosniff``."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-content-type-options"] == "nosniff"
    body: dict[str, Any] = r.json()
    assert body["success"] is False
    assert body["code"] == code
    assert isinstance(body["error"], str) and body["error"]
    assert set(body) <= {"success", "error", "code", "parameter"}
    return body


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/"),
        ("GET", "/v1"),
        ("GET", "/v1/nope"),
        ("GET", "/v1/chat-sessions"),
        ("GET", "/v1/chat-sessions/recent/extra"),
        ("POST", "/v1/nope"),
        ("DELETE", "/v2/chat-sessions/recent"),
        ("GET", "/v1/sessions/AAAAAAAAAAAAAAAAAAAA/close/more"),
    ],
)
async def test_unknown_path_is_404_not_found(
    client: httpx.AsyncClient, tenant: Tenant, method: str, path: str
) -> None:
    for headers in ({}, tenant.auth):
        assert_error(await client.request(method, path, headers=headers), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/v1/chat-sessions/recent", "GET"),
        ("POST", "/v1/chat-sessions/recent", "GET"),
        ("PUT", "/v1/chat-sessions/AAAAAAAAAAAAAAAAAAAA", "GET"),
        ("DELETE", "/v1/sessions/AAAAAAAAAAAAAAAAAAAA", "GET"),
        ("GET", "/v1/sessions/AAAAAAAAAAAAAAAAAAAA/close", "POST"),
        ("PUT", "/v1/sessions/AAAAAAAAAAAAAAAAAAAA/close", "POST"),
    ],
)
async def test_wrong_method_is_405_method_not_allowed(
    client: httpx.AsyncClient, tenant: Tenant, method: str, path: str, allowed: str
) -> None:
    for headers in ({}, tenant.auth):
        r = await client.request(method, path, headers=headers)
        assert_error(r, 405, "method_not_allowed")
        assert allowed in r.headers["allow"]


async def _second_key(database: Database, user_id: str) -> str:
    async def work(conn: Any) -> str:
        return await auth_service.create_key(conn, user_id=user_id, now_ms=T0)

    return await database.run_write(work)


async def _revoke(database: Database, key: str) -> None:
    async def work(conn: Any) -> bool:
        return await auth_service.revoke_key(conn, api_key_or_id=key, now_ms=T0)

    assert await database.run_write(work)


async def test_every_cause_of_401_gives_the_same_body(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, database: Database
) -> None:
    revoked = await _second_key(database, tenant.user_id)
    await _revoke(database, revoked)
    unknown_key = "csk_" + "A" * 40
    mine, theirs = tenant.api_key, other_tenant.api_key
    causes: list[tuple[str, dict[str, str]]] = [
        ("", {}),
        ("", {"X-API-Key": ""}),
        ("", {"Authorization": ""}),
        ("&apiKey=", {}),
        ("&apiKey=nonsense", {}),
        (f"&apiKey={unknown_key}", {}),
        (f"&apiKey={revoked}", {}),
        ("", {"X-API-Key": revoked}),
        ("", {"Authorization": f"Bearer {revoked}"}),
        ("", {"X-API-Key": unknown_key}),
        ("", {"Authorization": f"Bearer {unknown_key}"}),
        ("", {"Authorization": "Bearer"}),
        ("", {"Authorization": f"Basic {mine}"}),
        ("", {"Authorization": f"Token {mine}"}),
        ("", {"Authorization": mine}),
        ("&userId=AAAAAAAAAAAAAAAAAAAA", {}),
        ("&userId=nope", {}),
        ("&userId=%27%20OR%201%3D1--", {}),
        # Two valid credentials of different users.
        (f"&apiKey={mine}", {"X-API-Key": theirs}),
        (f"&userId={other_tenant.user_id}", {"X-API-Key": mine}),
        ("", {"X-API-Key": mine, "Authorization": f"Bearer {theirs}"}),
        (f"&apiKey={mine}&apiKey={theirs}", {}),
        # A valid credential never covers for an invalid one.
        (f"&apiKey={mine}", {"X-API-Key": unknown_key}),
        (f"&apiKey={mine}", {"Authorization": f"Basic {mine}"}),
        (f"&userId={tenant.user_id}", {"X-API-Key": revoked}),
        (f"&apiKey={mine}&userId=AAAAAAAAAAAAAAAAAAAA", {}),
    ]
    bodies = []
    for query, headers in causes:
        r = await client.get(RECENT + query, headers=headers)
        bodies.append(assert_error(r, 401, "unauthorized"))
        assert mine not in r.text and tenant.user_id not in r.text
    assert all(body == bodies[0] for body in bodies), bodies
    assert set(bodies[0]) == {"success", "error", "code"}


async def test_each_valid_credential_form_is_accepted(
    client: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    second = await _second_key(database, tenant.user_id)
    key = tenant.api_key
    forms: list[tuple[str, dict[str, str]]] = [
        (f"&apiKey={key}", {}),
        ("", {"X-API-Key": key}),
        ("", {"Authorization": f"Bearer {key}"}),
        ("", {"Authorization": f"bearer {key}"}),
        (f"&userId={tenant.user_id}", {}),
        (f"&apiKey={key}&userId={tenant.user_id}", {"X-API-Key": second}),
        ("", {"X-API-Key": key, "Authorization": f"Bearer {second}"}),
    ]
    for query, headers in forms:
        r = await client.get(RECENT + query, headers=headers)
        assert r.status_code == 200, (query, headers, r.text)
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.json() == {"success": True, "count": 0, "next_cursor": None, "sessions": []}


async def test_user_id_auth_can_be_switched_off(
    backend_settings: Settings, database: Database, tenant: Tenant
) -> None:
    settings = backend_settings.model_copy(update={"allow_user_id_auth": False})
    app = create_app(settings, clock=lambda: T0, database=database)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        assert_error(await c.get(f"{RECENT}&userId={tenant.user_id}"), 401, "unauthorized")
        assert (await c.get(RECENT, headers=tenant.auth)).status_code == 200


async def test_authentication_comes_before_parameter_validation(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    for path in [
        "/v1/chat-sessions/recent",
        "/v1/chat-sessions/recent?hours=0",
        "/v1/chat-sessions/AAAAAAAAAAAAAAAAAAAA?limit=abc",
        "/v1/sessions/AAAAAAAAAAAAAAAAAAAA?messageLimit=-1",
    ]:
        assert_error(await client.get(path), 401, "unauthorized")
        r = await client.get(path, headers=tenant.auth)
        assert r.status_code in (400, 404), r.text
        assert_error(r, r.status_code, "invalid_parameter" if r.status_code == 400 else "not_found")
    for path in ["/v1/messages", "/v1/messages/batch"]:
        for body in (b"{not json", b'{"direction": "sideways"}', b'{"messages": 5}'):
            assert_error(await client.post(path, content=body), 401, "unauthorized")
            r = await client.post(path, content=body, headers=tenant.auth)
            assert_error(r, 400, "invalid_parameter")


async def test_bad_parameters_are_400_never_422(client: httpx.AsyncClient, tenant: Tenant) -> None:
    for path in [
        "/v1/chat-sessions/recent?hours=abc",
        "/v1/chat-sessions/recent?hours=1&limit=1.5",
        "/v1/chat-sessions/recent?hours=1&includeMessages=maybe",
        "/v1/chat-sessions/recent?hours=1&status=Pending",
        "/v1/chat-sessions/recent?hours=1&cursor=garbage",
        "/v1/chat-sessions/recent?hours=1&messageLimit=0",
        "/v1/sessions/AAAAAAAAAAAAAAAAAAAA?messageLimit=abc",
    ]:
        assert_error(await client.get(path, headers=tenant.auth), 400, "invalid_parameter")
    r = await client.post(
        "/v1/sessions/AAAAAAAAAAAAAAAAAAAA/close?messageLimit=x",
        content=b"{not json",
        headers={**tenant.auth, "Content-Type": "application/json"},
    )
    assert_error(r, 400, "invalid_parameter")


async def test_successful_responses_are_json_with_nosniff(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    for path in ["/v1/chat-sessions/recent?hours=1", "/healthz"]:
        r = await client.get(path, headers=tenant.auth)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/json"
        assert r.headers["x-content-type-options"] == "nosniff"
        r.json()


async def test_unexpected_errors_are_500_json_without_internals(
    backend_settings: Settings, database: Database
) -> None:
    app = create_app(backend_settings, clock=lambda: T0, database=database)

    async def boom() -> None:
        raise RuntimeError("secret internals at /srv/app.py line 42")

    app.add_api_route("/v1/boom", boom)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await c.get("/v1/boom")
    body = assert_error(r, 500, "internal")
    assert "secret" not in r.text and "Traceback" not in r.text
    assert set(body) == {"success", "error", "code"}


async def test_unexpected_errors_in_a_listing_are_500_json_without_internals(
    backend_settings: Settings, database: Database, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The listings are served ahead of FastAPI's router (web.HotRoutes): an error there
    still reaches the app's handler, as from any route."""
    from chatsessions.sessions import service as sessions_service

    async def boom(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("secret internals at /srv/app.py line 42")

    monkeypatch.setattr(sessions_service, "list_sessions_page", boom)
    app = create_app(backend_settings, clock=lambda: T0, database=database)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        for path in (RECENT, "/v1/chat-sessions/AAAAAAAAAAAAAAAAAAAA"):
            r = await c.get(path, headers=tenant.auth)
            body = assert_error(r, 500, "internal")
            assert "secret" not in r.text and "Traceback" not in r.text
            assert set(body) == {"success", "error", "code"}


async def test_an_unreachable_database_is_503_json(backend_settings: Settings) -> None:
    settings = backend_settings.model_copy(
        update={"database_url": "postgresql://postgres@127.0.0.1:1/nowhere"}
    )
    unreachable = Database(settings)
    try:
        app = create_app(settings, clock=lambda: T0, database=unreachable)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            r = await c.get(RECENT, headers={"X-API-Key": "csk_" + "A" * 40})
        assert_error(r, 503, "unavailable")
    finally:
        await unreachable.dispose()


async def test_trailing_slash_is_a_json_404_not_a_redirect(client, tenant) -> None:
    r = await client.get("/v1/chat-sessions/recent/?hours=1", headers=tenant.auth)
    assert r.status_code == 404
    assert r.json()["code"] == "not_found"


async def test_sqlite_write_lock_held_elsewhere_is_503_json_then_the_write_succeeds(
    tmp_path: Any,
) -> None:
    """Another process holds SQLite's write lock (a CLI import, a second server) longer
    than the busy timeout: the write is answered 503 "unavailable", not 500, and stored
    when retried after the lock is released. The lock is taken on the driver, where a
    write's BEGIN IMMEDIATE now runs, so its error is the driver's own."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'locked.db'}",
        database_busy_timeout=0.2,
        secret_key="test-secret",
    )
    await migrate(settings)
    database = Database(settings)
    holder = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
    try:
        tenant = await create_tenant(database)
        app = create_app(settings, clock=lambda: T0, database=database)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            contact = await c.post(
                "/v1/contacts", json={"phoneNumber": "+15550002020"}, headers=tenant.auth
            )
            assert contact.status_code in (200, 201), contact.text
            body = {
                "contactId": contact.json()["data"]["contactId"],
                "direction": "inbound",
                "content": "hi",
                "externalId": "held-1",
            }
            holder.execute("BEGIN IMMEDIATE")
            r = await c.post("/v1/messages", json=body, headers=tenant.auth)
            assert_error(r, 503, "unavailable")
            holder.execute("ROLLBACK")
            r = await c.post("/v1/messages", json=body, headers=tenant.auth)
            assert r.status_code == 201, r.text
    finally:
        holder.close()
        await database.dispose()
