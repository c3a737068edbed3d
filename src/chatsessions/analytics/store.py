"""Read-only SQL behind the analytics endpoints. Every statement is scoped by ``user_id``.

The figures of a session (first response, reply times) are computed from its messages
with window functions, the same statement on SQLite and PostgreSQL:

- each message gets ``outs_before``, the number of outbound messages before it in the
  session (order: time, then message id). Inbound messages with the same ``outs_before``
  form one *turn* of the contact; the outbound message with that ``outs_before`` is the
  first one after the turn: its answer. A reply time is answer − the turn's first inbound;
- a session's first response is its first reply (the turn holding its first inbound
  message comes first, since no inbound message precedes it).

Sessions are selected by start in ``[from, to)``. There is no index on the start time;
``activity_ms >= from`` (activity is never before the start) makes the selection a range
read of the listing index ``(user_id, activity_ms)``.

:func:`session_figures` is the one entry point for per-session figures (the summary and
``firstResponseMedian``): a later version can read them from columns kept on the session
row without changing any caller. Counts (sessions, messages, the heatmap) come from
:func:`starts_by_quarter`, aggregated by the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Integer, and_, bindparam, case, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Select

from chatsessions import tables

__all__ = ["QUARTER_MS", "QuarterCounts", "SessionFigures", "session_figures", "starts_by_quarter"]

s = tables.sessions.c
m = tables.messages.c
ct = tables.contacts.c


@dataclass(frozen=True, slots=True)
class SessionFigures:
    """What analytics needs of one session (times in epoch ms, durations in ms)."""

    session_id: str
    contact_id: str
    start_ms: int
    last_ms: int
    inbound: int
    outbound: int
    first_response_ms: int | None = None
    reply_sum_ms: int = 0
    reply_count: int = 0

    @property
    def duration_ms(self) -> int:
        """Last message − first message."""
        return self.last_ms - self.start_ms

    @property
    def reply_mean_ms(self) -> float | None:
        """The session's mean reply time (None without any reply)."""
        return self.reply_sum_ms / self.reply_count if self.reply_count else None


def _selected(with_channel: bool) -> Select[Any]:
    """The tenant's sessions that start in ``[:from_ms, :to_ms)`` (of one channel)."""
    stmt = select(
        s.id, s.contact_id, s.start_ms, s.last_ms, s.inbound_count, s.outbound_count
    ).where(
        s.user_id == bindparam("user_id"),
        s.activity_ms >= bindparam("from_ms"),
        s.start_ms >= bindparam("from_ms"),
        s.start_ms < bindparam("to_ms"),
    )
    if with_channel:
        stmt = stmt.join(
            tables.contacts, and_(ct.user_id == s.user_id, ct.id == s.contact_id)
        ).where(func.lower(ct.channel) == bindparam("channel"))
    return stmt


def _figures_statement(with_channel: bool) -> Select[Any]:
    """Each selected session with its first response and reply-time sum and count."""
    chosen = _selected(with_channel).cte("chosen")
    is_out = case((m.direction == "outbound", 1), else_=0)
    ordered = (
        select(
            m.session_id,
            m.direction,
            m.ts_ms,
            # Running count up to and including this row (ts, id is unique: no peers),
            # minus this row: the outbound messages strictly before it.
            (
                func.sum(is_out).over(partition_by=m.session_id, order_by=(m.ts_ms, m.id)) - is_out
            ).label("outs_before"),
        )
        .select_from(
            tables.messages.join(
                chosen, and_(m.user_id == bindparam("user_id"), m.session_id == chosen.c.id)
            )
        )
        .cte("ordered")
    )
    o = ordered.c
    turns = (
        select(
            o.session_id,
            o.outs_before.label("turn"),
            func.min(case((o.direction == "inbound", o.ts_ms))).label("asked_ms"),
            func.min(case((o.direction == "outbound", o.ts_ms))).label("answered_ms"),
        )
        .group_by(o.session_id, o.outs_before)
        .cte("turns")
    )
    t = turns.c
    replies = (
        select(
            t.session_id,
            (t.answered_ms - t.asked_ms).label("reply_ms"),
            func.row_number().over(partition_by=t.session_id, order_by=t.turn).label("rank"),
        )
        .where(t.asked_ms.is_not(None), t.answered_ms.is_not(None))
        .cte("replies")
    )
    r = replies.c
    per_session = (
        select(
            r.session_id,
            func.max(case((r.rank == 1, r.reply_ms))).label("first_response_ms"),
            func.sum(r.reply_ms).label("reply_sum_ms"),
            func.count().label("reply_count"),
        )
        .group_by(r.session_id)
        .subquery("per_session")
    )
    p = per_session.c
    c = chosen.c
    return select(
        c.id,
        c.contact_id,
        c.start_ms,
        c.last_ms,
        c.inbound_count,
        c.outbound_count,
        p.first_response_ms,
        func.coalesce(p.reply_sum_ms, 0).cast(BigInteger),
        func.coalesce(p.reply_count, 0).cast(Integer),
    ).select_from(chosen.outerjoin(per_session, p.session_id == c.id))


# One named statement per shape, built once.
SESSIONS_IN_RANGE = _selected(False)
SESSIONS_IN_RANGE_OF_CHANNEL = _selected(True)
SESSION_FIGURES = _figures_statement(False)
SESSION_FIGURES_OF_CHANNEL = _figures_statement(True)


async def session_figures(
    conn: AsyncConnection,
    *,
    user_id: str,
    from_ms: int,
    to_ms: int,
    channel: str | None,
    with_replies: bool,
) -> list[SessionFigures]:
    """The sessions of ``user_id`` that start in ``[from_ms, to_ms)`` (of contacts of
    ``channel``, compared in lower case, when given), with their first response and
    reply times when ``with_replies`` (otherwise those stay empty: the cheaper read for
    counts)."""
    params: dict[str, object] = {"user_id": user_id, "from_ms": from_ms, "to_ms": to_ms}
    if channel is not None:
        params["channel"] = channel.lower()
    if with_replies:
        stmt = SESSION_FIGURES_OF_CHANNEL if channel is not None else SESSION_FIGURES
        rows = (await conn.execute(stmt, params)).all()
        return [
            SessionFigures(
                r[0],
                r[1],
                int(r[2]),
                int(r[3]),
                int(r[4]),
                int(r[5]),
                None if r[6] is None else int(r[6]),
                int(r[7]),
                int(r[8]),
            )
            for r in rows
        ]
    stmt = SESSIONS_IN_RANGE_OF_CHANNEL if channel is not None else SESSIONS_IN_RANGE
    rows = (await conn.execute(stmt, params)).all()
    return [SessionFigures(r[0], r[1], int(r[2]), int(r[3]), int(r[4]), int(r[5])) for r in rows]


QUARTER_MS = 900_000


@dataclass(frozen=True, slots=True)
class QuarterCounts:
    """The sessions that start in one quarter hour (UTC) and their messages."""

    quarter_ms: int  # the quarter's start
    sessions: int
    inbound: int
    outbound: int


def _quarters_statement(with_channel: bool) -> Select[Any]:
    chosen = _selected(with_channel).subquery("chosen")
    # The divisor is written into the statement: PostgreSQL matches the GROUP BY
    # expression to the selected one only when both are the same text.
    quarter = (chosen.c.start_ms // literal_column(str(QUARTER_MS), BigInteger)).label("quarter")
    return select(
        quarter,
        func.count(),
        func.sum(chosen.c.inbound_count),
        func.sum(chosen.c.outbound_count),
    ).group_by(quarter)


STARTS_BY_QUARTER = _quarters_statement(False)
STARTS_BY_QUARTER_OF_CHANNEL = _quarters_statement(True)


async def starts_by_quarter(
    conn: AsyncConnection, *, user_id: str, from_ms: int, to_ms: int, channel: str | None
) -> list[QuarterCounts]:
    """Counts of the sessions that start in ``[from_ms, to_ms)``, per quarter hour of UTC.

    Every zone's offset from UTC since the 1970s is a whole number of quarter hours, so a
    quarter lies in one local hour, day and week whatever the zone, and the counts per
    bucket add up exactly (the database aggregates; only the quarters travel).
    """
    params: dict[str, object] = {"user_id": user_id, "from_ms": from_ms, "to_ms": to_ms}
    if channel is not None:
        params["channel"] = channel.lower()
    stmt = STARTS_BY_QUARTER_OF_CHANNEL if channel is not None else STARTS_BY_QUARTER
    rows = (await conn.execute(stmt, params)).all()
    return [QuarterCounts(int(r[0]) * QUARTER_MS, int(r[1]), int(r[2]), int(r[3])) for r in rows]
