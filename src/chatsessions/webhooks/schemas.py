"""Request bodies of the webhooks API."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from chatsessions.web import NoNulStr

__all__ = ["WebhookIn"]


class WebhookIn(BaseModel):
    """``POST /v1/webhooks``: where to send which events."""

    model_config = ConfigDict(extra="ignore")

    url: Annotated[NoNulStr, Field(strict=True, max_length=2048)]
    events: list[StrictStr]
    description: Annotated[NoNulStr | None, Field(strict=True, max_length=500)] = None
