"""Background work of webhooks: the delivery loop and the silence sweeper.

Both run inside every ``chatsessions serve`` process (started by the app's lifespan) and in
``chatsessions worker``. Processes share the work through the database: a delivery is
leased (its next attempt moved to the lease's end) in a short transaction that skips rows
another worker holds (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; on SQLite the write
transaction is ``BEGIN IMMEDIATE``), so no event is sent by two workers at once, and one
whose worker died is picked up again when its lease ends. All state is in the database:
due attempts resume after a restart.

Tests drive the loops by hand: :meth:`DeliveryWorker.run_once` and :func:`sweep_once`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from typing import Any

import httpx
from prometheus_client import Counter, Gauge
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions import tables
from chatsessions.contacts import store as contacts_store
from chatsessions.db import Database
from chatsessions.timeutil import Clock, system_clock
from chatsessions.webhooks import delivery, events, queue
from chatsessions.webhooks.queue import ClaimedDelivery
from chatsessions.webhooks.store import DELIVERED, FAILED, PENDING

__all__ = [
    "DELIVERED_TOTAL",
    "FAILED_TOTAL",
    "RETRIED_TOTAL",
    "Background",
    "DeliveryWorker",
    "purge_once",
    "refresh_gauges",
    "sweep_once",
]

log = logging.getLogger("chatsessions.webhooks")

DELIVERED_TOTAL = Counter("chatsessions_webhook_delivered", "Webhook deliveries that got a 2xx")
FAILED_TOTAL = Counter(
    "chatsessions_webhook_failed", "Webhook deliveries given up (schedule exhausted, 410, disabled)"
)
RETRIED_TOTAL = Counter(
    "chatsessions_webhook_retried", "Webhook attempts that failed and were scheduled again"
)
PENDING_GAUGE = Gauge("chatsessions_webhook_pending", "Webhook deliveries not yet done")
OLDEST_PENDING_AGE = Gauge(
    "chatsessions_webhook_oldest_pending_age_seconds",
    "Age of the oldest pending webhook delivery (0 when none)",
)

DAY_MS = 86_400_000
FAILING_DISABLE_AFTER_MS = 5 * DAY_MS
LEASE_MS = 30_000  # > the longest attempt (5 s DNS + 12 s); a dead worker's rows return after it
SWEEP_BATCH = 200
RETENTION_MS = 30 * DAY_MS  # delivered and failed deliveries are kept this long


class DeliveryWorker:
    """Claims due deliveries and sends them; one per process (or per test)."""

    def __init__(
        self,
        db: Database,
        *,
        clock: Clock = system_clock,
        allow_private: bool | None = None,
        batch_size: int = 50,
        concurrency: int = 64,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.allow_private = (
            db.settings.webhook_allow_private if allow_private is None else allow_private
        )
        self.batch_size = batch_size
        self.concurrency = concurrency
        self._client = client
        self._own_client = client is None

    @property
    def client(self) -> httpx.AsyncClient:
        """The HTTP client (created on first use)."""
        if self._client is None:
            self._client = delivery.new_client()
        return self._client

    async def aclose(self) -> None:
        """Close the HTTP client this worker created."""
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    async def claim(self, limit: int | None = None, *, probe: bool = True) -> list[ClaimedDelivery]:
        """Lease the due deliveries (heads of their contact's chain) for this worker.

        ``probe`` first looks without a lock, so an idle poll takes no write transaction
        (SQLite's database lock). A wake-up from a write in this process skips it: on SQLite
        the claim then waits for that write's commit, where a probe would run before it.
        """
        now = self.clock()
        if probe:
            async with self.db.read() as conn:
                if not await queue.any_due(conn, now_ms=now):
                    return []

        async def work(conn: AsyncConnection) -> list[ClaimedDelivery]:
            return await queue.claim_due(
                conn, now_ms=now, lease_ms=LEASE_MS, limit=limit or self.batch_size
            )

        return await self.db.run_write(work)

    async def run_once(self) -> int:
        """Claim what is due now, send it all, record the outcomes; how many were sent."""
        claimed = await self.claim()
        await asyncio.gather(*(self.deliver(item) for item in claimed))
        return len(claimed)

    async def drain(self, *, max_rounds: int = 1000) -> int:
        """Run :meth:`run_once` until nothing is due (chains advance one event a round)."""
        total = 0
        for _ in range(max_rounds):
            n = await self.run_once()
            if n == 0:
                break
            total += n
        return total

    async def deliver(self, item: ClaimedDelivery) -> None:
        """Send one claimed delivery and record what happened."""
        result = await delivery.send(
            self.client,
            url=item.url,
            secret=item.secret,
            event_id=item.event_id,
            body=item.payload,
            allow_private=self.allow_private,
        )
        await self.record(item, result)

    async def record(self, item: ClaimedDelivery, result: delivery.AttemptResult) -> None:
        """Save an attempt's outcome: delivered, retried later, or given up."""
        now = self.clock()
        attempts = item.attempts + 1
        if result.ok:
            status, next_ms = DELIVERED, None
        elif result.gone:
            status, next_ms = FAILED, None
        else:
            delay = delivery.next_delay_ms(attempts)
            status, next_ms = (FAILED, None) if delay is None else (PENDING, now + delay)

        async def work(conn: AsyncConnection) -> None:
            await queue.record_attempt(
                conn,
                delivery_id=item.id,
                status=status,
                attempts=attempts,
                next_attempt_ms=next_ms,
                status_code=result.status_code,
                error=result.error,
                response=result.response,
                now_ms=now,
            )
            if status == PENDING and next_ms is not None and item.contact_id is not None:
                await queue.hold_chain(
                    conn,
                    endpoint_id=item.endpoint_id,
                    contact_id=item.contact_id,
                    after_id=item.id,
                    until_ms=next_ms,
                    now_ms=now,
                )
            failing_since = None
            if not result.ok or item.endpoint_failing:
                failing_since = await queue.mark_endpoint_health(
                    conn,
                    user_id=item.user_id,
                    endpoint_id=item.endpoint_id,
                    ok=result.ok,
                    now_ms=now,
                )
            reason = None
            if result.gone:
                reason = "gone"
            elif failing_since is not None and now - failing_since >= FAILING_DISABLE_AFTER_MS:
                reason = "failing"
            if reason is not None:
                await queue.disable_endpoint(
                    conn,
                    user_id=item.user_id,
                    endpoint_id=item.endpoint_id,
                    reason=reason,
                    now_ms=now,
                )

        await self.db.run_write(work)
        if status == DELIVERED:
            DELIVERED_TOTAL.inc()
        elif status == FAILED:
            FAILED_TOTAL.inc()
        else:
            RETRIED_TOTAL.inc()


async def sweep_once(db: Database, *, now_ms: int) -> int:
    """Emit ``ChatSessionClosed`` for sessions closed by silence and not yet announced.

    Only users with an enabled endpoint subscribed to ``ChatSessionClosed`` are swept, from
    the time their oldest such endpoint was created. Each session is re-checked under its
    contact's lock, so concurrent sweepers announce it once. Returns how many were emitted.
    """
    async with db.read() as conn:
        subscribers = await queue.close_subscribers(conn)
        # A read first: the write transaction (the SQLite write lock) only for users that
        # have something to announce.
        owing = [
            (user_id, since_ms)
            for user_id, since_ms in subscribers
            if await queue.sessions_owing_close(
                conn, user_id=user_id, since_ms=since_ms, now_ms=now_ms, limit=1
            )
        ]
    total = 0
    for user_id, since_ms in owing:
        while True:
            emitted, more = await db.run_write(
                functools.partial(_sweep_user, user_id=user_id, since_ms=since_ms, now_ms=now_ms)
            )
            total += emitted
            if not more or not emitted:
                break
    return total


async def _sweep_user(
    conn: AsyncConnection, *, user_id: str, since_ms: int, now_ms: int
) -> tuple[int, bool]:
    candidates = await queue.sessions_owing_close(
        conn, user_id=user_id, since_ms=since_ms, now_ms=now_ms, limit=SWEEP_BATCH
    )
    if not candidates:
        return 0, False
    await contacts_store.lock_contacts(conn, user_id, {contact for _sid, contact in candidates})
    s = tables.sessions.c
    emitted = 0
    for session_id, contact_id in candidates:
        row = (
            await conn.execute(
                select(s.expires_ms, s.closed_at_ms, s.close_notified_ms).where(
                    s.user_id == user_id, s.id == session_id
                )
            )
        ).first()
        if row is None or row.closed_at_ms is not None or row.expires_ms > now_ms:
            continue
        if row.close_notified_ms is not None and row.close_notified_ms >= row.expires_ms:
            continue
        await queue.mark_close_notified(
            conn, user_id=user_id, session_id=session_id, expires_ms=row.expires_ms
        )
        await events.emit(
            conn,
            user_id=user_id,
            contact_id=contact_id,
            events=[events.SessionEvent("ChatSessionClosed", session_id)],
            now_ms=now_ms,
        )
        emitted += 1
    return emitted, len(candidates) >= SWEEP_BATCH


async def purge_once(db: Database, *, now_ms: int, batch: int = 1000) -> int:
    """Forget deliveries (and their events) done more than the retention period ago."""
    total = 0
    while True:
        purged = await db.run_write(
            functools.partial(queue.purge_done, before_ms=now_ms - RETENTION_MS, limit=batch)
        )
        total += purged
        if purged < batch:
            return total


async def refresh_gauges(db: Database, *, now_ms: int) -> None:
    """Set the pending and oldest-pending-age gauges from the database."""
    async with db.read() as conn:
        pending, oldest = await queue.pending_stats(conn)
    PENDING_GAUGE.set(pending)
    OLDEST_PENDING_AGE.set(0 if oldest is None else max(0, now_ms - oldest) / 1000)


class Background:
    """The delivery loop, the sweeper and the gauges, as tasks of this process."""

    def __init__(
        self,
        db: Database,
        *,
        clock: Clock = system_clock,
        poll_interval_s: float = 1.0,
        sweep_interval_s: float = 10.0,
        gauge_interval_s: float = 5.0,
    ) -> None:
        self.db = db
        self.clock = clock
        self.worker = DeliveryWorker(db, clock=clock)
        self.poll_interval_s = poll_interval_s
        self.sweep_interval_s = sweep_interval_s
        self.gauge_interval_s = gauge_interval_s
        self._wake = asyncio.Event()
        # Progress others can wait on (tests, a supervisor): the delivery loop has found
        # nothing due and waits for a wake-up; the NOTIFY listener is subscribed.
        self.idle = asyncio.Event()
        self.listening = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self._stopping = False

    def wake(self) -> None:
        """Look for due deliveries now (new events were written)."""
        self._wake.set()

    async def start(self) -> None:
        """Start the loops (returns at once)."""
        self._stopping = False
        events.add_wake_listener(self.wake)
        self._tasks = [
            asyncio.create_task(self._delivery_loop(), name="webhook-delivery"),
            asyncio.create_task(
                self._periodic(self.sweep_interval_s, self._sweep), name="webhook-sweeper"
            ),
            asyncio.create_task(
                self._periodic(self.gauge_interval_s, self._gauges), name="webhook-gauges"
            ),
            asyncio.create_task(self._periodic(3600, self._purge), name="webhook-purge"),
        ]
        if not self.db.is_sqlite:
            self._tasks.append(asyncio.create_task(self._listen(), name="webhook-listen"))

    async def stop(self, *, grace_s: float = 5.0) -> None:
        """Stop the loops; deliveries in flight get ``grace_s`` to finish (else their lease
        runs out and another worker sends them again)."""
        self._stopping = True
        events.remove_wake_listener(self.wake)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._inflight:
            _done, pending = await asyncio.wait(self._inflight, timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self.worker.aclose()

    async def run_forever(self) -> None:
        """Start and wait until cancelled (``chatsessions worker``)."""
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    async def _delivery_loop(self) -> None:
        failures = 0
        woken = True
        while not self._stopping:
            self._wake.clear()
            self.idle.clear()
            room = self.worker.concurrency - len(self._inflight)
            claimed: list[ClaimedDelivery] = []
            if room > 0:
                try:
                    claimed = await self.worker.claim(
                        min(room, self.worker.batch_size), probe=not woken
                    )
                    failures = 0
                except Exception as exc:  # the database is down: back off and retry
                    failures += 1
                    log.warning("webhook claim failed: %s", type(exc).__name__)
                    await asyncio.sleep(min(30.0, 0.5 * 2**failures))
                    continue
            for item in claimed:
                task = asyncio.create_task(self._deliver(item))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
            if claimed and len(claimed) >= min(room, self.worker.batch_size):
                woken = True
                continue  # more may be due
            self.idle.set()
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)
                woken = True
            except TimeoutError:
                woken = False

    async def _deliver(self, item: ClaimedDelivery) -> None:
        try:
            await self.worker.deliver(item)
        except Exception as exc:  # recorded nowhere: the lease runs out and it is retried
            log.warning("webhook delivery %s failed to record: %s", item.id, type(exc).__name__)
        finally:
            self.wake()  # the next event of this contact may now be due

    async def _periodic(self, interval_s: float, job: Callable[[], Any]) -> None:
        while not self._stopping:
            try:
                await job()
            except Exception as exc:
                log.warning("webhook background job failed: %s", type(exc).__name__)
            await asyncio.sleep(interval_s)

    async def _sweep(self) -> None:
        if await sweep_once(self.db, now_ms=self.clock()):
            self.wake()

    async def _gauges(self) -> None:
        await refresh_gauges(self.db, now_ms=self.clock())

    async def _purge(self) -> None:
        await purge_once(self.db, now_ms=self.clock())

    async def _listen(self) -> None:
        """PostgreSQL: wake on ``NOTIFY`` (sent at commit by :func:`events.emit`)."""

        def on_notify(*_args: Any) -> None:
            self.wake()

        while not self._stopping:
            try:
                async with self.db.engine.connect() as conn:
                    raw = await conn.get_raw_connection()
                    driver: Any = raw.driver_connection
                    await driver.add_listener(events.NOTIFY_CHANNEL, on_notify)
                    self.listening.set()
                    try:
                        while not self._stopping:
                            await asyncio.sleep(15)
                            await driver.execute("SELECT 1")  # notices a lost connection
                    finally:
                        self.listening.clear()
                        with contextlib.suppress(Exception):
                            await driver.remove_listener(events.NOTIFY_CHANNEL, on_notify)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("webhook listener lost: %s", type(exc).__name__)
            await asyncio.sleep(2)
