"""Normalising contact identifiers: phone numbers to E.164, emails to a canonical form."""

from __future__ import annotations

import functools
import re

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from phonenumbers import PhoneMetadata
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


@functools.lru_cache(maxsize=4096)
def normalise_phone(raw: str) -> str:
    """Return ``raw`` as E.164, or raise ValueError.

    Numbers are read as international: a leading ``+`` is optional (WhatsApp and many
    automation tools send ``15551234567``, and an unencoded ``+`` in a query string
    arrives as a space), ``00`` counts as ``+``. The number must be *possible*
    (``phonenumbers.is_possible_number``), so fictional ``+1555…`` numbers pass.

    Remembered (a pure function; errors are not cached): ~20 us a number with
    ``phonenumbers``, and a batch checks each inline contact's number twice (when the
    item is prepared, then when the contact is found or created).
    """
    text = _PHONE_JUNK.sub("", raw.strip())
    if text.startswith("00"):
        text = "+" + text[2:]
    if not text.startswith("+"):
        text = "+" + text
    if not _PLUS_DIGITS.fullmatch(text):
        raise ValueError("must be a phone number with its country code, e.g. +15551234567")
    try:
        number = parse_plus_digits(text)
    except phonenumbers.NumberParseException:
        raise ValueError(
            "must be a phone number with its country code, e.g. +15551234567"
        ) from None
    if not phonenumbers.is_possible_number(number):
        raise ValueError("is not a possible phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_email(raw: str) -> str:
    """Return a syntactically valid email, lower-cased (matching is case-insensitive)."""
    try:
        result = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"is not a valid email address ({exc})") from None
    return result.normalized.lower()
