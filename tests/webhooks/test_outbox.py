"""The outbox write itself: what emit costs when nobody listens, and what it stores."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions import tables
from chatsessions.db import Database
from chatsessions.webhooks import events
from chatsessions.webhooks.events import SessionEvent
from tests.conftest import T0, Tenant
from tests.factories import make_contact, post_message
from tests.webhooks.conftest import subscribe
from tests.webhooks.receiver import Receiver


async def _statements_of_emit(database: Database, tenant: Tenant, session: dict[str, Any]) -> int:
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    async def work(conn: AsyncConnection) -> None:
        event.listen(conn.sync_connection, "before_cursor_execute", count)
        try:
            await events.emit(
                conn,
                user_id=tenant.user_id,
                contact_id=session["contactId"],
                events=[
                    SessionEvent("ChatSessionOpened", session["sessionId"]),
                    SessionEvent(
                        "MessageReceived", session["sessionId"], message_id=session["messageId"]
                    ),
                ],
                now_ms=T0,
            )
        finally:
            event.remove(conn.sync_connection, "before_cursor_execute", count)

    await database.run_write(work)
    return len(seen)


async def test_emit_without_subscribers_is_one_query(
    pclient: httpx.AsyncClient, tenant: Tenant, receiver: Receiver, database: Database
) -> None:
    contact = await make_contact(pclient, tenant.auth)
    stored = await post_message(pclient, tenant.auth, contact, T0 - 1000)
    stored["contactId"] = contact
    assert await _statements_of_emit(database, tenant, stored) == 1
    # Subscribed to other event types only: still one query, nothing written.
    await subscribe(pclient, tenant, receiver, ["ChatSessionClosed"])
    assert await _statements_of_emit(database, tenant, stored) == 1
    ev = tables.webhook_events.c
    async with database.read() as conn:
        rows = (await conn.execute(select(ev.id).where(ev.user_id == tenant.user_id))).all()
    assert rows == []
