"""Per-key request limits (``CHATSESSIONS_RATE_LIMIT``, e.g. ``600/minute``).

Fixed windows whose counters every process shares, so the limit holds however many
processes serve: in Redis when ``CHATSESSIONS_REDIS_URL`` is set, otherwise in the
database (one upsert per request — enable limits with that cost in mind on SQLite).
"""

from __future__ import annotations

import random
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions import tables
from chatsessions.config import parse_rate
from chatsessions.db import Database, insert_for
from chatsessions.errors import RateLimited

__all__ = ["RateLimiter"]


class RateLimiter:
    """Allows ``limit`` requests per ``period`` seconds per key, across processes."""

    def __init__(self, rate: str, *, db: Database, redis_url: str | None = None) -> None:
        self.limit, self.period = parse_rate(rate)
        self.db = db
        self._redis: Any = None
        if redis_url:
            import redis.asyncio as redis_asyncio

            self._redis = redis_asyncio.from_url(redis_url)

    @property
    def uses_database(self) -> bool:
        """True when requests are counted in the database (no Redis configured)."""
        return self._redis is None

    async def _count_in_redis(self, key: str, window: int) -> int:
        name = f"chatsessions:rl:{key}:{window}"
        pipe = self._redis.pipeline()
        pipe.incr(name)
        pipe.expire(name, self.period + 1)
        count, _ = await pipe.execute()
        return int(count)

    async def _count_in_database(self, key: str, window: int) -> int:
        table = tables.rate_limit_counters
        window_ms = window * self.period * 1000

        async def work(conn: AsyncConnection) -> int:
            stmt = insert_for(conn, table).values(bucket=key, window_start_ms=window_ms, count=1)
            stmt = stmt.on_conflict_do_update(
                index_elements=[table.c.bucket, table.c.window_start_ms],
                set_={"count": table.c.count + 1},
            ).returning(table.c.count)
            count = int((await conn.execute(stmt)).scalar_one())
            if random.random() < 0.01:  # now and then, forget finished windows
                await conn.execute(delete(table).where(table.c.window_start_ms < window_ms))
            return count

        return await self.db.run_write(work)

    async def check(self, key: str, *, now_ms: int) -> None:
        """Count one request for ``key`` at ``now_ms``; raise :class:`RateLimited` past the limit."""
        now = now_ms / 1000
        window = int(now // self.period)
        if self._redis is not None:
            count = await self._count_in_redis(key, window)
        else:
            count = await self._count_in_database(key, window)
        if count > self.limit:
            raise RateLimited(int((window + 1) * self.period - now) + 1)
