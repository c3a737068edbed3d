"""The first pass over an export: validate everything, decide who is who and which date
order and zone apply. Nothing is stored until this pass has read the whole file."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from chatsessions.contacts.normalise import normalise_phone
from chatsessions.errors import InvalidParameter
from chatsessions.imports.model import (
    DATE_ORDERS,
    ImportedMessage,
    ImportFileError,
    ParseOptions,
    Source,
)
from chatsessions.imports.registry import FORMATS, Format
from chatsessions.imports.spool import Spool
from chatsessions.imports.wallclock import LocalClock, possible_orders
from chatsessions.messages.schemas import MAX_CONTENT_BYTES
from chatsessions.messages.service import MAX_FUTURE_MS

__all__ = ["ImportOptions", "Plan", "check_options", "scan"]


@dataclass(frozen=True)
class ImportOptions:
    """What the caller chose (CLI flags, HTTP query parameters)."""

    format: str
    me: str | None = None
    tz: str = "UTC"
    date_order: str | None = None
    chat: str | None = None
    contact_phone: str | None = None


@dataclass
class Plan:
    """What the first pass found and decided; the second pass stores by it."""

    fmt: Format
    zone: ZoneInfo
    options: ImportOptions
    contact_phone: str | None = None  # normalised E.164
    date_order: str | None = None  # None when the export carries absolute times only
    me: str | None = None  # the business's author, as written in the file
    contact: str | None = None  # the other author, as written in the file
    messages: int = 0
    inbound: int = 0
    outbound: int = 0
    skipped: int = 0
    first_ms: int | None = None
    last_ms: int | None = None
    authors: dict[str, int] = field(default_factory=dict)
    spool: Spool | None = None  # the messages as the first pass read them

    @property
    def conversation(self) -> str:
        """What names this conversation in derived ids (stable across exports of it)."""
        return f"{self.me or ''}\x1e{self.contact or self.contact_phone or ''}"

    def clock(self) -> LocalClock:
        """The wall-clock converter for this file."""
        return LocalClock(self.zone, self.date_order or "ymd")


def check_options(options: ImportOptions) -> Plan:
    """Validate the options alone (400 naming the parameter) before reading any file."""
    fmt = FORMATS.get(options.format.strip().lower())
    if fmt is None:
        raise InvalidParameter("format", f"must be one of {', '.join(FORMATS)}")
    try:
        zone = ZoneInfo(options.tz.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidParameter(
            "tz", f"unknown time zone {options.tz[:60]!r} (an IANA name such as Europe/Berlin)"
        ) from None
    if options.date_order is not None and options.date_order not in DATE_ORDERS:
        raise InvalidParameter("dateOrder", "must be dmy, mdy or ymd")
    if options.me is not None and not options.me.strip():
        raise InvalidParameter("me", "must not be empty")
    phone = None
    if options.contact_phone is not None:
        try:
            phone = normalise_phone(options.contact_phone)
        except ValueError as exc:
            raise InvalidParameter("contactPhone", str(exc)) from None
    return Plan(fmt=fmt, zone=zone, options=options, contact_phone=phone)


class _Day:
    """One calendar date of a text export: where it first appears, its earliest and
    latest time (a file spans a few thousand dates, however many messages it holds)."""

    __slots__ = ("early", "file", "late", "line")

    def __init__(self, file: str, line: int, hms: tuple[int, int, int]) -> None:
        self.file, self.line, self.early, self.late = file, line, hms, hms


def _decide_order(plan: Plan, dates: dict[tuple[int, int, int], _Day]) -> None:
    """Choose the date order that reads every date of the file as a real date."""
    given = plan.fmt.date_order or plan.options.date_order
    first_line = {key: (day.file, day.line) for key, day in dates.items()}
    if given is not None:
        bad = [key for key in dates if given not in possible_orders(key, explicit=True)]
        if bad:
            key = min(bad, key=lambda k: first_line[k][1])
            file, line = first_line[key]
            raise ImportFileError(
                file,
                f"line {line}",
                f"{'/'.join(map(str, key))} is not a date in the order {given}",
            )
        plan.date_order = given
        return
    candidates = set(DATE_ORDERS)
    for key in dates:
        candidates &= possible_orders(key)
    if not candidates:
        raise ImportFileError(
            ", ".join(sorted({f for f, _ in first_line.values()})),
            "",
            "its dates fit no single order (day-month-year, month-day-year, year-month-day)",
        )
    if len(candidates) > 1:
        raise InvalidParameter(
            "dateOrder",
            "the date order is ambiguous (no day or month above 12 anywhere in the file); "
            f"say which it is: {' or '.join(o for o in DATE_ORDERS if o in candidates)}",
        )
    plan.date_order = candidates.pop()


def _decide_authors(plan: Plan, where: dict[str, tuple[str, int]]) -> None:
    names = list(plan.authors)
    me = plan.options.me.strip() if plan.options.me else None
    if me is None:
        raise InvalidParameter(
            "me",
            f"name the business's author (its messages are outbound): one of {', '.join(map(repr, names))}",
        )
    matching = [n for n in names if n.casefold() == me.casefold()]
    if matching:
        plan.me = matching[0]
    elif len(names) == 2:
        raise InvalidParameter(
            "me", f"{me!r} is not an author of this chat; authors: {', '.join(map(repr, names))}"
        )
    else:
        plan.me = me  # the business never wrote in this chat
    others = [n for n in names if n != plan.me]
    plan.contact = others[0] if others else None
    if plan.contact is None and plan.contact_phone is None:
        raise InvalidParameter(
            "contactPhone",
            f"only {plan.me!r} wrote in this chat: say who the contact is with a phone number",
        )
    if plan.contact is not None and len(plan.contact) > 255:
        file, line = where[plan.contact]
        raise ImportFileError(
            file, f"line {line}", "the author's name is longer than 255 characters"
        )


def _at(msg: ImportedMessage) -> str:
    """Where a message is: a line of a text export, the n-th message of a JSON one."""
    return f"line {msg.line}" if msg.wall is not None else f"message {msg.line}"


def scan(
    sources: Sequence[Source],
    plan: Plan,
    *,
    now_ms: int,
    on_read: Callable[[int], None] | None = None,
) -> Plan:
    """Read every message once: check it, count it, keep it (``plan.spool``), learn
    authors, dates and times, and decide. Any problem raises before anything is stored."""
    plan.spool = Spool()
    try:
        return _scan(sources, plan, plan.spool, now_ms=now_ms, on_read=on_read)
    except BaseException:
        plan.spool.close()
        raise


def _scan(
    sources: Sequence[Source],
    plan: Plan,
    spool: Spool,
    *,
    now_ms: int,
    on_read: Callable[[int], None] | None,
) -> Plan:
    authors = plan.authors
    where: dict[str, tuple[str, int]] = {}
    dates: dict[tuple[int, int, int], _Day] = {}
    lo = hi = None
    hi_at: tuple[str, str] = ("", "")
    count = skipped = 0
    for msg in plan.fmt.parse(sources, ParseOptions(chat=plan.options.chat)):
        if msg.type == "system":
            skipped += 1
            continue
        count += 1
        spool.add((msg.author, msg.type, msg.text, msg.ts_ms, msg.wall))
        if on_read is not None and count % 10_000 == 0:
            on_read(count)
        author = msg.author
        if author in authors:
            authors[author] += 1
        else:
            authors[author] = 1
            where[author] = (msg.file, msg.line)
            if "\x00" in author:
                raise ImportFileError(msg.file, _at(msg), "the author's name holds a NUL character")
            if len(authors) > 2:
                raise ImportFileError(
                    msg.file,
                    "",
                    "a group chat cannot be imported (one conversation is one contact); authors: "
                    + ", ".join(map(repr, authors)),
                )
        text = msg.text
        if (
            len(text) * 4 > MAX_CONTENT_BYTES
            and len(text.encode("utf-8", "surrogatepass")) > MAX_CONTENT_BYTES
        ):
            raise ImportFileError(
                msg.file, _at(msg), f"the message is over {MAX_CONTENT_BYTES} bytes"
            )
        if "\x00" in text:
            raise ImportFileError(msg.file, _at(msg), "the message holds a NUL character")
        wall = msg.wall
        if wall is not None:
            key = (wall[0], wall[1], wall[2])
            seen = dates.get(key)
            hms = (wall[3], wall[4], wall[5])
            if seen is None:
                dates[key] = _Day(msg.file, msg.line, hms)
            elif hms > seen.late:
                seen.late = hms
            elif hms < seen.early:
                seen.early = hms
        elif msg.ts_ms is not None:
            if lo is None or msg.ts_ms < lo:
                lo = msg.ts_ms
            if hi is None or msg.ts_ms > hi:
                hi, hi_at = msg.ts_ms, (msg.file, _at(msg))
    spool.finish()
    if count == 0:
        names = ", ".join(s.name for s in sources)
        raise ImportFileError(names, "", f"no messages found in this {plan.fmt.name} export")
    plan.messages, plan.skipped = count, skipped
    _decide_authors(plan, where)
    plan.outbound = authors.get(plan.me or "", 0)
    plan.inbound = count - plan.outbound
    if dates:
        _decide_order(plan, dates)
        clock = plan.clock()
        for key, day in dates.items():
            day_lo = clock.epoch_ms((*key, *day.early))
            day_hi = clock.epoch_ms((*key, *day.late))
            if lo is None or day_lo < lo:
                lo = day_lo
            if hi is None or day_hi > hi:
                hi, hi_at = day_hi, (day.file, f"line {day.line}")
    assert lo is not None and hi is not None
    if lo < 0:
        raise ImportFileError(sources[0].name, "", "a message is dated before 1970")
    if hi > now_ms + MAX_FUTURE_MS:
        raise ImportFileError(hi_at[0], hi_at[1], "the message is dated in the future (check --tz)")
    plan.first_ms, plan.last_ms = lo, hi
    return plan
