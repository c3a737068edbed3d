"""Identifiers: shape, time order, and every character of the alphabet at every random
position."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from chatsessions import ids


def test_ids_and_keys_have_their_shape_and_do_not_repeat() -> None:
    made = [ids.new_id() for _ in range(5000)]
    assert all(ids.is_id(i) for i in made)
    assert len(set(made)) == len(made)
    assert ids.API_KEY_RE.match(ids.new_api_key())


def test_ids_made_together_have_their_shape_and_do_not_repeat() -> None:
    supply = ids.IdSupply()
    made = ids.new_ids(5000) + ids.new_ids(1) + ids.new_ids(0) + [supply() for _ in range(3000)]
    assert len(made) == 8001
    assert all(ids.is_id(i) for i in made)
    assert len(set(made)) == len(made)


@pytest.mark.parametrize(
    "make", [lambda: [ids.new_id() for _ in range(5000)], lambda: ids.new_ids(5000)]
)
def test_every_random_position_draws_from_the_whole_alphabet(
    make: Callable[[], list[str]],
) -> None:
    # A biased base conversion (e.g. leading characters stuck at "0" when the random
    # number is drawn from too small a range) leaves characters out at some position;
    # with 5,000 uniform draws a missing character has probability ~62 * e^-81.
    made = make()
    for position in range(8, 20):
        assert {i[position] for i in made} == set(ids._ALPHABET), position


def test_ids_begin_with_the_millisecond_they_were_made(monkeypatch: pytest.MonkeyPatch) -> None:
    # Base62 of the time, most significant first, in the alphabet's (byte) order: ids made
    # later sort after, so a table's new rows land at the end of its primary key.
    assert ids.time_prefix(0) == "00000000"
    assert ids.time_prefix(61) == "0000000z"
    assert ids.time_prefix(62) == "00000010"
    assert ids.time_prefix(62**8 - 1) == "zzzzzzzz"
    now = 1_796_000_000_000  # 2026-11-30
    made: list[str] = []
    for ms in (now, now + 1, now + 61, now + 62, now + 3_600_000, now + 10**11):
        monkeypatch.setattr(ids, "_now_ms", lambda ms=ms: ms)
        batch = [ids.new_id(), *ids.new_ids(3)]
        assert {i[:8] for i in batch} == {ids.time_prefix(ms)}
        made.extend(sorted(batch))
    assert made == sorted(made)


def test_ids_are_made_at_the_current_time() -> None:
    before = ids.time_prefix(ids._now_ms())
    made = ids.new_id()
    assert before <= made[:8] <= ids.time_prefix(ids._now_ms())


def test_rejected_bytes_are_skipped_not_mapped(monkeypatch: pytest.MonkeyPatch) -> None:
    # Bytes 248..255 would favour the first 8 characters if taken modulo 62: they are
    # dropped, and more bytes drawn until the id is complete.
    draws = iter([bytes([255] * 20 + [0] * 8), bytes([61] * 28)])
    monkeypatch.setattr(ids.os, "urandom", lambda n: next(draws)[:n])
    assert ids._base62(20) == "0" * 8 + "z" * 12
