"""Time formatting and parsing at the edges: ISO 8601 UTC with milliseconds and Z."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from chatsessions.timeutil import format_ms, parse_iso_ms

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@given(st.integers(min_value=0, max_value=253_402_300_799_999))
def test_format_matches_datetime_and_round_trips(ms: int) -> None:
    expected = (EPOCH + timedelta(milliseconds=ms)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    assert format_ms(ms) == expected
    assert parse_iso_ms(format_ms(ms) or "") == ms
