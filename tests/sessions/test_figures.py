"""The figures of a session's messages: computed at once (``figures_of``, what a re-cut or
an out-of-order message recomputes) or extended message by message (``extend_figures``,
the append path), or from the stored figures and the messages around inserted ones
(``figures_after_inserts``, a late message): all agree with the definitions (tests/figures_oracle.py)."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from chatsessions.sessions.figures import (
    EMPTY,
    extend_figures,
    figures_after_inserts,
    figures_of,
    figures_of_keys,
)
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


# Messages (ts, direction) on a small clock, so that times tie often; ids drawn apart.
_KEYED = st.lists(
    st.tuples(st.integers(min_value=0, max_value=30), st.sampled_from(["inbound", "outbound"])),
    max_size=30,
)
_MIN, _MAX = -(2**63) + 1, 2**63 - 1


def _around(
    stored: list[tuple[int, str, str]], lo: int, hi: int, widen: tuple[int, int]
) -> list[tuple[int, str, str]]:
    """What ``sessions.store.message_keys_around`` reads for inserts in ``[lo, hi]``: from
    the last stored outbound before ``lo`` to the first after ``hi`` (the ends when none),
    every stored message of those times; ``widen`` moves the bounds out (a wider read)."""
    before = [ts for ts, _id, d in stored if d == "outbound" and ts < lo]
    after = [ts for ts, _id, d in stored if d == "outbound" and ts > hi]
    first = (max(before) if before else _MIN) - widen[0]
    last = (min(after) if after else _MAX) + widen[1]
    return sorted(key for key in stored if first <= key[0] <= last)


@given(
    _KEYED,
    _KEYED.filter(bool),
    st.tuples(st.sampled_from([0, 0, 1, 5, 100]), st.sampled_from([0, 0, 1, 5, 100])),
    st.randoms(use_true_random=False),
)
def test_figures_after_inserts_equal_those_recomputed_from_every_message(
    stored_keyed: list[tuple[int, str]],
    inserted_keyed: list[tuple[int, str]],
    widen: tuple[int, int],
    rng: random.Random,
) -> None:
    # Ids in random order against the times: ties are ordered by id, as the session is.
    names = [f"m{n:03d}" for n in range(len(stored_keyed) + len(inserted_keyed))]
    rng.shuffle(names)
    stored = sorted((ts, names[n], d) for n, (ts, d) in enumerate(stored_keyed))
    inserted = sorted(
        (ts, names[len(stored_keyed) + n], d) for n, (ts, d) in enumerate(inserted_keyed)
    )
    lo, hi = inserted[0][0], inserted[-1][0]
    got = figures_after_inserts(figures_of_keys(stored), _around(stored, lo, hi, widen), inserted)
    assert got == figures_of_keys(sorted(stored + inserted))


def test_figures_after_inserts_read_only_around_a_late_message() -> None:
    # A long session (turns of an inbound and its reply), then a late inbound message in
    # its last turns: the read spans that turn only, and the figures are exact.
    stored = [(t * 10, f"s{t:05d}", "inbound" if t % 2 == 0 else "outbound") for t in range(10_000)]
    inserted = [(99_975, "late", "inbound")]
    around = _around(stored, 99_975, 99_975, (0, 0))
    assert [key[0] for key in around] == [99_970, 99_980, 99_990]
    got = figures_after_inserts(figures_of_keys(stored), around, inserted)
    assert got == figures_of_keys(sorted(stored + inserted))
