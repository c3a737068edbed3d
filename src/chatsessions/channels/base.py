"""What every platform module shares: the message shape it translates into, the proof
error, the stored configuration it verifies with, and the ``Platform`` protocol.

A platform module (``whatsapp.py``, ``telegram.py``, …) is two verbs and a config model:

- ``verify(raw_body, headers, config, *, url)``: raise :class:`ProofRejected` unless the
  request carries the platform's proof over exactly these bytes;
- ``translate(raw_body, config, *, content_type)``: the messages the payload carries, in
  our shape, and how many items it carried that are not messages (acknowledged, counted).

Everything behind them (the route, idempotency, the write path, counters) is shared.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

from pydantic import BaseModel

__all__ = [
    "ChannelConfig",
    "ConfigModel",
    "Identity",
    "IncomingMessage",
    "Platform",
    "ProofRejected",
    "Translation",
    "hmac_hex",
    "media_or_word",
    "seconds_to_ms",
    "type_word",
]

MEDIA_TYPES = frozenset({"image", "audio", "voice", "video", "document", "sticker", "file"})
_WORD = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{0,31}$")


class ProofRejected(Exception):
    """The request's proof is missing or wrong (401, nothing stored, counted)."""


@dataclass(frozen=True)
class Identity:
    """Who a message is with, as the platform names them (the contact is found or created
    from this: by ``phone``, else by ``external_id``)."""

    channel: str
    phone: str | None = None
    external_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    instagram_id: str | None = None


@dataclass(frozen=True)
class IncomingMessage:
    """One message of a payload, in our shape. ``ts_ms`` None: the time of receipt."""

    external_id: str
    contact: Identity
    direction: Literal["inbound", "outbound"]
    type: str
    content: str | None
    media_url: str | None
    ts_ms: int | None


@dataclass
class Translation:
    """What a payload carries: messages to store, and items that are not messages."""

    messages: list[IncomingMessage] = field(default_factory=list)
    ignored: int = 0


@dataclass(frozen=True)
class ChannelConfig:
    """A channel's configuration as verification and translation need it (secrets open)."""

    type: str
    hmac_keys: tuple[str, ...] = ()  # Meta app secrets, or the Twilio auth token
    token_hash: str | None = None  # SHA-256 of the verify token (Meta) or secret token
    account_id: str | None = None
    public_url: str | None = None


class ConfigModel(BaseModel):
    """Base of each platform's ``config`` model (unknown keys are refused: a typo in a key
    name must not leave a channel silently unverified)."""

    HMAC_FIELD: ClassVar[str | None] = None  # encrypted at rest
    HASHED_FIELD: ClassVar[str | None] = None  # hashed at rest
    PLAIN_FIELDS: ClassVar[tuple[str, ...]] = ()


class Platform(Protocol):
    """A platform module."""

    TYPE: str
    Config: type[ConfigModel]

    def verify(
        self, raw_body: bytes, headers: Mapping[str, str], config: ChannelConfig, *, url: str
    ) -> None:
        """Raise :class:`ProofRejected` unless the request is the platform's."""

    def translate(
        self, raw_body: bytes, config: ChannelConfig, *, content_type: str
    ) -> Translation:
        """The messages of the payload, and the count of items that are not messages."""


def hmac_hex(key: str, body: bytes, digest: Any = hashlib.sha256) -> str:
    """Lower-case hex HMAC of ``body``."""
    return hmac.new(key.encode(), body, digest).hexdigest()


def seconds_to_ms(value: object) -> int | None:
    """Unix seconds (an int or a string of digits) as epoch ms; None when not a time."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value * 1000
    if isinstance(value, str) and value.isdigit() and len(value) <= 12:
        return int(value) * 1000
    return None


def type_word(value: str | None, default: str = "other") -> str:
    """The platform's type as our ``type`` (a short word), or ``default``."""
    if value and _WORD.match(value):
        return value.lower()
    return default


def media_or_word(kind: str | None) -> str:
    """``media`` for images, audio, voice, video, documents and stickers; else the word."""
    word = type_word(kind)
    return "media" if word in MEDIA_TYPES else word
