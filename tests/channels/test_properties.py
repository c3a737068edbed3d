"""Property: platforms deliver at least once, out of order, and concurrently. Whatever the
interleaving, duplication and reordering of a stream of payloads, what is stored (messages,
their contacts, and the sessions they form) equals the stream sent once, in order."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from chatsessions import tables
from chatsessions.db import Database
from tests.channels.payloads import (
    SECONDS,
    create_channel,
    post_signed,
    tg_update,
    wa_change,
    wa_contact,
    wa_message,
    wa_payload,
    wa_status,
)
from tests.conftest import create_tenant

PHONES = ["15551110001", "15551110002", "15551110003"]
START = SECONDS - 12 * 3600  # every message lies in the half day before "now"

# A message: (who, when): on a 25-minute grid with jitter, so that gaps near the 60-minute
# timeout are common and a late message often bridges two sessions.
when = st.builds(
    lambda slot, jitter: START + slot * 25 * 60 + jitter, st.integers(0, 24), st.integers(0, 90)
)
wa_payload_shape = st.tuples(
    st.just("whatsapp"),
    st.lists(st.tuples(st.integers(0, 2), when), min_size=1, max_size=3),
    st.booleans(),  # a status rides along
)
tg_payload_shape = st.tuples(
    st.just("telegram"),
    st.lists(st.tuples(st.integers(0, 1), when), min_size=1, max_size=1),
    st.booleans(),
)


def _build(stream: list[tuple[str, list[tuple[int, int]], bool]]) -> list[tuple[str, Any]]:
    """Concrete payloads, each message with an id unique in the stream."""
    out: list[tuple[str, Any]] = []
    n = 0
    for kind, messages, with_status in stream:
        if kind == "whatsapp":
            items = []
            for who, ts in messages:
                n += 1
                items.append(wa_message(f"wamid.P{n}", sender=PHONES[who], ts=ts))
            contacts = [
                wa_contact(PHONES[w], f"Person {w}") for w in sorted({w for w, _ in messages})
            ]
            statuses = [wa_status(f"wamid.P{n}")] if with_status else None
            out.append(
                ("whatsapp", wa_payload([wa_change(items, contacts=contacts, statuses=statuses)]))
            )
        else:
            [(who, ts)] = messages
            n += 1
            out.append(
                ("telegram", tg_update(n, message_id=n, user_id=900 + who, date=ts, text=f"tg {n}"))
            )
    return out


async def _state(database: Database, user_id: str) -> tuple[set[Any], set[Any]]:
    """Messages (by platform id, with their contact's identity) and sessions (as the sets
    of platform ids they hold, with their bounds), free of our generated ids."""
    m, c, s = tables.messages.c, tables.contacts.c, tables.sessions.c
    async with database.read() as conn:
        rows = (
            await conn.execute(
                select(
                    m.external_id,
                    m.ts_ms,
                    m.content,
                    m.type,
                    m.direction,
                    m.session_id,
                    c.phone,
                    c.external_id.label("who"),
                    c.first_name,
                    c.channel,
                )
                .join(tables.contacts, (c.user_id == m.user_id) & (c.id == m.contact_id))
                .where(m.user_id == user_id)
            )
        ).all()
        sessions = {
            r.id: r
            for r in await conn.execute(
                select(s.id, s.start_ms, s.last_ms, s.message_count).where(s.user_id == user_id)
            )
        }
    messages = {
        (
            r.external_id,
            r.ts_ms,
            r.content,
            r.type,
            r.direction,
            r.phone,
            r.who,
            r.first_name,
            r.channel,
        )
        for r in rows
    }
    members: dict[str, set[str]] = {}
    for r in rows:
        members.setdefault(r.session_id, set()).add(r.external_id)
    segments = {
        (frozenset(ids), sessions[sid].start_ms, sessions[sid].last_ms, sessions[sid].message_count)
        for sid, ids in members.items()
    }
    assert len(segments) == len(sessions)  # no session without its messages
    return messages, segments


async def _tenant_with_channels(
    client: httpx.AsyncClient, database: Database
) -> tuple[str, dict[str, Any]]:
    tenant = await create_tenant(database)
    channels = {
        kind: await create_channel(client, tenant.auth, kind) for kind in ("whatsapp", "telegram")
    }
    return tenant.user_id, channels


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    stream=st.lists(st.one_of(wa_payload_shape, tg_payload_shape), min_size=1, max_size=8),
    data=st.data(),
)
async def test_any_delivery_order_stores_what_one_in_order_delivery_stores(
    client: httpx.AsyncClient,
    database: Database,
    stream: list[tuple[str, list[tuple[int, int]], bool]],
    data: st.DataObject,
) -> None:
    payloads = _build(stream)
    reference_user, reference = await _tenant_with_channels(client, database)
    for kind, payload in payloads:
        r = await post_signed(client, reference[kind], payload)
        assert r.status_code == 200, r.text

    # Reordered, some payloads delivered again (a platform's retries), in two concurrent lanes.
    shuffled = list(data.draw(st.permutations(payloads)))
    for again in data.draw(st.lists(st.sampled_from(payloads), max_size=4)):
        shuffled.insert(data.draw(st.integers(0, len(shuffled))), again)
    lanes = data.draw(st.lists(st.integers(0, 1), min_size=len(shuffled), max_size=len(shuffled)))
    user, channels = await _tenant_with_channels(client, database)

    async def lane(n: int) -> None:
        for (kind, payload), chosen in zip(shuffled, lanes, strict=True):
            if chosen == n:
                r = await post_signed(client, channels[kind], payload)
                assert r.status_code == 200, r.text

    await asyncio.gather(lane(0), lane(1))
    assert await _state(database, user) == await _state(database, reference_user)
