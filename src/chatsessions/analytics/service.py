"""Conversation analytics: the summary, the time series and the weekday × hour heatmap of
the sessions that start in a range (docs/analytics.md).

The figures of each session are columns of its row (kept by the write path); the store
aggregates them (in the database on PostgreSQL). Everything is exact: percentiles are
nearest-rank on the sorted values (:mod:`chatsessions.analytics.stats`), buckets are
calendar hours, days and ISO weeks of the chosen time zone (so a day across a
daylight-saving change lasts 23 or 25 hours).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions.analytics import store
from chatsessions.analytics.schemas import METRICS, RangeQuery, TimeseriesQuery
from chatsessions.analytics.stats import Distribution, distribution_of
from chatsessions.errors import InvalidParameter
from chatsessions.timeutil import format_ms

__all__ = [
    "MAX_BUCKETS",
    "METRICS",
    "WEEKDAYS",
    "Range",
    "Stats",
    "first_response_bands",
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

    @classmethod
    def of(cls, dist: Distribution) -> Stats:
        """The stats of a distribution."""
        return cls(dist.n, dist.median_ms, dist.p90_ms, dist.mean_ms)

    def as_json(self) -> dict[str, Any]:
        """In seconds (millisecond precision), nulls when there is no value."""

        return {
            "n": self.n,
            "median": _seconds(self.median_ms),
            "p90": _seconds(self.p90_ms),
            "mean": _seconds(self.mean_ms),
        }


def _seconds(ms: float | None) -> float | None:
    """Seconds with millisecond precision (None stays None)."""
    return None if ms is None else round(ms / 1000, 3)


def stats_of(values: Sequence[float]) -> Stats:
    """The stats of ``values`` (any order)."""
    return Stats.of(distribution_of(values))


async def first_response_bands(
    conn: AsyncConnection, *, user_id: str, span: Range, bounds: Sequence[int]
) -> list[int]:
    """How many sessions of the range have a first response in each band: band ``i`` is
    ``[bounds[i], bounds[i + 1])`` ms, the last one open-ended."""
    return await store.first_response_bands(
        conn,
        user_id=user_id,
        from_ms=span.from_ms,
        to_ms=span.to_ms,
        channel=span.channel,
        bounds=bounds,
    )


async def summary(
    conn: AsyncConnection,
    *,
    user_id: str,
    span: Range,
) -> dict[str, Any]:
    """Counts and time figures of the sessions starting in the range (the ``data`` of
    ``GET /v1/analytics/summary``)."""
    found = await store.summarise_range(
        conn, user_id=user_id, from_ms=span.from_ms, to_ms=span.to_ms, channel=span.channel
    )
    return {
        **span.as_json(),
        "sessions": found.sessions,
        "contacts": found.contacts,
        "messagesIn": found.inbound,
        "messagesOut": found.outbound,
        "unanswered": found.unanswered,
        "firstResponse": Stats.of(found.first_response).as_json(),
        "replyTime": Stats.of(found.reply_time).as_json(),
        "duration": Stats.of(found.duration).as_json(),
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
) -> dict[str, Any]:
    """One value per calendar bucket (the ``data`` of ``GET /v1/analytics/timeseries``):
    each bucket's ``value`` and ``n``, the sessions it counts (for
    ``firstResponseMedian``: those with a first response; the value is then seconds, or
    null without any)."""
    starts = bucket_starts(span, interval)
    if len(starts) > MAX_BUCKETS:
        raise InvalidParameter(
            "interval", f"gives more than {MAX_BUCKETS} buckets: choose a longer interval"
        )
    values: list[float | None]
    if metric == "firstResponseMedian":
        medians = await store.first_response_medians(
            conn,
            user_id=user_id,
            from_ms=span.from_ms,
            to_ms=span.to_ms,
            channel=span.channel,
            starts=starts,
        )
        values = [_seconds(median) for _n, median in medians]
        counts = [n for n, _median in medians]
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
