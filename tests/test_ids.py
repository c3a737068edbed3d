"""Random identifiers: shape, and every character of the alphabet at every position."""

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
def test_every_position_draws_from_the_whole_alphabet(make: Callable[[], list[str]]) -> None:
    # A biased base conversion (e.g. leading characters stuck at "0" when the random
    # number is drawn from too small a range) leaves characters out at some position;
    # with 5,000 uniform draws a missing character has probability ~62 * e^-81.
    made = make()
    for position in range(20):
        assert {i[position] for i in made} == set(ids._ALPHABET), position


def test_rejected_bytes_are_skipped_not_mapped(monkeypatch: pytest.MonkeyPatch) -> None:
    # Bytes 248..255 would favour the first 8 characters if taken modulo 62: they are
    # dropped, and more bytes drawn until the id is complete.
    draws = iter([bytes([255] * 20 + [0] * 8), bytes([61] * 28)])
    monkeypatch.setattr(ids.os, "urandom", lambda n: next(draws)[:n])
    assert ids.new_id() == "0" * 8 + "z" * 12
