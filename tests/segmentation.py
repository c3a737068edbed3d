"""What the concurrency tests check after the writers are done: the stored sessions are the
offline segmentation of each contact's stored messages, with no orphan, duplicate or
miscounted session row."""

from __future__ import annotations

from sqlalchemy import select

from chatsessions import tables
from chatsessions.db import Database
from chatsessions.sessions import rule
from chatsessions.settings import service as settings_service


async def assert_offline_segmentation(db: Database, user_id: str) -> set[str]:
    """Assert it for the tenant's stored messages and sessions; the stored message ids."""
    m, s = tables.messages.c, tables.sessions.c
    async with db.read() as conn:
        history = await settings_service.timeout_history(conn, user_id)
        rows = (
            await conn.execute(
                select(m.id, m.ts_ms, m.session_id, m.contact_id).where(m.user_id == user_id)
            )
        ).all()
        counts = (await conn.execute(select(s.message_count).where(s.user_id == user_id))).all()
    by_contact: dict[str, list[tuple[int, str]]] = {}
    for r in rows:
        by_contact.setdefault(r.contact_id, []).append((r.ts_ms, r.id))
    expected = [seg for keys in by_contact.values() for seg in rule.segment(keys, [], history)]
    got: dict[str, list[tuple[int, str]]] = {}
    for r in rows:
        got.setdefault(r.session_id, []).append((r.ts_ms, r.id))
    assert {tuple(sorted(v)) for v in got.values()} == {seg.messages for seg in expected}
    # One row per session, each counting its messages.
    assert sorted(c for (c,) in counts) == sorted(len(seg.messages) for seg in expected)
    return {r.id for r in rows}
