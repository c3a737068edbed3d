"""POST /v1/messages/batch, set-based: merges, gaps filled inside a batch, replays, many
contacts, and the webhook events (the same as posting the items one by one)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select, update

from chatsessions import ids, tables
from chatsessions.db import Database
from chatsessions.messages import service as messages_service
from chatsessions.timeutil import format_ms
from chatsessions.webhooks import store as webhooks_store
from chatsessions.webhooks.events import EVENT_TYPES
from tests.conftest import T0, Tenant, create_tenant
from tests.factories import make_contact, post_message

MIN = 60_000


def _item(contact: str, ts: int, **extra: Any) -> dict[str, Any]:
    return {"contactId": contact, "direction": "inbound", "timestamp": format_ms(ts), **extra}


async def _batch(
    client: httpx.AsyncClient, tenant: Tenant, items: list[dict[str, Any]]
) -> list[Any]:
    r = await client.post("/v1/messages/batch", json={"messages": items}, headers=tenant.auth)
    assert r.status_code == 200, r.text
    return list(r.json()["results"])


async def _sessions(client: httpx.AsyncClient, tenant: Tenant, contact: str) -> list[Any]:
    r = await client.get(
        f"/v1/chat-sessions/{contact}", params={"includeMessages": "true"}, headers=tenant.auth
    )
    assert r.status_code == 200, r.text
    return sorted(r.json()["sessions"], key=lambda s: s["start_date_time"])


async def test_batch_item_merges_two_stored_sessions(client, tenant: Tenant) -> None:
    contact = await make_contact(client, tenant.auth)
    early = await post_message(client, tenant.auth, contact, T0 - 200 * MIN)
    late = await post_message(client, tenant.auth, contact, T0 - 100 * MIN)
    assert early["sessionId"] != late["sessionId"]
    results = await _batch(
        client,
        tenant,
        [
            _item(contact, T0 - 10 * MIN),
            _item(contact, T0 - 150 * MIN),
            _item(contact, T0 - 5 * MIN),
        ],
    )
    [bridged, later] = await _sessions(client, tenant, contact)
    assert bridged["session_id"] == early["sessionId"]  # the earliest start survives
    assert bridged["message_count"] == 3
    assert [r["sessionId"] for r in results] == [
        later["session_id"],
        early["sessionId"],
        later["session_id"],
    ]
    r = await client.get(f"/v1/sessions/{late['sessionId']}", headers=tenant.auth)
    assert r.status_code == 404
    # The stored message of the absorbed session moved with it.
    assert {m["message_id"] for m in bridged["messages"]} >= {early["messageId"], late["messageId"]}


async def test_batch_fills_a_gap_between_sessions_it_created(client, tenant: Tenant) -> None:
    contact = await make_contact(client, tenant.auth)
    stamps = [T0 - 300 * MIN, T0 - 100 * MIN, T0 - 200 * MIN, T0 - 250 * MIN, T0 - 150 * MIN]
    results = await _batch(client, tenant, [_item(contact, ts) for ts in stamps])
    [only] = await _sessions(client, tenant, contact)
    assert only["message_count"] == 5
    assert {r["sessionId"] for r in results} == {only["session_id"]}
    # The first item's session (the earliest start) is the one that survives.
    single = await post_message(client, tenant.auth, contact, T0 - 300 * MIN, expect=201)
    assert single["sessionId"] == only["session_id"]


@pytest.mark.parametrize("answered", ["after the write", "while it runs"])
async def test_replays_and_repeats_return_the_final_session(
    client, tenant: Tenant, monkeypatch: pytest.MonkeyPatch, answered: str
) -> None:
    # The answers are the same whether built after the write or while it runs
    # (messages.service.ANSWER_WHILE_WRITING_FROM: a batch of 64 items or more).
    if answered == "while it runs":
        monkeypatch.setattr(messages_service, "ANSWER_WHILE_WRITING_FROM", 0)
    contact = await make_contact(client, tenant.auth)
    first = await post_message(client, tenant.auth, contact, T0 - 200 * MIN, externalId="wamid.1")
    results = await _batch(
        client,
        tenant,
        [
            _item(contact, T0 - 200 * MIN, externalId="wamid.1"),  # replay of a stored one
            _item(contact, T0 - 100 * MIN, externalId="wamid.2"),  # a new session...
            _item(contact, T0 - 100 * MIN, externalId="wamid.2"),  # ...repeated in the batch
            _item(contact, T0 - 150 * MIN),  # bridges both: wamid.2's session is absorbed
        ],
    )
    assert [r["duplicate"] for r in results] == [True, False, True, False]
    assert results[0]["messageId"] == first["messageId"]
    assert results[2]["messageId"] == results[1]["messageId"]
    assert {r["sessionId"] for r in results} == {first["sessionId"]}
    [only] = await _sessions(client, tenant, contact)
    assert only["message_count"] == 3
    replay = await post_message(
        client, tenant.auth, contact, T0 - 100 * MIN, externalId="wamid.2", expect=200
    )
    assert replay["messageId"] == results[1]["messageId"]
    assert replay["sessionId"] == first["sessionId"]
    assert replay["sessionStatus"] == "ChatSessionClosed"


async def test_batch_across_many_contacts(client, tenant: Tenant) -> None:
    contacts = [await make_contact(client, tenant.auth) for _ in range(30)]
    # Each contact gets a stored session first, then 4 items interleaved with the others'.
    for n, contact in enumerate(contacts):
        await post_message(client, tenant.auth, contact, T0 - (300 + n) * MIN)
    offsets = [-20, 100, 180, 140]  # joins, new, new, bridges the two new ones
    items = [
        _item(contact, T0 - (300 + n) * MIN + off * MIN)
        for off in offsets
        for n, contact in enumerate(contacts)
    ]
    results = await _batch(client, tenant, items)
    assert len(results) == 4 * len(contacts)
    for n, contact in enumerate(contacts):
        sessions = await _sessions(client, tenant, contact)
        assert [s["message_count"] for s in sessions] == [2, 3]
        mine = [results[k * len(contacts) + n] for k in range(4)]
        assert mine[0]["sessionId"] == sessions[0]["session_id"]
        assert {r["sessionId"] for r in mine[1:]} == {sessions[1]["session_id"]}


# -- webhook events: a batch gives the events of its items posted one by one -------------


async def _subscribe_all(database: Database, user_id: str) -> None:
    async def work(conn: Any) -> None:
        await webhooks_store.insert_endpoint(
            conn,
            webhooks_store.EndpointRow(
                id=ids.new_id(),
                user_id=user_id,
                url="https://example.com/hook",
                description=None,
                events=list(EVENT_TYPES),
                secret="whsec_test",
                enabled=True,
                disabled_reason=None,
                disabled_at_ms=None,
                failing_since_ms=None,
                created_at_ms=T0 - 24 * 60 * MIN,
            ),
            now_ms=T0 - 24 * 60 * MIN,
        )

    await database.run_write(work)


async def _disable(database: Database, user_id: str) -> None:
    ep, dl = tables.webhook_endpoints.c, tables.webhook_deliveries.c

    async def work(conn: Any) -> None:
        await conn.execute(
            update(tables.webhook_deliveries)
            .where(dl.user_id == user_id)
            .values(status="failed", next_attempt_ms=None)
        )
        await conn.execute(
            update(tables.webhook_endpoints).where(ep.user_id == user_id).values(enabled=False)
        )

    await database.run_write(work)


async def _outbox(database: Database, user_id: str, contacts: list[str]) -> list[list[Any]]:
    """Per contact (in the given order), its events in delivery order, with ids replaced
    by their order of first appearance (the two tenants' ids differ)."""
    ev, dl = tables.webhook_events.c, tables.webhook_deliveries.c
    async with database.read() as conn:
        rows = (
            await conn.execute(
                select(ev.contact_id, ev.type, ev.payload)
                .join(
                    tables.webhook_deliveries,
                    (dl.user_id == ev.user_id) & (dl.event_id == ev.id),
                )
                .where(ev.user_id == user_id)
                .order_by(dl.id)
            )
        ).all()
    out: list[list[Any]] = []
    for contact in contacts:
        names: dict[str, str] = {contact: "contact"}

        def name(value: str, names: dict[str, str] = names) -> str:
            return names.setdefault(value, f"id{len(names)}")

        events = []
        for row in rows:
            if row.contact_id != contact:
                continue
            data = orjson.loads(row.payload)["data"]
            session = dict(data["session"])
            session["session_id"] = name(session["session_id"])
            session["contact_id"] = name(session["contact_id"])
            event = {"type": row.type, "session": session}
            if "message" in data:
                event["message"] = {
                    **data["message"],
                    "message_id": name(data["message"]["message_id"]),
                }
            if "merged_session_id" in data:
                event["merged"] = name(data["merged_session_id"])
            events.append(event)
        out.append(events)
    return out


async def test_batch_events_equal_those_of_one_by_one(
    client, database: Database, clock: Any
) -> None:
    # Per contact: stored sessions (one closed by silence and not announced), then items
    # that join, open (one back-filled already past its timeout), bridge, and repeat.
    prior = [-600, -400, -200]
    items_at = [-30, -410, -300, -500, -250, -20, -350, -405]
    outboxes = []
    for mode in ("one_by_one", "batch"):
        tenant = await create_tenant(database)
        contacts = [
            await make_contact(
                client, tenant.auth, firstName=f"C{n}", phoneNumber=f"+1555000{n:04d}"
            )
            for n in range(3)
        ]
        for n, contact in enumerate(contacts):
            for off in prior:
                await post_message(client, tenant.auth, contact, T0 + (off - n) * MIN)
        await _subscribe_all(database, tenant.user_id)
        items = [
            _item(contact, T0 + (off - n) * MIN, externalId=f"x{n}-{k % 7}", content=f"m{k}")
            for k, off in enumerate(items_at)
            for n, contact in enumerate(contacts)
        ]
        try:
            if mode == "batch":
                await _batch(client, tenant, items)
            else:
                for item in items:
                    r = await client.post("/v1/messages", json=item, headers=tenant.auth)
                    assert r.status_code in (200, 201), r.text
            outboxes.append(await _outbox(database, tenant.user_id, contacts))
        finally:
            await _disable(database, tenant.user_id)
    one_by_one, batch = outboxes
    types = {e["type"] for events in batch for e in events}
    assert types == set(EVENT_TYPES)
    assert batch == one_by_one


async def test_concurrent_small_batches_are_answered_as_if_sent_one_after_the_other(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """Small batches of a tenant sent at once share transactions (group commit): a batch
    still stores all of its items or none, an unknown contact fails only its own batch,
    and an externalId sent by two batches is stored once."""
    contact = await make_contact(client, tenant.auth)
    other = await make_contact(client, tenant.auth)
    unknown = ids.new_id()
    bodies = [
        [_item(contact, T0 - 30 * MIN, externalId="shared"), _item(other, T0 - 29 * MIN)],
        [_item(contact, T0 - 20 * MIN), _item(unknown, T0 - 19 * MIN)],
        [_item(other, T0 - 10 * MIN), _item(contact, T0 - 9 * MIN, externalId="shared")],
        [_item(contact, T0 - 5 * MIN)],
    ]
    responses = await asyncio.gather(
        *(
            client.post("/v1/messages/batch", json={"messages": b}, headers=tenant.auth)
            for b in bodies
        )
    )
    assert [r.status_code for r in responses] == [200, 404, 200, 200]
    assert responses[1].json()["error"].startswith("messages[1].contactId")
    first, third = responses[0].json()["results"], responses[2].json()["results"]
    # The batches reach the write in any order: whichever carried "shared" first stored
    # it, the other is its duplicate.
    stored, replayed = (first[0], third[1]) if third[1]["duplicate"] else (third[1], first[0])
    assert not stored["duplicate"] and replayed["duplicate"]
    assert replayed["messageId"] == stored["messageId"]
    shared_at = T0 - (30 if stored is first[0] else 9) * MIN
    [session] = await _sessions(client, tenant, contact)  # within 25 minutes: one session
    # "shared" once, and nothing of the refused batch (its -20 min message).
    assert [m["timestamp"] for m in session["messages"]] == [
        format_ms(shared_at),
        format_ms(T0 - 5 * MIN),
    ]
    [session_other] = await _sessions(client, tenant, other)
    assert session_other["message_count"] == 2


# Texts a batch stores column by column (sent to PostgreSQL as one JSON array each,
# db.pg_json_texts): what could shift, split, unescape or reorder them.
_HOSTILE_TEXTS = [
    "a, b, c",  # commas: the joined columns' separator
    '"quoted" and \\backslashed\\ and \\"both\\"',
    "{1,2}",  # an array literal
    '["a json", "array"]',
    "null",
    "",
    "line\nbreak\ttab\r",
    "שלום 👋 é",
    "\u2028\u2029",  # separators JSON allows raw and JavaScript does not
    "'; DROP TABLE messages;--",
]


async def test_a_batch_stores_every_text_as_sent(client, tenant: Tenant) -> None:
    contact = await make_contact(client, tenant.auth)
    items = [
        _item(
            contact,
            T0 - (len(_HOSTILE_TEXTS) - n) * MIN,
            content=text,
            externalId=f"{text}#{n}",
            type="text" if n % 2 else "tool_use",
            role="agent" if n % 2 else None,
            mediaUrl=None if n % 3 else f"https://x.example/{n}?a=1,2",
        )
        for n, text in enumerate(_HOSTILE_TEXTS)
    ]
    results = await _batch(client, tenant, items)
    assert [r["duplicate"] for r in results] == [False] * len(items)
    [session] = await _sessions(client, tenant, contact)
    stored = [
        (m["content"], m["external_id"], m["type"], m["media_url"], m["role"])
        for m in session["messages"]
    ]
    assert stored == [
        (it["content"], it["externalId"], it["type"], it["mediaUrl"], it["role"] or "user")
        for it in items
    ]
    # And found again by those externalIds: a replay of the whole batch stores nothing.
    again = await _batch(client, tenant, items)
    assert [r["duplicate"] for r in again] == [True] * len(items)
    assert [r["messageId"] for r in again] == [r["messageId"] for r in results]


# The contacts a batch creates written with the rest (one statement), in a statement of
# their own before it (messages.service.CONTACTS_AHEAD_FROM, PostgreSQL), and with the
# messages also written ahead of the sessions (WRITE_AHEAD_FROM).
@pytest.mark.parametrize(
    ("contacts_ahead_from", "write_ahead_from"),
    [(10**9, 10**9), (2, 10**9), (2, 2)],
    ids=["one write", "contacts ahead", "contacts and messages ahead"],
)
async def test_a_batch_finds_or_creates_each_inline_contact_once(
    client,
    tenant: Tenant,
    monkeypatch: pytest.MonkeyPatch,
    contacts_ahead_from: int,
    write_ahead_from: int,
) -> None:
    """Items naming their contact inline: one contact per person whatever the spelling of
    the number (normalised once, when the item is checked), an existing contact found,
    each new one made with an id of its own."""
    monkeypatch.setattr(messages_service, "CONTACTS_AHEAD_FROM", contacts_ahead_from)
    monkeypatch.setattr(messages_service, "WRITE_AHEAD_FROM", write_ahead_from)
    monkeypatch.setattr(messages_service, "WRITE_AHEAD_STALE_FROM", 0)
    known = await make_contact(client, tenant.auth, phoneNumber="+15550104444")
    spellings = ["+1 555-010-0001", "15550100001", "0015550100001", "+1 (555) 010 0001"]
    new_numbers = [f"+1555020{n:04d}" for n in range(40)]
    items = [
        {"contact": {"phoneNumber": phone}, "direction": "inbound", "timestamp": format_ms(ts)}
        for phone, ts in [
            *((p, T0 - (10 - n) * MIN) for n, p in enumerate(spellings)),
            ("+1 555 010 4444", T0 - 5 * MIN),
            *((p, T0 - 4 * MIN) for p in new_numbers),
        ]
    ]
    results = await _batch(client, tenant, items)

    async def contact_of(phone: str) -> str:
        r = await client.get("/v1/contacts", params={"phoneNumber": phone}, headers=tenant.auth)
        assert r.status_code == 200, r.text
        return str(r.json()["contactId"])

    person = await contact_of("+15550100001")
    [session] = await _sessions(client, tenant, person)
    assert session["message_count"] == 4
    assert {r["sessionId"] for r in results[:4]} == {session["session_id"]}
    [known_session] = await _sessions(client, tenant, known)
    assert known_session["session_id"] == results[4]["sessionId"]
    made = [await contact_of(p) for p in new_numbers]
    assert len(set(made)) == 40 and all(ids.is_id(c) for c in made)
    assert person not in made and known not in made

    bad = [*items[:2], {"contact": {"phoneNumber": "+1 555"}, "direction": "inbound"}]
    r = await client.post("/v1/messages/batch", json={"messages": bad}, headers=tenant.auth)
    assert r.status_code == 400
    assert r.json()["parameter"] == "messages[2].contact.phoneNumber"
