"""Normalising contact identifiers: phone numbers to E.164, emails to a canonical form."""

from __future__ import annotations

import functools
import re
from typing import NamedTuple

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneMetadata
from phonenumbers import phonenumberutil as pnu

__all__ = ["normalise_email", "normalise_phone", "parse_plus_digits"]

_PHONE_JUNK = re.compile(r"[\s\-().]")
_PLUS_DIGITS = re.compile(r"\+[0-9]{4,17}")  # [0-9]: ASCII digits only (not \d)
_REJECTED_LENGTHS = (
    pnu.ValidationResult.TOO_SHORT,
    pnu.ValidationResult.IS_POSSIBLE_LOCAL_ONLY,
    pnu.ValidationResult.INVALID_LENGTH,
)
# The short path uses parse's own helpers, which are not phonenumbers' public API: a
# release without them gets parse itself (slower, never wrong).
_SHORT_PATH = all(
    hasattr(pnu, name)
    for name in (
        "_extract_country_code",
        "_maybe_strip_national_prefix_carrier_code",
        "_test_number_length",
        "_set_italian_leading_zeros_for_phone_number",
        "_MIN_LENGTH_FOR_NSN",
        "_MAX_LENGTH_FOR_NSN",
    )
)


def parse_plus_digits(text: str) -> phonenumbers.PhoneNumber:
    """``phonenumbers.parse(text, None)`` for ``text`` = ``+`` and 4–17 ASCII digits.

    ``parse`` first takes arbitrary text apart (RFC 3966 contexts, punctuation, letters,
    extensions, other digit scripts), which for ``+`` and ASCII digits changes nothing
    and was three quarters of its ~12 us a number (3.2 us without). What
    remains is ``parse``'s own steps for such a number, in its order: the country code,
    the region's metadata, the national prefix stripped when what is left is still a
    possible length, the leading zeros. Anything else (no such country code, a number too
    short or too long) goes to ``parse`` itself, which raises its own error.
    ``tests/contacts/test_normalise.py`` checks the two agree on every such text.
    """
    if not _SHORT_PATH:
        return phonenumbers.parse(text, None)
    digits = text[1:]
    country_code, national = pnu._extract_country_code(digits)
    if country_code == 0 or len(digits) <= pnu._MIN_LENGTH_FOR_NSN:
        return phonenumbers.parse(text, None)
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(
        country_code, pnu.region_code_for_country_code(country_code)
    )
    if metadata is None or len(national) < pnu._MIN_LENGTH_FOR_NSN:
        return phonenumbers.parse(text, None)
    _carrier, stripped, _ = pnu._maybe_strip_national_prefix_carrier_code(national, metadata)
    if pnu._test_number_length(stripped, metadata) not in _REJECTED_LENGTHS:
        national = stripped
    if not pnu._MIN_LENGTH_FOR_NSN <= len(national) <= pnu._MAX_LENGTH_FOR_NSN:
        return phonenumbers.parse(text, None)
    number = phonenumbers.PhoneNumber(country_code=country_code)
    pnu._set_italian_leading_zeros_for_phone_number(national, number)
    number.national_number = int(national)
    return number


_POSSIBLE = (pnu.ValidationResult.IS_POSSIBLE, pnu.ValidationResult.IS_POSSIBLE_LOCAL_ONLY)


class _Country(NamedTuple):
    """What the E.164 short path needs of a country calling code, looked up once."""

    metadata: PhoneMetadata
    # Its national_prefix_for_parsing, compiled (None: it has none, nothing is stripped).
    national_prefix: re.Pattern[str] | None
    # _test_number_length's verdict by length: it reads nothing of the number but its
    # length (filled as lengths are seen).
    by_length: dict[int, int]


_COUNTRIES: dict[int, _Country | None] = {}


def _country(country_code: int) -> _Country | None:
    if country_code not in _COUNTRIES:
        metadata = PhoneMetadata.metadata_for_region_or_calling_code(
            country_code, pnu.region_code_for_country_code(country_code)
        )
        prefix = metadata.national_prefix_for_parsing if metadata is not None else None
        _COUNTRIES[country_code] = (
            _Country(metadata, re.compile(prefix) if prefix else None, {})
            if metadata is not None
            else None
        )
    return _COUNTRIES[country_code]


def _length_verdict(country: _Country, length: int) -> int:
    verdict = country.by_length.get(length)
    if verdict is None:
        verdict = country.by_length[length] = pnu._test_number_length(
            "0" * length, country.metadata
        )
    return verdict


def _short_e164(text: str) -> str | None:
    """``text`` (``+`` and 4–17 ASCII digits) as E.164, as ``parse``, ``is_possible_number``
    and ``format_number`` give it, or ``""`` where ``is_possible_number`` says no; None
    where ``parse`` would take another branch (an unknown country code, a national prefix
    to strip, a length out of bounds), left to the library's own path.

    ~3 us a number against ~12 for those three steps (``parse_plus_digits`` and a
    ``PhoneNumber`` made, measured, formatted), which a batch of new contacts spends on
    each of its numbers. The national significant number of a number so parsed is its
    national digits as written (leading zeros are kept as Italian leading zeros), so the
    E.164 form is ``+``, the country code and those digits; whether it is possible depends
    on their length alone. ``tests/contacts/test_normalise.py`` checks this against the
    library's three steps on any such text.
    """
    digits = text[1:]
    if digits[0] == "0":
        return None
    # _extract_country_code's loop: the shortest known prefix of at most three digits.
    for width in (1, 2, 3):
        country_code = int(digits[:width])
        if country_code in COUNTRY_CODE_TO_REGION_CODE:
            break
    else:
        return None
    national = digits[width:]
    country = _country(country_code)
    if country is None or len(national) < pnu._MIN_LENGTH_FOR_NSN:
        return None
    if country.national_prefix is not None and country.national_prefix.match(national):
        return None  # parse may strip a national prefix here: its own steps decide
    if not pnu._MIN_LENGTH_FOR_NSN <= len(national) <= pnu._MAX_LENGTH_FOR_NSN:
        return None
    if _length_verdict(country, len(national)) not in _POSSIBLE:
        return ""
    return f"+{country_code}{national}"


@functools.lru_cache(maxsize=4096)
def normalise_phone(raw: str) -> str:
    """Return ``raw`` as E.164, or raise ValueError.

    Numbers are read as international: a leading ``+`` is optional (WhatsApp and many
    automation tools send ``15551234567``, and an unencoded ``+`` in a query string
    arrives as a space), ``00`` counts as ``+``. The number must be *possible*
    (``phonenumbers.is_possible_number``), so fictional ``+1555…`` numbers pass.

    Remembered (a pure function; errors are not cached): a batch checks each inline
    contact's number when the item is prepared, and a number often comes again.
    """
    text = raw
    if not _PLUS_DIGITS.fullmatch(text):  # already E.164-like: nothing to clean
        text = _PHONE_JUNK.sub("", raw.strip())
        if text.startswith("00"):
            text = "+" + text[2:]
        if not text.startswith("+"):
            text = "+" + text
        if not _PLUS_DIGITS.fullmatch(text):
            raise ValueError("must be a phone number with its country code, e.g. +15551234567")
    e164 = _short_e164(text) if _SHORT_PATH else None
    if e164 is None:
        try:
            number = parse_plus_digits(text)
        except phonenumbers.NumberParseException:
            raise ValueError(
                "must be a phone number with its country code, e.g. +15551234567"
            ) from None
        possible = phonenumbers.is_possible_number(number)
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    else:
        possible = e164 != ""
    if not possible:
        raise ValueError("is not a possible phone number")
    return e164


def normalise_email(raw: str) -> str:
    """Return a syntactically valid email, lower-cased (matching is case-insensitive)."""
    try:
        result = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"is not a valid email address ({exc})") from None
    return result.normalized.lower()
