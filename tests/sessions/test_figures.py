"""The figures of a session's messages: computed at once (``figures_of``, what a re-cut or
an out-of-order message recomputes) or extended message by message (``extend_figures``,
the append path), both agree with the definitions (tests/figures_oracle.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from chatsessions.sessions.figures import EMPTY, extend_figures, figures_of, figures_of_keys
from tests.figures_oracle import figures_by_definition

_MESSAGES = st.lists(
    st.tuples(st.integers(min_value=0, max_value=10**6), st.booleans()), max_size=40
).map(sorted)


@given(_MESSAGES)
def test_figures_at_once_and_extended_agree_with_the_definitions(
    messages: list[tuple[int, bool]],
) -> None:
    extended = EMPTY
    for ts_ms, inbound in messages:
        extended = extend_figures(extended, ts_ms, inbound=inbound)
    expected = figures_by_definition(
        [(ts, "inbound" if inbound else "outbound") for ts, inbound in messages]
    )
    assert tuple(figures_of(messages)) == expected
    assert tuple(extended) == expected


@given(_MESSAGES)
def test_figures_from_message_keys_agree_with_the_definitions(
    messages: list[tuple[int, bool]],
) -> None:
    # The placement's form: (ts, id, direction) as sessions.store.message_keys reads them.
    keyed = [(ts, "inbound" if inbound else "outbound") for ts, inbound in messages]
    keys = [(ts, f"m{n:03d}", direction) for n, (ts, direction) in enumerate(keyed)]
    assert tuple(figures_of_keys(keys)) == figures_by_definition(keyed)
