"""Wall-clock times of text exports: the date order, and the time zone to UTC.

The date order is decided from every date of the file at once: an order is possible when
each date of the file is a real date read that way. One possible order is used; several
(no field above 12 anywhere, as in ``03/04/2023``) is ambiguous and refused unless the
caller names the order, never guessed.

Local times become UTC with the IANA zone's rules (``zoneinfo``). Around a daylight-saving
change the result is fixed, not guessed: a time that occurs twice (clocks set back) is
read as its first occurrence (the daylight-saving one); a time that never occurred
(clocks set forward) is read with the offset in force just before the change, so 02:30
on a spring-forward night at 02:00 becomes 03:30 daylight time.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from chatsessions.imports.model import DATE_ORDERS

__all__ = ["LocalClock", "possible_orders", "to_ymd"]

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def to_ymd(fields: tuple[int, int, int], order: str) -> tuple[int, int, int]:
    """``(year, month, day)`` from the three fields as written, in ``order``."""
    a, b, c = fields
    y, m, d = {"dmy": (c, b, a), "mdy": (c, a, b), "ymd": (a, b, c)}[order]
    if y < 100:  # two-digit years: WhatsApp has existed since 2009
        y += 2000
    return y, m, d


def _is_date(fields: tuple[int, int, int], order: str) -> bool:
    y, m, d = to_ymd(fields, order)
    try:
        date(y, m, d)
    except ValueError:
        return False
    return True


def possible_orders(fields: tuple[int, int, int], *, explicit: bool = False) -> set[str]:
    """The orders in which ``fields`` is a real date. Unless the caller named the order,
    year-first needs a year written in full: ``15/1/23`` is the 15th of January 2023, not
    the 23rd of January 2015 (the locales that put the year first write four digits)."""
    return {
        order
        for order in DATE_ORDERS
        if _is_date(fields, order) and (explicit or order != "ymd" or fields[0] >= 100)
    }


class LocalClock:
    """Converts wall-clock times of one zone to epoch milliseconds (offsets cached per hour)."""

    def __init__(self, zone: ZoneInfo, order: str) -> None:
        self.zone = zone
        self.order = order
        self._days: dict[tuple[int, int, int], int] = {}
        self._offsets: dict[tuple[int, int], int | None] = {}

    def _offset(self, days: int, hour: int) -> int | None:
        """The zone's offset (seconds) for the whole hour, or None when it changes inside."""
        key = (days, hour)
        if key not in self._offsets:
            start = datetime(1970, 1, 1) + timedelta(days=days, hours=hour)
            first = start.replace(tzinfo=self.zone).utcoffset()
            last = (start + timedelta(minutes=59, seconds=59)).replace(tzinfo=self.zone).utcoffset()
            assert first is not None and last is not None
            same = first == last
            self._offsets[key] = int(first.total_seconds()) if same else None
        return self._offsets[key]

    def epoch_ms(self, wall: tuple[int, int, int, int, int, int]) -> int:
        """Epoch ms of a wall time (its date fields in this clock's order)."""
        fields = (wall[0], wall[1], wall[2])
        days = self._days.get(fields)
        if days is None:
            y, m, d = to_ymd(fields, self.order)
            days = date(y, m, d).toordinal() - _EPOCH_ORDINAL
            self._days[fields] = days
        hour, minute, second = wall[3], wall[4], wall[5]
        offset = self._offset(days, hour)
        if offset is None:  # a change inside this hour: ask the zone for this minute
            local = datetime(1970, 1, 1) + timedelta(
                days=days, hours=hour, minutes=minute, seconds=second
            )
            found = local.replace(tzinfo=self.zone, fold=0).utcoffset()
            assert found is not None
            offset = int(found.total_seconds())
        return ((days * 86400 + hour * 3600 + minute * 60 + second) - offset) * 1000
