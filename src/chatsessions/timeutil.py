"""Time helpers. Inside the code times are epoch milliseconds (UTC); strings only at the edges."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from datetime import UTC, datetime

__all__ = ["Clock", "format_ms", "now_ms", "parse_iso_ms", "system_clock"]

Clock = Callable[[], int]
"""A clock returns the current time in epoch milliseconds; tests inject their own."""


def system_clock() -> int:
    """The real time in epoch milliseconds."""
    return time.time_ns() // 1_000_000


now_ms = system_clock


@functools.lru_cache(maxsize=8192)
def _date_prefix(day: int) -> str:
    """``YYYY-MM-DDT`` of the ``day``-th day since the epoch."""
    return time.strftime("%Y-%m-%dT", time.gmtime(day * 86_400))


_HOURS = [f"{h:02d}:" for h in range(24)]
_MINUTES_SECONDS = [f"{m:02d}:{sec:02d}." for m in range(60) for sec in range(60)]
_MILLIS = [f"{ms:03d}Z" for ms in range(1000)]


def format_ms(ms: int | None) -> str | None:
    """ISO 8601 UTC with milliseconds and ``Z``: ``2026-11-24T09:00:00.000Z``."""
    if ms is None:
        return None
    # Hot in every listing (three per session, one per message): the date part is
    # cached per day and the rest comes from tables, ~3x faster than strftime.
    seconds, millis = divmod(ms, 1000)
    day, second_of_day = divmod(seconds, 86_400)
    hour, rest = divmod(second_of_day, 3600)
    return _date_prefix(day) + _HOURS[hour] + _MINUTES_SECONDS[rest] + _MILLIS[millis]


def parse_iso_ms(value: str) -> int:
    """Parse an ISO 8601 time *with a zone* into epoch ms; raise ValueError otherwise.

    Sub-millisecond digits are truncated toward the past (floor), so that storage at
    millisecond precision never moves a time forward.
    """
    text = value.strip()
    if not text:
        raise ValueError("empty time")
    if text[-1] in "zZ":
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError("time has no zone (add Z or an offset such as +02:00)")
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
