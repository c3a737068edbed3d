"""Re-cutting a contact's neighbouring sessions from their messages (the general case of
the session rule, applied transactionally).

Used when a message lands where the timeout changes inside the affected range (it can
then split a session as well as join or merge), and when a timeout change takes effect
while future-stamped messages exist. Ids stay stable as :func:`rule.resegment` says.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions import ids
from chatsessions.sessions import rule
from chatsessions.sessions import store as sessions_store
from chatsessions.sessions.rule import TimeoutHistory
from chatsessions.sessions.store import SessionRow

__all__ = ["RecutResult", "recut_sessions"]


@dataclass
class RecutResult:
    """What a re-cut did."""

    created: list[str] = field(default_factory=list)  # new session ids
    absorbed: list[str] = field(default_factory=list)  # ids that disappeared (merged)
    merged_into: dict[str, str] = field(default_factory=dict)  # absorbed id → survivor
    new_message_session: str | None = None  # where the new message (if any) belongs
    new_message_opened: bool = False  # its session opened (new, or re-opened) with it


async def recut_sessions(
    conn: AsyncConnection,
    *,
    user_id: str,
    contact_id: str,
    olds: list[SessionRow],
    history: TimeoutHistory,
    now_ms: int,
    new_message: tuple[int, str, str] | None = None,
) -> RecutResult:
    """Re-cut ``olds`` (consecutive sessions of one contact) with an optional new message
    ``(timestamp, id, direction)`` that the caller stores afterwards in
    ``result.new_message_session``. Updates, inserts and deletes session rows and moves
    existing messages; the contact must be locked by the caller."""
    by_session = await sessions_store.message_keys(conn, user_id, [o.id for o in olds])
    direction = {mid: d for rows in by_session.values() for (_ts, mid, d) in rows}
    new_id = None
    if new_message is not None:
        new_id = new_message[1]
        direction[new_id] = new_message[2]
    was_open = any(
        rule.is_open(now_ms=now_ms, closed_at_ms=o.closed_at_ms, expires_ms=o.expires_ms)
        for o in olds
    )
    recuts = rule.resegment(
        [(o.span(), [(ts, mid) for ts, mid, _d in by_session.get(o.id, [])]) for o in olds],
        (new_message[0], new_message[1]) if new_message is not None else None,
        history,
    )
    kept = {r.session_id for r in recuts if r.session_id is not None}
    result = RecutResult(absorbed=[o.id for o in olds if o.id not in kept])
    created_at = {o.id: o.created_at_ms for o in olds}
    last_message_of = {
        o.id: max(by_session[o.id])[1] for o in olds if o.id in result.absorbed and by_session[o.id]
    }
    for piece in recuts:
        seg = piece.segment
        inbound = sum(1 for _ts, mid in seg.messages if direction[mid] == "inbound")
        row = SessionRow(
            id=piece.session_id or ids.new_id(),
            contact_id=contact_id,
            start_ms=seg.start_ms,
            last_ms=seg.last_ms,
            expires_ms=history.expires(seg.last_ms),
            closed_at_ms=seg.closed_at_ms,
            activity_ms=max(seg.last_ms, seg.closed_at_ms or seg.last_ms),
            message_count=len(seg.messages),
            inbound_count=inbound,
            outbound_count=len(seg.messages) - inbound,
            created_at_ms=created_at.get(piece.session_id or "", now_ms),
        )
        members = {mid for _ts, mid in seg.messages}
        for gone, last_mid in last_message_of.items():
            if last_mid in members:
                result.merged_into[gone] = row.id
        if piece.session_id is None:
            result.created.append(row.id)
            await sessions_store.insert_session(conn, user_id, row, now_ms=now_ms)
        else:
            await sessions_store.update_session(conn, user_id, row, now_ms=now_ms)
        await sessions_store.assign_messages(
            conn, user_id, [mid for _ts, mid in seg.messages if mid != new_id], row.id
        )
        if new_id is not None and any(mid == new_id for _ts, mid in seg.messages):
            result.new_message_session = row.id
            now_open = rule.is_open(
                now_ms=now_ms, closed_at_ms=row.closed_at_ms, expires_ms=row.expires_ms
            )
            result.new_message_opened = piece.session_id is None or (not was_open and now_open)
    for sid in result.absorbed:
        await sessions_store.delete_session(conn, user_id, sid)
    return result
