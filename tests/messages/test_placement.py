"""The placement's shortcuts give what its general steps give (pure: no database)."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from chatsessions.messages import placement
from chatsessions.messages.store import TrackedSession
from chatsessions.sessions.figures import EMPTY
from chatsessions.sessions.rule import TimeoutHistory

MIN = 60_000
T0 = 1_800_000_000_000

histories = st.sampled_from(
    [
        TimeoutHistory.constant(60 * MIN),
        TimeoutHistory.constant(5 * MIN),
        # The timeout changed inside the times drawn: "near" depends on when.
        TimeoutHistory(((-(2**62), 60 * MIN), (T0 + 30 * MIN, 10 * MIN))),
    ]
)


@given(
    start=st.integers(T0, T0 + 120 * MIN),
    length=st.integers(0, 90 * MIN),
    count=st.sampled_from([1, 5, placement.AROUND_FROM, placement.AROUND_FROM + 1, 400]),
    times=st.lists(st.integers(T0 - 120 * MIN, T0 + 360 * MIN), min_size=1, max_size=12),
    history=histories,
)
# Each joins the session at its front, moving its start for the next.
@example(T0 + 60 * MIN, 0, 1, [T0 + 10 * MIN, T0 - 40 * MIN], TimeoutHistory.constant(60 * MIN))
# Each extends its end, moving it for the next.
@example(
    T0, 0, 40, [T0 + 50 * MIN, T0 + 100 * MIN, T0 + 20 * MIN], TimeoutHistory.constant(60 * MIN)
)
def test_the_guess_for_one_session_is_the_general_guess(
    start: int, length: int, count: int, times: list[int], history: TimeoutHistory
) -> None:
    session = TrackedSession(
        "s" * 20, "c" * 20, start, start + length, start + length + 1, None,
        start + length, count, count, 0, T0, EMPTY, None, EMPTY,
    )  # fmt: skip
    assert placement.figures_likely_wanted([session], times, history) == (
        placement._likely_wanted([session], times, history)
    )
