"""The query of ``POST /v1/imports``, parsed and documented by one declaration."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field

from chatsessions.imports.registry import FORMATS
from chatsessions.queryparams import QueryModel, Text, Word

__all__ = ["ImportQuery"]


class ImportQuery(QueryModel):
    """How to read the export in the body (absent stays ``None``)."""

    documented_required: ClassVar[frozenset[str]] = frozenset({"format"})
    format: Annotated[str | None, Word.of(FORMATS)] = Field(
        None, description=" | ".join(FORMATS) + " (required)"
    )
    me: Annotated[str | None, Text()] = Field(
        None, description="the business's author name in the export (its messages are outbound)"
    )
    tz: Annotated[str | None, Text()] = Field(
        None, description="IANA time zone of a text export's wall-clock times (default UTC)"
    )
    dateOrder: Annotated[str | None, Word.of(("dmy", "mdy", "ymd"))] = Field(
        None, description="dmy | mdy | ymd, when the file's date order is ambiguous"
    )
    chat: Annotated[str | None, Text()] = Field(
        None, description="the chat to import from a whole-account Telegram export"
    )
    contactPhone: Annotated[str | None, Text()] = Field(
        None, description="the contact's phone number (find or create the contact by it)"
    )
