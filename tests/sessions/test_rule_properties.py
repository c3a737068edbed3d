"""Property tests of the pure session rule: incremental placement in any arrival order
equals the offline segmentation of the sorted timestamps (docs/contract.md#sessions)."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from chatsessions.sessions import rule
from chatsessions.sessions.rule import PlacementKind, SessionSpan, TimeoutHistory

MIN = 60_000


@dataclass
class SimSession:
    """An in-memory stand-in for a stored session."""

    id: str
    start: int
    last: int
    closed: int | None
    members: list[tuple[int, str]]


class Simulator:
    """Applies ``place_message`` decisions the way storage does, in memory."""

    def __init__(self, history: TimeoutHistory) -> None:
        self.history = history
        self.sessions: dict[str, SimSession] = {}
        self.counter = 0

    def neighbours(self, ts: int) -> tuple[SimSession | None, SimSession | None]:
        ordered = sorted(self.sessions.values(), key=lambda s: s.start)
        before = [s for s in ordered if s.start <= ts]
        after = [s for s in ordered if s.start > ts]
        return (before[-1] if before else None), (after[0] if after else None)

    def activity(self) -> dict[str, int]:
        return {sid: max(s.last, s.closed or s.last) for sid, s in self.sessions.items()}

    def add(self, ts: int, mid: str) -> None:
        """Place one message; a surviving id's activity never moves back (cursor walks)."""
        was = self.activity()
        self._add(ts, mid)
        now = self.activity()
        assert all(now[sid] >= was[sid] for sid in was.keys() & now.keys())

    def _add(self, ts: int, mid: str) -> None:
        before, after = self.neighbours(ts)

        def span(s: SimSession | None) -> SessionSpan | None:
            return SessionSpan(s.id, s.start, s.last, s.closed) if s else None

        decision = rule.place_message(ts, span(before), span(after), self.history)
        if decision.kind is PlacementKind.RESEGMENT:
            olds = [s for s in (before, after) if s is not None]
            for old in olds:
                del self.sessions[old.id]
            for recut in rule.resegment(
                [(SessionSpan(o.id, o.start, o.last, o.closed), o.members) for o in olds],
                (ts, mid),
                self.history,
            ):
                sid = recut.session_id
                if sid is None:
                    self.counter += 1
                    sid = f"s{self.counter:05d}"
                seg = recut.segment
                self.sessions[sid] = SimSession(
                    sid, seg.start_ms, seg.last_ms, seg.closed_at_ms, list(seg.messages)
                )
            return
        if decision.kind is PlacementKind.NEW:
            self.counter += 1
            sid = f"s{self.counter:05d}"
            self.sessions[sid] = SimSession(sid, ts, ts, None, [(ts, mid)])
            return
        target = self.sessions[decision.target or ""]
        if decision.kind is PlacementKind.MERGE:
            absorbed = self.sessions.pop(decision.absorbed or "")
            assert absorbed.start > target.start  # the earliest start survives
            target.last = absorbed.last
            target.closed = absorbed.closed
            target.members += absorbed.members
        target.start = min(target.start, ts)
        target.last = max(target.last, ts)
        target.members.append((ts, mid))

    def close(self, sid: str, now: int) -> int | None:
        sess = self.sessions[sid]
        expires = self.history.expires(sess.last)
        if not rule.is_open(now_ms=now, closed_at_ms=sess.closed, expires_ms=expires):
            return None
        sess.closed = rule.close_time(now_ms=now, last_ms=sess.last)
        return sess.closed

    def snapshot(self) -> set[tuple[tuple[tuple[int, str], ...], int | None]]:
        return {(tuple(sorted(s.members)), s.closed) for s in self.sessions.values()}


def offline(
    messages: list[tuple[int, str]], closes: list[int], history: TimeoutHistory
) -> set[tuple[tuple[tuple[int, str], ...], int | None]]:
    return {(seg.messages, seg.closed_at_ms) for seg in rule.segment(messages, closes, history)}


timestamps = st.lists(st.integers(min_value=0, max_value=12 * 60 * MIN), min_size=1, max_size=40)
# The first value is in force from the start of time, or from a time among the messages
# (a tenant's first timeout row, with history older than it: in force before it too).
histories = st.builds(
    lambda first, changes: TimeoutHistory(((first, 60 * MIN), *changes)),
    st.one_of(st.just(-(2**62)), st.integers(0, 12 * 60 * MIN)),
    st.lists(
        st.tuples(
            st.integers(0, 12 * 60 * MIN),
            st.sampled_from([1, 5, 30, 60, 90]).map(lambda m: m * MIN),
        ),
        max_size=3,
    ),
)


@settings(max_examples=400, deadline=None)
@given(ts=timestamps, history=histories, data=st.data())
def test_any_arrival_order_gives_the_offline_segmentation(
    ts: list[int], history: TimeoutHistory, data: st.DataObject
) -> None:
    # Dense clusters make gaps near the timeout likely: scale some timestamps down.
    messages = [(t, f"m{i:04d}") for i, t in enumerate(ts)]
    order = data.draw(st.permutations(messages))
    sim = Simulator(history)
    for t, mid in order:
        sim.add(t, mid)
    assert sim.snapshot() == offline(messages, [], history)


def test_a_split_keeps_the_old_id_with_its_close() -> None:
    """Found by the property below: a close at 60001 on {0}; after the timeout drops to
    1 minute at t=1, back-filled messages at 1 and 60001 split the session, and the close
    (the old session's activity) lands on the later piece, which keeps the old id."""
    history = TimeoutHistory(((-(2**62), 60 * MIN), (1, MIN)))
    sim = Simulator(history)
    sim.add(0, "a0")
    [sid] = sim.sessions
    assert sim.close(sid, 60_001) == 60_001
    sim.add(1, "b0")
    sim.add(60_001, "b1")  # the split: would move the old id's activity back from 60001 to 1
    assert sim.sessions[sid].closed == 60_001
    assert offline([(0, "a0"), (1, "b0"), (60_001, "b1")], [60_001], history) == sim.snapshot()


def test_a_close_moves_to_a_message_at_its_time_that_starts_a_session() -> None:
    """Found by the property below: {0} closed at 120001 while the timeout was 60 min;
    after it drops to 1 minute at t=1, back-filled 1 and 60001 split the session (60001
    keeps the close), and a message at exactly 120001 is a minute after 60001: a new
    session, and the close (at or after it) is now its close."""
    history = TimeoutHistory(((-(2**62), 60 * MIN), (1, MIN)))
    sim = Simulator(history)
    sim.add(0, "a0")
    [sid] = sim.sessions
    assert sim.close(sid, 120_001) == 120_001
    for ts, mid in ((60_001, "b0"), (1, "b1"), (120_001, "b2")):
        sim.add(ts, mid)
    messages = [(0, "a0"), (60_001, "b0"), (1, "b1"), (120_001, "b2")]
    assert sim.snapshot() == offline(messages, [120_001], history)
    assert sim.sessions[sid].members == [(120_001, "b2")]  # the close keeps the old id


@settings(max_examples=400, deadline=None)
@given(
    first=timestamps,
    later=st.lists(st.integers(min_value=0, max_value=12 * 60 * MIN), max_size=25),
    history=histories,
    data=st.data(),
)
def test_explicit_closes_hold_for_late_messages_in_any_order(
    first: list[int], later: list[int], history: TimeoutHistory, data: st.DataObject
) -> None:
    """Messages, then explicit closes, then more (late or back-dated) messages in any order."""
    messages = [(t, f"a{i:04d}") for i, t in enumerate(first)]
    sim = Simulator(history)
    for t, mid in data.draw(st.permutations(messages)):
        sim.add(t, mid)
    closes: list[int] = []
    for sid in data.draw(st.lists(st.sampled_from(sorted(sim.sessions)), unique=True, max_size=4)):
        sess = sim.sessions[sid]
        now = data.draw(st.integers(sess.last - 10 * MIN, sess.last + 120 * MIN))
        recorded = sim.close(sid, now)
        if recorded is not None:
            closes.append(recorded)
    more = [(t, f"b{i:04d}") for i, t in enumerate(later)]
    for t, mid in data.draw(st.permutations(more)):
        sim.add(t, mid)
    assert sim.snapshot() == offline(messages + more, closes, history)


def test_gap_equal_to_timeout_splits_and_one_ms_less_joins() -> None:
    history = TimeoutHistory.constant(60 * MIN)
    split = rule.segment([(0, "a"), (60 * MIN, "b")], [], history)
    joined = rule.segment([(0, "a"), (60 * MIN - 1, "b")], [], history)
    assert len(split) == 2
    assert len(joined) == 1


def test_gap_uses_the_timeout_in_force_at_the_earlier_message() -> None:
    # 60 min until t=100 min, then 5 min.
    history = TimeoutHistory(((-(2**62), 60 * MIN), (100 * MIN, 5 * MIN)))
    # Earlier message at 90 min (timeout 60): a gap of 50 min joins.
    assert len(rule.segment([(90 * MIN, "a"), (140 * MIN, "b")], [], history)) == 1
    # Earlier message at 110 min (timeout 5): a gap of 10 min splits.
    assert len(rule.segment([(110 * MIN, "a"), (120 * MIN, "b")], [], history)) == 2


def test_close_is_a_boundary_messages_at_or_before_it_stay() -> None:
    history = TimeoutHistory.constant(60 * MIN)
    segs = rule.segment([(0, "a"), (10 * MIN, "b"), (11 * MIN, "c")], [10 * MIN], history)
    assert [[m for _, m in s.messages] for s in segs] == [["a", "b"], ["c"]]
    assert segs[0].closed_at_ms == 10 * MIN
    assert segs[1].closed_at_ms is None


def test_status_and_end_follow_the_rule() -> None:
    assert rule.end_and_reason(now_ms=5, last_ms=1, closed_at_ms=None, expires_ms=10) == (
        None,
        None,
    )
    assert rule.end_and_reason(now_ms=10, last_ms=1, closed_at_ms=None, expires_ms=10) == (
        1,
        "inactivity",
    )
    assert rule.end_and_reason(now_ms=5, last_ms=1, closed_at_ms=3, expires_ms=10) == (3, "closed")
