"""SQL of channels and their counters. Every statement but the webhook's lookup (which
has only the channel id: the platform carries no API key) is scoped by ``user_id``."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions import tables
from chatsessions.db import fetch_rows

__all__ = [
    "COUNTER_SLOTS",
    "ChannelRow",
    "Counts",
    "add_counts",
    "delete_channel",
    "get_channel",
    "get_channel_by_id",
    "insert_channel",
    "list_channels",
    "read_counts",
    "update_channel",
]

COUNTER_SLOTS = 32  # about the number of deliveries one channel has in flight at once
_c = tables.channels.c


@dataclass(frozen=True)
class ChannelRow:
    """A stored channel (secrets still sealed)."""

    user_id: str
    id: str
    type: str
    name: str | None
    config: str
    token_hash: str | None
    secret_box: str | None
    created_at_ms: int
    updated_at_ms: int


@dataclass
class Counts:
    """Counter increments (or, read back, totals since the channel was created)."""

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    ignored: int = 0
    rejected: int = 0
    last_event_at_ms: int | None = None
    last_error: str | None = None
    last_error_at_ms: int | None = None

    def plus(self, later: Counts) -> Counts:
        """These increments and ``later``'s as one: the sums, the latest event, and the
        later error when it has one."""
        events = [t for t in (self.last_event_at_ms, later.last_event_at_ms) if t is not None]
        error = later if later.last_error is not None else self
        return Counts(
            received=self.received + later.received,
            stored=self.stored + later.stored,
            duplicates=self.duplicates + later.duplicates,
            ignored=self.ignored + later.ignored,
            rejected=self.rejected + later.rejected,
            last_event_at_ms=max(events) if events else None,
            last_error=error.last_error,
            last_error_at_ms=error.last_error_at_ms,
        )


_COLUMNS = [
    _c.user_id,
    _c.id,
    _c.type,
    _c.name,
    _c.config,
    _c.token_hash,
    _c.secret_box,
    _c.created_at_ms,
    _c.updated_at_ms,
]


async def insert_channel(conn: AsyncConnection, row: ChannelRow) -> None:
    """Insert a new channel."""
    await conn.execute(tables.channels.insert().values(**row.__dict__))


async def get_channel(conn: AsyncConnection, user_id: str, channel_id: str) -> ChannelRow | None:
    """The user's channel, or None."""
    found = await conn.execute(select(*_COLUMNS).where(_c.user_id == user_id, _c.id == channel_id))
    row = found.first()
    return ChannelRow(*row) if row is not None else None


_BY_ID = select(*_COLUMNS).where(_c.id == bindparam("channel_id"))


async def get_channel_by_id(conn: AsyncConnection, channel_id: str) -> ChannelRow | None:
    """The channel a webhook URL names (whoever owns it). On every delivery: a pre-built
    statement run straight on the driver (``db.fetch_rows``)."""
    rows = await fetch_rows(conn, _BY_ID, {"channel_id": channel_id})
    return ChannelRow(*rows[0]) if rows else None


async def list_channels(conn: AsyncConnection, user_id: str) -> list[ChannelRow]:
    """The user's channels, oldest first."""
    rows = await conn.execute(
        select(*_COLUMNS).where(_c.user_id == user_id).order_by(_c.created_at_ms, _c.id)
    )
    return [ChannelRow(*row) for row in rows]


async def update_channel(
    conn: AsyncConnection, user_id: str, channel_id: str, values: dict[str, Any]
) -> None:
    """Change the given columns of the user's channel."""
    await conn.execute(
        update(tables.channels).where(_c.user_id == user_id, _c.id == channel_id).values(**values)
    )


async def delete_channel(conn: AsyncConnection, user_id: str, channel_id: str) -> None:
    """Delete the user's channel and its counters."""
    k = tables.channel_counters.c
    await conn.execute(
        delete(tables.channel_counters).where(k.user_id == user_id, k.channel_id == channel_id)
    )
    await conn.execute(delete(tables.channels).where(_c.user_id == user_id, _c.id == channel_id))


# Pre-built (no statement to build and compile per payload: that was a sixth of the
# server's CPU per single-message payload), the same SQL on both backends. Values that
# may be NULL are cast, so that PostgreSQL knows their types.
_ADD_COUNTS = text(
    """
    INSERT INTO channel_counters (user_id, channel_id, slot, received, stored, duplicates,
        ignored, rejected, last_event_at_ms, last_error, last_error_at_ms)
    VALUES (:user_id, :channel_id, :slot, :received, :stored, :duplicates, :ignored,
        :rejected, CAST(:last_event_at_ms AS bigint), CAST(:last_error AS varchar),
        CAST(:last_error_at_ms AS bigint))
    ON CONFLICT (user_id, channel_id, slot) DO UPDATE SET
        received = channel_counters.received + excluded.received,
        stored = channel_counters.stored + excluded.stored,
        duplicates = channel_counters.duplicates + excluded.duplicates,
        ignored = channel_counters.ignored + excluded.ignored,
        rejected = channel_counters.rejected + excluded.rejected,
        last_event_at_ms = COALESCE(excluded.last_event_at_ms, channel_counters.last_event_at_ms),
        last_error = COALESCE(excluded.last_error, channel_counters.last_error),
        last_error_at_ms = COALESCE(excluded.last_error_at_ms, channel_counters.last_error_at_ms)
    """
)


async def add_counts(conn: AsyncConnection, user_id: str, channel_id: str, counts: Counts) -> None:
    """Add ``counts`` to one of the channel's counter rows (a random slot: concurrent
    payloads rarely wait for each other's commit)."""
    params = {
        "user_id": user_id,
        "channel_id": channel_id,
        "slot": random.randrange(COUNTER_SLOTS),  # spreads load; not a secret
        "received": counts.received,
        "stored": counts.stored,
        "duplicates": counts.duplicates,
        "ignored": counts.ignored,
        "rejected": counts.rejected,
        "last_event_at_ms": counts.last_event_at_ms,
        "last_error": counts.last_error,
        "last_error_at_ms": counts.last_error_at_ms,
    }
    if conn.dialect.name == "postgresql":
        await fetch_rows(conn, _ADD_COUNTS, params)  # straight on the driver
    else:
        await conn.execute(_ADD_COUNTS, params)


async def read_counts(
    conn: AsyncConnection, user_id: str, channel_ids: list[str]
) -> dict[str, Counts]:
    """Each channel's totals (summed over its slots); the latest event and error win."""
    k = tables.channel_counters.c
    out: dict[str, Counts] = {cid: Counts() for cid in channel_ids}
    if not channel_ids:
        return out
    rows = await conn.execute(
        select(
            k.channel_id,
            k.received,
            k.stored,
            k.duplicates,
            k.ignored,
            k.rejected,
            k.last_event_at_ms,
            k.last_error,
            k.last_error_at_ms,
        ).where(k.user_id == user_id, k.channel_id.in_(channel_ids))
    )
    for row in rows:
        total = out[row.channel_id]
        total.received += row.received
        total.stored += row.stored
        total.duplicates += row.duplicates
        total.ignored += row.ignored
        total.rejected += row.rejected
        if row.last_event_at_ms is not None and (
            total.last_event_at_ms is None or row.last_event_at_ms > total.last_event_at_ms
        ):
            total.last_event_at_ms = row.last_event_at_ms
        if row.last_error_at_ms is not None and (
            total.last_error_at_ms is None or row.last_error_at_ms > total.last_error_at_ms
        ):
            total.last_error_at_ms = row.last_error_at_ms
            total.last_error = row.last_error
    return out
