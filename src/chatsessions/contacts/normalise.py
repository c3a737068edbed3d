"""Normalising contact identifiers: phone numbers to E.164, emails to a canonical form."""

from __future__ import annotations

import functools
import re

import phonenumbers
from email_validator import EmailNotValidError, validate_email

__all__ = ["normalise_email", "normalise_phone"]

_PHONE_JUNK = re.compile(r"[\s\-().]")


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
    if not re.fullmatch(r"\+[0-9]{4,17}", text):
        raise ValueError("must be a phone number with its country code, e.g. +15551234567")
    try:
        number = phonenumbers.parse(text, None)
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
