"""Request models of the message endpoints (DM Champ field names; unknown fields ignored)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints, field_validator

from chatsessions.contacts.schemas import ContactFields, ShortText
from chatsessions.web import NoNulStr

__all__ = [
    "MAX_BATCH",
    "MAX_CONTENT_BYTES",
    "BatchIn",
    "CustomChannelIncoming",
    "CustomChannelSend",
    "MessageIn",
]

MAX_CONTENT_BYTES = 64 * 1024
MAX_BATCH = 1000
_TYPE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{0,31}$")
_URL_RE = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)

Role = Literal["user", "assistant", "agent", "system", "tool"]
MessageType = Annotated[NoNulStr, StringConstraints(max_length=32)]
Timestamp = StrictInt | Annotated[NoNulStr, StringConstraints(max_length=64)]


def _check_type(value: str | None) -> str | None:
    if value is not None and not _TYPE_RE.match(value):
        raise ValueError("must be a short word such as text, media, tool_use or reaction")
    return value


def _check_not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _check_content(value: str | None) -> str | None:
    if value is not None and len(value.encode("utf-8", "surrogatepass")) > MAX_CONTENT_BYTES:
        raise ValueError(f"must be at most {MAX_CONTENT_BYTES} bytes of UTF-8")
    return value


def _check_url(value: str | None) -> str | None:
    if value is not None and value != "" and not _URL_RE.match(value):
        raise ValueError("must be an http(s) URL")
    return value or None


class MessageIn(BaseModel):
    """One message: ``POST /v1/messages`` and each item of a batch."""

    model_config = ConfigDict(extra="ignore")

    contactId: ShortText | None = None
    contact: ContactFields | None = None
    direction: Literal["inbound", "outbound"]
    role: Role | None = None
    type: MessageType | None = None
    content: NoNulStr | None = None
    mediaUrl: Annotated[NoNulStr, StringConstraints(max_length=4096)] | None = None
    timestamp: Timestamp | None = Field(
        default=None, description="ISO 8601 with a zone, or integer epoch milliseconds"
    )
    externalId: ShortText | None = None
    messageSid: ShortText | None = None

    _type = field_validator("type")(_check_type)
    _content = field_validator("content")(_check_content)
    _url = field_validator("mediaUrl")(_check_url)


class BatchIn(BaseModel):
    """``POST /v1/messages/batch``."""

    model_config = ConfigDict(extra="ignore")

    messages: list[dict[str, object]] = Field(min_length=1, max_length=MAX_BATCH)


class CustomData(BaseModel):
    """DM Champ's ``customData`` of a custom-channel message."""

    model_config = ConfigDict(extra="ignore")

    messageSid: ShortText | None = None
    fromId: ShortText
    toId: ShortText | None = None
    body: NoNulStr | None = None
    status: ShortText | None = None
    channel: Annotated[NoNulStr, StringConstraints(max_length=64)] | None = None
    timestamp: Timestamp | None = None
    mediaUrl: Annotated[NoNulStr, StringConstraints(max_length=4096)] | None = None

    _content = field_validator("body")(_check_content)
    _url = field_validator("mediaUrl")(_check_url)
    _from = field_validator("fromId")(_check_not_blank)


class CustomChannelIncoming(BaseModel):
    """``POST /v1/incoming-custom-channel-message``."""

    model_config = ConfigDict(extra="ignore")

    messageType: MessageType | None = None
    customData: CustomData

    _type = field_validator("messageType")(_check_type)


class CustomChannelSend(BaseModel):
    """``POST /v1/send-custom-channel-message``."""

    model_config = ConfigDict(extra="ignore")

    toId: ShortText
    body: NoNulStr | None = None
    channel: Annotated[NoNulStr, StringConstraints(max_length=64)] | None = None
    messageType: MessageType | None = None
    messageSid: ShortText | None = None
    externalId: ShortText | None = None
    mediaUrl: Annotated[NoNulStr, StringConstraints(max_length=4096)] | None = None
    timestamp: Timestamp | None = None

    _type = field_validator("messageType")(_check_type)
    _content = field_validator("body")(_check_content)
    _url = field_validator("mediaUrl")(_check_url)
    _to = field_validator("toId")(_check_not_blank)
