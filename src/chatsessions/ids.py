"""Identifiers: 20-char base62 ids (the time they were made, then random) and ``csk_`` API
keys (random)."""

from __future__ import annotations

import os
import re
import string
import time

__all__ = [
    "API_KEY_RE",
    "ID_RE",
    "IdSupply",
    "is_id",
    "new_api_key",
    "new_id",
    "new_ids",
    "time_prefix",
]

_ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase
ID_RE = re.compile(r"^[0-9A-Za-z]{20}$")
API_KEY_RE = re.compile(r"^csk_[0-9A-Za-z]{40}$")


# Byte b < 248 (= 4 * 62) maps to _ALPHABET[b % 62]: uniform over the alphabet. Bytes
# 248..255 are dropped (rejection sampling), so each character stays uniform and
# independent, as with one secrets.choice per character.
_ACCEPTED = 4 * 62
_TO_CHAR = bytes(ord(_ALPHABET[b % 62]) for b in range(256))
_REJECTED = bytes(range(_ACCEPTED, 256))


def _base62(length: int) -> str:
    # The operating system's CSPRNG (what `secrets` draws from), turned into characters by
    # one bytes.translate: ~1 us an id instead of ~8 (a 1,000-message batch makes 2,000+).
    # Read per call, never buffered, so forked workers cannot share random bytes.
    # 1 in 32 bytes is dropped: a draw of 1/16 more (and 8) is short only by rare luck.
    chars = b""
    while len(chars) < length:
        need = length - len(chars)
        chars += os.urandom(need + need // 16 + 8).translate(_TO_CHAR, _REJECTED)
    return chars[:length].decode("ascii")


# An id is the millisecond it was made (8 base62 characters, most significant first, so
# that byte order, the ids' collation, is time order; 62^8 ms reach the year 8888), then 12
# random characters (about 71 bits). Why the time first: the primary keys are (user_id,
# id), and random ids put each new message, session or contact on a random leaf page of
# its table's primary key, so the pages a write dirties grew with the table (each a full
# page image in the WAL after a checkpoint, and a read once the index outgrew the cache).
# Ids made together land side by side, at the end of the tenant's range.
_TIME_CHARS = 8
_RANDOM_CHARS = 12


def time_prefix(ms: int) -> str:
    """The first characters of the ids made at ``ms`` (ms since the Unix epoch)."""
    chars = []
    for _ in range(_TIME_CHARS):
        ms, digit = divmod(ms, 62)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_id() -> str:
    """A 20-char base62 id: the millisecond it was made, then about 71 random bits, e.g.
    ``0sQ3fJkL8Yc3pQm0aZ8L``. Ids made later sort after (byte order)."""
    return time_prefix(_now_ms()) + _base62(_RANDOM_CHARS)


def new_ids(count: int) -> list[str]:
    """``count`` ids as :func:`new_id` makes them, from one read of the CSPRNG: a read
    costs ~1.3 us whatever its size up to a few kB, more than the rest of an id (a
    1,000-message batch: 1.6 -> 0.2 ms)."""
    prefix = time_prefix(_now_ms())
    size = _RANDOM_CHARS
    chars = _base62(size * count)
    return [prefix + chars[i : i + size] for i in range(0, size * count, size)]


class IdSupply:
    """Ids as :func:`new_id` makes them, drawn in blocks (:func:`new_ids`) for work that
    makes an unknown number of them, e.g. the sessions of a batch (one each in a
    history): blocks of 16, doubling up to 1,024. Made per request, never shared, so
    forked workers cannot share random bytes."""

    def __init__(self) -> None:
        self._ids: list[str] = []
        self._block = 16

    def __call__(self) -> str:
        """The next id."""
        if not self._ids:
            self._ids = new_ids(self._block)
            self._block = min(self._block * 2, 1024)
        return self._ids.pop()


def new_api_key() -> str:
    """A fresh API key: ``csk_`` + 40 base62 chars (about 238 bits)."""
    return "csk_" + _base62(40)


def is_id(value: str) -> bool:
    """True when ``value`` has the shape of one of our ids (anything else cannot exist)."""
    return bool(ID_RE.match(value))
