"""Telegram bots (``setWebhook`` with a ``secret_token``).

Proof: ``X-Telegram-Bot-Api-Secret-Token`` equals the channel's secret token (only its
SHA-256 is stored; compared in constant time).

Stored: the ``message`` (or ``edited_message``) of an update from a private chat, with
``externalId`` ``tg:<chat id>:<message_id>`` (an edit carries the id of the message it
edits, so it stores nothing new once the original is stored), the time from ``date``
(Unix seconds), the contact found or created by ``externalId`` ``telegram:<from.id>``
with ``first_name``/``last_name``. Group, supergroup and channel chats, and updates
without a message, are counted as ignored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, StringConstraints

from chatsessions.channels import vault
from chatsessions.channels.base import (
    ChannelConfig,
    ConfigModel,
    Identity,
    IncomingMessage,
    ProofRejected,
    Translation,
    seconds_to_ms,
)

__all__ = ["TYPE", "Config", "translate", "verify"]

TYPE = "telegram"
_IGNORE = ConfigDict(extra="ignore")
_MEDIA_KEYS = ("photo", "audio", "voice", "video", "video_note", "document", "sticker", "animation")


class TelegramConfig(ConfigModel):
    """``telegram`` channels."""

    model_config = ConfigDict(extra="forbid")
    HASHED_FIELD: ClassVar[str | None] = "secretToken"

    secretToken: Annotated[str, StringConstraints(pattern=re.compile(r"^[A-Za-z0-9_-]{1,256}$"))]


Config: type[ConfigModel] = TelegramConfig


class _User(BaseModel):
    model_config = _IGNORE
    id: int
    is_bot: bool = False
    first_name: str | None = None
    last_name: str | None = None


class _Chat(BaseModel):
    model_config = _IGNORE
    id: int
    type: str


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")  # the media keys are read from the extras
    message_id: int
    date: int | None = None
    chat: _Chat
    from_: _User | None = None
    text: str | None = None
    caption: str | None = None
    location: dict[str, Any] | None = None
    contact: dict[str, Any] | None = None


class _Update(BaseModel):
    model_config = _IGNORE
    update_id: int | None = None
    message: dict[str, Any] | None = None
    edited_message: dict[str, Any] | None = None


def verify(raw_body: bytes, headers: Mapping[str, str], config: ChannelConfig, *, url: str) -> None:
    """The secret token header, against the stored hash."""
    given = headers.get("x-telegram-bot-api-secret-token")
    if not given or config.token_hash is None or not vault.token_matches(given, config.token_hash):
        raise ProofRejected("X-Telegram-Bot-Api-Secret-Token is missing or wrong")


def translate(raw_body: bytes, config: ChannelConfig, *, content_type: str) -> Translation:
    """The update's message from a private chat; anything else is ignored."""
    update = _Update.model_validate_json(raw_body)
    raw = update.message if update.message is not None else update.edited_message
    if raw is None:
        return Translation(ignored=1)
    message = _Message.model_validate({**raw, "from_": raw.get("from")})
    sender = message.from_
    if message.chat.type != "private" or sender is None:
        return Translation(ignored=1)
    extra = message.model_extra or {}
    kind, content = "text", message.text
    media = next((key for key in _MEDIA_KEYS if key in extra), None)
    if media is not None:
        kind, content = "media", message.caption
    elif message.location is not None:
        lat, lon = message.location.get("latitude"), message.location.get("longitude")
        kind, content = "location", f"{lat},{lon}"
    elif message.contact is not None:
        kind = "contact"
        content = " ".join(
            str(message.contact[k])
            for k in ("first_name", "phone_number")
            if message.contact.get(k)
        )
    elif message.text is None:
        kind = "other"
    return Translation(
        messages=[
            IncomingMessage(
                external_id=f"tg:{message.chat.id}:{message.message_id}",
                contact=Identity(
                    channel=TYPE,
                    external_id=f"telegram:{sender.id}",
                    first_name=sender.first_name,
                    last_name=sender.last_name,
                ),
                direction="inbound",
                type=kind,
                content=content,
                media_url=None,
                ts_ms=seconds_to_ms(message.date),
            )
        ]
    )
