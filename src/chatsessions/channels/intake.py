"""A platform's payload in: verify, translate, store through the one write path, count.

Shared by every platform: the platform modules only verify and translate. Messages are
stored with ``messages.service.ingest`` (the rule and transaction of a batch, through
``messages.group_commit``: concurrent deliveries of a tenant share one), the
platform's id as ``externalId`` (a retry or replay stores nothing and emits no event),
and the channel's counters are added in the same transaction, so the answer (200) comes
only after both committed. A refused proof is counted in a small transaction of its own.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

from prometheus_client import Counter
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request

from chatsessions.channels import store
from chatsessions.channels.base import IncomingMessage, Translation
from chatsessions.channels.store import ChannelRow, Counts
from chatsessions.config import Settings
from chatsessions.contacts.schemas import ContactFields
from chatsessions.db import Database
from chatsessions.errors import ChatSessionsError, InvalidParameter
from chatsessions.messages import service as messages_service
from chatsessions.messages.group_commit import GroupCommit
from chatsessions.messages.schemas import MAX_CONTENT_BYTES, MessageIn

__all__ = [
    "CHANNEL_ITEMS",
    "Outcome",
    "count",
    "request_url",
    "store_translation",
    "to_new_messages",
]

log = logging.getLogger("chatsessions.channels")

CHANNEL_ITEMS = Counter(
    "chatsessions_channel_items_total",
    "Channel webhook outcomes by channel type: received (payloads whose proof verified), "
    "stored and duplicates (messages), ignored (items that are not messages), rejected "
    "(bad or missing proof), failed (payloads that could not be stored: 5xx)",
    ["type", "outcome"],
)
_MAX_TEXT = 255
_MAX_URL = 4096


@dataclass(frozen=True)
class Outcome:
    """What one payload did."""

    stored: int
    duplicates: int
    ignored: int


def _clean(value: str | None, max_chars: int | None = None) -> str | None:
    """A platform string made storable: NUL replaced (PostgreSQL cannot store it), cut to
    ``max_chars`` characters."""
    if value is None:
        return None
    value = value.replace("\x00", "\ufffd")
    return value[:max_chars] if max_chars is not None else value


def _clean_content(value: str | None) -> str | None:
    value = _clean(value)
    if value is not None and len(value.encode("utf-8", "surrogatepass")) > MAX_CONTENT_BYTES:
        value = value.encode("utf-8", "surrogatepass")[:MAX_CONTENT_BYTES].decode("utf-8", "ignore")
    return value


def _clean_url(value: str | None) -> str | None:
    if value is None or len(value) > _MAX_URL or "\x00" in value:
        return None
    return value if value.lower().startswith(("https://", "http://")) else None


def to_new_messages(
    messages: list[IncomingMessage], *, now_ms: int
) -> tuple[list[messages_service.NewMessage], list[str]]:
    """Our write path's items; a message that cannot be stored as given (an id too long
    for an ``externalId``) is left out and named in the errors returned. A time more than
    five minutes ahead (a platform's clock, or a forged-but-signed payload) becomes the
    time of receipt: refusing it would make the platform retry the whole payload forever."""
    items: list[messages_service.NewMessage] = []
    errors: list[str] = []
    for i, message in enumerate(messages):
        ts = message.ts_ms
        if ts is None or ts < 0 or ts > now_ms + messages_service.MAX_FUTURE_MS:
            ts = now_ms
        who = message.contact
        try:
            parsed = MessageIn(
                contact=ContactFields(
                    phoneNumber=who.phone,
                    externalId=_clean(who.external_id),
                    firstName=_clean(who.first_name, _MAX_TEXT),
                    lastName=_clean(who.last_name, _MAX_TEXT),
                    channel=who.channel,
                    instagramId=_clean(who.instagram_id, _MAX_TEXT),
                ),
                direction=message.direction,
                type=message.type,
                content=_clean_content(message.content),
                mediaUrl=_clean_url(message.media_url),
                timestamp=ts,
                externalId=_clean(message.external_id),
            )
            items.append(messages_service.prepare_message(parsed, now_ms=now_ms))
        except (ValidationError, InvalidParameter) as exc:
            errors.append(f"message {i} ({message.external_id[:64]}) not stored: {exc}"[:255])
    return items, errors


async def count(
    db: Database, row: ChannelRow, counts: Counts, *, conn: AsyncConnection | None = None
) -> None:
    """Add to the channel's counters in a transaction of their own (best effort: a failure
    to count never changes the answer). ``conn``: as for ``Database.write``."""

    async def work(tx: AsyncConnection) -> None:
        await store.add_counts(tx, row.user_id, row.id, counts)

    try:
        await db.run_write(work, conn=conn)
    except Exception as exc:  # the database may be the reason we are counting
        log.warning("channel counters not updated: %s", type(exc).__name__)


@dataclass(frozen=True)
class _Delivery:
    """What a delivery's counters need besides its messages' results."""

    row: ChannelRow
    ignored: int
    errors: list[str]
    now_ms: int


async def _count_deliveries(
    tx: AsyncConnection,
    deliveries: list[tuple[_Delivery, list[messages_service.StoredMessage]]],
) -> list[Outcome]:
    """Each delivery's outcome; the counters of every channel among them added by one
    statement per channel, in the deliveries' transaction (group commit's ``Finish``)."""
    outcomes: list[Outcome] = []
    totals: dict[tuple[str, str], Counts] = {}
    for delivery, results in deliveries:
        duplicates = sum(1 for r in results if r.duplicate)
        outcome = Outcome(len(results) - duplicates, duplicates, delivery.ignored)
        outcomes.append(outcome)
        errors, now_ms = delivery.errors, delivery.now_ms
        counts = Counts(
            received=1,
            stored=outcome.stored,
            duplicates=outcome.duplicates,
            ignored=outcome.ignored,
            last_event_at_ms=now_ms,
            last_error=errors[-1] if errors else None,
            last_error_at_ms=now_ms if errors else None,
        )
        key = (delivery.row.user_id, delivery.row.id)
        earlier = totals.get(key)
        totals[key] = counts if earlier is None else earlier.plus(counts)
    for (user_id, channel_id), counts in totals.items():
        await store.add_counts(tx, user_id, channel_id, counts)
    return outcomes


async def store_translation(
    db: Database,
    group_commit: GroupCommit,
    row: ChannelRow,
    translation: Translation,
    *,
    now_ms: int,
    conn: AsyncConnection | None = None,
) -> Outcome:
    """Store every message of the payload and count, in one transaction (shared with the
    tenant's concurrent deliveries and single messages: ``group_commit``); raise (→ 5xx,
    the platform retries) when that cannot commit. ``conn``: as for ``Database.write``
    (the connection the channel was read on)."""
    items, errors = to_new_messages(translation.messages, now_ms=now_ms)
    delivery = _Delivery(row, translation.ignored + len(errors), errors, now_ms)
    try:
        outcome: Outcome = await group_commit.store(
            row.user_id, items, now_ms, finish=_count_deliveries, context=delivery, conn=conn
        )
    except Exception as exc:
        CHANNEL_ITEMS.labels(row.type, "failed").inc()
        reason = exc.message if isinstance(exc, ChatSessionsError) else type(exc).__name__
        await count(
            db,
            row,
            Counts(received=1, last_error=f"not stored: {reason}"[:255], last_error_at_ms=now_ms),
            conn=conn,
        )
        raise
    CHANNEL_ITEMS.labels(row.type, "received").inc()
    CHANNEL_ITEMS.labels(row.type, "stored").inc(outcome.stored)
    CHANNEL_ITEMS.labels(row.type, "duplicates").inc(outcome.duplicates)
    CHANNEL_ITEMS.labels(row.type, "ignored").inc(outcome.ignored)
    return outcome


def _trusted(peer: str, settings: Settings) -> bool:
    try:
        ip = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(p, strict=False) for p in settings.trusted_proxies)


def request_url(request: Request, settings: Settings) -> str:
    """The URL the platform called, as it saw it: scheme and host from the request, or
    from ``X-Forwarded-Proto``/``-Host`` when the peer is a trusted proxy."""
    scheme = request.url.scheme
    host = request.headers.get("host") or request.url.netloc
    peer = request.client.host if request.client else ""
    if settings.trusted_proxies and _trusted(peer, settings):
        forwarded_proto = request.headers.get("x-forwarded-proto", "").split(",")[0].strip()
        forwarded_host = request.headers.get("x-forwarded-host", "").split(",")[0].strip()
        scheme = forwarded_proto.lower() or scheme
        host = forwarded_host or host
    query = request.scope.get("query_string", b"").decode("latin-1")
    path = request.scope.get("raw_path", request.url.path.encode()).decode("latin-1")
    path = path.split("?", 1)[0]
    return f"{scheme}://{host}{path}" + (f"?{query}" if query else "")
