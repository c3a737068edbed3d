"""What Meta's three platforms share: the config, the proof, and the Messenger-style
``messaging`` events that Messenger and Instagram both send.

Proof: ``X-Hub-Signature-256: sha256=<lower-case hex HMAC-SHA256(app secret, raw body)>``.
Any of the configured app secrets may verify (rotation; Instagram has two apps' secrets).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from chatsessions.channels.base import (
    ChannelConfig,
    ConfigModel,
    Identity,
    IncomingMessage,
    ProofRejected,
    Translation,
    hmac_hex,
    media_or_word,
    type_word,
)

__all__ = ["MetaConfig", "translate_messaging", "verify_signature"]

Secret = Annotated[str, StringConstraints(min_length=1, max_length=256)]
_IGNORE = ConfigDict(extra="ignore")


class MetaConfig(ConfigModel):
    """``whatsapp``, ``messenger`` and ``instagram`` channels."""

    model_config = ConfigDict(extra="forbid")
    HMAC_FIELD: ClassVar[str | None] = "appSecret"
    HASHED_FIELD: ClassVar[str | None] = "verifyToken"
    PLAIN_FIELDS: ClassVar[tuple[str, ...]] = ("accountId",)

    appSecret: Secret | Annotated[list[Secret], Field(min_length=1, max_length=8)]
    verifyToken: Secret
    accountId: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None

    @field_validator("appSecret", "verifyToken")
    @classmethod
    def _not_blank(cls, value: str | list[str]) -> str | list[str]:
        for item in [value] if isinstance(value, str) else value:
            if not item.strip():
                raise ValueError("must not be blank")
        return value


def verify_signature(raw_body: bytes, headers: Mapping[str, str], config: ChannelConfig) -> None:
    """Check ``X-Hub-Signature-256`` against every configured app secret (constant time)."""
    given = headers.get("x-hub-signature-256", "")
    scheme, _, digest = given.partition("=")
    if scheme != "sha256" or not digest or not config.hmac_keys:
        raise ProofRejected("X-Hub-Signature-256 is missing or malformed")
    ok = False
    for key in config.hmac_keys:  # every key is tried: the time does not say which matched
        ok |= hmac.compare_digest(hmac_hex(key, raw_body).encode(), digest.lower().encode())
    if not ok:
        raise ProofRejected("X-Hub-Signature-256 does not match")


# --- Messenger and Instagram: entry[].messaging[] ---


class _Party(BaseModel):
    model_config = _IGNORE
    id: str | None = None


class _AttachmentPayload(BaseModel):
    model_config = _IGNORE
    url: str | None = None
    title: str | None = None


class _Attachment(BaseModel):
    model_config = _IGNORE
    type: str | None = None
    payload: _AttachmentPayload | None = None


class _Message(BaseModel):
    model_config = _IGNORE
    mid: str | None = None
    text: str | None = None
    is_echo: bool = False
    is_deleted: bool = False
    attachments: list[_Attachment] = []


class _Event(BaseModel):
    model_config = _IGNORE
    sender: _Party | None = None
    recipient: _Party | None = None
    timestamp: int | None = None
    message: _Message | None = None


class _Entry(BaseModel):
    model_config = _IGNORE
    id: str | None = None
    messaging: list[dict[str, Any]] = []


class _Payload(BaseModel):
    model_config = _IGNORE
    entry: list[dict[str, Any]] = []


def translate_messaging(raw_body: bytes, config: ChannelConfig, *, prefix: str) -> Translation:
    """Messenger-style events: each ``entry[].messaging[]`` item with a ``message`` is a
    message (``is_echo``: the business sent it, outbound to the recipient); delivery,
    read, reaction and other events are counted as ignored. ``prefix`` names the contact's
    ``externalId`` (``messenger:<PSID>``, ``instagram:<IGSID>``)."""
    out = Translation()
    for raw_entry in _Payload.model_validate_json(raw_body).entry:
        entry = _Entry.model_validate(raw_entry)
        if config.account_id is not None and entry.id != config.account_id:
            out.ignored += max(1, len(entry.messaging))
            continue
        if not entry.messaging:
            out.ignored += 1  # another field (comments, standby, …)
        for raw_event in entry.messaging:
            message = _message_of(_Event.model_validate(raw_event), prefix)
            if message is None:
                out.ignored += 1
            else:
                out.messages.append(message)
    return out


def _message_of(event: _Event, prefix: str) -> IncomingMessage | None:
    msg = event.message
    if msg is None or not msg.mid or msg.is_deleted:
        return None
    other = event.recipient if msg.is_echo else event.sender
    if other is None or not other.id:
        return None
    kind, content, media_url = "text", msg.text, None
    if msg.attachments:
        first = msg.attachments[0]
        kind = media_or_word(first.type)
        if first.payload is not None:
            media_url = first.payload.url
            if kind != "media" and content is None:
                content = first.payload.title
    elif msg.text is None:
        kind = type_word(None)
    channel = prefix
    return IncomingMessage(
        external_id=msg.mid,
        contact=Identity(
            channel=channel,
            external_id=f"{prefix}:{other.id}",
            instagram_id=other.id if prefix == "instagram" else None,
        ),
        direction="outbound" if msg.is_echo else "inbound",
        type=kind,
        content=content,
        media_url=media_url,
        ts_ms=event.timestamp,
    )
