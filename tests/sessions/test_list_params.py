"""Every parameter of the two listings (docs/contract.md#listings), valid and invalid, through real HTTP.

Query strings are written out by hand so that what is sent is exactly what is named
(``+5`` in a query string is a space; ``%2B5`` is a plus sign).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from chatsessions.sessions.service import per_session_message_cap
from tests.conftest import T0, Tenant, create_tenant
from tests.factories import make_contact, post_message

RECENT = "/v1/chat-sessions/recent"
MIN = 60_000
HOUR = 60 * MIN
ERROR_KEYS = {"success", "error", "code", "parameter"}  # errors.py adds "parameter"

# Not plain decimal digits ≥ 1 (docs/contract.md#listings): each must be a 400 naming the parameter.
BAD_INTEGERS = [
    "0",
    "00",
    "-1",
    "1e3",
    "0x10",
    "1.0",
    "%2B5",  # "+5"
    "+5",  # " 5" once decoded
    "%205",  # " 5"
    "5%20",  # "5 "
    "5%0A",  # "5\n"
    "abc",
    "%EF%BC%95",  # a full-width digit five
    "1%2C000",  # "1,000"
]


def assert_invalid(r: httpx.Response, parameter: str) -> None:
    """A 400 ``invalid_parameter`` whose message names ``parameter`` (never a 422)."""
    assert r.status_code == 400, r.text
    body = r.json()
    assert set(body) <= ERROR_KEYS, body
    assert body["success"] is False
    assert body["code"] == "invalid_parameter"
    assert parameter in body["error"], body
    assert body["parameter"] == parameter


async def store_batch(
    client: httpx.AsyncClient, auth: dict[str, str], items: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """POST /v1/messages/batch; returns the per-item results."""
    r = await client.post("/v1/messages/batch", json={"messages": items}, headers=auth)
    assert r.status_code == 200, r.text
    results: list[dict[str, Any]] = r.json()["results"]
    return results


async def listing(
    client: httpx.AsyncClient, tenant: Tenant, query: str, path: str = RECENT
) -> dict[str, Any]:
    """A 200 listing's body."""
    r = await client.get(f"{path}?{query}", headers=tenant.auth)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["success"] is True
    assert body["count"] == len(body["sessions"])
    return body


def ids_of(body: dict[str, Any]) -> list[str]:
    return [s["session_id"] for s in body["sessions"]]


# --- hours -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", BAD_INTEGERS)
async def test_hours_must_be_plain_digits_on_both_listings(
    client: httpx.AsyncClient, tenant: Tenant, value: str
) -> None:
    contact = await make_contact(client, tenant.auth)
    assert_invalid(await client.get(f"{RECENT}?hours={value}", headers=tenant.auth), "hours")
    r = await client.get(f"/v1/chat-sessions/{contact}?hours={value}", headers=tenant.auth)
    assert_invalid(r, "hours")


@pytest.mark.parametrize("query", ["", "hours=", "limit=5", "hours=&status=open"])
async def test_hours_is_required_on_recent(
    client: httpx.AsyncClient, tenant: Tenant, query: str
) -> None:
    assert_invalid(await client.get(f"{RECENT}?{query}", headers=tenant.auth), "hours")


async def test_hours_is_optional_on_contact_listing(
    client: httpx.AsyncClient, tenant: Tenant, clock: Any
) -> None:
    contact = await make_contact(client, tenant.auth)
    old = await post_message(client, tenant.auth, contact, T0 - 10 * 24 * HOUR)
    new = await post_message(client, tenant.auth, contact, T0 - 30 * MIN)
    path = f"/v1/chat-sessions/{contact}"
    everything = [new["sessionId"], old["sessionId"]]
    assert ids_of(await listing(client, tenant, "", path)) == everything
    assert ids_of(await listing(client, tenant, "hours=", path)) == everything
    assert ids_of(await listing(client, tenant, "hours=1", path)) == [new["sessionId"]]
    assert ids_of(await listing(client, tenant, "hours=240", path)) == everything


async def test_hours_above_876000_counts_as_876000(
    client: httpx.AsyncClient, tenant: Tenant, clock: Any
) -> None:
    contact = await make_contact(client, tenant.auth)
    recent = await post_message(client, tenant.auth, contact, T0)
    await post_message(client, tenant.auth, contact, T0 - 2 * HOUR)
    clock.now_ms = T0 + 876_000 * HOUR  # 100 years on: the window starts exactly at T0
    only_recent = [recent["sessionId"]]
    assert ids_of(await listing(client, tenant, "hours=876000")) == only_recent
    assert ids_of(await listing(client, tenant, "hours=875999")) == []
    # Uncapped, 876002 would reach back to T0 - 2 h and list the older session too.
    for huge in ["876002", "99999999999999999999", "9" * 5000, "0" * 5000 + "876002"]:
        assert ids_of(await listing(client, tenant, f"hours={huge}")) == only_recent, huge[:25]


async def test_plain_digits_with_leading_zeros_are_accepted(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    contact = await make_contact(client, tenant.auth)
    await store_batch(
        client,
        tenant.auth,
        [
            {"contactId": contact, "direction": "inbound", "timestamp": T0 - i * 2 * HOUR}
            for i in range(3)
        ],
    )
    assert listing_count(await listing(client, tenant, "hours=007&limit=02")) == 2
    assert listing_count(await listing(client, tenant, "hours=24&limit=" + "0" * 5000 + "2")) == 2


def listing_count(body: dict[str, Any]) -> int:
    return int(body["count"])


# --- the window: activity >= now - hours ------------------------------------------------


async def test_window_includes_activity_exactly_at_its_start(
    client: httpx.AsyncClient, tenant: Tenant, clock: Any
) -> None:
    contact = await make_contact(client, tenant.auth)
    posted = await post_message(client, tenant.auth, contact, T0 - 2 * HOUR)
    assert ids_of(await listing(client, tenant, "hours=2")) == [posted["sessionId"]]
    clock.advance(1)
    assert ids_of(await listing(client, tenant, "hours=2")) == []
    assert ids_of(await listing(client, tenant, "hours=3")) == [posted["sessionId"]]


async def test_activity_of_a_silenced_session_is_its_last_message_not_its_expiry(
    client: httpx.AsyncClient, tenant: Tenant, clock: Any
) -> None:
    contact = await make_contact(client, tenant.auth)
    posted = await post_message(client, tenant.auth, contact, T0 - 2 * HOUR - 1)
    # Closed by silence at T0 - 1 h, but its activity is still its last message.
    assert ids_of(await listing(client, tenant, "hours=2")) == []
    assert ids_of(await listing(client, tenant, "hours=3")) == [posted["sessionId"]]


async def test_activity_is_the_explicit_close_time_when_later(
    client: httpx.AsyncClient, database: Any, clock: Any
) -> None:
    tenant = await create_tenant(database, timeout_minutes=300)
    contact = await make_contact(client, tenant.auth)
    posted = await post_message(client, tenant.auth, contact, T0 - 3 * HOUR)
    sid = posted["sessionId"]
    assert ids_of(await listing(client, tenant, "hours=1")) == []
    r = await client.post(f"/v1/sessions/{sid}/close", headers=tenant.auth)
    assert r.status_code == 200, r.text
    assert ids_of(await listing(client, tenant, "hours=1")) == [sid]  # closed at T0
    clock.advance(HOUR)
    assert ids_of(await listing(client, tenant, "hours=1")) == [sid]
    clock.advance(1)
    assert ids_of(await listing(client, tenant, "hours=1")) == []


# --- status -----------------------------------------------------------------------------


async def _three_states(client: httpx.AsyncClient, tenant: Tenant) -> dict[str, str]:
    """An open session, one closed by silence and one closed explicitly."""
    opened = await post_message(
        client, tenant.auth, await make_contact(client, tenant.auth), T0 - 10 * MIN
    )
    silent = await post_message(
        client, tenant.auth, await make_contact(client, tenant.auth), T0 - 3 * HOUR
    )
    closed = await post_message(
        client, tenant.auth, await make_contact(client, tenant.auth), T0 - 5 * MIN
    )
    r = await client.post(f"/v1/sessions/{closed['sessionId']}/close", headers=tenant.auth)
    assert r.status_code == 200, r.text
    return {
        "open": opened["sessionId"],
        "silent": silent["sessionId"],
        "closed": closed["sessionId"],
    }


async def test_status_filter_accepts_every_spelling(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    s = await _three_states(client, tenant)
    everything = {s["open"], s["silent"], s["closed"]}
    for value in [
        "ChatSessionOpened",
        "chatsessionopened",
        "CHATSESSIONOPENED",
        "open",
        "OPEN",
        "Opened",
    ]:
        body = await listing(client, tenant, f"hours=24&status={value}")
        assert ids_of(body) == [s["open"]], value
        assert [x["status"] for x in body["sessions"]] == ["ChatSessionOpened"]
    for value in ["ChatSessionClosed", "chatsessionclosed", "closed", "CLOSED", "Closed"]:
        body = await listing(client, tenant, f"hours=24&status={value}")
        assert set(ids_of(body)) == {s["silent"], s["closed"]}, value
        assert {x["status"] for x in body["sessions"]} == {"ChatSessionClosed"}
    for query in ["hours=24", "hours=24&status="]:
        assert set(ids_of(await listing(client, tenant, query))) == everything


@pytest.mark.parametrize(
    "value", ["Pending", "close", "ChatSessionOpen", "opened%20", "%20open", "all", "1", "true"]
)
async def test_status_rejects_other_values(
    client: httpx.AsyncClient, tenant: Tenant, value: str
) -> None:
    assert_invalid(
        await client.get(f"{RECENT}?hours=1&status={value}", headers=tenant.auth), "status"
    )
    contact = await make_contact(client, tenant.auth)
    r = await client.get(f"/v1/chat-sessions/{contact}?status={value}", headers=tenant.auth)
    assert_invalid(r, "status")


async def test_status_filter_is_evaluated_at_request_time(
    client: httpx.AsyncClient, tenant: Tenant, clock: Any
) -> None:
    contact = await make_contact(client, tenant.auth)
    posted = await post_message(client, tenant.auth, contact, T0 - 10 * MIN)
    sid = posted["sessionId"]
    assert ids_of(await listing(client, tenant, "hours=2&status=open")) == [sid]
    clock.advance(50 * MIN - 1)  # one ms before last + timeout
    assert ids_of(await listing(client, tenant, "hours=2&status=open")) == [sid]
    assert ids_of(await listing(client, tenant, "hours=2&status=closed")) == []
    clock.advance(1)  # now == last + timeout: closed
    assert ids_of(await listing(client, tenant, "hours=2&status=open")) == []
    assert ids_of(await listing(client, tenant, "hours=2&status=closed")) == [sid]


# --- limit ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", BAD_INTEGERS)
async def test_limit_must_be_plain_digits(
    client: httpx.AsyncClient, tenant: Tenant, value: str
) -> None:
    assert_invalid(
        await client.get(f"{RECENT}?hours=1&limit={value}", headers=tenant.auth), "limit"
    )


async def test_limit_default_100_and_values_above_1000_count_as_1000(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    contact = await make_contact(client, tenant.auth)
    items = [
        {"contactId": contact, "direction": "inbound", "timestamp": T0 - i * 2 * HOUR}
        for i in range(1001)
    ]
    await store_batch(client, tenant.auth, items[:1000])
    await store_batch(client, tenant.auth, items[1000:])
    for query in ["hours=9999", "hours=9999&limit="]:
        body = await listing(client, tenant, query)
        assert body["count"] == 100 and body["next_cursor"] is not None, query
    for limit in ["1000", "1001", "5000", "99999999999999999999"]:
        body = await listing(client, tenant, f"hours=9999&limit={limit}")
        assert body["count"] == 1000 and body["next_cursor"] is not None, limit
    # A full page with messages: 1,000 sessions' messages in one response.
    body = await listing(client, tenant, "hours=9999&limit=1000&includeMessages=true")
    assert body["count"] == 1000
    assert all(len(s["messages"]) == 1 for s in body["sessions"])
    # A cursor issued for limit=5000 belongs to the query "limit 1000".
    first = await listing(client, tenant, "hours=9999&limit=5000")
    rest = await listing(client, tenant, f"hours=9999&limit=1000&cursor={first['next_cursor']}")
    assert rest["count"] == 1 and rest["next_cursor"] is None
    assert len(set(ids_of(first)) | set(ids_of(rest))) == 1001


# --- includeMessages --------------------------------------------------------------------


async def test_include_messages_booleans(client: httpx.AsyncClient, tenant: Tenant) -> None:
    contact = await make_contact(client, tenant.auth)
    await post_message(client, tenant.auth, contact, T0 - 2 * MIN)
    await post_message(client, tenant.auth, contact, T0 - MIN, direction="outbound")
    for value in ["true", "TRUE", "True", "tRuE", "1"]:
        [sess] = (await listing(client, tenant, f"hours=1&includeMessages={value}"))["sessions"]
        assert len(sess["messages"]) == 2, value
        assert sess["messages_truncated"] is False
    for query in [
        "hours=1",
        *(f"hours=1&includeMessages={v}" for v in ["", "false", "FALSE", "False", "0"]),
    ]:
        [sess] = (await listing(client, tenant, query))["sessions"]
        assert "messages" not in sess and "messages_truncated" not in sess, query


@pytest.mark.parametrize("value", ["yes", "no", "2", "on", "t", "%20true", "true%20", "null"])
async def test_include_messages_rejects_other_values(
    client: httpx.AsyncClient, tenant: Tenant, value: str
) -> None:
    r = await client.get(f"{RECENT}?hours=1&includeMessages={value}", headers=tenant.auth)
    assert_invalid(r, "includeMessages")


# --- messageLimit -----------------------------------------------------------------------


@pytest.mark.parametrize("value", BAD_INTEGERS)
async def test_message_limit_is_validated_even_without_include_messages(
    client: httpx.AsyncClient, tenant: Tenant, value: str
) -> None:
    r = await client.get(f"{RECENT}?hours=1&messageLimit={value}", headers=tenant.auth)
    assert_invalid(r, "messageLimit")
    r = await client.get(
        f"{RECENT}?hours=1&includeMessages=false&messageLimit={value}", headers=tenant.auth
    )
    assert_invalid(r, "messageLimit")


async def test_message_limit_gives_the_newest_n_oldest_first(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    contact = await make_contact(client, tenant.auth)
    stamps = [T0 - 5 * MIN, T0 - 4 * MIN, T0 - 3 * MIN, T0 - 3 * MIN, T0 - 3 * MIN]
    results = await store_batch(
        client,
        tenant.auth,
        [{"contactId": contact, "direction": "inbound", "timestamp": ts} for ts in stamps],
    )
    ids = [r["messageId"] for r in results]
    # Oldest first; equal timestamps ordered by message_id.
    full = ids[:2] + sorted(ids[2:])

    async def listed(query: str) -> list[str]:
        [sess] = (await listing(client, tenant, f"hours=1&includeMessages=true&{query}"))[
            "sessions"
        ]
        assert sess["message_count"] == 5
        assert sess["messages_truncated"] is False  # messageLimit is not the response cap
        return [m["message_id"] for m in sess["messages"]]

    assert await listed("messageLimit=2") == full[-2:]
    assert await listed("messageLimit=4") == full[-4:]
    assert await listed("messageLimit=1") == full[-1:]
    for query in ["", "messageLimit=", "messageLimit=5", "messageLimit=99999999999999999999"]:
        assert await listed(query) == full, query


# --- the 10,000 messages per response cap -----------------------------------------------


def test_per_session_cap_arithmetic() -> None:
    assert per_session_message_cap(100, 100) == 100  # 100 x 100 = 10,000: no cut
    assert per_session_message_cap(1000, 10) == 1000
    assert per_session_message_cap(1000, 11) == 909  # floor(10000 / 11)
    assert per_session_message_cap(101, 100) == 100
    assert per_session_message_cap(1000, 1000) == 10
    assert per_session_message_cap(7, 3) == 7
    assert per_session_message_cap(1000, 0) == 1000


async def test_response_cap_cuts_each_list_to_floor_10000_over_sessions_on_page(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    big_contact = await make_contact(client, tenant.auth)
    stamps = [T0 - 2 * HOUR + i * 1000 for i in range(1001)]  # 1 s apart: one session
    items = [{"contactId": big_contact, "direction": "inbound", "timestamp": ts} for ts in stamps]
    results = await store_batch(client, tenant.auth, items[:1000])
    results += await store_batch(client, tenant.auth, items[1000:])
    big = results[0]["sessionId"]
    assert {r["sessionId"] for r in results} == {big}
    newest_first = [r["messageId"] for r in results][::-1]
    # Ten one-message sessions: nine newer than the big one, one older (at T0 - 3 h).
    small = await store_batch(
        client,
        tenant.auth,
        [
            {
                "contact": {"externalId": f"small-{i}"},
                "direction": "outbound",
                "timestamp": T0 - i * MIN if i < 9 else T0 - 3 * HOUR,
            }
            for i in range(10)
        ],
    )

    def big_session(body: dict[str, Any]) -> dict[str, Any]:
        [sess] = [s for s in body["sessions"] if s["session_id"] == big]
        assert sess["message_count"] == 1001
        return dict(sess)

    # 11 sessions on the page, limit x messageLimit > 10,000: floor(10000 / 11) = 909 each.
    for query in ["limit=11&messageLimit=1000", "limit=1000&messageLimit=5000"]:
        body = await listing(client, tenant, f"hours=3&includeMessages=true&{query}")
        assert body["count"] == 11
        sess = big_session(body)
        assert [m["message_id"] for m in sess["messages"]] == newest_first[:909][::-1]
        assert sess["messages_truncated"] is True
        others = [s for s in body["sessions"] if s["session_id"] != big]
        assert {s["session_id"] for s in others} == {r["sessionId"] for r in small}
        assert all(len(s["messages"]) == 1 and s["messages_truncated"] is False for s in others)
        assert sum(len(s["messages"]) for s in body["sessions"]) <= 10_000

    # 10 sessions on the page (a 2 h window leaves the oldest out): 1000 each, so messageLimit
    # (5000 counts as 1000) is what limits the big session, and that is no truncation.
    body = await listing(
        client, tenant, "hours=2&limit=1000&includeMessages=true&messageLimit=5000"
    )
    assert body["count"] == 10
    sess = big_session(body)
    assert [m["message_id"] for m in sess["messages"]] == newest_first[:1000][::-1]
    assert sess["messages_truncated"] is False
    # The same page without includeMessages carries no messages at all.
    body = await listing(client, tenant, "hours=3&limit=11&messageLimit=1000")
    assert all("messages" not in s for s in body["sessions"])


# --- /v1/chat-sessions/{contactId}: whose contact ---------------------------------------


async def test_contact_listing_of_another_tenants_contact_is_404(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    theirs = await make_contact(client, other_tenant.auth)
    await post_message(client, other_tenant.auth, theirs, T0 - MIN)
    r = await client.get(f"/v1/chat-sessions/{theirs}", headers=tenant.auth)
    assert r.status_code == 404, r.text
    body = r.json()
    assert set(body) == {"success", "error", "code"}
    assert body["success"] is False and body["code"] == "not_found"
    assert theirs not in body["error"]
    # Its owner sees it.
    assert (await listing(client, other_tenant, "", f"/v1/chat-sessions/{theirs}"))["count"] == 1


@pytest.mark.parametrize(
    "contact_id",
    [
        "AAAAAAAAAAAAAAAAAAAA",  # well-formed, unknown
        "abc",
        "%27%3B%20DROP%20TABLE%20contacts%3B--",
        "%2E%2E%2F%2E%2E%2Fetc",
        "..%2F..%2Fetc%2Fpasswd",
        "%C3%A9" * 10,
        "a" * 300,
        "%00",
        "recent%20",
    ],
)
async def test_contact_listing_of_unknown_or_malformed_id_is_404(
    client: httpx.AsyncClient, tenant: Tenant, contact_id: str
) -> None:
    r = await client.get(f"/v1/chat-sessions/{contact_id}?hours=1", headers=tenant.auth)
    assert r.status_code == 404, r.text
    assert r.json()["code"] == "not_found"
    assert r.json()["success"] is False


async def test_contact_listing_lists_only_that_contacts_sessions(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    mine = await make_contact(client, tenant.auth)
    other = await make_contact(client, tenant.auth)
    a = await post_message(client, tenant.auth, mine, T0 - 3 * HOUR)
    b = await post_message(client, tenant.auth, mine, T0 - MIN)
    await post_message(client, tenant.auth, other, T0 - 2 * MIN)
    body = await listing(client, tenant, "", f"/v1/chat-sessions/{mine}")
    assert ids_of(body) == [b["sessionId"], a["sessionId"]]
    assert {s["contact_id"] for s in body["sessions"]} == {mine}
    assert body["next_cursor"] is None


# --- a parameter given twice ------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("hours=abc&hours=1", "hours"),
        ("hours=1&hours=abc", "hours"),
        ("hours=1&hours=2", "hours"),
        ("hours=1&limit=5&limit=6", "limit"),
        ("hours=1&status=open&status=closed", "status"),
        ("hours=1&includeMessages=true&includeMessages=false", "includeMessages"),
        ("hours=1&messageLimit=1&messageLimit=0", "messageLimit"),
        ("hours=1&cursor=a&cursor=b", "cursor"),
    ],
)
async def test_a_parameter_given_twice_with_different_values_is_400(
    client: httpx.AsyncClient, tenant: Tenant, query: str, parameter: str
) -> None:
    assert_invalid(await client.get(f"{RECENT}?{query}", headers=tenant.auth), parameter)


async def test_a_parameter_repeated_with_the_same_value_or_empty_is_fine(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    contact = await make_contact(client, tenant.auth)
    posted = await post_message(client, tenant.auth, contact, T0 - MIN)
    for query in ["hours=1&hours=1", "hours=&hours=1", "hours=1&hours=", "hours=1&limit=5&limit=5"]:
        assert ids_of(await listing(client, tenant, query)) == [posted["sessionId"]], query
    r = await client.get(
        f"/v1/sessions/{posted['sessionId']}?messageLimit=1&messageLimit=2", headers=tenant.auth
    )
    assert_invalid(r, "messageLimit")
