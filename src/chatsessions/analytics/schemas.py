"""The queries of the analytics routes, each parsed and documented by one declaration
(:mod:`chatsessions.queryparams`), with the two parsers they need: a time zone and a
range bound (a date, or a time)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field
from pydantic.json_schema import JsonSchemaValue

from chatsessions.queryparams import QueryModel, Text, Word, _Parser

__all__ = [
    "INTERVALS",
    "METRICS",
    "Bound",
    "HeatmapQuery",
    "RangeQuery",
    "SummaryQuery",
    "TimeseriesQuery",
    "Zone",
]

METRICS = ("sessions", "messagesIn", "messagesOut", "firstResponseMedian")
INTERVALS = ("hour", "day", "week")
MAX_CHANNEL = 64
_METRIC_ERR = "must be sessions, messagesIn, messagesOut or firstResponseMedian"

_ZONE_NAME = re.compile(r"[A-Za-z0-9_+\-]+(?:/[A-Za-z0-9_+\-]+)*")


@dataclass(frozen=True)
class Zone(_Parser):
    """An IANA time zone name (``Europe/Amsterdam``, ``UTC``)."""

    def parse(self, raw: str) -> ZoneInfo:
        """The zone, or an error for a name the zone database does not know."""
        # ZoneInfo reads a file named after the key: refuse paths before asking it.
        if len(raw) > 64 or not _ZONE_NAME.fullmatch(raw):
            raise ValueError(f"must be an IANA time zone such as Europe/Paris, got {raw[:40]!r}")
        try:
            return ZoneInfo(raw)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(f"is not a known IANA time zone: {raw[:40]!r}") from None

    def json_schema(self) -> JsonSchemaValue:
        """A string naming a zone."""
        return {"type": "string", "examples": ["UTC", "Europe/Amsterdam"]}


@dataclass(frozen=True)
class Bound(_Parser):
    """An ISO 8601 date (``2026-03-29``) or time (``2026-03-29T10:00:00Z``). A date, or a
    time without an offset, is read in the query's ``tz`` later (the parser cannot see it)."""

    def parse(self, raw: str) -> date | datetime:
        """A ``date`` for a date alone, else a ``datetime`` (naive when no offset is given)."""
        text = raw.strip()
        try:
            if len(text) == 10:
                return date.fromisoformat(text)
            return datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "zZ" else text)
        except ValueError:
            raise ValueError(
                f"must be an ISO 8601 date (2026-03-29) or time (2026-03-29T10:00:00Z), "
                f"got {raw[:40]!r}"
            ) from None

    def json_schema(self) -> JsonSchemaValue:
        """A date or a date-time."""
        return {"type": "string", "examples": ["2026-03-01", "2026-03-01T00:00:00Z"]}


@dataclass(frozen=True)
class Channel(Text):
    """A channel name (a contact's ``channel``), compared in lower case."""

    def parse(self, raw: str) -> str:
        """The name, at most 64 characters."""
        if len(raw) > MAX_CHANNEL:
            raise ValueError(f"must be at most {MAX_CHANNEL} characters")
        return raw

    def json_schema(self) -> JsonSchemaValue:
        """A short string."""
        return {"type": "string", "maxLength": MAX_CHANNEL}


_BOUND_FROM = Field(
    None,
    alias="from",
    description="start of the range (inclusive): ISO date or time; default: 30 days before `to`",
)
_BOUND_TO = Field(
    None, alias="to", description="end of the range (exclusive): ISO date or time; default: now"
)
_TZ = Field(None, description="IANA time zone for dates and buckets; default UTC")
_CHANNEL = Field(None, description="only sessions of contacts of this channel (any case)")


class RangeQuery(QueryModel):
    """Sessions that start in ``[from, to)``, of one channel or all, seen in ``tz``."""

    from_: Annotated[date | datetime | None, Bound()] = _BOUND_FROM
    to: Annotated[date | datetime | None, Bound()] = _BOUND_TO
    tz: Annotated[ZoneInfo | None, Zone()] = _TZ
    channel: Annotated[str | None, Channel()] = _CHANNEL


class SummaryQuery(RangeQuery):
    """``GET /v1/analytics/summary``."""


class HeatmapQuery(RangeQuery):
    """``GET /v1/analytics/heatmap``."""


class TimeseriesQuery(RangeQuery):
    """``GET /v1/analytics/timeseries``."""

    metric: Annotated[str | None, Word(tuple((m.lower(), m) for m in METRICS), _METRIC_ERR)] = (
        Field(
            None, description="sessions (default) | messagesIn | messagesOut | firstResponseMedian"
        )
    )
    interval: Annotated[str | None, Word.of(INTERVALS)] = Field(
        None, description="hour | day (default) | week, in `tz`"
    )
