"""The per-session figures computed in SQL equal the rule applied to the messages in Python,
for random conversations posted in random order."""

from __future__ import annotations

from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatsessions.analytics import store
from chatsessions.db import Database
from tests.conftest import T0, create_tenant
from tests.factories import make_contact, post_message

START = T0 - 10 * 86_400_000


def _by_rule(messages: list[tuple[int, str]]) -> tuple[int | None, list[int]]:
    """First response and reply times, straight from their definitions: a reply is an
    outbound message after one or more inbound ones since the previous outbound; its time
    is measured from the first of those inbound messages."""
    first_inbound = next((ts for ts, d in messages if d == "inbound"), None)
    answers = [
        ts
        for ts, d in messages
        if d == "outbound" and first_inbound is not None and ts > first_inbound
    ]
    first_response = answers[0] - first_inbound if answers and first_inbound is not None else None
    replies, waiting_since = [], None
    for ts, direction in messages:
        if direction == "inbound" and waiting_since is None:
            waiting_since = ts
        elif direction == "outbound" and waiting_since is not None:
            replies.append(ts - waiting_since)
            waiting_since = None
    return first_response, replies


conversations = st.lists(
    st.tuples(st.integers(1, 600), st.sampled_from(["inbound", "outbound"])),
    min_size=1,
    max_size=8,
)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(conversation=conversations, order=st.randoms(use_true_random=False))
async def test_sql_figures_follow_the_rule(
    client: httpx.AsyncClient, database: Database, conversation: list[tuple[int, str]], order: Any
) -> None:
    tenant = await create_tenant(database)
    contact = await make_contact(client, tenant.auth)
    messages, ts = [], START
    for gap_s, direction in conversation:  # 1 s to 10 min apart: one session, no ties
        ts += gap_s * 1000
        messages.append((ts, direction))
    shuffled = list(messages)
    order.shuffle(shuffled)
    for when, direction in shuffled:
        await post_message(client, tenant.auth, contact, when, direction=direction)
    async with database.read() as conn:
        (figures,) = await store.session_figures(
            conn, user_id=tenant.user_id, from_ms=START, to_ms=T0, channel=None
        )
    first_response, replies = _by_rule(messages)
    assert figures.first_response_ms == first_response
    assert (figures.reply_sum_ms, figures.reply_count) == (sum(replies), len(replies))
    assert figures.inbound == sum(1 for _, d in messages if d == "inbound")
    assert figures.duration_ms == messages[-1][0] - messages[0][0]
