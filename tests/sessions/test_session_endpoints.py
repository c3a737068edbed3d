"""The session object (docs/contract.md#listings) and GET /v1/sessions/{id}, POST /v1/sessions/{id}/close (§3, §5)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.conftest import T0, Tenant, create_tenant
from tests.factories import make_contact, post_message
from tests.sessions.test_list_params import assert_invalid, listing, store_batch

MIN = 60_000
HOUR = 60 * MIN
NINE = 1_795_510_800_000  # 2026-11-24T09:00:00.000Z, the morning of the API docs example
SESSION_KEYS = {
    "session_id",
    "contact_id",
    "contact_name",
    "contact_phone",
    "contact_email",
    "channel",
    "start_date_time",
    "last_message_date_time",
    "end_date_time",
    "status",
    "closed_reason",
    "message_count",
    "inbound_count",
    "outbound_count",
}
MESSAGE_KEYS = {
    "message_id",
    "direction",
    "role",
    "type",
    "content",
    "media_url",
    "timestamp",
    "external_id",
}


def iso(ms: int) -> str:
    """The expected wire form, computed independently of the code under test."""
    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


async def get_session(
    client: httpx.AsyncClient, tenant: Tenant, session_id: str, query: str = ""
) -> dict[str, Any]:
    r = await client.get(f"/v1/sessions/{session_id}?{query}", headers=tenant.auth)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"success", "session"} and body["success"] is True
    session: dict[str, Any] = body["session"]
    assert set(session) == SESSION_KEYS | {"messages", "messages_truncated"}
    return session


async def close(
    client: httpx.AsyncClient, tenant: Tenant, session_id: str, query: str = ""
) -> dict[str, Any]:
    r = await client.post(f"/v1/sessions/{session_id}/close?{query}", headers=tenant.auth)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"success", "session"} and body["success"] is True
    session: dict[str, Any] = body["session"]
    assert set(session) == SESSION_KEYS | {"messages", "messages_truncated"}
    return session


def without_messages(session: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in session.items() if k not in ("messages", "messages_truncated")}


# --- the session object --------------------------------------------------------------


async def test_every_field_of_the_spec_example(
    client: httpx.AsyncClient, tenant: Tenant, clock: Any
) -> None:
    clock.now_ms = NINE + 20 * MIN
    contact = await make_contact(
        client,
        tenant.auth,
        phoneNumber="+15551234567",
        firstName="Jane",
        lastName="Smith",
        email="jane@example.com",
        channel="whatsapp",
    )
    results = await store_batch(
        client,
        tenant.auth,
        [
            {
                "contactId": contact,
                "direction": "inbound",
                "content": "Hi!",
                "externalId": "wamid.1",
                "timestamp": "2026-11-24T09:00:00Z",
            },
            {
                "contactId": contact,
                "direction": "outbound",
                "content": "Hello, how can I help?",
                "timestamp": "2026-11-24T11:05:00.5+02:00",
            },
            {
                "contactId": contact,
                "direction": "inbound",
                "type": "media",
                "mediaUrl": "https://example.com/a.jpg",
                "timestamp": NINE + 8 * MIN,
            },
            {
                "contactId": contact,
                "direction": "outbound",
                "role": "agent",
                "content": "A human here",
                "timestamp": "2026-11-24T09:12:31.250999Z",
            },
        ],
    )
    [sid] = {r["sessionId"] for r in results}
    mids = [r["messageId"] for r in results]
    expected = {
        "session_id": sid,
        "contact_id": contact,
        "contact_name": "Jane Smith",
        "contact_phone": "+15551234567",
        "contact_email": "jane@example.com",
        "channel": "whatsapp",
        "start_date_time": "2026-11-24T09:00:00.000Z",
        "last_message_date_time": "2026-11-24T09:12:31.250Z",
        "end_date_time": None,
        "status": "ChatSessionOpened",
        "closed_reason": None,
        "message_count": 4,
        "inbound_count": 2,
        "outbound_count": 2,
    }
    messages = [
        {"message_id": mids[0], "direction": "inbound", "role": "user", "type": "text",
         "content": "Hi!", "media_url": None, "timestamp": "2026-11-24T09:00:00.000Z",
         "external_id": "wamid.1"},
        {"message_id": mids[1], "direction": "outbound", "role": "assistant", "type": "text",
         "content": "Hello, how can I help?", "media_url": None,
         "timestamp": "2026-11-24T09:05:00.500Z", "external_id": None},
        {"message_id": mids[2], "direction": "inbound", "role": "user", "type": "media",
         "content": None, "media_url": "https://example.com/a.jpg",
         "timestamp": "2026-11-24T09:08:00.000Z", "external_id": None},
        {"message_id": mids[3], "direction": "outbound", "role": "agent", "type": "text",
         "content": "A human here", "media_url": None,
         "timestamp": "2026-11-24T09:12:31.250Z", "external_id": None},
    ]  # fmt: skip

    body = await listing(client, tenant, "hours=1")
    assert set(body) == {"success", "count", "next_cursor", "sessions"}
    assert body["count"] == 1 and body["next_cursor"] is None
    assert body["sessions"] == [expected]
    assert (await listing(client, tenant, "", f"/v1/chat-sessions/{contact}"))["sessions"] == [
        expected
    ]
    with_messages = {**expected, "messages": messages, "messages_truncated": False}
    assert (await listing(client, tenant, "hours=1&includeMessages=true"))["sessions"] == [
        with_messages
    ]
    assert await get_session(client, tenant, sid) == with_messages
    for m in messages:
        assert set(m) == MESSAGE_KEYS


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"firstName": "Jane", "lastName": "Smith"}, "Jane Smith"),
        ({"firstName": "  Jane ", "lastName": " Smith  "}, "Jane Smith"),
        ({"firstName": "Jane"}, "Jane"),
        ({"firstName": "Jane", "lastName": ""}, "Jane"),
        ({"firstName": None, "lastName": "Smith"}, "Smith"),
        ({"firstName": "", "lastName": "Smith"}, "Smith"),
        ({"firstName": None, "lastName": None}, None),
        ({"firstName": "  ", "lastName": ""}, None),
    ],
)
async def test_contact_name_is_first_and_last_trimmed_or_null(
    client: httpx.AsyncClient, tenant: Tenant, fields: dict[str, Any], name: str | None
) -> None:
    r = await client.post(
        "/v1/contacts", json={"email": "x@example.com", **fields}, headers=tenant.auth
    )
    assert r.status_code == 200, r.text
    contact = r.json()["data"]["contactId"]
    posted = await post_message(client, tenant.auth, contact, T0 - MIN)
    [sess] = (await listing(client, tenant, "hours=1"))["sessions"]
    assert sess["contact_name"] == name
    assert sess["contact_phone"] is None and sess["contact_email"] == "x@example.com"
    assert sess["channel"] is None
    assert (await get_session(client, tenant, posted["sessionId"]))["contact_name"] == name


async def test_status_and_end_for_open_silenced_and_closed_sessions(
    client: httpx.AsyncClient, tenant: Tenant, clock: Any
) -> None:
    contact = await make_contact(client, tenant.auth)
    first = await post_message(client, tenant.auth, contact, T0 - 10 * MIN)
    second = await post_message(client, tenant.auth, contact, T0 - 5 * MIN, direction="outbound")
    sid = first["sessionId"]
    assert second["sessionId"] == sid
    state = ("ChatSessionOpened", None, None)

    async def observed() -> set[tuple[Any, ...]]:
        got = set()
        for sess in [
            (await listing(client, tenant, "hours=876000"))["sessions"][0],
            (await listing(client, tenant, "", f"/v1/chat-sessions/{contact}"))["sessions"][0],
            await get_session(client, tenant, sid),
        ]:
            assert sess["session_id"] == sid
            got.add((sess["status"], sess["closed_reason"], sess["end_date_time"]))
        return got

    assert await observed() == {state}
    clock.advance(55 * MIN - 1)  # 1 ms before last message + 60 min
    assert await observed() == {state}
    clock.advance(1)  # exactly last + timeout: closed by silence, ended at its last message
    assert await observed() == {("ChatSessionClosed", "inactivity", iso(T0 - 5 * MIN))}
    clock.advance(10 * 24 * HOUR)
    assert await observed() == {("ChatSessionClosed", "inactivity", iso(T0 - 5 * MIN))}

    other = await post_message(
        client, tenant.auth, await make_contact(client, tenant.auth), clock() - MIN
    )
    closed = await close(client, tenant, other["sessionId"])
    assert (closed["status"], closed["closed_reason"], closed["end_date_time"]) == (
        "ChatSessionClosed",
        "closed",
        iso(clock()),
    )
    assert closed["last_message_date_time"] == iso(clock() - MIN)


# --- GET /v1/sessions/{id} ----------------------------------------------------------------


async def test_get_session_messages_default_100_newest_oldest_first(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    contact = await make_contact(client, tenant.auth)
    stamps = [T0 - HOUR + i * 1000 for i in range(105)]
    results = await store_batch(
        client,
        tenant.auth,
        [{"contactId": contact, "direction": "inbound", "timestamp": ts, "content": str(i)}
         for i, ts in enumerate(stamps)],
    )  # fmt: skip
    sid = results[0]["sessionId"]
    mids = [r["messageId"] for r in results]

    async def listed(query: str) -> list[str]:
        sess = await get_session(client, tenant, sid, query)
        assert sess["message_count"] == 105 and sess["messages_truncated"] is False
        return [m["message_id"] for m in sess["messages"]]

    assert await listed("") == mids[-100:]
    assert await listed("messageLimit=") == mids[-100:]
    assert await listed("messageLimit=3") == mids[-3:]
    assert await listed("messageLimit=1000") == mids
    assert await listed("messageLimit=99999999999999999999") == mids
    assert await listed("includeMessages=false") == mids[-100:]  # not a parameter here


@pytest.mark.parametrize("value", ["0", "-1", "abc", "1.0", "1e3", "%2B5"])
async def test_get_and_close_validate_message_limit(
    client: httpx.AsyncClient, tenant: Tenant, value: str
) -> None:
    posted = await post_message(
        client, tenant.auth, await make_contact(client, tenant.auth), T0 - MIN
    )
    sid = posted["sessionId"]
    r = await client.get(f"/v1/sessions/{sid}?messageLimit={value}", headers=tenant.auth)
    assert_invalid(r, "messageLimit")
    r = await client.post(f"/v1/sessions/{sid}/close?messageLimit={value}", headers=tenant.auth)
    assert_invalid(r, "messageLimit")
    # A refused close writes nothing.
    assert (await get_session(client, tenant, sid))["status"] == "ChatSessionOpened"


@pytest.mark.parametrize(
    "session_id",
    [
        "AAAAAAAAAAAAAAAAAAAA",
        "nope",
        "%27%3B%20DROP%20TABLE%20sessions%3B--",
        "..%2F..%2Fetc",
        "%2E%2E",
        "a" * 300,
        "%C3%A9" * 10,
        "%00",
    ],
)
async def test_unknown_or_malformed_session_id_is_404(
    client: httpx.AsyncClient, tenant: Tenant, session_id: str
) -> None:
    for method, path in [
        ("GET", f"/v1/sessions/{session_id}"),
        ("POST", f"/v1/sessions/{session_id}/close"),
    ]:
        r = await client.request(method, path, headers=tenant.auth)
        assert r.status_code == 404, (method, r.text)
        assert r.json()["success"] is False and r.json()["code"] == "not_found"


async def test_another_tenants_session_is_404_and_stays_open(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    posted = await post_message(
        client, other_tenant.auth, await make_contact(client, other_tenant.auth), T0 - MIN
    )
    sid = posted["sessionId"]
    for method, path in [("GET", f"/v1/sessions/{sid}"), ("POST", f"/v1/sessions/{sid}/close")]:
        r = await client.request(method, path, headers=tenant.auth)
        assert r.status_code == 404, r.text
        assert set(r.json()) == {"success", "error", "code"} and r.json()["code"] == "not_found"
    assert (await get_session(client, other_tenant, sid))["status"] == "ChatSessionOpened"


async def test_merged_away_session_id_is_404_and_the_survivor_sums_counts(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    contact = await make_contact(client, tenant.auth)
    early = await post_message(client, tenant.auth, contact, T0 - 100 * MIN)
    late = await post_message(client, tenant.auth, contact, T0 - 20 * MIN, direction="outbound")
    assert early["sessionId"] != late["sessionId"]
    bridge = await post_message(client, tenant.auth, contact, T0 - 60 * MIN)
    assert bridge["sessionId"] == early["sessionId"]
    r = await client.get(f"/v1/sessions/{late['sessionId']}", headers=tenant.auth)
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    sess = await get_session(client, tenant, early["sessionId"])
    assert (sess["message_count"], sess["inbound_count"], sess["outbound_count"]) == (3, 2, 1)
    assert sess["start_date_time"] == iso(T0 - 100 * MIN)
    assert sess["last_message_date_time"] == iso(T0 - 20 * MIN)
    assert [m["message_id"] for m in sess["messages"]] == [
        early["messageId"],
        bridge["messageId"],
        late["messageId"],
    ]


# --- POST /v1/sessions/{id}/close --------------------------------------------------------


async def test_close_at_now_is_idempotent(
    client: httpx.AsyncClient, tenant: Tenant, clock: Any
) -> None:
    contact = await make_contact(client, tenant.auth)
    posted = await post_message(client, tenant.auth, contact, T0 - 10 * MIN, content="bye")
    sid = posted["sessionId"]
    closed = await close(client, tenant, sid)
    assert closed["session_id"] == sid
    assert (closed["status"], closed["closed_reason"], closed["end_date_time"]) == (
        "ChatSessionClosed",
        "closed",
        iso(T0),
    )
    assert [m["content"] for m in closed["messages"]] == ["bye"]
    assert closed == await get_session(client, tenant, sid)
    clock.advance(5 * MIN)
    again = await close(client, tenant, sid)
    assert again == closed  # the close time does not move
    clock.advance(2 * HOUR)  # past the silence expiry too: still the explicit close
    assert await close(client, tenant, sid) == closed
    assert (await listing(client, tenant, "hours=3"))["sessions"] == [without_messages(closed)]


async def test_close_of_a_session_whose_last_message_is_ahead_closes_at_that_message(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    contact = await make_contact(client, tenant.auth)
    posted = await post_message(client, tenant.auth, contact, T0 + 2 * MIN)  # ≤ 5 min ahead
    closed = await close(client, tenant, posted["sessionId"])
    assert closed["end_date_time"] == iso(T0 + 2 * MIN)
    assert closed["closed_reason"] == "closed"


async def test_close_limits_its_messages_like_get(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    contact = await make_contact(client, tenant.auth)
    results = await store_batch(
        client,
        tenant.auth,
        [
            {"contactId": contact, "direction": "inbound", "timestamp": T0 - (5 - i) * MIN}
            for i in range(5)
        ],
    )
    closed = await close(client, tenant, results[0]["sessionId"], "messageLimit=2")
    assert [m["message_id"] for m in closed["messages"]] == [r["messageId"] for r in results[-2:]]
    assert closed["message_count"] == 5 and closed["messages_truncated"] is False


async def test_after_a_close_the_next_message_opens_a_new_session_even_within_timeout(
    client: httpx.AsyncClient, tenant: Tenant, clock: Any
) -> None:
    contact = await make_contact(client, tenant.auth)
    first = await post_message(client, tenant.auth, contact, T0 - 10 * MIN)
    sid = first["sessionId"]
    await close(client, tenant, sid)  # at T0
    clock.advance(MIN)
    # At the close time itself and before it: the closed session.
    at_close = await post_message(client, tenant.auth, contact, T0)
    backdated = await post_message(client, tenant.auth, contact, T0 - 5 * MIN, direction="outbound")
    assert at_close["sessionId"] == backdated["sessionId"] == sid
    assert at_close["sessionStatus"] == backdated["sessionStatus"] == "ChatSessionClosed"
    assert at_close["sessionOpened"] is False
    sess = await get_session(client, tenant, sid)
    assert (sess["status"], sess["closed_reason"], sess["end_date_time"]) == (
        "ChatSessionClosed",
        "closed",
        iso(T0),
    )
    assert (sess["message_count"], sess["inbound_count"], sess["outbound_count"]) == (3, 2, 1)
    assert sess["last_message_date_time"] == iso(T0)
    # One millisecond after the close, well within the timeout: a new session.
    after = await post_message(client, tenant.auth, contact, T0 + 1)
    assert after["sessionId"] != sid
    assert after["sessionOpened"] is True and after["sessionStatus"] == "ChatSessionOpened"
    new = await get_session(client, tenant, after["sessionId"])
    assert new["start_date_time"] == iso(T0 + 1) and new["status"] == "ChatSessionOpened"
    body = await listing(client, tenant, "", f"/v1/chat-sessions/{contact}")
    assert [s["session_id"] for s in body["sessions"]] == [after["sessionId"], sid]


async def test_closing_a_silenced_session_changes_nothing_and_a_late_message_reopens_it(
    client: httpx.AsyncClient, tenant: Tenant, clock: Any
) -> None:
    contact = await make_contact(client, tenant.auth)
    posted = await post_message(client, tenant.auth, contact, T0 - 10 * MIN)
    sid = posted["sessionId"]
    clock.advance(HOUR)  # expired at T0 + 50 min
    before = await get_session(client, tenant, sid)
    assert (before["status"], before["closed_reason"], before["end_date_time"]) == (
        "ChatSessionClosed",
        "inactivity",
        iso(T0 - 10 * MIN),
    )
    assert await close(client, tenant, sid) == before
    # A late message inside the timeout window of the last one: the session is open again.
    late = await post_message(client, tenant.auth, contact, T0 + 45 * MIN)
    assert late["sessionId"] == sid and late["sessionStatus"] == "ChatSessionOpened"
    sess = await get_session(client, tenant, sid)
    assert (sess["status"], sess["closed_reason"], sess["end_date_time"]) == (
        "ChatSessionOpened",
        None,
        None,
    )
    assert sess["last_message_date_time"] == iso(T0 + 45 * MIN)
    clock.advance(45 * MIN)  # T0 + 105 min == last + 60 min: closed by silence again
    sess = await get_session(client, tenant, sid)
    assert (sess["status"], sess["closed_reason"], sess["end_date_time"]) == (
        "ChatSessionClosed",
        "inactivity",
        iso(T0 + 45 * MIN),
    )


async def test_close_respects_the_tenants_own_timeout(
    client: httpx.AsyncClient, database: Any, clock: Any
) -> None:
    tenant = await create_tenant(database, timeout_minutes=5)
    contact = await make_contact(client, tenant.auth)
    posted = await post_message(client, tenant.auth, contact, T0 - 5 * MIN)
    # last + 5 min == now: already closed by silence, so the close changes nothing.
    closed = await close(client, tenant, posted["sessionId"])
    assert (closed["closed_reason"], closed["end_date_time"]) == ("inactivity", iso(T0 - 5 * MIN))
    again = await post_message(client, tenant.auth, contact, T0 - 4 * MIN)
    assert again["sessionId"] == posted["sessionId"]
    closed = await close(client, tenant, posted["sessionId"])
    assert (closed["closed_reason"], closed["end_date_time"]) == ("closed", iso(T0))
