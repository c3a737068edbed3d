"""Conversation analytics: the summary, the time series and the weekday × hour heatmap of
the sessions that start in a range (docs/analytics.md).

The figures of each session come from :func:`store.session_figures`; everything here is
arithmetic on them, exact: percentiles are nearest-rank on the sorted values, buckets are
calendar hours, days and ISO weeks of the chosen time zone (so a day across a
daylight-saving change lasts 23 or 25 hours).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions.analytics import store
from chatsessions.analytics.schemas import METRICS, RangeQuery, TimeseriesQuery
from chatsessions.errors import InvalidParameter
from chatsessions.timeutil import format_ms

__all__ = [
    "MAX_BUCKETS",
    "METRICS",
    "WEEKDAYS",
    "Range",
    "Stats",
    "figures_of",
    "heatmap",
    "resolve_range",
    "stats_of",
    "summary",
    "timeseries",
]

DEFAULT_DAYS = 30
MAX_BUCKETS = 5000
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
UTC_ZONE = ZoneInfo("UTC")
_HOUR_MS = 3_600_000


@dataclass(frozen=True)
class Range:
    """Sessions starting in ``[from_ms, to_ms)``, seen in ``tz``, of ``channel`` or all."""

    from_ms: int
    to_ms: int
    tz: ZoneInfo
    channel: str | None

    def as_json(self) -> dict[str, Any]:
        """The range as the responses echo it."""
        return {
            "from": format_ms(self.from_ms),
            "to": format_ms(self.to_ms),
            "tz": self.tz.key,
            "channel": self.channel,
        }


def _ms(dt: datetime) -> int:
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _bound_ms(bound: date | datetime, tz: ZoneInfo) -> int:
    """A date is its midnight in ``tz``; a time without an offset is read in ``tz``."""
    if isinstance(bound, datetime):
        return _ms(bound if bound.tzinfo is not None else bound.replace(tzinfo=tz))
    return _ms(datetime.combine(bound, time(0), tzinfo=tz))


def resolve_range(query: RangeQuery, *, now_ms: int) -> Range:
    """The absolute range of a query: ``to`` defaults to now, ``from`` to 30 days before."""
    tz = query.tz or UTC_ZONE
    to_ms = _bound_ms(query.to, tz) if query.to is not None else now_ms
    if query.from_ is not None:
        from_ms = _bound_ms(query.from_, tz)
    else:
        from_ms = to_ms - DEFAULT_DAYS * 86_400_000
    if from_ms >= to_ms:
        raise InvalidParameter("to", "must be later than from")
    return Range(from_ms, to_ms, tz, query.channel)


@dataclass(frozen=True)
class Stats:
    """Count, nearest-rank median and 90th percentile, and mean of values in ms."""

    n: int
    median_ms: float | None
    p90_ms: float | None
    mean_ms: float | None

    def as_json(self) -> dict[str, Any]:
        """In seconds (millisecond precision), nulls when there is no value."""

        def seconds(ms: float | None) -> float | None:
            return None if ms is None else round(ms / 1000, 3)

        return {
            "n": self.n,
            "median": seconds(self.median_ms),
            "p90": seconds(self.p90_ms),
            "mean": seconds(self.mean_ms),
        }


def nearest_rank(sorted_values: Sequence[float], percent: int) -> float:
    """The smallest value with at least ``percent`` % of the values at or below it.

    >>> nearest_rank([1, 2, 3, 4], 50), nearest_rank([1, 2, 3, 4], 90)
    (2, 4)
    """
    rank = math.ceil(percent * len(sorted_values) / 100)
    return sorted_values[max(rank, 1) - 1]


def stats_of(values: Sequence[float]) -> Stats:
    """The stats of ``values`` (any order)."""
    if not values:
        return Stats(0, None, None, None)
    ordered = sorted(values)
    return Stats(
        len(ordered),
        nearest_rank(ordered, 50),
        nearest_rank(ordered, 90),
        sum(ordered) / len(ordered),
    )


async def _figures(
    conn: AsyncConnection, *, user_id: str, span: Range, with_replies: bool
) -> list[store.SessionFigures]:
    return await store.session_figures(
        conn,
        user_id=user_id,
        from_ms=span.from_ms,
        to_ms=span.to_ms,
        channel=span.channel,
        with_replies=with_replies,
    )


async def figures_of(
    conn: AsyncConnection, *, user_id: str, span: Range
) -> list[store.SessionFigures]:
    """The per-session figures of the range, to give several of the functions below (a
    console page reads them once for its summary, series and distribution)."""
    return await _figures(conn, user_id=user_id, span=span, with_replies=True)


async def summary(
    conn: AsyncConnection,
    *,
    user_id: str,
    span: Range,
    figures: Sequence[store.SessionFigures] | None = None,
) -> dict[str, Any]:
    """Counts and time figures of the sessions starting in the range (the ``data`` of
    ``GET /v1/analytics/summary``); ``figures``: those of :func:`figures_of` for the same
    range, when already read."""
    if figures is None:
        figures = await figures_of(conn, user_id=user_id, span=span)
    return {
        **span.as_json(),
        "sessions": len(figures),
        "contacts": len({f.contact_id for f in figures}),
        "messagesIn": sum(f.inbound for f in figures),
        "messagesOut": sum(f.outbound for f in figures),
        "unanswered": sum(1 for f in figures if f.inbound > 0 and f.outbound == 0),
        "firstResponse": stats_of(
            [f.first_response_ms for f in figures if f.first_response_ms is not None]
        ).as_json(),
        "replyTime": stats_of(
            [f.reply_mean_ms for f in figures if f.reply_mean_ms is not None]
        ).as_json(),
        "duration": stats_of([f.duration_ms for f in figures]).as_json(),
    }


def _local(ms: int, tz: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz)


def bucket_starts(span: Range, interval: str) -> list[int]:
    """The start instants (ms) of the calendar buckets of ``interval`` in the range's zone
    that meet ``[from, to)``: the first holds ``from``. A local day or week starts at its
    local midnight, whatever the length daylight saving gives it."""
    tz = span.tz
    first = _local(span.from_ms, tz)
    starts: list[int] = []
    if interval == "hour":
        # The start of the local hour holding `from`; each next one an hour later, snapped
        # to the local hour (zones whose offset changes by 30 minutes).
        cur = span.from_ms - (first.minute * 60 + first.second) * 1000 - first.microsecond // 1000
        while cur < span.to_ms:
            starts.append(cur)
            if len(starts) > MAX_BUCKETS:
                break
            nxt = cur + _HOUR_MS
            local = _local(nxt, tz)
            nxt -= (local.minute * 60 + local.second) * 1000
            cur = nxt if nxt > cur else cur + _HOUR_MS
        return starts
    day = first.date()
    step = timedelta(days=1)
    if interval == "week":
        day -= timedelta(days=day.weekday())
        step = timedelta(days=7)
    while True:
        start = _ms(datetime.combine(day, time(0), tzinfo=tz))
        if start >= span.to_ms or len(starts) > MAX_BUCKETS:
            return starts
        starts.append(start)
        day += step


def _bucket_index(starts: list[int], at_ms: int) -> int:
    return bisect_right(starts, at_ms) - 1


async def timeseries(
    conn: AsyncConnection,
    *,
    user_id: str,
    span: Range,
    metric: str,
    interval: str,
    figures: Sequence[store.SessionFigures] | None = None,
) -> dict[str, Any]:
    """One value per calendar bucket (the ``data`` of ``GET /v1/analytics/timeseries``):
    each bucket's ``value`` and ``n``, the sessions it counts (for
    ``firstResponseMedian``: those with a first response; the value is then seconds, or
    null without any). ``figures``: as for :func:`summary`."""
    starts = bucket_starts(span, interval)
    if len(starts) > MAX_BUCKETS:
        raise InvalidParameter(
            "interval", f"gives more than {MAX_BUCKETS} buckets: choose a longer interval"
        )
    values: list[float | None]
    if metric == "firstResponseMedian":
        if figures is None:
            figures = await figures_of(conn, user_id=user_id, span=span)
        grouped: list[list[int]] = [[] for _ in starts]
        for f in figures:
            if f.first_response_ms is not None:
                grouped[_bucket_index(starts, f.start_ms)].append(f.first_response_ms)
        values = [stats_of(g).as_json()["median"] for g in grouped]
        counts = [len(g) for g in grouped]
    else:
        # Bucket boundaries are local hours, a whole number of quarter hours of UTC: each
        # quarter's counts fall into one bucket.
        sums = [0] * len(starts)
        counts = [0] * len(starts)
        for q in await _quarters(conn, user_id=user_id, span=span):
            i = _bucket_index(starts, q.quarter_ms)
            counts[i] += q.sessions
            sums[i] += {"sessions": q.sessions, "messagesIn": q.inbound}.get(metric, q.outbound)
        values = list(sums)
    buckets = [
        {
            "start": _local(start, span.tz).isoformat(timespec="seconds"),
            "startUtc": format_ms(start),
            "value": value,
            "n": n,
        }
        for start, value, n in zip(starts, values, counts, strict=True)
    ]
    return {**span.as_json(), "metric": metric, "interval": interval, "buckets": buckets}


async def _quarters(
    conn: AsyncConnection, *, user_id: str, span: Range
) -> list[store.QuarterCounts]:
    return await store.starts_by_quarter(
        conn, user_id=user_id, from_ms=span.from_ms, to_ms=span.to_ms, channel=span.channel
    )


async def heatmap(conn: AsyncConnection, *, user_id: str, span: Range) -> dict[str, Any]:
    """Session starts by local weekday (Monday first) and hour (the ``data`` of
    ``GET /v1/analytics/heatmap``)."""
    cells = [[0] * 24 for _ in WEEKDAYS]
    total = 0
    for q in await _quarters(conn, user_id=user_id, span=span):
        local = _local(q.quarter_ms, span.tz)
        cells[local.weekday()][local.hour] += q.sessions
        total += q.sessions
    return {
        **span.as_json(),
        "sessions": total,
        "weekdays": list(WEEKDAYS),
        "hours": list(range(24)),
        "cells": cells,
    }


def timeseries_choice(query: TimeseriesQuery) -> tuple[str, str]:
    """``(metric, interval)`` with their defaults."""
    return query.metric or "sessions", query.interval or "day"
