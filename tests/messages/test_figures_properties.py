"""Property test on the real databases: the analytics figures kept on each session row
(first inbound, first response, reply-time sum and count, the unanswered turn) equal those
recomputed from the session's stored messages, after every batch, whatever the arrival:
in order (the figures are extended message by message), nearly in order, with ties, late
messages that land among stored turns (their figures from the messages around them), join
or split sessions, and single messages (a batch of one)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatsessions.contacts import service as contacts_service
from chatsessions.contacts.schemas import ContactIn
from chatsessions.db import Database
from chatsessions.messages import placement
from chatsessions.messages import service as messages_service
from chatsessions.messages.schemas import MessageIn
from tests.conftest import T0, create_tenant
from tests.figures_oracle import check_stored_figures

MIN = 60_000
BASE = T0 - 24 * 60 * MIN

# Gaps between consecutive messages of a contact: ties, close together, within the
# 60-minute timeout, and just past it (a new session; a late message may bridge two).
# Weighted towards long sessions of one contact with several turns.
gap = st.sampled_from([0, 1, 1_000, 1_000, 5 * MIN, 5 * MIN, 5 * MIN, 59 * MIN, 61 * MIN])
who = st.sampled_from([0, 0, 0, 1])
conversation = st.lists(st.tuples(gap, st.booleans(), who), min_size=2, max_size=24)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(talk=conversation, data=st.data())
async def test_stored_figures_equal_a_recomputation(
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
    talk: list[tuple[int, bool, int]],
    data: st.DataObject,
) -> None:
    # Sessions here are short: every late message's figures come from the messages read
    # around it (placement.AROUND_FROM), as in a long session (shape a of the bench and
    # tests/test_bench_floor.py check the reads of whole sessions).
    monkeypatch.setattr(placement, "AROUND_FROM", 0)
    # Batches of 2 items or more also in two statements (messages written ahead, on
    # PostgreSQL), as from messages.service.WRITE_AHEAD_FROM items (and, here, whatever
    # figures they make stale: WRITE_AHEAD_STALE_FROM).
    write_ahead_from = data.draw(st.sampled_from([2, messages_service.WRITE_AHEAD_FROM]))
    monkeypatch.setattr(messages_service, "WRITE_AHEAD_FROM", write_ahead_from)
    monkeypatch.setattr(messages_service, "WRITE_AHEAD_STALE_FROM", 0)
    tenant = await create_tenant(database, timeout_minutes=60, now_ms=BASE - MIN)

    async def setup(conn: Any) -> list[str]:
        out = []
        for n in range(2):
            contact = await contacts_service.create_contact(
                conn, user_id=tenant.user_id, fields=ContactIn(email=f"f{n}@x.example"), now_ms=BASE
            )
            out.append(contact.id)
        return out

    contacts = await database.run_write(setup)
    at = {0: BASE, 1: BASE}
    items = []
    for n, (pause, inbound, who) in enumerate(talk):
        at[who] += pause
        items.append((contacts[who], at[who], inbound, f"x{n}"))
    # Mostly in order: a few messages delivered late, up to six places on (a late message
    # lands in the middle of stored turns: its figures come from the messages around it).
    for _ in range(data.draw(st.integers(0, 3))):
        if len(items) > 1:
            i = data.draw(st.integers(0, len(items) - 2))
            late = items.pop(i)
            items.insert(min(i + data.draw(st.integers(1, 6)), len(items)), late)
    batches, rest = [], list(items)
    while rest:
        size = data.draw(st.integers(1, 6))
        batches.append(rest[:size])
        rest = rest[size:]
    for batch in batches:
        prepared = [
            messages_service.prepare_message(
                MessageIn(
                    contactId=cid,
                    direction="inbound" if inbound else "outbound",
                    timestamp=ts,
                    externalId=ext,
                ),
                now_ms=T0,
            )
            for cid, ts, inbound, ext in batch
        ]

        async def work(conn: Any, prepared: Any = prepared) -> Any:
            return await messages_service.ingest(
                conn, user_id=tenant.user_id, items=prepared, now_ms=T0
            )

        await database.run_write(work)
        sessions, _messages = await check_stored_figures(database, tenant.user_id)
        assert sessions >= 1
