"""Per-tenant request limits (``CHATSESSIONS_RATE_LIMIT``, e.g. ``600/minute``).

Fixed windows counted in Redis when ``CHATSESSIONS_REDIS_URL`` is set (so the limit holds
across processes and machines), in process memory otherwise.
"""

from __future__ import annotations

import time
from typing import Any

from chatsessions.config import parse_rate
from chatsessions.errors import RateLimited

__all__ = ["RateLimiter"]


class RateLimiter:
    """Allows ``limit`` requests per ``period`` seconds per key."""

    def __init__(self, rate: str, redis_url: str | None = None) -> None:
        self.limit, self.period = parse_rate(rate)
        self._counts: dict[tuple[str, int], int] = {}
        self._redis: Any = None
        if redis_url:
            import redis.asyncio as redis_asyncio

            self._redis = redis_asyncio.from_url(redis_url)

    async def check(self, key: str) -> None:
        """Count one request for ``key``; raise :class:`RateLimited` past the limit."""
        now = time.time()
        window = int(now // self.period)
        retry = int((window + 1) * self.period - now) + 1
        if self._redis is not None:
            name = f"chatsessions:rl:{key}:{window}"
            pipe = self._redis.pipeline()
            pipe.incr(name)
            pipe.expire(name, self.period + 1)
            count, _ = await pipe.execute()
        else:
            slot = (key, window)
            count = self._counts.get(slot, 0) + 1
            self._counts[slot] = count
            if len(self._counts) > 50_000:
                for old in [k for k in self._counts if k[1] < window]:
                    del self._counts[old]
        if int(count) > self.limit:
            raise RateLimited(retry)
