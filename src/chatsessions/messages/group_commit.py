"""Group commit: concurrent small writes of one tenant stored as one ingest transaction.

A single message stored alone costs a transaction of its own: the contact lock, a commit
(an fsync), nine round trips and ~3.4 ms of server CPU; in a batch a message costs
~0.4 ms. Under concurrency, a tenant's requests that arrive while one of its writes is
in flight queue here; when that write ends, the first queued request leads the next
group and writes the whole queue (up to :data:`MAX_GROUP_ITEMS` messages) as one call
of :func:`~chatsessions.messages.service.ingest`, whose result is that of storing the
requests one by one in arrival order. Each request is answered only after its group
committed.

A request that finds nothing in flight for its tenant is written at once, alone, on the
connection it brought (the sequential case pays nothing for this). A group that fails
for a reason other than the database being unreachable is written again one request at
a time, so a request that cannot be stored (an unknown ``contactId``, a value the
database refuses) fails alone and the others are stored. One group per tenant at a time
in a process; several processes still order their writes with the contact locks.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar, overload

from prometheus_client import Counter as MetricCounter
from prometheus_client import Histogram
from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions.db import Database, is_unavailable
from chatsessions.errors import Unavailable
from chatsessions.messages.service import (
    NewMessage,
    StoredMessage,
    ingest,
    run_ingest_transaction,
    store_messages,
)

__all__ = ["MAX_GROUP_ITEMS", "Finish", "GroupCommit"]

T = TypeVar("T")
Finish = Callable[[AsyncConnection, list[tuple[Any, list[StoredMessage]]]], Awaitable[list[T]]]
"""Work that belongs in the same transaction as requests' messages (a channel's counters):
called once per transaction, inside it, with the ``(context, results)`` of every request
of the group that gave this same function, in arrival order; returns their answers in
that order. Once per group rather than per request, so that such work can be merged (one
counter update per channel, not per delivery)."""

MAX_GROUP_ITEMS = 1000
"""Messages in one group at most (the batch route's limit): a group's latency stays that
of one full batch. A request larger than this is a group of its own."""

GROUP_REQUESTS = Histogram(
    "chatsessions_ingest_group_requests",
    "Requests written per ingest transaction by group commit (1: written alone)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
GROUP_FALLBACKS = MetricCounter(
    "chatsessions_ingest_group_fallbacks_total",
    "Groups that failed and were written again one request at a time",
)

_LEAD = object()
"""A queued request's turn: it leads the next group."""
_DONE = object()
"""A queued request's turn: another request's group wrote it (outcome on the unit)."""
_PENDING = object()


class _Unit(Generic[T]):
    """One request's share of a group, and its outcome once written."""

    __slots__ = ("context", "error", "finish", "items", "now_ms", "turn", "value")

    def __init__(
        self, items: list[NewMessage], now_ms: int, finish: Finish[T] | None, context: Any
    ) -> None:
        self.items = items
        self.now_ms = now_ms
        self.finish = finish
        self.context = context
        self.turn: asyncio.Future[object] | None = None
        self.value: Any = _PENDING
        self.error: BaseException | None = None

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        if self.value is _PENDING:  # its group's leader was cancelled mid-write
            raise Unavailable("the write was interrupted; retry")
        return self.value


class GroupCommit:
    """The group-commit queues of one process (one per application)."""

    def __init__(self, db: Database, *, max_items: int = MAX_GROUP_ITEMS) -> None:
        self._db = db
        self._max_items = max_items
        # A tenant is present while a write of it is in flight; its queue waits for it.
        self._queues: dict[str, deque[_Unit[Any]]] = {}
        self.group_sizes: Counter[int] = Counter()
        """Requests per written transaction → how many transactions (for tests, /metrics
        has the histogram)."""

    def busy(self, user_id: str) -> bool:
        """True while a write of the tenant is in flight: a request stored now would wait
        in its queue. A route that holds a pooled connection lets it go before queueing
        (``store`` with ``conn=None``), so that one tenant's burst never pins the pool
        that other tenants' requests need; the check and the ``store`` that follows it
        must not be separated by an ``await``."""
        return user_id in self._queues

    def queued(self, user_id: str) -> int:
        """Requests of the tenant waiting for the write in flight."""
        queue = self._queues.get(user_id)
        return len(queue) if queue is not None else 0

    @overload
    async def store(
        self,
        user_id: str,
        items: list[NewMessage],
        now_ms: int,
        *,
        finish: None = None,
        context: None = None,
        conn: AsyncConnection | None = None,
    ) -> list[StoredMessage]: ...

    @overload
    async def store(
        self,
        user_id: str,
        items: list[NewMessage],
        now_ms: int,
        *,
        finish: Finish[T],
        context: Any,
        conn: AsyncConnection | None = None,
    ) -> T: ...

    async def store(
        self,
        user_id: str,
        items: list[NewMessage],
        now_ms: int,
        *,
        finish: Finish[T] | None = None,
        context: Any = None,
        conn: AsyncConnection | None = None,
    ) -> Any:
        """Store ``items`` for the tenant and return their results, or this request's
        answer from ``finish`` (given ``context`` and the results, inside the same
        transaction). Raise what storing them raised. ``conn``: as for
        ``Database.write``; used when this request writes.

        >>> # results = await group_commit.store(user_id, [item], now_ms)
        """
        unit: _Unit[T] = _Unit(items, now_ms, finish, context)
        queue = self._queues.get(user_id)
        if queue is None:
            self._queues[user_id] = deque()
            group = [unit]
        else:
            unit.turn = asyncio.get_running_loop().create_future()
            queue.append(unit)
            try:
                turn = await unit.turn
            except asyncio.CancelledError:
                self._leave(user_id, unit)
                raise
            if turn is _DONE:
                return unit.outcome()
            group = self._take_group(unit, queue)
        try:
            await self._write(user_id, group, conn)
        finally:
            self._hand_off(user_id)
        return unit.outcome()

    def _take_group(self, leader: _Unit[Any], queue: deque[_Unit[Any]]) -> list[_Unit[Any]]:
        group, size = [leader], len(leader.items)
        while queue and size + len(queue[0].items) <= self._max_items:
            unit = queue.popleft()
            group.append(unit)
            size += len(unit.items)
        return group

    def _hand_off(self, user_id: str) -> None:
        """After a write: the first queued request leads the next group, or the tenant is
        idle again."""
        queue = self._queues[user_id]
        while queue:
            unit = queue.popleft()
            assert unit.turn is not None
            if not unit.turn.done():  # not cancelled meanwhile
                unit.turn.set_result(_LEAD)
                return
        del self._queues[user_id]

    def _leave(self, user_id: str, unit: _Unit[Any]) -> None:
        """A queued request was cancelled: out of the queue, or, if it had just been made
        leader, pass the lead on (a member of a running group is simply not waited for)."""
        assert unit.turn is not None
        turn = unit.turn
        if turn.done() and not turn.cancelled() and turn.result() is _LEAD:
            self._hand_off(user_id)
            return
        queue = self._queues.get(user_id)
        if queue is not None and unit in queue:
            queue.remove(unit)

    async def _write(
        self, user_id: str, group: list[_Unit[Any]], conn: AsyncConnection | None
    ) -> None:
        """Write the group in one transaction, or, when that fails other than by the
        database being unreachable, each request alone; record every outcome."""
        try:
            try:
                if len(group) == 1:
                    await self._write_alone(user_id, group[0], conn)
                    return
                values = await run_ingest_transaction(
                    self._db, lambda tx: self._ingest_group(tx, user_id, group), conn=conn
                )
            except Exception as exc:
                if len(group) == 1 or is_unavailable(exc):
                    for unit in group:
                        unit.error = exc
                    return
                GROUP_FALLBACKS.inc()
                for unit in group:
                    try:
                        await self._write_alone(user_id, unit, conn)
                    except Exception as alone_exc:
                        unit.error = alone_exc
                return
            self.group_sizes[len(group)] += 1
            GROUP_REQUESTS.observe(len(group))
            for unit, value in zip(group, values, strict=True):
                unit.value = value
        finally:
            for unit in group[1:]:
                assert unit.turn is not None
                if not unit.turn.done():
                    unit.turn.set_result(_DONE)

    async def _write_alone(
        self, user_id: str, unit: _Unit[Any], conn: AsyncConnection | None
    ) -> None:
        async def work(tx: AsyncConnection) -> Any:
            results = (
                await ingest(tx, user_id=user_id, items=unit.items, now_ms=unit.now_ms)
                if unit.items
                else []
            )
            assert unit.finish is not None
            [answer] = await unit.finish(tx, [(unit.context, results)])
            return answer

        if unit.finish is None:  # store_messages: a single message may skip the lock
            unit.value = (
                await store_messages(
                    self._db, user_id=user_id, items=unit.items, now_ms=unit.now_ms, conn=conn
                )
                if unit.items
                else []
            )
        else:
            unit.value = await run_ingest_transaction(self._db, work, conn=conn)
        self.group_sizes[1] += 1
        GROUP_REQUESTS.observe(1)

    async def _ingest_group(
        self, tx: AsyncConnection, user_id: str, group: list[_Unit[Any]]
    ) -> list[Any]:
        items = [item for unit in group for item in unit.items]
        # The latest request's time: every request of the group is stored at its commit.
        now_ms = max(unit.now_ms for unit in group)
        results = await ingest(tx, user_id=user_id, items=items, now_ms=now_ms) if items else []
        values: list[Any] = []
        sharing: dict[Finish[Any], list[int]] = {}  # each finish: its requests, in order
        start = 0
        for i, unit in enumerate(group):
            end = start + len(unit.items)
            values.append(results[start:end])
            start = end
            if unit.finish is not None:
                sharing.setdefault(unit.finish, []).append(i)
        for finish, members in sharing.items():
            answers = await finish(tx, [(group[i].context, values[i]) for i in members])
            for i, answer in zip(members, answers, strict=True):
                values[i] = answer
        return values
