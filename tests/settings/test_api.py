"""Per-user settings: the session timeout, its validation, and its history (docs/contract.md#sessions, docs/contract.md#writes)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from chatsessions.db import Database
from tests.conftest import T0, FakeClock, Tenant, create_tenant
from tests.factories import make_contact, post_message

MIN = 60_000


async def _put(client: httpx.AsyncClient, tenant: Tenant, body: Any) -> httpx.Response:
    return await client.put("/v1/settings", json=body, headers=tenant.auth)


async def _timeout(client: httpx.AsyncClient, tenant: Tenant) -> int:
    r = await client.get("/v1/settings", headers=tenant.auth)
    assert r.status_code == 200, r.text
    minutes: int = r.json()["data"]["sessionTimeoutMinutes"]
    return minutes


async def test_default_is_60_minutes(client: httpx.AsyncClient, tenant: Tenant) -> None:
    r = await client.get("/v1/settings", headers=tenant.auth)
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True, "data": {"sessionTimeoutMinutes": 60}}


async def test_tenant_created_with_another_timeout(
    client: httpx.AsyncClient, database: Database
) -> None:
    tenant = await create_tenant(database, timeout_minutes=15)
    assert await _timeout(client, tenant) == 15


@pytest.mark.parametrize("minutes", [1, 5, 1440, 43_200])
async def test_put_accepts_1_to_43200(
    client: httpx.AsyncClient, tenant: Tenant, minutes: int
) -> None:
    r = await _put(client, tenant, {"sessionTimeoutMinutes": minutes, "listId": "ignored"})
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True, "data": {"sessionTimeoutMinutes": minutes}}
    assert await _timeout(client, tenant) == minutes


@pytest.mark.parametrize(
    "body",
    [
        {"sessionTimeoutMinutes": 0},
        {"sessionTimeoutMinutes": -5},
        {"sessionTimeoutMinutes": 43_201},
        {"sessionTimeoutMinutes": 10**30},
        {"sessionTimeoutMinutes": "60"},
        {"sessionTimeoutMinutes": 1.5},
        {"sessionTimeoutMinutes": 60.0},
        {"sessionTimeoutMinutes": True},
        {"sessionTimeoutMinutes": None},
        {"sessionTimeoutMinutes": [60]},
        {},
    ],
)
async def test_put_out_of_range_or_wrong_type_is_400(
    client: httpx.AsyncClient, tenant: Tenant, body: dict[str, Any]
) -> None:
    await _put(client, tenant, {"sessionTimeoutMinutes": 30})
    r = await _put(client, tenant, body)
    assert r.status_code == 400, r.text
    assert r.json()["success"] is False
    assert r.json()["code"] == "invalid_parameter"
    assert "sessionTimeoutMinutes" in r.json()["error"]
    assert await _timeout(client, tenant) == 30


@pytest.mark.parametrize("content", [b"[]", b"not json", b'"60"', b""])
async def test_put_body_must_be_a_json_object(
    client: httpx.AsyncClient, tenant: Tenant, content: bytes
) -> None:
    r = await client.put("/v1/settings", content=content, headers=tenant.auth)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "invalid_parameter"


async def test_put_parses_json_whatever_the_content_type(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    r = await client.put(
        "/v1/settings",
        content=b'{"sessionTimeoutMinutes": 7}',
        headers={**tenant.auth, "Content-Type": "text/plain"},
    )
    assert r.status_code == 200, r.text
    assert await _timeout(client, tenant) == 7


async def test_settings_are_per_tenant(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    assert (await _put(client, tenant, {"sessionTimeoutMinutes": 5})).status_code == 200
    assert await _timeout(client, tenant) == 5
    assert await _timeout(client, other_tenant) == 60


async def test_settings_require_authentication(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/settings")).status_code == 401
    r = await client.put("/v1/settings", json={"sessionTimeoutMinutes": 5})
    assert r.status_code == 401
    assert r.json()["code"] == "unauthorized"


async def test_last_change_wins(
    client: httpx.AsyncClient, tenant: Tenant, clock: FakeClock
) -> None:
    await _put(client, tenant, {"sessionTimeoutMinutes": 5})
    await _put(client, tenant, {"sessionTimeoutMinutes": 6})  # same millisecond: replaces
    clock.advance(1)
    await _put(client, tenant, {"sessionTimeoutMinutes": 7})
    assert await _timeout(client, tenant) == 7


# --- a change takes effect from that moment (§3) ------------------------------------


async def _session_of(
    client: httpx.AsyncClient, tenant: Tenant, ts_pair: tuple[int, int]
) -> tuple[str, str]:
    """Post two messages of a fresh contact at the given times; their session ids."""
    contact = await make_contact(client, tenant.auth)
    a = await post_message(client, tenant.auth, contact, ts_pair[0])
    b = await post_message(client, tenant.auth, contact, ts_pair[1])
    return str(a["sessionId"]), str(b["sessionId"])


async def test_history_before_a_change_keeps_the_old_timeout(
    client: httpx.AsyncClient, tenant: Tenant, clock: FakeClock
) -> None:
    # 60 minutes until T0, 5 minutes from T0 on.
    assert (await _put(client, tenant, {"sessionTimeoutMinutes": 5})).status_code == 200
    clock.advance(61 * MIN)
    before = T0 - 1  # the earlier message falls under the old value: 60 minutes
    a, b = await _session_of(client, tenant, (before, before + 60 * MIN - 1))
    assert a == b, "a gap just under the old 60-minute timeout joins"
    a, b = await _session_of(client, tenant, (before, before + 60 * MIN))
    assert a != b, "a gap equal to the old timeout splits"
    a, b = await _session_of(client, tenant, (before - 40 * MIN, before))
    assert a == b, "a 40-minute gap before the change joins"


async def test_messages_from_the_change_on_use_the_new_timeout(
    client: httpx.AsyncClient, tenant: Tenant, clock: FakeClock
) -> None:
    assert (await _put(client, tenant, {"sessionTimeoutMinutes": 5})).status_code == 200
    clock.advance(61 * MIN)
    # The earlier message at exactly the moment of the change: the new value applies.
    a, b = await _session_of(client, tenant, (T0, T0 + 5 * MIN - 1))
    assert a == b
    a, b = await _session_of(client, tenant, (T0, T0 + 5 * MIN))
    assert a != b
    a, b = await _session_of(client, tenant, (T0 + 10 * MIN, T0 + 16 * MIN))
    assert a != b, "a 6-minute gap after the change splits"


async def test_raising_the_timeout_also_applies_from_then_on(
    client: httpx.AsyncClient, tenant: Tenant, clock: FakeClock
) -> None:
    assert (await _put(client, tenant, {"sessionTimeoutMinutes": 5})).status_code == 200
    clock.advance(10 * MIN)
    assert (await _put(client, tenant, {"sessionTimeoutMinutes": 120})).status_code == 200
    clock.advance(240 * MIN)
    change = T0 + 10 * MIN
    a, b = await _session_of(client, tenant, (change - 1, change - 1 + 5 * MIN))
    assert a != b, "under the 5-minute value in force before the second change"
    a, b = await _session_of(client, tenant, (change, change + 120 * MIN - 1))
    assert a == b, "under the 120-minute value from the second change on"
    a, b = await _session_of(client, tenant, (T0 - 30 * MIN, T0 - 1))
    assert a == b, "under the original 60-minute value"


async def test_status_of_an_earlier_session_keeps_the_old_timeout(
    client: httpx.AsyncClient, tenant: Tenant, clock: FakeClock
) -> None:
    contact = await make_contact(client, tenant.auth)
    posted = await post_message(client, tenant.auth, contact, T0 - MIN)
    assert (await _put(client, tenant, {"sessionTimeoutMinutes": 5})).status_code == 200
    # Last message at T0 - 1 min under the 60-minute value: open until T0 + 59 min.
    clock.advance(59 * MIN - 1)
    r = await client.get(f"/v1/sessions/{posted['sessionId']}", headers=tenant.auth)
    assert r.json()["session"]["status"] == "ChatSessionOpened"
    clock.advance(1)
    r = await client.get(f"/v1/sessions/{posted['sessionId']}", headers=tenant.auth)
    assert r.json()["session"]["status"] == "ChatSessionClosed"
    assert r.json()["session"]["closed_reason"] == "inactivity"


async def test_status_of_a_later_session_uses_the_new_timeout(
    client: httpx.AsyncClient, tenant: Tenant, clock: FakeClock
) -> None:
    assert (await _put(client, tenant, {"sessionTimeoutMinutes": 5})).status_code == 200
    contact = await make_contact(client, tenant.auth)
    posted = await post_message(client, tenant.auth, contact, T0)
    assert posted["sessionStatus"] == "ChatSessionOpened"
    clock.advance(5 * MIN - 1)
    r = await client.get(f"/v1/sessions/{posted['sessionId']}", headers=tenant.auth)
    assert r.json()["session"]["status"] == "ChatSessionOpened"
    clock.advance(1)
    r = await client.get(f"/v1/sessions/{posted['sessionId']}", headers=tenant.auth)
    assert r.json()["session"]["status"] == "ChatSessionClosed"


async def test_a_future_stamped_session_follows_a_later_change(
    client: httpx.AsyncClient, tenant: Tenant, clock: FakeClock
) -> None:
    contact = await make_contact(client, tenant.auth)
    # Stored at T0 with a timestamp 4 minutes ahead (allowed: up to 5), under 60 minutes.
    posted = await post_message(client, tenant.auth, contact, T0 + 4 * MIN)
    clock.advance(MIN)
    assert (await _put(client, tenant, {"sessionTimeoutMinutes": 2})).status_code == 200
    # The message's timestamp is after the change: 2 minutes apply to it.
    clock.advance(5 * MIN)  # now T0 + 6 min = the message + 2 min
    r = await client.get(f"/v1/sessions/{posted['sessionId']}", headers=tenant.auth)
    assert r.json()["session"]["status"] == "ChatSessionClosed"
