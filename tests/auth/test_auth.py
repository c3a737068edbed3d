"""Authentication (SPEC §2): every credential form, mismatches, revocation, throttling,
hash-only storage and masked logs."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from chatsessions import tables
from chatsessions.app import create_app
from chatsessions.auth import service as auth_service
from chatsessions.config import Settings
from chatsessions.db import Database
from chatsessions.logging_setup import configure_logging
from tests.conftest import FakeClock, Tenant

URL = "/v1/chat-sessions/recent"


async def _get(client: httpx.AsyncClient, url: str = URL, **kw: Any) -> httpx.Response:
    kw["params"] = {"hours": "1", **kw.get("params", {})}
    return await client.get(url, **kw)


async def test_each_credential_form_authenticates(client, tenant: Tenant) -> None:
    k, u = tenant.api_key, tenant.user_id
    for kw in (
        {"params": {"apiKey": k}},
        {"headers": {"X-API-Key": k}},
        {"headers": {"Authorization": f"Bearer {k}"}},
        {"headers": {"Authorization": f"bearer {k}"}},
        {"params": {"userId": u}},
        {"params": {"apiKey": k, "userId": u}, "headers": {"X-API-Key": k}},
    ):
        r = await _get(client, **kw)
        assert r.status_code == 200, (kw, r.text)


async def test_every_failure_is_the_same_401(
    client, tenant: Tenant, other_tenant: Tenant, database: Database
) -> None:
    async def revoke(conn: Any) -> bool:
        return await auth_service.revoke_key(conn, api_key_or_id=other_tenant.api_key, now_ms=0)

    bad = "csk_" + "A" * 40
    cases = [
        {},
        {"params": {"apiKey": bad}},
        {"params": {"apiKey": "nonsense"}},
        {"headers": {"X-API-Key": bad}},
        {"headers": {"Authorization": f"Bearer {bad}"}},
        {"headers": {"Authorization": f"Basic {tenant.api_key}"}},
        {"params": {"userId": "B" * 20}},
        # a valid key never rescues an invalid credential, and two users never mix
        {"params": {"apiKey": tenant.api_key}, "headers": {"X-API-Key": bad}},
        {"params": {"apiKey": tenant.api_key, "userId": other_tenant.user_id}},
        {"headers": {"X-API-Key": tenant.api_key, "Authorization": f"Bearer {other_tenant.api_key}"}},
    ]
    bodies = set()
    for kw in cases:
        r = await _get(client, **kw)
        assert r.status_code == 401, (kw, r.text)
        bodies.add(r.text)
    await database.run_write(revoke)
    r = await _get(client, headers={"X-API-Key": other_tenant.api_key})
    assert r.status_code == 401  # revocation takes effect on the next request
    bodies.add(r.text)
    assert len(bodies) == 1
    assert r.json() == {"success": False, "error": r.json()["error"], "code": "unauthorized"}


async def test_user_id_auth_can_be_switched_off(
    backend_settings: Settings, database: Database, tenant: Tenant
) -> None:
    settings = backend_settings.model_copy(update={"allow_user_id_auth": False})
    app = create_app(settings, clock=FakeClock(), database=database)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        assert (await _get(c, params={"userId": tenant.user_id})).status_code == 401
        assert (await _get(c, params={"apiKey": tenant.api_key})).status_code == 200


async def test_repeated_failures_from_one_address_are_throttled(
    backend_settings: Settings, database: Database, tenant: Tenant
) -> None:
    settings = backend_settings.model_copy(
        update={"auth_failure_limit": 20, "trusted_proxies": ["127.0.0.0/8"]}
    )
    app = create_app(settings, clock=FakeClock(), database=database)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        attacker = {"X-Forwarded-For": "203.0.113.9", "X-API-Key": "csk_" + "Z" * 40}
        for _ in range(20):
            assert (await _get(c, headers=attacker)).status_code == 401
        r = await _get(c, headers=attacker)
        assert r.status_code == 429
        assert r.json()["code"] == "rate_limited"
        assert 1 <= int(r.headers["Retry-After"]) <= 61
        # Another client address behind the same trusted proxy is not affected.
        other = {"X-Forwarded-For": "198.51.100.7", **tenant.auth}
        assert (await _get(c, headers=other)).status_code == 200


async def test_forwarded_for_is_ignored_from_untrusted_peers(
    backend_settings: Settings, database: Database
) -> None:
    settings = backend_settings.model_copy(update={"auth_failure_limit": 3})
    app = create_app(settings, clock=FakeClock(), database=database)
    transport = httpx.ASGITransport(app=app, client=("192.0.2.1", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        for i in range(3):
            # Spoofing a new X-Forwarded-For each time does not escape the throttle.
            r = await _get(c, headers={"X-Forwarded-For": f"10.0.0.{i}"})
            assert r.status_code == 401
        assert (await _get(c, headers={"X-Forwarded-For": "10.0.0.99"})).status_code == 429


async def test_only_hashes_are_stored(database: Database, tenant: Tenant) -> None:
    async with database.read() as conn:
        rows = (await conn.execute(select(tables.api_keys))).all()
    dumped = repr(rows)
    assert tenant.api_key not in dumped
    assert tenant.api_key[4:] not in dumped
    assert auth_service.hash_key(tenant.api_key) in dumped


def test_access_and_error_logs_mask_keys_and_user_ids(caplog: pytest.LogCaptureFixture) -> None:
    configure_logging()
    key = "csk_" + "k" * 40
    access = logging.getLogger("uvicorn.access")
    with caplog.at_level(logging.INFO):
        access.info(
            '%s - "%s %s HTTP/%s" %d',
            "127.0.0.1:1",
            "GET",
            f"/v1/chat-sessions/recent?hours=1&apiKey={key}&userId=Yc3pQm0aZ8LrT1uVw2Xn",
            "1.1",
            200,
        )
        logging.getLogger("chatsessions").error("failed for Bearer %s", key)
    text = caplog.text
    # uvicorn's own access formatter (which unpacks the record's arguments) still works.
    from uvicorn.logging import AccessFormatter

    record = next(r for r in caplog.records if r.name == "uvicorn.access")
    formatted = AccessFormatter('%(client_addr)s "%(request_line)s" %(status_code)s').format(record)
    assert "apiKey=***" in formatted and key not in formatted
    assert key not in text
    assert "Yc3pQm0aZ8LrT1uVw2Xn" not in text
    assert "apiKey=***" in text and "userId=***" in text


async def test_database_errors_never_show_parameter_values(database: Database, tenant: Tenant) -> None:
    """A failing statement's exception (what an error log prints) hides its bound values."""
    from sqlalchemy.exc import IntegrityError

    async def duplicate_user(conn: Any) -> None:
        await conn.execute(
            tables.users.insert().values(id=tenant.user_id, name="dup", created_at_ms=0)
        )

    with pytest.raises(IntegrityError) as info:
        await database.run_write(duplicate_user, attempts=1)
    assert tenant.user_id not in str(info.value)
