"""Request bodies and response models of the webhooks API (responses are built as dicts;
the models document them in OpenAPI)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from chatsessions.queryparams import PositiveInt, QueryModel, Text
from chatsessions.web import NoNulStr

__all__ = [
    "DeliveriesPage",
    "DeliveriesQuery",
    "DeliveryOut",
    "TestResult",
    "TestResultResponse",
    "WebhookCreated",
    "WebhookCreatedResponse",
    "WebhookIn",
    "WebhookListResponse",
    "WebhookOut",
    "WebhookResponse",
]

EventType = Literal[
    "ChatSessionOpened", "ChatSessionClosed", "ChatSessionMerged", "MessageReceived"
]


class WebhookIn(BaseModel):
    """``POST /v1/webhooks``: where to send which events."""

    model_config = ConfigDict(extra="ignore")

    url: Annotated[NoNulStr, Field(strict=True, max_length=2048)]
    events: list[StrictStr]
    description: Annotated[NoNulStr | None, Field(strict=True, max_length=500)] = None


class WebhookOut(BaseModel):
    """A webhook endpoint (never with its secret)."""

    webhookId: str
    url: str
    events: list[EventType]
    description: str | None
    enabled: bool
    disabledReason: Literal["gone", "failing"] | None
    disabledAt: str | None
    createdAt: str


class WebhookCreated(WebhookOut):
    """An endpoint with its signing secret (on creation and rotation only)."""

    secret: str


class WebhookResponse(BaseModel):
    success: Literal[True]
    data: WebhookOut


class WebhookCreatedResponse(BaseModel):
    success: Literal[True]
    data: WebhookCreated


class WebhookListResponse(BaseModel):
    success: Literal[True]
    data: list[WebhookOut]


class TestResult(BaseModel):
    """Whether the test ping got a 2xx answer (the answer's body is never shown)."""

    eventId: str
    delivered: bool
    statusCode: int | None
    error: str | None


class TestResultResponse(BaseModel):
    success: Literal[True]
    data: TestResult


class DeliveryOut(BaseModel):
    """One event's delivery to one endpoint."""

    eventId: str
    type: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    lastStatusCode: int | None
    lastError: str | None
    nextAttemptAt: str | None
    createdAt: str


class DeliveriesPage(BaseModel):
    success: Literal[True]
    next_cursor: str | None
    data: list[DeliveryOut]


class DeliveriesQuery(QueryModel):
    """``GET /v1/webhooks/{webhookId}/deliveries``: page size and position."""

    limit: Annotated[int | None, PositiveInt(cap=1000)] = Field(
        None, description="integer ≥ 1, default 100; above 1000 counts as 1000"
    )
    cursor: Annotated[str | None, Text()] = Field(
        None, description="next_cursor of the previous page"
    )
