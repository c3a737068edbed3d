"""The session rule (docs/contract.md#sessions) as pure functions: no I/O, no clock, property-tested.

A chat session is a run of one contact's messages, ordered by (timestamp, message id), in
which every gap between consecutive messages is shorter than the timeout in force at the
earlier message, and no explicit close falls inside. An explicit close at time ``c`` is a
boundary: messages at or before ``c`` stay on its side, messages after ``c`` start anew.

Two entry points:

* :func:`segment` — the offline reference: all timestamps and closes in, sessions out.
* :func:`place_message` — the incremental decision storage applies when one message
  arrives, given only its neighbouring sessions. Applying it in any arrival order gives
  the same sessions as :func:`segment` (``tests/sessions/test_rule_properties.py``).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple, Protocol

__all__ = [
    "CLOSED",
    "DEFAULT_TIMEOUT_MS",
    "OPENED",
    "Placement",
    "PlacementKind",
    "SessionSpan",
    "TimeoutHistory",
    "close_time",
    "is_open",
    "place_message",
    "resegment",
    "segment",
]

DEFAULT_TIMEOUT_MS = 60 * 60_000  # a user's timeout until it sets one
OPENED = "ChatSessionOpened"
CLOSED = "ChatSessionClosed"


@dataclass(frozen=True)
class TimeoutHistory:
    """A user's session timeout over time: ``(effective_from_ms, timeout_ms)`` pairs.

    The value in force at ``t`` is that of the latest change at or before ``t``; before
    the first change, the first value.

    >>> TimeoutHistory(((0, 60_000), (1_000, 5_000))).at(999)
    60000
    """

    changes: tuple[tuple[int, int], ...]
    _starts: tuple[int, ...] = field(init=False, repr=False, compare=False)
    # The timeout when it never changes (one value: in force before it too), else None:
    # most tenants; the rule asks up to three times a message.
    _only: int | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.changes:
            raise ValueError("a timeout history needs at least one value")
        ordered = tuple(sorted(self.changes))
        object.__setattr__(self, "changes", ordered)
        object.__setattr__(self, "_starts", tuple(start for start, _ in ordered))
        object.__setattr__(self, "_only", ordered[0][1] if len(ordered) == 1 else None)

    @classmethod
    def constant(cls, timeout_ms: int) -> TimeoutHistory:
        """A history with one value for all time."""
        return cls(((-(2**62), timeout_ms),))

    def at(self, t_ms: int) -> int:
        """The timeout in force at ``t_ms``."""
        if self._only is not None:
            return self._only
        i = bisect.bisect_right(self._starts, t_ms) - 1
        return self.changes[max(i, 0)][1]

    def constant_between(self, lo_ms: int, hi_ms: int) -> bool:
        """True when no change takes effect in ``(lo_ms, hi_ms]``."""
        if self._only is not None:
            return True
        i = bisect.bisect_right(self._starts, lo_ms)
        return i >= len(self._starts) or self._starts[i] > hi_ms

    def expires(self, last_ms: int) -> int:
        """When a session whose last message is at ``last_ms`` closes by silence."""
        if self._only is not None:
            return last_ms + self._only
        return last_ms + self.at(last_ms)


@dataclass(frozen=True)
class Segment:
    """One session of the offline segmentation."""

    messages: tuple[tuple[int, str], ...]  # (timestamp ms, message id), in order
    closed_at_ms: int | None  # the explicit close that ends it, if any

    @property
    def start_ms(self) -> int:
        """Timestamp of the first message."""
        return self.messages[0][0]

    @property
    def last_ms(self) -> int:
        """Timestamp of the last message."""
        return self.messages[-1][0]


def segment(
    messages: Iterable[tuple[int, str]], closes: Iterable[int], history: TimeoutHistory
) -> list[Segment]:
    """Cut one contact's messages into sessions (the offline reference of the rule).

    ``closes`` are the recorded explicit close times. A close ``c`` with
    ``m_i <= c < m_{i+1}`` separates two consecutive messages and belongs to the session of
    ``m_i``; a close before every message belongs to no session and is ignored.
    """
    ordered = sorted(messages)
    close_times = sorted(set(closes))
    result: list[Segment] = []
    current: list[tuple[int, str]] = []

    def close_between(lo: int, hi: int | None) -> int | None:
        i = bisect.bisect_left(close_times, lo)
        if i < len(close_times) and (hi is None or close_times[i] < hi):
            return close_times[i]
        return None

    for i, msg in enumerate(ordered):
        current.append(msg)
        nxt = ordered[i + 1] if i + 1 < len(ordered) else None
        close = close_between(msg[0], nxt[0] if nxt else None)
        gap_breaks = nxt is not None and nxt[0] - msg[0] >= history.at(msg[0])
        if nxt is None or gap_breaks or close is not None:
            result.append(Segment(tuple(current), close))
            current = []
    return result


class SessionSpan(NamedTuple):
    """What the rule needs to know of a stored session (a NamedTuple: one or two are made
    per message placed, 0.4 us each instead of 1)."""

    session_id: str
    start_ms: int
    last_ms: int
    closed_at_ms: int | None


class Neighbour(Protocol):
    """What :func:`place_message` reads of a neighbouring session: a :class:`SessionSpan`,
    or the session itself where it has these (ingest passes its sessions as they are, not
    a span made for each of a message's two neighbours)."""

    @property
    def session_id(self) -> str: ...
    @property
    def start_ms(self) -> int: ...
    @property
    def last_ms(self) -> int: ...
    @property
    def closed_at_ms(self) -> int | None: ...


class PlacementKind(Enum):
    """What storing one message does to the contact's sessions."""

    NEW = "new"  # opens a new session
    JOIN = "join"  # joins ``target`` (possibly moving its start earlier or last later)
    MERGE = "merge"  # joins ``target`` and bridges it with ``absorbed`` (later start)
    # The timeout changes inside the affected range, so one message can also *split* a
    # session (a gap after it is measured against a shorter timeout): re-cut the
    # neighbours' messages with :func:`resegment`.
    RESEGMENT = "resegment"


class Placement(NamedTuple):
    """The decision for one message: kind, the surviving session and any absorbed one
    (a NamedTuple: one per message)."""

    kind: PlacementKind
    target: str | None = None
    absorbed: str | None = None


# Module constants: an Enum member read off its class costs ~0.07 us, once a message.
_RESEGMENT = Placement(PlacementKind.RESEGMENT)
_NEW = Placement(PlacementKind.NEW)
_JOIN = PlacementKind.JOIN


def place_message(
    ts_ms: int,
    before: Neighbour | None,
    after: Neighbour | None,
    history: TimeoutHistory,
) -> Placement:
    """Decide where a message at ``ts_ms`` goes, given the contact's neighbouring sessions.

    ``before`` is the session with the greatest start at or before ``ts_ms``; ``after`` the
    one with the smallest start after it. Only these two can be touched by one message.
    """
    lo = before.start_ms if before is not None else ts_ms
    hi = max(ts_ms, after.last_ms if after is not None else ts_ms)
    if not history.constant_between(lo, hi):
        return _RESEGMENT
    joins_before = False
    if before is not None:
        if ts_ms <= before.last_ms:
            joins_before = True
        else:
            within = ts_ms - before.last_ms < history.at(before.last_ms)
            not_past_close = before.closed_at_ms is None or ts_ms <= before.closed_at_ms
            joins_before = within and not_past_close
    if (
        before is not None
        and not joins_before
        and before.closed_at_ms is not None
        and before.last_ms < ts_ms <= before.closed_at_ms
    ):
        # The close comes at or after this message, which does not join (a shorter
        # timeout since the close was recorded): the close belongs to the session of the
        # last message at or before it, this one. The general case moves it.
        return _RESEGMENT
    joins_after = False
    if after is not None:
        blocked_by_close = (
            before is not None and before.closed_at_ms is not None and before.closed_at_ms >= ts_ms
        )
        joins_after = not blocked_by_close and after.start_ms - ts_ms < history.at(ts_ms)
    if joins_before and joins_after:
        assert before is not None and after is not None
        return Placement(PlacementKind.MERGE, before.session_id, after.session_id)
    if joins_before:
        assert before is not None
        return Placement(_JOIN, before.session_id)
    if joins_after:
        assert after is not None
        return Placement(_JOIN, after.session_id)
    return _NEW


@dataclass(frozen=True)
class Recut:
    """One session after :func:`resegment`: its id (None: a new session) and its messages."""

    session_id: str | None
    segment: Segment


def resegment(
    sessions: Sequence[tuple[SessionSpan, Sequence[tuple[int, str]]]],
    new_message: tuple[int, str] | None,
    history: TimeoutHistory,
) -> list[Recut]:
    """Re-cut the neighbouring sessions' messages plus a new one (the general case).

    Ids are kept stably. Each old session claims the resulting session that holds its
    explicit close, or else its *last* message, unless an earlier-starting old session claimed it first (a merge: the
    earliest start's id survives). So after a split the old id stays with the part that
    keeps its last message and close: a session's activity never moves back, which keeps
    cursor walks from showing it twice. Unclaimed resulting sessions are new.
    """
    ordered = sorted(sessions, key=lambda pair: pair[0].start_ms)
    all_messages: list[tuple[int, str]] = [new_message] if new_message is not None else []
    closes: list[int] = []
    for span, msgs in ordered:
        all_messages.extend(msgs)
        if span.closed_at_ms is not None:
            closes.append(span.closed_at_ms)
    segments = segment(all_messages, closes, history)
    segment_of = {mid: i for i, seg in enumerate(segments) for _ts, mid in seg.messages}
    segment_closed_at = {seg.closed_at_ms: i for i, seg in enumerate(segments) if seg.closed_at_ms}
    owner: dict[int, str] = {}
    for span, msgs in ordered:
        if not msgs:
            continue
        # Home: the piece holding the old session's close (its activity) if it has one,
        # else the piece holding its last message.
        home = segment_closed_at.get(span.closed_at_ms) if span.closed_at_ms is not None else None
        if home is None:
            home = segment_of[max(msgs)[1]]
        owner.setdefault(home, span.session_id)
    return [Recut(owner.get(i), seg) for i, seg in enumerate(segments)]


def is_open(*, now_ms: int, closed_at_ms: int | None, expires_ms: int) -> bool:
    """A session is open while not explicitly closed and ``now < last + timeout``."""
    return closed_at_ms is None and now_ms < expires_ms


def close_time(*, now_ms: int, last_ms: int) -> int:
    """An explicit close takes effect at ``max(now, last message)``."""
    return max(now_ms, last_ms)


def status_of(*, now_ms: int, closed_at_ms: int | None, expires_ms: int) -> str:
    """``ChatSessionOpened`` or ``ChatSessionClosed``, exact at ``now_ms``."""
    return (
        OPENED
        if is_open(now_ms=now_ms, closed_at_ms=closed_at_ms, expires_ms=expires_ms)
        else CLOSED
    )


def end_and_reason(
    *, now_ms: int, last_ms: int, closed_at_ms: int | None, expires_ms: int
) -> tuple[int | None, str | None]:
    """``(end_date_time ms, closed_reason)``: null/null while open."""
    if closed_at_ms is not None:
        return closed_at_ms, "closed"
    if now_ms < expires_ms:
        return None, None
    return last_ms, "inactivity"


def sorted_spans(spans: Sequence[SessionSpan]) -> list[SessionSpan]:
    """Spans ordered by start (helper for callers holding a contact's sessions)."""
    return sorted(spans, key=lambda s: (s.start_ms, s.session_id))
