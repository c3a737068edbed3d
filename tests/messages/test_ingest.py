"""POST /v1/messages and /v1/messages/batch: shapes, defaults, validation, idempotency."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from chatsessions.timeutil import format_ms
from tests.conftest import T0, FakeClock, Tenant
from tests.factories import make_contact, post_message

MIN = 60_000


async def _recent(client: httpx.AsyncClient, tenant: Tenant, **params: Any) -> dict[str, Any]:
    r = await client.get(
        "/v1/chat-sessions/recent",
        params={"hours": 48, "includeMessages": "true", **params},
        headers=tenant.auth,
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_single_message_shape_and_defaults(client, tenant: Tenant, clock: FakeClock) -> None:
    contact = await make_contact(client, tenant.auth)
    r = await client.post(
        "/v1/messages",
        json={"contactId": contact, "direction": "outbound", "content": "Hi", "listId": "ignored"},
        headers=tenant.auth,
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["success"] is True
    assert body["sessionStatus"] == "ChatSessionOpened"
    assert body["sessionOpened"] is True
    assert set(body) >= {"messageId", "sessionId"}
    [sess] = (await _recent(client, tenant))["sessions"]
    [msg] = sess["messages"]
    assert msg["role"] == "assistant"  # default for outbound
    assert msg["type"] == "text"
    assert msg["timestamp"] == format_ms(clock.now_ms)  # default: receipt time
    assert sess["outbound_count"] == 1 and sess["inbound_count"] == 0


# 2026-11-18T08:00:00Z, before the test clock's T0 (2026-11-18T11:06:40Z)
EIGHT = 1_794_988_800_000
assert EIGHT < T0


@pytest.mark.parametrize(
    ("timestamp", "expected_ms"),
    [
        ("2026-11-18T08:00:00Z", EIGHT),
        ("2026-11-18T10:00:00+02:00", EIGHT),
        ("2026-11-18T03:30:00-04:30", EIGHT),
        ("2026-11-18T08:00:00.123456Z", EIGHT + 123),
        (EIGHT + 999, EIGHT + 999),
    ],
)
async def test_timestamp_forms(client, tenant: Tenant, timestamp: Any, expected_ms: int) -> None:
    contact = await make_contact(client, tenant.auth)
    r = await client.post(
        "/v1/messages",
        json={"contactId": contact, "direction": "inbound", "timestamp": timestamp},
        headers=tenant.auth,
    )
    assert r.status_code == 201, r.text
    r = await client.get(f"/v1/sessions/{r.json()['sessionId']}", headers=tenant.auth)
    assert r.json()["session"]["start_date_time"] == format_ms(expected_ms)


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"timestamp": "2026-11-18T10:00:00"}, "timestamp"),  # naive
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"timestamp": 1.5e12}, "timestamp"),
        ({"timestamp": True}, "timestamp"),
        ({"timestamp": format_ms(T0 + 5 * MIN + 1)}, "timestamp"),  # > 5 min ahead
        ({"timestamp": -1}, "timestamp"),
        ({"direction": "sideways"}, "direction"),
        ({"direction": None}, "direction"),
        ({"role": "robot"}, "role"),
        ({"type": "two words"}, "type"),
        ({"content": "a\x00b"}, "content"),
        ({"content": "x" * (64 * 1024 + 1)}, "content"),
        ({"content": 5}, "content"),
        ({"mediaUrl": "ftp://example.com/a.png"}, "mediaUrl"),
        ({"externalId": "e" * 256}, "externalId"),
        ({"externalId": 12}, "externalId"),
    ],
)
async def test_bad_fields_are_400_naming_the_field(
    client, tenant: Tenant, patch: dict[str, Any], field: str
) -> None:
    contact = await make_contact(client, tenant.auth)
    body = {"contactId": contact, "direction": "inbound", "content": "hi", **patch}
    if patch.get("direction", "") is None:
        del body["direction"]
    r = await client.post("/v1/messages", json=body, headers=tenant.auth)
    assert r.status_code == 400, r.text
    err = r.json()
    assert err["success"] is False and err["code"] == "invalid_parameter"
    assert field in err["error"]
    assert (await _recent(client, tenant))["count"] == 0  # nothing stored


async def test_timestamp_exactly_five_minutes_ahead_is_accepted(client, tenant: Tenant) -> None:
    contact = await make_contact(client, tenant.auth)
    await post_message(client, tenant.auth, contact, T0 + 5 * MIN)


async def test_content_of_exactly_64_kib_and_unicode_round_trip(client, tenant: Tenant) -> None:
    contact = await make_contact(client, tenant.auth)
    text = "שלום 👋 " + "é" * 10
    await post_message(client, tenant.auth, contact, T0 - MIN, content=text)
    await post_message(client, tenant.auth, contact, T0 - 2 * MIN, content="x" * 64 * 1024)
    [sess] = (await _recent(client, tenant))["sessions"]
    assert sess["messages"][-1]["content"] == text


async def test_unknown_or_foreign_contact_is_404(
    client, tenant: Tenant, other_tenant: Tenant
) -> None:
    foreign = await make_contact(client, other_tenant.auth)
    for contact_id in (foreign, "A" * 20, "../../etc/passwd", "'; DROP TABLE messages;--"):
        r = await client.post(
            "/v1/messages",
            json={"contactId": contact_id, "direction": "inbound"},
            headers=tenant.auth,
        )
        assert r.status_code == 404, r.text
        assert r.json()["code"] == "not_found"
        assert "contactId" in r.json()["error"]


async def test_missing_contact_reference_is_400(client, tenant: Tenant) -> None:
    r = await client.post("/v1/messages", json={"direction": "inbound"}, headers=tenant.auth)
    assert r.status_code == 400
    assert "contactId" in r.json()["error"]


async def test_inline_contact_is_found_by_external_id_then_phone_then_email(
    client, tenant: Tenant
) -> None:
    by_phone = await make_contact(client, tenant.auth, phoneNumber="+15550002222")
    by_email = await make_contact(client, tenant.auth, phoneNumber="+15550003333", email="a@b.co")
    body = {"direction": "inbound", "timestamp": format_ms(T0 - MIN)}
    r = await client.post(
        "/v1/messages",
        json={**body, "contact": {"phoneNumber": "+1 555 000 2222"}},
        headers=tenant.auth,
    )
    assert r.status_code == 201
    r = await client.post(
        "/v1/messages", json={**body, "contact": {"email": "A@B.CO"}}, headers=tenant.auth
    )
    assert r.status_code == 201
    r = await client.post(
        "/v1/messages",
        json={**body, "contact": {"externalId": "ext-9", "firstName": "New"}},
        headers=tenant.auth,
    )
    assert r.status_code == 201
    by_contact = {s["contact_id"]: s for s in (await _recent(client, tenant))["sessions"]}
    assert by_phone in by_contact and by_email in by_contact
    assert len(by_contact) == 3  # one new contact for ext-9


async def test_replay_by_external_id_returns_the_original_with_its_current_session(
    client, tenant: Tenant
) -> None:
    contact = await make_contact(client, tenant.auth)
    first = await post_message(client, tenant.auth, contact, T0 - 100 * MIN, externalId="wamid.1")
    later = await post_message(client, tenant.auth, contact, T0 - 30 * MIN)
    assert later["sessionId"] != first["sessionId"]
    # A back-filled message bridges the two sessions: the earliest start's id survives.
    bridge = await post_message(client, tenant.auth, contact, T0 - 65 * MIN)
    assert bridge["sessionId"] == first["sessionId"]
    r = await client.get(f"/v1/sessions/{later['sessionId']}", headers=tenant.auth)
    assert r.status_code == 404
    replay = await post_message(
        client, tenant.auth, contact, T0 - 100 * MIN, externalId="wamid.1", expect=200
    )
    assert replay["duplicate"] is True
    assert replay["messageId"] == first["messageId"]
    assert replay["sessionId"] == first["sessionId"]
    [sess] = (await _recent(client, tenant))["sessions"]
    assert sess["message_count"] == 3


async def test_late_message_reopens_a_session_closed_by_silence(
    client, tenant: Tenant, clock: FakeClock
) -> None:
    contact = await make_contact(client, tenant.auth)
    first = await post_message(client, tenant.auth, contact, T0 - 61 * MIN)
    r = await client.get(f"/v1/sessions/{first['sessionId']}", headers=tenant.auth)
    assert r.json()["session"]["status"] == "ChatSessionClosed"
    late = await post_message(client, tenant.auth, contact, T0 - 2 * MIN)
    assert late["sessionId"] == first["sessionId"]
    assert late["sessionOpened"] is True
    assert late["sessionStatus"] == "ChatSessionOpened"


def _item(contact: str, ts: int, **extra: Any) -> dict[str, Any]:
    return {"contactId": contact, "direction": "inbound", "timestamp": format_ms(ts), **extra}


async def test_batch_stores_in_request_order_with_final_session_ids(client, tenant: Tenant) -> None:
    a = await make_contact(client, tenant.auth)
    b = await make_contact(client, tenant.auth)
    items = [
        _item(a, T0 - 200 * MIN, externalId="x1"),
        _item(b, T0 - 10 * MIN),
        _item(a, T0 - 100 * MIN),
        _item(a, T0 - 150 * MIN),  # bridges the two sessions of a
        _item(a, T0 - 300 * MIN, externalId="x1"),  # repeated inside the batch
    ]
    r = await client.post("/v1/messages/batch", json={"messages": items}, headers=tenant.auth)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["duplicate"] for x in results] == [False, False, False, False, True]
    assert results[4]["messageId"] == results[0]["messageId"]
    # After the bridge all of a's messages share the surviving (earliest) session id.
    assert results[0]["sessionId"] == results[2]["sessionId"] == results[3]["sessionId"]
    sessions = (await _recent(client, tenant))["sessions"]
    assert sorted(s["message_count"] for s in sessions) == [1, 3]


async def test_batch_is_validated_whole_before_anything_is_written(client, tenant: Tenant) -> None:
    contact = await make_contact(client, tenant.auth)
    good = [_item(contact, T0 - i * MIN) for i in range(1, 5)]
    bad = [*good, {"contactId": contact, "direction": "up"}]
    r = await client.post("/v1/messages/batch", json={"messages": bad}, headers=tenant.auth)
    assert r.status_code == 400
    assert "messages[4].direction" in r.json()["error"]
    unknown = [*good, _item("Z" * 20, T0)]
    r = await client.post("/v1/messages/batch", json={"messages": unknown}, headers=tenant.auth)
    assert r.status_code == 404
    assert "messages[4].contactId" in r.json()["error"]
    new_contact = [{"contact": {"phoneNumber": "+15550009999"}, "direction": "inbound"}, *unknown]
    r = await client.post("/v1/messages/batch", json={"messages": new_contact}, headers=tenant.auth)
    assert r.status_code == 404
    assert (await _recent(client, tenant))["count"] == 0
    r = await client.get(
        "/v1/contacts", params={"phoneNumber": "+15550009999"}, headers=tenant.auth
    )
    assert r.status_code == 404  # the inline contact was not created either


async def test_batch_size_limits(client, tenant: Tenant) -> None:
    contact = await make_contact(client, tenant.auth)
    items = [_item(contact, T0 - i * 2 * 60 * MIN) for i in range(1001)]
    r = await client.post("/v1/messages/batch", json={"messages": items}, headers=tenant.auth)
    assert r.status_code == 400 and "messages" in r.json()["error"]
    r = await client.post(
        "/v1/messages/batch", json={"messages": items[:1000]}, headers=tenant.auth
    )
    assert r.status_code == 200
    assert len(r.json()["results"]) == 1000
    r = await client.post("/v1/messages/batch", json={"messages": []}, headers=tenant.auth)
    assert r.status_code == 400


async def test_bodies_are_json_whatever_the_content_type(client, tenant: Tenant) -> None:
    contact = await make_contact(client, tenant.auth)
    r = await client.post(
        "/v1/messages",
        content=f'{{"contactId": "{contact}", "direction": "inbound"}}',
        headers={**tenant.auth, "Content-Type": "text/plain"},
    )
    assert r.status_code == 201, r.text
    for raw in (b"not json", b"[1, 2]", b"", b"[" * 5000 + b"]" * 5000, b'{"a": "\xff"}'):
        r = await client.post(
            "/v1/messages", content=raw, headers={**tenant.auth, "Content-Type": "application/json"}
        )
        assert r.status_code == 400, (raw[:20], r.text)
        assert r.json()["code"] == "invalid_parameter"


async def test_bodies_over_the_limit_are_413(client, tenant: Tenant) -> None:
    big = b'{"direction": "inbound", "content": "' + b"x" * (1024 * 1024) + b'"}'
    r = await client.post("/v1/messages", content=big, headers=tenant.auth)
    assert r.status_code == 413
    assert r.json()["code"] == "payload_too_large"
