"""Request and response models of the contacts API (DM Champ field names)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from chatsessions.queryparams import QueryModel, Text
from chatsessions.web import NoNulStr

__all__ = ["ContactFields", "ContactIn", "ContactLookup", "ContactUpdate", "Name", "ShortText"]

ShortText = Annotated[NoNulStr, StringConstraints(max_length=255)]
Name = Annotated[NoNulStr, StringConstraints(max_length=255)]
Channel = Annotated[NoNulStr, StringConstraints(max_length=64)]


class ContactFields(BaseModel):
    """Fields shared by create, update and the inline ``contact`` of a message."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    phoneNumber: ShortText | None = None
    firstName: Name | None = None
    lastName: Name | None = None
    email: ShortText | None = None
    channel: Channel | None = None
    externalId: ShortText | None = None
    instagramId: ShortText | None = None
    is_bot_active: bool | None = None
    do_not_disturb: bool | None = None


class ContactIn(ContactFields):
    """``POST /v1/contacts``: ``phoneNumber`` required unless ``email`` is given."""


class ContactUpdate(ContactFields):
    """``PUT /v1/contacts/{contactId}``: only the fields given change."""


class ContactOut(BaseModel):
    """``GET /v1/contacts/{contactId}`` data."""

    contactId: str
    phoneNumber: str | None
    firstName: str | None
    lastName: str | None
    email: str | None
    channel: str | None
    externalId: str | None
    instagramId: str | None
    is_bot_active: bool
    do_not_disturb: bool
    createdAt: str = Field(description="ISO 8601 UTC")


class ContactLookup(QueryModel):
    """``GET /v1/contacts``: one of the identifiers (validated as a contact's fields)."""

    phoneNumber: Annotated[str | None, Text()] = Field(None, description="E.164 or local form")
    email: Annotated[str | None, Text()] = None
    externalId: Annotated[str | None, Text()] = None
