"""Phone numbers: the short path for ``+`` and digits is ``phonenumbers.parse`` exactly."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE

from chatsessions.contacts.normalise import _short_e164, normalise_phone, parse_plus_digits

DIGITS = "0123456789"
# A known country code then anything (most texts a client sends), or any digits at all.
plus_digits = st.one_of(
    st.builds(
        lambda cc, rest: f"+{cc}{rest}",
        st.sampled_from(sorted(COUNTRY_CODE_TO_REGION_CODE)),
        st.text(DIGITS, min_size=1, max_size=15),
    ),
    st.text(DIGITS, min_size=4, max_size=17).map(lambda d: "+" + d),
).filter(lambda t: 5 <= len(t) <= 18)


def _parsed(text: str) -> phonenumbers.PhoneNumber | str:
    try:
        return parse_plus_digits(text)
    except phonenumbers.NumberParseException as exc:
        return f"error {exc.error_type}"


def _reference(text: str) -> phonenumbers.PhoneNumber | str:
    try:
        return phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException as exc:
        return f"error {exc.error_type}"


@given(plus_digits)
@example("+15551234567")  # fictional, possible
@example("+78005553535")  # Russia: the national prefix 8 is not stripped (too short after)
@example("+390612345678")  # Italy: a leading zero kept
@example("+5491123456789")  # Argentina: mobile 9
@example("+5215512345678")  # Mexico: the old mobile 1
@example("+4402079460000")  # UK written with its trunk 0
@example("+0123456")  # no country code starts with 0
@example("+999123456")  # no such country code
@example("+1234")  # too short
def test_the_short_path_parses_as_phonenumbers_does(text: str) -> None:
    assert _parsed(text) == _reference(text)


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("+1 (555) 123-4567", "+15551234567"),
        ("0044 20 7946 0000", "+442079460000"),
        ("15551234567", "+15551234567"),
        ("+44 020 7946 0000", "+442079460000"),
    ],
)
def test_numbers_are_stored_as_e164(raw: str, e164: str) -> None:
    assert normalise_phone(raw) == e164


def test_without_phonenumbers_helpers_the_short_path_is_parse(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A phonenumbers release without the private helpers the short path uses gets
    phonenumbers.parse itself: the same numbers, the same errors."""
    import chatsessions.contacts.normalise as normalise

    monkeypatch.setattr(normalise, "_SHORT_PATH", False)
    calls: list[str] = []
    real_parse = phonenumbers.parse

    def parse(text: str, region: str | None) -> phonenumbers.PhoneNumber:
        calls.append(text)
        return real_parse(text, region)

    monkeypatch.setattr(normalise.phonenumbers, "parse", parse)
    assert parse_plus_digits("+442079460000") == real_parse("+442079460000", None)
    assert calls == ["+442079460000"]


def _library_e164(text: str) -> str:
    """What phonenumbers' own three steps make of ``text``: parse, is_possible_number,
    format_number (E.164); the error normalise_phone raises for it."""
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        return "error: not a number"
    if not phonenumbers.is_possible_number(number):
        return "error: not possible"
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _ours(text: str) -> str:
    try:
        e164 = normalise_phone.__wrapped__(text)  # not the remembered answer
    except ValueError as exc:
        return "error: not possible" if "possible" in str(exc) else "error: not a number"
    return e164


@given(plus_digits)
@example("+15551234567")
@example("+390012345678")  # Italian leading zeros: kept in E.164
@example("+3900")  # all zeros
@example("+80012345678")  # a non-geographic code
@example("+4402079460000")  # a national prefix parse strips
@example("+78005553535")
@example("+1555")  # too short to be possible
@example("+99912345678")
def test_a_number_is_stored_as_phonenumbers_would_store_it(text: str) -> None:
    """normalise_phone's short path (``_short_e164``) and its fallback give what
    phonenumbers' parse, is_possible_number and format_number give, errors included."""
    assert _ours(text) == _library_e164(text)
    short = _short_e164(text)
    if short is not None:
        assert short == ("" if _library_e164(text).startswith("error") else _library_e164(text))


@pytest.mark.parametrize(
    "text", ["+15551234567", "+442079460000", "+390612345678", "+4915123456789", "+80012345678"]
)
def test_common_numbers_take_the_short_path(text: str) -> None:
    """The short path decides the numbers clients send most (else the test above would
    hold without testing it)."""
    assert _short_e164(text) == _library_e164(text)
