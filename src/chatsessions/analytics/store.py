"""Read-only SQL behind the analytics endpoints. Every statement is scoped by ``user_id``.

The figures of a session (first response, reply-time sum and count) are columns of its
row, kept by the write path (``chatsessions.sessions.figures``): analytics never reads
messages.

Sessions are selected by start in ``[from, to)``: a range of ``ix_sessions_start``, which
also holds every column analytics reads (on PostgreSQL an index-only scan: the figures of
160,000 sessions in ~60 ms instead of ~300 ms of scattered heap pages).

On PostgreSQL the summary and the per-bucket medians are aggregated by the database
(``percentile_disc`` is the nearest-rank percentile), so one row per bucket travels
whatever the number of sessions; SQLite reads the figures and the same arithmetic
(:mod:`chatsessions.analytics.stats`) runs here. Counts (sessions, messages, the heatmap)
come from :func:`starts_by_quarter` on both.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Float,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Select

from chatsessions import tables
from chatsessions.analytics.stats import Distribution, distribution_of
from chatsessions.db import fetch_rows

__all__ = [
    "QUARTER_MS",
    "QuarterCounts",
    "RangeSummary",
    "SessionFigures",
    "first_response_bands",
    "first_response_medians",
    "session_figures",
    "starts_by_quarter",
    "summarise_range",
    "summary_of",
]

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
        s.start_ms >= bindparam("from_ms"),
        s.start_ms < bindparam("to_ms"),
    )
    if with_channel:
        stmt = stmt.join(
            tables.contacts, and_(ct.user_id == s.user_id, ct.id == s.contact_id)
        ).where(func.lower(ct.channel) == bindparam("channel"))
    return stmt


def _figures_statement(with_channel: bool) -> Select[Any]:
    """Each selected session with its figures, as the write path keeps them."""
    return _selected(with_channel).add_columns(s.first_response_ms, s.reply_sum_ms, s.reply_count)


# One named statement per shape, built once.
SESSION_FIGURES = _figures_statement(False)
SESSION_FIGURES_OF_CHANNEL = _figures_statement(True)


def _params(user_id: str, from_ms: int, to_ms: int, channel: str | None) -> dict[str, object]:
    params: dict[str, object] = {"user_id": user_id, "from_ms": from_ms, "to_ms": to_ms}
    if channel is not None:
        params["channel"] = channel.lower()
    return params


async def session_figures(
    conn: AsyncConnection, *, user_id: str, from_ms: int, to_ms: int, channel: str | None
) -> list[SessionFigures]:
    """The sessions of ``user_id`` that start in ``[from_ms, to_ms)`` (of contacts of
    ``channel``, compared in lower case, when given), with their figures."""
    stmt = SESSION_FIGURES_OF_CHANNEL if channel is not None else SESSION_FIGURES
    rows = await fetch_rows(conn, stmt, _params(user_id, from_ms, to_ms, channel))
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


@dataclass(frozen=True, slots=True)
class RangeSummary:
    """The summary of the sessions that start in a range: counts, and the distributions
    of first response, per-session mean reply time and duration (ms)."""

    sessions: int
    contacts: int
    inbound: int
    outbound: int
    unanswered: int
    first_response: Distribution
    reply_time: Distribution
    duration: Distribution


def _summary_statement(with_channel: bool) -> Select[Any]:
    """PostgreSQL: the whole summary in one aggregate (``percentile_disc`` is the
    nearest-rank percentile: the first value whose position reaches the fraction)."""
    chosen = _figures_statement(with_channel).subquery("chosen")
    c = chosen.c
    reply_mean = (
        cast(c.reply_sum_ms, Float) / cast(func.nullif(c.reply_count, literal_column("0")), Float)
    ).label("reply_mean")
    duration = c.last_ms - c.start_ms

    def distribution(value: Any) -> list[Any]:
        ordered = percentile_disc_of(value)
        return [func.count(value), ordered(0.5), ordered(0.9), func.sum(value)]

    # Constants as SQL text: fetch_rows binds only the statement's named parameters.
    zero: Any = literal_column("0")
    one: Any = literal_column("1")
    return select(
        func.count(),
        func.count(func.distinct(c.contact_id)),
        func.coalesce(func.sum(c.inbound_count), zero),
        func.coalesce(func.sum(c.outbound_count), zero),
        func.count(case(((c.inbound_count > zero) & (c.outbound_count == zero), one))),
        *distribution(c.first_response_ms),
        *distribution(reply_mean),
        *distribution(duration),
    )


def percentile_disc_of(value: Any) -> Any:
    """``fraction -> percentile_disc(fraction) WITHIN GROUP (ORDER BY value)``."""

    def at(fraction: float) -> Any:
        return func.percentile_disc(literal_column(repr(fraction))).within_group(value)

    return at


SUMMARY_PG = _summary_statement(False)
SUMMARY_PG_OF_CHANNEL = _summary_statement(True)


async def summarise_range(
    conn: AsyncConnection, *, user_id: str, from_ms: int, to_ms: int, channel: str | None
) -> RangeSummary:
    """The summary of the sessions that start in ``[from_ms, to_ms)`` (of ``channel``).

    PostgreSQL aggregates in the database (only one row travels); SQLite reads the
    sessions' figures and computes the same numbers here.
    """
    if conn.dialect.name != "postgresql":
        return summary_of(
            await session_figures(
                conn, user_id=user_id, from_ms=from_ms, to_ms=to_ms, channel=channel
            )
        )
    stmt = SUMMARY_PG_OF_CHANNEL if channel is not None else SUMMARY_PG
    (row,) = await fetch_rows(conn, stmt, _params(user_id, from_ms, to_ms, channel))

    def dist(at: int) -> Distribution:
        n, median, p90, total = row[at : at + 4]
        if not n:
            return Distribution(0, None, None, 0)
        return Distribution(int(n), float(median), float(p90), float(total))

    return RangeSummary(
        int(row[0]),
        int(row[1]),
        int(row[2]),
        int(row[3]),
        int(row[4]),
        dist(5),
        dist(9),
        dist(13),
    )


def summary_of(figures: Sequence[SessionFigures]) -> RangeSummary:
    """The summary of these sessions, computed here (SQLite; the console's pages)."""
    return RangeSummary(
        len(figures),
        len({f.contact_id for f in figures}),
        sum(f.inbound for f in figures),
        sum(f.outbound for f in figures),
        sum(1 for f in figures if f.inbound > 0 and f.outbound == 0),
        distribution_of([f.first_response_ms for f in figures if f.first_response_ms is not None]),
        distribution_of([f.reply_mean_ms for f in figures if f.reply_mean_ms is not None]),
        distribution_of([f.duration_ms for f in figures]),
    )


def _medians_statement(with_channel: bool) -> Select[Any]:
    """PostgreSQL: per bucket (``width_bucket`` over the bucket starts: 1 is the first),
    the count and nearest-rank median of the first responses."""
    chosen = _figures_statement(with_channel).where(s.first_response_ms.is_not(None))
    chosen_q = chosen.subquery("chosen")
    bucket = func.width_bucket(
        chosen_q.c.start_ms, cast(bindparam("starts"), ARRAY(BigInteger))
    ).label("bucket")
    return select(
        bucket,
        func.count(),
        percentile_disc_of(chosen_q.c.first_response_ms)(0.5),
    ).group_by(bucket)


MEDIANS_PG = _medians_statement(False)
MEDIANS_PG_OF_CHANNEL = _medians_statement(True)


async def first_response_medians(
    conn: AsyncConnection,
    *,
    user_id: str,
    from_ms: int,
    to_ms: int,
    channel: str | None,
    starts: Sequence[int],
) -> list[tuple[int, float | None]]:
    """Per bucket (``starts``: their start instants, ascending, the first ≤ ``from_ms``):
    ``(n, nearest-rank median in ms)`` of the first responses of the sessions that start
    in it and in ``[from_ms, to_ms)``."""
    out: list[tuple[int, float | None]] = [(0, None)] * len(starts)
    if conn.dialect.name == "postgresql":
        stmt = MEDIANS_PG_OF_CHANNEL if channel is not None else MEDIANS_PG
        params = {**_params(user_id, from_ms, to_ms, channel), "starts": list(starts)}
        for bucket, n, median in await fetch_rows(conn, stmt, params):
            out[int(bucket) - 1] = (int(n), float(median))
        return out
    grouped: list[list[int]] = [[] for _ in starts]
    figures = await session_figures(
        conn, user_id=user_id, from_ms=from_ms, to_ms=to_ms, channel=channel
    )
    for f in figures:
        if f.first_response_ms is not None:
            grouped[bisect_right(starts, f.start_ms) - 1].append(f.first_response_ms)
    for i, values in enumerate(grouped):
        if values:
            d = distribution_of(values)
            out[i] = (d.n, d.median_ms)
    return out


async def first_response_bands(
    conn: AsyncConnection,
    *,
    user_id: str,
    from_ms: int,
    to_ms: int,
    channel: str | None,
    bounds: Sequence[int],
) -> list[int]:
    """How many sessions that start in ``[from_ms, to_ms)`` have a first response in each
    band ``[bounds[i], bounds[i + 1])`` ms (the last open-ended); counted by the database."""
    chosen = _figures_statement(channel is not None).subquery("chosen")
    value = chosen.c.first_response_ms
    counts = []
    for i, low in enumerate(bounds):
        inside = value >= literal_column(str(int(low)))
        if i + 1 < len(bounds):
            inside = inside & (value < literal_column(str(int(bounds[i + 1]))))
        counts.append(func.count(case((inside, literal_column("1")))))
    row = (await conn.execute(select(*counts), _params(user_id, from_ms, to_ms, channel))).one()
    return [int(n) for n in row]


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
