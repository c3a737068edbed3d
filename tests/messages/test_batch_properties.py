"""Property test of batch ingest on the real databases: whatever the arrival order, the
split into batches, explicit closes, replays and timeout changes (before any message, or
between batches), the stored sessions equal the
offline segmentation of the sorted messages, and every batch response agrees with what is
stored (each item's session is the one now holding its message, with its exact status),
and every session row's analytics figures equal those recomputed from its messages."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from chatsessions import tables
from chatsessions.contacts import service as contacts_service
from chatsessions.contacts.schemas import ContactIn
from chatsessions.db import Database
from chatsessions.messages import service as messages_service
from chatsessions.messages.schemas import MessageIn
from chatsessions.sessions import rule
from chatsessions.sessions import service as sessions_service
from chatsessions.settings import service as settings_service
from tests.conftest import T0, create_tenant
from tests.figures_oracle import FIGURE_COLUMNS, figures_by_definition, stored_figures

MIN = 60_000
BASE = T0 - 24 * 60 * MIN  # all timestamps lie in the day before "now"

# (contact index, offset from BASE, inbound?): on a coarse grid with a little jitter, so
# that gaps near the timeout are common and late items often bridge two sessions.
message = st.tuples(
    st.integers(0, 2),
    st.builds(lambda slot, jitter: slot * 25 * MIN + jitter, st.integers(0, 14), st.integers(0, 3)),
    st.booleans(),
)


async def _stored(db: Database, user_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Sessions by id and messages by id, as stored."""
    s, m = tables.sessions.c, tables.messages.c
    async with db.read() as conn:
        sessions = {
            r.id: r
            for r in await conn.execute(
                select(
                    s.id,
                    s.contact_id,
                    s.start_ms,
                    s.last_ms,
                    s.closed_at_ms,
                    s.expires_ms,
                    s.message_count,
                    s.inbound_count,
                    s.outbound_count,
                    *FIGURE_COLUMNS,
                ).where(s.user_id == user_id)
            )
        }
        messages = {
            r.id: r
            for r in await conn.execute(
                select(m.id, m.contact_id, m.ts_ms, m.session_id, m.direction).where(
                    m.user_id == user_id
                )
            )
        }
    return sessions, messages


def _segments_of(sessions: dict[str, Any], messages: dict[str, Any], contact_id: str) -> set[Any]:
    members: dict[str, list[Any]] = {
        sid: [] for sid, r in sessions.items() if r.contact_id == contact_id
    }
    for r in messages.values():
        if r.contact_id == contact_id:
            members[r.session_id].append(r)
    out = set()
    for sid, msgs in members.items():
        row = sessions[sid]
        keys = tuple(sorted((r.ts_ms, r.id) for r in msgs))
        inbound = sum(1 for r in msgs if r.direction == "inbound")
        # The stored summary columns agree with the stored messages.
        assert row.message_count == len(keys)
        assert (row.inbound_count, row.outbound_count) == (inbound, len(keys) - inbound)
        assert (row.start_ms, row.last_ms) == (keys[0][0], keys[-1][0])
        _assert_figures(row, msgs)
        out.add((keys, row.closed_at_ms))
    return out


def _assert_figures(row: Any, msgs: list[Any]) -> None:
    """The analytics figures on the session row equal those of its stored messages."""
    ordered = [(r.ts_ms, r.direction) for r in sorted(msgs, key=lambda r: (r.ts_ms, r.id))]
    assert stored_figures(row) == figures_by_definition(ordered), (row.id, ordered)


async def _post_batches(
    db: Database,
    user_id: str,
    contacts: list[str],
    batches: list[list[tuple[int, int, bool, str]]],
    originals: dict[str, str],
) -> None:
    """Ingest each batch; check each response against what is then stored."""
    for batch in batches:
        items = [
            messages_service.prepare_message(
                MessageIn(
                    contactId=contacts[ci],
                    direction="inbound" if inbound else "outbound",
                    timestamp=BASE + off,
                    externalId=ext,
                ),
                now_ms=T0,
                prefix=f"messages[{n}].",
            )
            for n, (ci, off, inbound, ext) in enumerate(batch)
        ]

        async def work(conn: Any, items: Any = items) -> list[messages_service.StoredMessage]:
            return await messages_service.ingest(conn, user_id=user_id, items=items, now_ms=T0)

        results = await db.run_write(work)
        sessions, messages = await _stored(db, user_id)
        members: dict[str, list[Any]] = {sid: [] for sid in sessions}
        for r in messages.values():
            members[r.session_id].append(r)
        for sid, row in sessions.items():  # after every batch, not only at the end
            _assert_figures(row, members[sid])
        for (_ci, _off, _inbound, ext), result in zip(batch, results, strict=True):
            if ext in originals:
                assert result.duplicate and result.message_id == originals[ext]
            else:
                assert not result.duplicate
                originals[ext] = result.message_id
            held = messages[result.message_id]
            assert result.session_id == held.session_id
            row = sessions[held.session_id]
            assert result.session_status == rule.status_of(
                now_ms=T0, closed_at_ms=row.closed_at_ms, expires_ms=row.expires_ms
            )


def _split(draw: Any, items: list[Any]) -> list[list[Any]]:
    """``items`` cut into 1..4 consecutive batches."""
    if not items:
        return []
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(items) - 1)), max_size=3)))
    bounds = [0, *[c for c in cuts if c < len(items)], len(items)]
    return [items[a:b] for a, b in pairwise(bounds) if a < b]


@settings(
    max_examples=35,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    first=st.lists(message, min_size=1, max_size=16),
    later=st.lists(message, max_size=10),
    n_contacts=st.integers(1, 3),
    changes=st.lists(
        st.tuples(st.integers(0, 6 * 60 * MIN), st.sampled_from([1, 10, 60, 90])), max_size=2
    ),
    later_change=st.none()
    | st.tuples(st.integers(0, 6 * 60 * MIN), st.sampled_from([1, 10, 60, 90])),
    # Batches of 2 items or more also in two statements (messages written ahead, on
    # PostgreSQL), as from messages.service.WRITE_AHEAD_FROM items (and, here, whatever
    # figures they make stale: WRITE_AHEAD_STALE_FROM).
    write_ahead_from=st.sampled_from([2, messages_service.WRITE_AHEAD_FROM]),
    data=st.data(),
)
async def test_batches_store_the_offline_segmentation(
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
    first: list[tuple[int, int, bool]],
    later: list[tuple[int, int, bool]],
    n_contacts: int,
    changes: list[tuple[int, int]],
    later_change: tuple[int, int] | None,
    write_ahead_from: int,
    data: st.DataObject,
) -> None:
    monkeypatch.setattr(messages_service, "WRITE_AHEAD_FROM", write_ahead_from)
    monkeypatch.setattr(messages_service, "WRITE_AHEAD_STALE_FROM", 0)
    tenant = await create_tenant(database, timeout_minutes=60, now_ms=BASE - MIN)

    async def setup(conn: Any) -> list[str]:
        for at, minutes in changes:
            await settings_service.set_timeout(
                conn, user_id=tenant.user_id, minutes=minutes, now_ms=BASE + at
            )
        out = []
        for n in range(n_contacts):
            contact = await contacts_service.create_contact(
                conn,
                user_id=tenant.user_id,
                fields=ContactIn(email=f"p{n}@example.com"),
                now_ms=BASE,
            )
            out.append(contact.id)
        return out

    contacts = await database.run_write(setup)
    async with database.read() as conn:
        history = await settings_service.timeout_history(conn, tenant.user_id)

    def plan(msgs: list[tuple[int, int, bool]], start: int) -> list[tuple[int, int, bool, str]]:
        shaped = [
            (ci % n_contacts, off, inbound, f"e{start + n}")
            for n, (ci, off, inbound) in enumerate(msgs)
        ]
        shuffled = list(data.draw(st.permutations(shaped)))
        # Replays: some items sent again, later in the same or a following batch.
        for _ in range(data.draw(st.integers(0, 2)) if shuffled else 0):
            again = data.draw(st.sampled_from(shuffled))
            shuffled.insert(data.draw(st.integers(shuffled.index(again) + 1, len(shuffled))), again)
        return shuffled

    originals: dict[str, str] = {}
    await _post_batches(
        database, tenant.user_id, contacts, _split(data.draw, plan(first, 0)), originals
    )

    closes: dict[str, list[int]] = {cid: [] for cid in contacts}
    latest_close = BASE
    sessions, messages = await _stored(database, tenant.user_id)
    ordered = sorted(sessions.values(), key=lambda r: (r.contact_id, r.start_ms))
    for row in ordered[: data.draw(st.integers(0, 2))]:
        now = row.last_ms + data.draw(st.integers(-5 * MIN, 90 * MIN))

        async def close(conn: Any, sid: str = row.id, now: int = now) -> dict[str, Any]:
            return await sessions_service.close_session(
                conn, user_id=tenant.user_id, session_id=sid, now_ms=now, message_limit=1
            )

        closed = await database.run_write(close)
        latest_close = max(latest_close, now)
        if closed["closed_reason"] == "closed":
            closes[row.contact_id].append(max(now, row.last_ms))

    if later_change is not None:
        # A timeout change after messages exist: the sessions reaching its moment are
        # re-cut (the same placement as ingest), later messages see the new history. It
        # happens after the closes (a change takes effect from its moment, never before).
        at, minutes = later_change

        async def change(conn: Any) -> None:
            await settings_service.set_timeout(
                conn, user_id=tenant.user_id, minutes=minutes, now_ms=max(BASE + at, latest_close)
            )

        await database.run_write(change)
        async with database.read() as conn:
            history = await settings_service.timeout_history(conn, tenant.user_id)

    await _post_batches(
        database, tenant.user_id, contacts, _split(data.draw, plan(later, len(first))), originals
    )

    sessions, messages = await _stored(database, tenant.user_id)
    assert len(messages) == len(first) + len(later)  # every item stored once
    for cid in contacts:
        mine = [(r.ts_ms, r.id) for r in messages.values() if r.contact_id == cid]
        expected = {
            (seg.messages, seg.closed_at_ms) for seg in rule.segment(mine, closes[cid], history)
        }
        assert _segments_of(sessions, messages, cid) == expected
