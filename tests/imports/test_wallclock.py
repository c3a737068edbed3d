"""Wall-clock conversion: the cached offsets agree with the zone's rules everywhere,
including the hours where the clocks change (fixed rule: the first of a repeated time,
the offset before the change for a skipped one)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from chatsessions.imports.wallclock import LocalClock, possible_orders
from tests.imports.helpers import utc

ZONES = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "America/Santiago",
    "UTC",
]


@settings(max_examples=300, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    when=st.datetimes(min_value=datetime(2005, 1, 1), max_value=datetime(2030, 12, 31)),
    near_change=st.booleans(),
)
def test_cached_offsets_match_the_zone(zone: str, when: datetime, near_change: bool) -> None:
    if near_change:  # the nights the clocks change in the northern and southern zones
        when = when.replace(month=st_month(when), day=min(when.day, 28))
    clock = LocalClock(ZoneInfo(zone), "ymd")
    got = clock.epoch_ms((when.year, when.month, when.day, when.hour, when.minute, when.second))
    expected = int(when.replace(microsecond=0, tzinfo=ZoneInfo(zone), fold=0).timestamp() * 1000)
    assert got == expected
    # Asked again (from the cache) the answer is the same.
    assert (
        clock.epoch_ms((when.year, when.month, when.day, when.hour, when.minute, when.second))
        == got
    )


def st_month(when: datetime) -> int:
    return (3, 4, 9, 10, 11)[when.day % 5]


def test_dst_rules_are_the_documented_ones() -> None:
    berlin = LocalClock(ZoneInfo("Europe/Berlin"), "dmy")
    # Clocks forward at 02:00 on 26 March 2023: 02:30 never happened; read as 03:30 CEST.
    assert berlin.epoch_ms((26, 3, 2023, 2, 30, 0)) == berlin.epoch_ms((26, 3, 2023, 3, 30, 0))
    # Clocks back at 03:00 on 29 October 2023: 02:30 happened twice; the first is taken.
    assert berlin.epoch_ms((29, 10, 2023, 2, 30, 0)) == utc(2023, 10, 29, 0, 30)  # CEST, UTC+2
    assert berlin.epoch_ms((29, 10, 2023, 3, 30, 0)) == utc(2023, 10, 29, 2, 30)  # CET, UTC+1


def test_possible_orders() -> None:
    assert possible_orders((15, 1, 2023)) == {"dmy"}
    assert possible_orders((1, 15, 23)) == {"mdy"}
    assert possible_orders((3, 4, 2023)) == {"dmy", "mdy"}
    assert possible_orders((2023, 1, 15)) == {"ymd"}
    assert possible_orders((23, 1, 15)) == {"dmy"}  # two-digit years are never first…
    assert possible_orders((23, 1, 15), explicit=True) == {"dmy", "ymd"}  # …unless said so
    assert possible_orders((31, 2, 2023)) == set()
