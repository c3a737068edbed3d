"""A session's analytics figures straight from their definitions (docs/analytics.md),
written independently of the code under test, to check what the write path stores."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from chatsessions import tables
from chatsessions.db import Database

__all__ = ["FIGURE_COLUMNS", "check_stored_figures", "figures_by_definition", "stored_figures"]

FIGURE_COLUMNS = tuple(
    tables.sessions.c[name]
    for name in (
        "first_inbound_ms",
        "first_response_ms",
        "reply_sum_ms",
        "reply_count",
        "unanswered_since_ms",
    )
)
"""The session row's figure columns, in :func:`figures_by_definition`'s order."""


def stored_figures(row: Any) -> tuple[Any, ...]:
    """A session row's stored figures (selected with :data:`FIGURE_COLUMNS`), in
    :func:`figures_by_definition`'s order."""
    return tuple(getattr(row, column.name) for column in FIGURE_COLUMNS)


def figures_by_definition(
    ordered: Sequence[tuple[int, str]],
) -> tuple[int | None, int | None, int, int, int | None]:
    """``(first inbound, first response, reply sum, reply count, unanswered since)`` of a
    session's messages ``(ts_ms, direction)`` in the session's order (time, then id)."""
    inbound_at = [n for n, (_ts, d) in enumerate(ordered) if d == "inbound"]
    first_inbound = ordered[inbound_at[0]][0] if inbound_at else None
    first_response = None
    if inbound_at:
        # Its first outbound message after its first inbound message − that inbound's time.
        after = [ts for ts, d in ordered[inbound_at[0] + 1 :] if d == "outbound"]
        if after:
            first_response = after[0] - ordered[inbound_at[0]][0]
    replies: list[int] = []
    since_previous_outbound: list[int] = []
    for ts, direction in ordered:
        if direction == "inbound":
            since_previous_outbound.append(ts)
        else:
            if since_previous_outbound:  # it follows one or more inbound messages
                replies.append(ts - since_previous_outbound[0])
            since_previous_outbound = []
    waiting = since_previous_outbound[0] if since_previous_outbound else None
    return first_inbound, first_response, sum(replies), len(replies), waiting


async def check_stored_figures(db: Database, user_id: str) -> tuple[int, int]:
    """Assert that every session of the user stores the figures of its stored messages;
    return how many sessions and messages there are."""
    s, m = tables.sessions.c, tables.messages.c
    async with db.read() as conn:
        rows = (await conn.execute(select(s.id, *FIGURE_COLUMNS).where(s.user_id == user_id))).all()
        members: dict[str, list[tuple[int, str, str]]] = {r.id: [] for r in rows}
        for r in await conn.execute(
            select(m.session_id, m.ts_ms, m.id, m.direction).where(m.user_id == user_id)
        ):
            members[r.session_id].append((r.ts_ms, r.id, r.direction))
    for r in rows:
        ordered = [(ts, d) for ts, _id, d in sorted(members[r.id])]
        assert stored_figures(r) == figures_by_definition(ordered), ordered
    return len(rows), sum(len(keys) for keys in members.values())
