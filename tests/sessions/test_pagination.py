"""Order and keyset pagination of the listings (SPEC §4): next_cursor chains, cursors."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text

from chatsessions.db import Database
from chatsessions.sessions.cursor import encode_cursor
from chatsessions.timeutil import format_ms
from tests.conftest import T0, Tenant
from tests.factories import make_contact, post_message
from tests.sessions.test_list_params import assert_invalid, ids_of, listing, store_batch

RECENT = "/v1/chat-sessions/recent"
MIN = 60_000
HOUR = 60 * MIN


async def walk(
    client: httpx.AsyncClient, tenant: Tenant, query: str, path: str = RECENT
) -> list[dict[str, Any]]:
    """Every page of a cursor chain; asserts next_cursor is null on the last page only."""
    pages = [await listing(client, tenant, query, path)]
    while pages[-1]["next_cursor"] is not None:
        assert pages[-1]["count"] > 0
        pages.append(
            await listing(client, tenant, f"{query}&cursor={pages[-1]['next_cursor']}", path)
        )
        assert len(pages) < 1000
    return pages


def expected_order(sessions: dict[str, int]) -> list[str]:
    """Newest activity first, ties by session_id ascending in byte order."""
    return sorted(sessions, key=lambda sid: (-sessions[sid], sid.encode()))


async def test_order_is_newest_activity_first_ties_by_session_id_bytes(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    # 30 sessions at one instant (ids mix digits, upper and lower case: a locale collation
    # would order some of them differently), plus newer and older ones around them.
    tied = T0 - 30 * MIN
    stamps = [tied] * 30 + [T0 - MIN, T0 - 59 * MIN, T0 - 2 * MIN, T0 - 58 * MIN]
    results = await store_batch(
        client,
        tenant.auth,
        [
            {"contact": {"externalId": f"tie-{i}"}, "direction": "inbound", "timestamp": ts}
            for i, ts in enumerate(stamps)
        ],
    )
    activity = {r["sessionId"]: ts for r, ts in zip(results, stamps, strict=True)}
    assert len(activity) == len(stamps)
    want = expected_order(activity)
    assert ids_of(await listing(client, tenant, "hours=1")) == want
    # The same order page by page, for every page size, and on the contact listing.
    for limit in (1, 4, 7, 30):
        pages = await walk(client, tenant, f"hours=1&limit={limit}")
        assert [sid for page in pages for sid in ids_of(page)] == want, limit
        assert [page["count"] for page in pages[:-1]] == [limit] * (len(pages) - 1)


async def test_session_ids_compare_in_byte_order_on_the_database(database: Database) -> None:
    # This test cluster's default collation may itself be byte order (C.UTF-8), which would
    # hide a lost COLLATE "C" from the ordering tests above: check the column itself.
    async with database.read() as conn:
        if database.dialect == "postgresql":
            sql = (
                "SELECT collation_name FROM information_schema.columns "
                "WHERE table_name = 'sessions' AND column_name = 'id'"
            )
            assert (await conn.execute(text(sql))).scalar_one() == "C"
        else:  # SQLite compares with BINARY unless the column declares another collation
            sql = "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'sessions'"
            assert "COLLATE" not in (await conn.execute(text(sql))).scalar_one().upper()


async def test_order_is_by_activity_so_an_explicit_close_counts(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    closed = await post_message(
        client, tenant.auth, await make_contact(client, tenant.auth), T0 - 50 * MIN
    )
    newer = await post_message(
        client, tenant.auth, await make_contact(client, tenant.auth), T0 - 10 * MIN
    )
    older = await post_message(
        client, tenant.auth, await make_contact(client, tenant.auth), T0 - 55 * MIN
    )
    want = [newer["sessionId"], closed["sessionId"], older["sessionId"]]
    assert ids_of(await listing(client, tenant, "hours=1")) == want
    r = await client.post(f"/v1/sessions/{closed['sessionId']}/close", headers=tenant.auth)
    assert r.status_code == 200, r.text
    # Closed at T0: its activity is now the newest, though its last message is not.
    want = [closed["sessionId"], newer["sessionId"], older["sessionId"]]
    assert ids_of(await listing(client, tenant, "hours=1")) == want
    pages = await walk(client, tenant, "hours=1&limit=2")
    assert [sid for page in pages for sid in ids_of(page)] == want


async def test_a_250_session_tenant_walked_7_at_a_time_sees_each_once(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    # 50 contacts x 5 sessions (2 h apart per contact); every timestamp is shared by ten
    # sessions, so page boundaries fall inside groups of ties.
    items, stamps = [], []
    for k in range(5):
        for j in range(50):
            ts = T0 - k * 2 * HOUR - (j % 5) * MIN
            stamps.append(ts)
            items.append(
                {"contact": {"externalId": f"c{j}"}, "direction": "inbound", "timestamp": ts}
            )
    results = await store_batch(client, tenant.auth, items)
    activity = {r["sessionId"]: ts for r, ts in zip(results, stamps, strict=True)}
    assert len(activity) == 250

    pages = await walk(client, tenant, "hours=24&limit=7")
    assert len(pages) == 36
    assert [page["count"] for page in pages] == [7] * 35 + [5]
    assert pages[-1]["next_cursor"] is None
    seen = [sid for page in pages for sid in ids_of(page)]
    assert len(seen) == len(set(seen)) == 250
    assert seen == expected_order(activity)

    # The default page size is 100.
    pages = await walk(client, tenant, "hours=24")
    assert [page["count"] for page in pages] == [100, 100, 50]
    assert [sid for page in pages for sid in ids_of(page)] == expected_order(activity)


async def test_exactly_limit_sessions_is_one_page_with_a_null_cursor(
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
    body = await listing(client, tenant, "hours=24&limit=3")
    assert body["count"] == 3 and body["next_cursor"] is None
    body = await listing(client, tenant, "hours=24&limit=2")
    assert body["count"] == 2 and isinstance(body["next_cursor"], str)
    body = await listing(client, tenant, "hours=24&limit=2&cursor=" + body["next_cursor"])
    assert body["count"] == 1 and body["next_cursor"] is None
    empty = await listing(client, tenant, "hours=1&status=closed")
    assert empty == {"success": True, "count": 0, "next_cursor": None, "sessions": []}


async def test_a_session_whose_activity_moves_is_not_repeated_in_the_chain(
    client: httpx.AsyncClient, tenant: Tenant, clock: Any
) -> None:
    contacts = [await make_contact(client, tenant.auth) for _ in range(5)]
    posted = [
        await post_message(client, tenant.auth, c, T0 - (i + 1) * 10 * MIN)
        for i, c in enumerate(contacts)
    ]
    sids = [p["sessionId"] for p in posted]  # newest first
    first = await listing(client, tenant, "hours=2&limit=2")
    assert ids_of(first) == sids[:2]
    clock.advance(MIN)
    # Shown already (sids[1]) and not yet shown (sids[3]): both move to the top.
    await post_message(client, tenant.auth, contacts[1], T0 + 30_000)
    await post_message(client, tenant.auth, contacts[3], T0 + 40_000)
    rest = await walk(client, tenant, f"hours=2&limit=2&cursor={first['next_cursor']}")
    seen = ids_of(first) + [sid for page in rest for sid in ids_of(page)]
    assert len(seen) == len(set(seen))
    assert seen == [sids[0], sids[1], sids[2], sids[4]]  # sids[3] is left to the next poll
    fresh = await listing(client, tenant, "hours=2")
    assert ids_of(fresh) == [sids[3], sids[1], sids[0], sids[2], sids[4]]


async def test_the_chain_keeps_the_window_of_its_first_request(
    client: httpx.AsyncClient, tenant: Tenant, clock: Any
) -> None:
    posted = [
        await post_message(
            client, tenant.auth, await make_contact(client, tenant.auth), T0 - h * HOUR
        )
        for h in (1, 2, 3)
    ]
    sids = [p["sessionId"] for p in posted]
    first = await listing(client, tenant, "hours=3&limit=1")
    assert ids_of(first) == sids[:1]
    clock.advance(2 * HOUR)  # a moving window would now start at T0 - 1 h
    assert ids_of(await listing(client, tenant, "hours=3")) == sids[:1]
    second = await listing(client, tenant, f"hours=3&limit=1&cursor={first['next_cursor']}")
    assert ids_of(second) == sids[1:2]
    third = await listing(client, tenant, f"hours=3&limit=1&cursor={second['next_cursor']}")
    assert ids_of(third) == sids[2:]
    assert third["next_cursor"] is None


async def test_status_and_its_filter_follow_each_requests_own_time(
    client: httpx.AsyncClient, tenant: Tenant, clock: Any
) -> None:
    posted = [
        await post_message(
            client, tenant.auth, await make_contact(client, tenant.auth), T0 - m * MIN
        )
        for m in (10, 20, 30)
    ]
    sids = [p["sessionId"] for p in posted]
    first = await listing(client, tenant, "hours=1&status=open&limit=1")
    assert ids_of(first) == sids[:1]
    clock.advance(35 * MIN)  # the third session closed by silence at T0 + 30 min
    second = await listing(
        client, tenant, f"hours=1&status=open&limit=1&cursor={first['next_cursor']}"
    )
    assert ids_of(second) == sids[1:2]
    assert second["sessions"][0]["status"] == "ChatSessionOpened"
    assert second["next_cursor"] is None
    clock.advance(10 * MIN)  # now the second one has closed too
    first = await listing(client, tenant, "hours=2&limit=1")
    second = await listing(client, tenant, f"hours=2&limit=1&cursor={first['next_cursor']}")
    assert second["sessions"][0]["status"] == "ChatSessionClosed"
    assert second["sessions"][0]["closed_reason"] == "inactivity"


# --- cursors: opaque, signed, bound to their query and user ------------------------------


async def _chain_start(
    client: httpx.AsyncClient, tenant: Tenant, query: str, path: str = RECENT
) -> str:
    body = await listing(client, tenant, query, path)
    assert isinstance(body["next_cursor"], str), body
    return str(body["next_cursor"])


async def _three_sessions(client: httpx.AsyncClient, tenant: Tenant) -> str:
    contact = await make_contact(client, tenant.auth)
    await store_batch(
        client,
        tenant.auth,
        [
            {"contactId": contact, "direction": "inbound", "timestamp": T0 - i * 2 * HOUR}
            for i in range(3)
        ],
    )
    return contact


@pytest.mark.parametrize(
    "cursor",
    [
        "abc",
        "abc.def",
        "a.b.c",
        ".",
        "%25%25%25",
        "eyJhIjoxfQ.AAAAAAAAAAAAAAAAAAAAAA",
        "%C3%A9t%C3%A9.%C3%A9t%C3%A9",
        "x" * 5000,
        "%00",
    ],
)
async def test_garbage_cursor_is_400(
    client: httpx.AsyncClient, tenant: Tenant, cursor: str
) -> None:
    r = await client.get(f"{RECENT}?hours=1&cursor={cursor}", headers=tenant.auth)
    assert_invalid(r, "cursor")
    r = await client.get(f"{RECENT}?cursor={cursor}", headers=tenant.auth)
    assert_invalid(r, "cursor")


async def test_tampered_cursor_is_400(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await _three_sessions(client, tenant)
    cursor = await _chain_start(client, tenant, "hours=24&limit=1")
    body_part, mac_part = cursor.split(".")
    payload = orjson.loads(base64.urlsafe_b64decode(body_part + "=" * (-len(body_part) % 4)))
    for key, value in [("l", 2), ("h", 1), ("t", payload["t"] + HOUR), ("a", payload["a"] + 1)]:
        forged = base64.urlsafe_b64encode(
            orjson.dumps({**payload, key: value}, option=orjson.OPT_SORT_KEYS)
        )
        tampered = forged.rstrip(b"=").decode() + "." + mac_part
        r = await client.get(f"{RECENT}?cursor={tampered}", headers=tenant.auth)
        assert_invalid(r, "cursor")
    # Flip a character inside the signature (the last one may hold only padding bits).
    flipped = cursor[:-5] + ("A" if cursor[-5] != "A" else "B") + cursor[-4:]
    assert_invalid(await client.get(f"{RECENT}?cursor={flipped}", headers=tenant.auth), "cursor")
    # The untampered cursor still works.
    assert (await listing(client, tenant, f"cursor={cursor}"))["count"] == 1


async def test_a_well_signed_cursor_of_the_wrong_shape_is_400_not_500(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    secret = b"test-secret"  # the suite's configured secret (conftest)
    payloads: list[dict[str, Any]] = [
        {},
        {"c": None},
        {"c": None, "h": "x", "s": None, "l": 1, "im": False, "ml": 1},
    ]
    for payload in payloads:
        token = encode_cursor(payload, secret, user_id=tenant.user_id)
        assert_invalid(await client.get(f"{RECENT}?cursor={token}", headers=tenant.auth), "cursor")


async def test_cursor_alone_or_with_the_same_parameters_continues_the_query(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await _three_sessions(client, tenant)
    query = "hours=24&limit=1&status=closed&includeMessages=true&messageLimit=3"
    first = await listing(client, tenant, query)
    cursor = first["next_cursor"]
    alone = await listing(client, tenant, f"cursor={cursor}")
    same = await listing(client, tenant, f"{query}&cursor={cursor}")
    respelled = await listing(
        client,
        tenant,
        f"hours=024&limit=1&status=ChatSessionClosed&includeMessages=1&cursor={cursor}",
    )
    assert alone == same == respelled
    assert alone["count"] == 1 and "messages" in alone["sessions"][0]  # includeMessages carried
    assert ids_of(alone) != ids_of(first)
    # An empty cursor counts as absent: the first page again.
    assert await listing(client, tenant, f"{query}&cursor=") == first


@pytest.mark.parametrize(
    "other",
    [
        "hours=23",
        "hours=25&limit=1",
        "limit=2",
        "status=open",
        "status=closed",
        "includeMessages=true",
        "messageLimit=4",
    ],
)
async def test_cursor_used_with_other_parameters_is_400(
    client: httpx.AsyncClient, tenant: Tenant, other: str
) -> None:
    await _three_sessions(client, tenant)
    cursor = await _chain_start(client, tenant, "hours=24&limit=1&messageLimit=3")
    r = await client.get(f"{RECENT}?{other}&cursor={cursor}", headers=tenant.auth)
    assert_invalid(r, "cursor")


async def test_cursor_of_another_tenant_is_400(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    await _three_sessions(client, tenant)
    await _three_sessions(client, other_tenant)
    cursor = await _chain_start(client, tenant, "hours=24&limit=1")
    r = await client.get(f"{RECENT}?hours=24&limit=1&cursor={cursor}", headers=other_tenant.auth)
    assert_invalid(r, "cursor")
    assert tenant.user_id not in r.text
    # The cursor does not name its user (a userId is a credential, SPEC §2).
    body_part = cursor.split(".")[0]
    assert tenant.user_id.encode() not in base64.urlsafe_b64decode(
        body_part + "=" * (-len(body_part) % 4)
    )


async def test_cursor_of_another_listing_is_400(client: httpx.AsyncClient, tenant: Tenant) -> None:
    contact = await _three_sessions(client, tenant)
    other = await _three_sessions(client, tenant)
    recent_cursor = await _chain_start(client, tenant, "hours=24&limit=1")
    contact_cursor = await _chain_start(
        client, tenant, "hours=24&limit=1", f"/v1/chat-sessions/{contact}"
    )
    r = await client.get(f"/v1/chat-sessions/{contact}?cursor={recent_cursor}", headers=tenant.auth)
    assert_invalid(r, "cursor")
    r = await client.get(f"/v1/chat-sessions/{other}?cursor={contact_cursor}", headers=tenant.auth)
    assert_invalid(r, "cursor")
    assert_invalid(
        await client.get(f"{RECENT}?cursor={contact_cursor}", headers=tenant.auth), "cursor"
    )
    # On its own listing it continues.
    page = await listing(client, tenant, f"cursor={contact_cursor}", f"/v1/chat-sessions/{contact}")
    assert page["count"] == 1 and page["sessions"][0]["contact_id"] == contact


async def test_contact_listing_walks_with_and_without_hours(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    contact = await make_contact(client, tenant.auth)
    stamps = [T0 - i * 5 * HOUR for i in range(9)]
    results = await store_batch(
        client,
        tenant.auth,
        [{"contactId": contact, "direction": "inbound", "timestamp": ts} for ts in stamps],
    )
    path = f"/v1/chat-sessions/{contact}"
    want = [r["sessionId"] for r in results]
    pages = await walk(client, tenant, "limit=2", path)
    assert [sid for page in pages for sid in ids_of(page)] == want
    pages = await walk(client, tenant, "limit=2&hours=20", path)
    assert [sid for page in pages for sid in ids_of(page)] == want[:5]


async def test_a_chain_survives_sessions_disappearing_between_pages(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    contacts = [await make_contact(client, tenant.auth) for _ in range(4)]
    posted = [
        await post_message(client, tenant.auth, c, T0 - (i + 1) * MIN)
        for i, c in enumerate(contacts)
    ]
    sids = [p["sessionId"] for p in posted]
    first = await listing(client, tenant, "hours=1&limit=2")
    assert ids_of(first) == sids[:2]
    # Erase the contact of the last session shown and of the next one to come.
    for contact in contacts[1:3]:
        r = await client.delete(f"/v1/contacts/{contact}", headers=tenant.auth)
        assert r.status_code == 200, r.text
    rest = await listing(client, tenant, f"cursor={first['next_cursor']}")
    assert ids_of(rest) == sids[3:] and rest["next_cursor"] is None
    # A contact listing's cursor after its contact was erased: the contact is gone.
    more = [await post_message(client, tenant.auth, contacts[0], T0 - h * 2 * HOUR) for h in (1, 2)]
    assert len({m["sessionId"] for m in more}) == 2
    path = f"/v1/chat-sessions/{contacts[0]}"
    cursor = (await listing(client, tenant, "limit=1", path))["next_cursor"]
    assert (
        await client.delete(f"/v1/contacts/{contacts[0]}", headers=tenant.auth)
    ).status_code == 200
    r = await client.get(f"{path}?cursor={cursor}", headers=tenant.auth)
    assert r.status_code == 404 and r.json()["code"] == "not_found"


async def _sessions_scan(
    database: Database, stmt: Any, params: dict[str, Any]
) -> tuple[str, int | None]:
    """How the database reads ``sessions`` for ``stmt``: the index condition (PostgreSQL,
    from EXPLAIN ANALYZE, with the rows it read and dropped) or the search (SQLite)."""
    async with database.read(snapshot=True) as conn:
        compiled = stmt.compile(dialect=conn.dialect)
        given = compiled.construct_params(params)  # adds SQLite's OFFSET 0
        args = [given[name] for name in compiled.positiontup or ()]
        if database.is_sqlite:
            plan = await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + compiled.string, tuple(args))
            details = [row[-1] for row in plan]
            return next(d for d in details if "sessions" in d and "contacts" not in d), None
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        # The index's bounds are what is tested, not the planner's costs on a tiny table.
        await driver.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off")
        raw = await driver.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + compiled.string, *args)
        [doc] = orjson.loads(raw) if isinstance(raw, str | bytes) else raw
        nodes = [doc["Plan"]]
        while nodes:
            node = nodes.pop()
            if node.get("Relation Name") == "sessions":
                return node["Index Cond"], node.get("Rows Removed by Filter", 0)
            nodes.extend(node.get("Plans", []))
    raise AssertionError("no scan of sessions in the plan")


async def test_a_deep_page_reads_from_where_the_last_page_ended(
    client: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    """Keyset pagination: page k starts reading at the cursor's position in the index. It
    used to read and drop the k - 1 pages before it (the keyset condition was only a
    filter), so paging through a long history cost time growing with its depth."""
    from chatsessions.sessions import store
    from chatsessions.timeutil import parse_iso_ms

    await store_batch(
        client,
        tenant.auth,
        [
            {"contact": {"externalId": f"deep-{i}"}, "direction": "inbound", "timestamp": T0 - i * MIN}
            for i in range(1, 601)
        ],
    )
    pages = [await listing(client, tenant, "hours=48&limit=100")]
    for _ in range(4):
        cursor = pages[-1]["next_cursor"]
        pages.append(await listing(client, tenant, f"hours=48&limit=100&cursor={cursor}"))
    last = pages[-1]["sessions"][-1]  # the 500th session
    stmt = store._list_statement(by_contact=False, since=True, status=None, keyset=True)
    params = {
        "user_id": tenant.user_id,
        "limit": 101,
        "min_activity_ms": T0 - 48 * HOUR,
        "after_activity": parse_iso_ms(last["last_message_date_time"]),
        "after_id": last["session_id"],
        "now_ms": T0,
    }
    scan, dropped = await _sessions_scan(database, stmt, params)
    if database.is_sqlite:
        assert "activity_ms>?" in scan and "activity_ms<?" in scan, scan
    else:
        assert "activity_ms <=" in scan, scan
        assert dropped is not None and dropped <= 1, f"read and dropped {dropped} rows"
    # And the page itself is the next 100 sessions.
    sixth = await listing(client, tenant, f"hours=48&limit=100&cursor={pages[-1]['next_cursor']}")
    assert [s["last_message_date_time"] for s in sixth["sessions"]] == [
        format_ms(T0 - i * MIN) for i in range(501, 601)
    ]
