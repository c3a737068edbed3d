"""Request and response models of the channels API."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from chatsessions.queryparams import QueryModel, Text
from chatsessions.web import NoNulStr

__all__ = [
    "ChannelIn",
    "ChannelListResponse",
    "ChannelPatch",
    "ChannelResponse",
    "HandshakeQuery",
]

ChannelType = Literal["whatsapp", "messenger", "instagram", "twilio", "telegram"]
Name = Annotated[NoNulStr, StringConstraints(max_length=255)]


class ChannelIn(BaseModel):
    """``POST /v1/channels``: ``config`` by type (see docs/channels.md)."""

    model_config = ConfigDict(extra="ignore")

    type: ChannelType
    name: Name | None = None
    config: dict[str, Any] = Field(
        description="whatsapp, messenger, instagram: appSecret (a string or a list), "
        "verifyToken, accountId?; twilio: authToken, publicUrl?; telegram: secretToken"
    )


class ChannelPatch(BaseModel):
    """``PATCH /v1/channels/{channelId}``: the keys of ``config`` given replace the stored
    ones (a secret rotated here stops verifying at once; give a list of two app secrets to
    rotate without a gap)."""

    model_config = ConfigDict(extra="ignore")

    name: Name | None = None
    config: dict[str, Any] | None = None


class Counters(BaseModel):
    """What the channel's webhook saw since the channel was created."""

    received: int = Field(description="payloads whose proof verified")
    stored: int = Field(description="messages stored")
    duplicates: int = Field(description="messages already stored (platform retries, replays)")
    ignored: int = Field(description="items that are not messages (statuses, reads, …)")
    rejected: int = Field(description="requests refused for a missing or wrong proof")
    lastEventAt: str | None
    lastError: str | None
    lastErrorAt: str | None


class ChannelOut(BaseModel):
    """A channel; secrets masked (``…`` and their last five characters)."""

    channelId: str
    type: ChannelType
    name: str | None
    webhookPath: str
    createdAt: str
    updatedAt: str
    config: dict[str, Any]
    counters: Counters


class ChannelResponse(BaseModel):
    """One channel."""

    success: bool
    data: ChannelOut


class ChannelListResponse(BaseModel):
    """The caller's channels."""

    success: bool
    data: list[ChannelOut]


class HandshakeQuery(QueryModel):
    """Meta's subscription check: ``GET …/webhook?hub.mode=subscribe&hub.verify_token=T&hub.challenge=C``."""

    mode: Annotated[str | None, Text()] = Field(None, alias="hub.mode", description="subscribe")
    verify_token: Annotated[str | None, Text()] = Field(
        None, alias="hub.verify_token", description="the channel's verifyToken"
    )
    challenge: Annotated[str | None, Text()] = Field(
        None, alias="hub.challenge", description="echoed back as the body when the token matches"
    )
