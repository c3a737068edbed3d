"""A timeout change takes effect from its moment, also for messages stamped ahead of it
(up to 5 minutes): their sessions are re-cut under the new history."""

from __future__ import annotations

from tests.conftest import T0, Tenant
from tests.factories import make_contact, post_message

MIN = 60_000


async def _sessions(client, tenant: Tenant, contact: str) -> list[dict]:
    r = await client.get(f"/v1/chat-sessions/{contact}?includeMessages=true", headers=tenant.auth)
    assert r.status_code == 200, r.text
    return sorted(r.json()["sessions"], key=lambda s: s["start_date_time"])


async def test_shorter_timeout_splits_future_stamped_messages(client, tenant: Tenant) -> None:
    contact = await make_contact(client, tenant.auth)
    early = await post_message(client, tenant.auth, contact, T0 - 2 * MIN)
    await post_message(client, tenant.auth, contact, T0 + 1 * MIN)
    late = await post_message(client, tenant.auth, contact, T0 + 4 * MIN)
    assert len({early["sessionId"], late["sessionId"]}) == 1
    r = await client.put("/v1/settings", json={"sessionTimeoutMinutes": 1}, headers=tenant.auth)
    assert r.status_code == 200
    sessions = await _sessions(client, tenant, contact)
    # Gap T0-2 → T0+1 is measured with the old 60 minutes (joined); T0+1 → T0+4 with the
    # new 1 minute (split). The old id stays with the part holding its last message.
    assert [s["message_count"] for s in sessions] == [2, 1]
    assert sessions[1]["session_id"] == early["sessionId"]


async def test_longer_timeout_merges_future_stamped_sessions(client, tenant: Tenant) -> None:
    r = await client.put("/v1/settings", json={"sessionTimeoutMinutes": 1}, headers=tenant.auth)
    assert r.status_code == 200
    contact = await make_contact(client, tenant.auth)
    first = await post_message(client, tenant.auth, contact, T0 + 1 * MIN)
    second = await post_message(client, tenant.auth, contact, T0 + 4 * MIN)
    assert first["sessionId"] != second["sessionId"]
    # Moving the clock is not needed: a second change at the same moment replaces it.
    r = await client.put("/v1/settings", json={"sessionTimeoutMinutes": 60}, headers=tenant.auth)
    assert r.status_code == 200
    sessions = await _sessions(client, tenant, contact)
    assert len(sessions) == 1
    assert sessions[0]["session_id"] == first["sessionId"]  # the earliest start survives
    assert sessions[0]["message_count"] == 2
    r = await client.get(f"/v1/sessions/{second['sessionId']}", headers=tenant.auth)
    assert r.status_code == 404
