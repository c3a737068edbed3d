"""The query of DM Champ's chat export, parsed and documented by one declaration."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field

from chatsessions.exports.store import FILTERS
from chatsessions.queryparams import PositiveInt, QueryModel, Word

__all__ = ["FORMATS", "ExportParams"]

FORMATS = ("json", "txt")
MAX_HOURS = 876_000
MAX_LIMIT = 1000


class ExportParams(QueryModel):
    """``GET /v1/chat-exports/recent`` as given (absent stays ``None``)."""

    documented_required: ClassVar[frozenset[str]] = frozenset({"hours"})
    hours: Annotated[int | None, PositiveInt(cap=MAX_HOURS)] = Field(
        None, description="integer ≥ 1 (required)"
    )
    format: Annotated[str | None, Word.of(FORMATS)] = Field(
        None, description="json (default) | txt"
    )
    limit: Annotated[int | None, PositiveInt(cap=MAX_LIMIT)] = Field(
        None, description="contacts, integer ≥ 1, default 50"
    )
    filter: Annotated[str | None, Word.of(FILTERS)] = Field(
        None, description="all (default) | media | tool_use | text"
    )
