"""Storing messages: validation, idempotency, and the session rule applied transactionally."""

from __future__ import annotations

from dataclasses import astuple, dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions import ids, tables
from chatsessions.contacts import service as contacts_service
from chatsessions.contacts import store as contacts_store
from chatsessions.contacts.schemas import ContactFields
from chatsessions.errors import InvalidParameter, NotFound
from chatsessions.messages import store as messages_store
from chatsessions.messages.placement import ContactPlacement, Placed
from chatsessions.messages.schemas import MessageIn
from chatsessions.messages.store import Loaded, MessageWrite, StoredExternal, Writes
from chatsessions.sessions import rule
from chatsessions.sessions import store as sessions_store
from chatsessions.sessions.recut import recut_sessions
from chatsessions.sessions.rule import PlacementKind, TimeoutHistory
from chatsessions.sessions.store import MessageRow, SessionRow
from chatsessions.settings import service as settings_service
from chatsessions.timeutil import parse_iso_ms
from chatsessions.webhooks import events as webhook_events
from chatsessions.webhooks.events import SessionEvent

__all__ = ["MAX_FUTURE_MS", "NewMessage", "StoredMessage", "ingest", "prepare_message"]

MAX_FUTURE_MS = 5 * 60_000
_DEFAULT_ROLE = {"inbound": "user", "outbound": "assistant"}
_MAX_TS_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


@dataclass(frozen=True)
class NewMessage:
    """A validated message, ready to store (its contact resolved inside the transaction)."""

    prefix: str  # "" or "messages[i]." — names fields in errors
    contact_id: str | None
    contact: ContactFields | None
    direction: str
    role: str
    type: str
    content: str | None
    media_url: str | None
    ts_ms: int
    external_id: str | None


@dataclass
class StoredMessage:
    """What storing one message did."""

    message_id: str
    session_id: str
    duplicate: bool
    session_opened: bool = False
    session_status: str = rule.OPENED
    contact_id: str = ""
    merged_session_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Placed:
    """Where one message went: its session, whether it opened, what merged or split off,
    and the session's status when known without another read."""

    session_id: str
    opened: bool
    absorbed: list[str]
    split_off: list[str]
    status: str | None


def parse_timestamp(value: int | str | None, *, now_ms: int, name: str) -> int:
    """Epoch ms from an ISO 8601 time with a zone or integer epoch ms (default: now)."""
    if value is None:
        return now_ms
    if isinstance(value, int):
        ts = value
    else:
        try:
            ts = parse_iso_ms(value)
        except ValueError as exc:
            raise InvalidParameter(
                name, f"must be ISO 8601 with a zone (Z or an offset) or epoch milliseconds ({exc})"
            ) from None
    if ts < 0 or ts > _MAX_TS_MS:
        raise InvalidParameter(name, "is out of range")
    if ts > now_ms + MAX_FUTURE_MS:
        raise InvalidParameter(name, "is more than 5 minutes in the future")
    return ts


def prepare_message(item: MessageIn, *, now_ms: int, prefix: str = "") -> NewMessage:
    """Check what can be checked without the database and fill in defaults."""
    if item.contactId is None and item.contact is None:
        raise InvalidParameter(prefix + "contactId", "contactId or contact is required")
    if item.contactId is None and item.contact is not None:
        # Validate the inline contact's identifiers now, so a batch fails before writing.
        idents = contacts_service.normalised_identifiers(item.contact, prefix + "contact.")
        if all(v is None for v in idents.values()):
            raise InvalidParameter(prefix + "contact", "needs phoneNumber, email or externalId")
    return NewMessage(
        prefix=prefix,
        contact_id=item.contactId,
        contact=item.contact if item.contactId is None else None,
        direction=item.direction,
        role=item.role or _DEFAULT_ROLE[item.direction],
        type=item.type or "text",
        content=item.content,
        media_url=item.mediaUrl,
        ts_ms=parse_timestamp(item.timestamp, now_ms=now_ms, name=prefix + "timestamp"),
        external_id=item.externalId or item.messageSid,
    )


async def _place(
    conn: AsyncConnection,
    *,
    user_id: str,
    contact_id: str,
    msg: NewMessage,
    message_id: str,
    history: TimeoutHistory,
    now_ms: int,
) -> _Placed:
    """Apply the session rule for one message."""
    before, after = await sessions_store.neighbours(conn, user_id, contact_id, msg.ts_ms)
    placement = rule.place_message(
        msg.ts_ms, before.span() if before else None, after.span() if after else None, history
    )
    inbound = 1 if msg.direction == "inbound" else 0
    if placement.kind is PlacementKind.RESEGMENT:
        olds = [sess for sess in (before, after) if sess is not None]
        return await _resegment(
            conn,
            user_id=user_id,
            contact_id=contact_id,
            olds=olds,
            msg=msg,
            message_id=message_id,
            history=history,
            now_ms=now_ms,
        )
    if placement.kind is PlacementKind.NEW:
        sess = SessionRow(
            id=ids.new_id(),
            contact_id=contact_id,
            start_ms=msg.ts_ms,
            last_ms=msg.ts_ms,
            expires_ms=history.expires(msg.ts_ms),
            closed_at_ms=None,
            activity_ms=msg.ts_ms,
            message_count=1,
            inbound_count=inbound,
            outbound_count=1 - inbound,
            created_at_ms=now_ms,
        )
        await sessions_store.insert_session(conn, user_id, sess, now_ms=now_ms)
        status = rule.status_of(now_ms=now_ms, closed_at_ms=None, expires_ms=sess.expires_ms)
        return _Placed(sess.id, True, [], [], status)
    target = before if before is not None and placement.target == before.id else after
    assert target is not None
    was_open = rule.is_open(now_ms=now_ms, closed_at_ms=target.closed_at_ms, expires_ms=target.expires_ms)
    absorbed_ids: list[str] = []
    if placement.kind is PlacementKind.MERGE:
        assert after is not None
        was_open = was_open or rule.is_open(
            now_ms=now_ms, closed_at_ms=after.closed_at_ms, expires_ms=after.expires_ms
        )
        target.absorb(after)
        await sessions_store.move_messages(conn, user_id, from_id=after.id, to_id=target.id)
        await sessions_store.delete_session(conn, user_id, after.id)
        absorbed_ids.append(after.id)
    target.add_message(msg.ts_ms, inbound=inbound, history=history)
    await sessions_store.update_session(conn, user_id, target, now_ms=now_ms)
    now_open = rule.is_open(now_ms=now_ms, closed_at_ms=target.closed_at_ms, expires_ms=target.expires_ms)
    status = rule.OPENED if now_open else rule.CLOSED
    return _Placed(target.id, not was_open and now_open, absorbed_ids, [], status)


async def _resegment(
    conn: AsyncConnection,
    *,
    user_id: str,
    contact_id: str,
    olds: list[SessionRow],
    msg: NewMessage,
    message_id: str,
    history: TimeoutHistory,
    now_ms: int,
) -> _Placed:
    """The general case: re-cut the neighbours' messages with the new one (rare: only when
    the timeout changed inside the affected range). The new message (not stored yet) is
    inserted by the caller into the session returned."""
    done = await recut_sessions(
        conn,
        user_id=user_id,
        contact_id=contact_id,
        olds=olds,
        history=history,
        now_ms=now_ms,
        new_message=(msg.ts_ms, message_id, msg.direction),
    )
    assert done.new_message_session is not None
    others = [c for c in done.created if c != done.new_message_session]
    return _Placed(done.new_message_session, done.new_message_opened, done.absorbed, others, None)


async def _store_one(
    conn: AsyncConnection,
    *,
    user_id: str,
    contact_id: str,
    msg: NewMessage,
    message_id: str,
    history: TimeoutHistory,
    now_ms: int,
) -> StoredMessage:
    """Store one message against the database (the per-message path: kept for a contact
    whose messages need a re-cut)."""
    placed = await _place(
        conn,
        user_id=user_id,
        contact_id=contact_id,
        msg=msg,
        message_id=message_id,
        history=history,
        now_ms=now_ms,
    )
    session_id, opened, absorbed = placed.session_id, placed.opened, placed.absorbed
    await conn.execute(
        tables.messages.insert().values(
            user_id=user_id,
            id=message_id,
            contact_id=contact_id,
            session_id=session_id,
            direction=msg.direction,
            role=msg.role,
            type=msg.type,
            content=msg.content,
            media_url=msg.media_url,
            ts_ms=msg.ts_ms,
            external_id=msg.external_id,
            created_at_ms=now_ms,
        )
    )
    events = [SessionEvent("ChatSessionOpened", sid) for sid in placed.split_off]
    events += _events_of(session_id, opened, absorbed, message_id)
    await webhook_events.emit(
        conn, user_id=user_id, contact_id=contact_id, events=events, now_ms=now_ms
    )
    return StoredMessage(
        message_id,
        session_id,
        False,
        session_opened=opened,
        session_status=placed.status or rule.CLOSED,
        contact_id=contact_id,
        merged_session_ids=absorbed,
    )


def _events_of(
    session_id: str, opened: bool, absorbed: list[str], message_id: str
) -> list[SessionEvent]:
    events = [SessionEvent("ChatSessionOpened", session_id)] if opened else []
    events += [
        SessionEvent("ChatSessionMerged", session_id, merged_session_id=gone) for gone in absorbed
    ]
    events.append(SessionEvent("MessageReceived", session_id, message_id=message_id))
    return events


async def ingest(
    conn: AsyncConnection, *, user_id: str, items: list[NewMessage], now_ms: int
) -> list[StoredMessage]:
    """Store messages in one transaction; the result is that of storing them one by one
    in request order (replays by externalId return the original with its current session).

    Contacts are locked first (in id order), so concurrent writers for one contact apply
    the session rule one after another and never split or duplicate a session. The rule
    is then applied in memory to each contact's sessions around the request's timestamps
    (read in one statement) and the net result written in one (``messages.store``); a
    contact whose messages need a re-cut (the timeout changed inside the range) takes the
    per-message path instead.
    """
    contact_ids, loaded = await _resolve_contacts(conn, user_id, items, now_ms)
    history = (
        TimeoutHistory(tuple(loaded.timeout_changes))
        if loaded.timeout_changes
        else TimeoutHistory.constant(settings_service.DEFAULT_TIMEOUT_MS)
    )
    subscriptions = loaded.subscriptions
    webhook_events.remember_subscriptions(conn, user_id, subscriptions)
    ranges: dict[str, tuple[int, int]] = {}
    for msg, cid in zip(items, contact_ids, strict=True):
        lo, hi = ranges.get(cid, (msg.ts_ms, msg.ts_ms))
        ranges[cid] = (min(lo, msg.ts_ms), max(hi, msg.ts_ms))
    state = await messages_store.read_state(
        conn,
        user_id,
        ranges=ranges,
        external_ids=[it.external_id for it in items if it.external_id is not None],
        owing_since_ms=webhook_events.close_subscribers_since(subscriptions),
        now_ms=now_ms,
    )

    # Replays: of a stored message, or of an earlier item of this request.
    first_of: dict[str, int] = {}
    repeat_of: dict[int, int] = {}
    replayed: dict[int, StoredExternal] = {}
    fresh: list[int] = []
    for i, msg in enumerate(items):
        ext = msg.external_id
        if ext is not None:
            if ext in first_of:
                repeat_of[i] = first_of[ext]
                continue
            if ext in state.external:
                replayed[i] = state.external[ext]
                continue
            first_of[ext] = i
        fresh.append(i)

    contacts = {
        cid: ContactPlacement(cid, sessions, history=history, now_ms=now_ms)
        for cid, sessions in state.sessions.items()
    }
    message_ids = {i: ids.new_id() for i in fresh}
    placed: dict[int, Placed] = {}
    per_message: set[str] = set()  # contacts that need a re-cut
    for i in fresh:
        msg, cid = items[i], contact_ids[i]
        if cid in per_message:
            continue
        where = contacts[cid].place(msg.ts_ms, msg.direction)
        if where is None:
            per_message.add(cid)
            continue
        placed[i] = where
        row = MessageWrite(
            message_ids[i], cid, where.session_id, msg.direction, msg.role, msg.type,
            msg.content, msg.media_url, msg.ts_ms, msg.external_id,
        )
        contacts[cid].add_message(row)
        if subscriptions:
            contacts[cid].emit(
                _events_of(where.session_id, where.opened, where.absorbed, row.id),
                subscriptions=subscriptions,
                contact=loaded.contacts.get(cid),
                message=MessageRow(*astuple(row)),
            )
    writes = Writes()
    for cid, placement in contacts.items():
        if cid not in per_message:
            placement.collect(writes)
    await messages_store.write(
        conn, user_id, writes, now_ms=now_ms, channel=webhook_events.NOTIFY_CHANNEL
    )
    if writes.outbox and conn.dialect.name != "postgresql":
        webhook_events.wake_listeners()

    results: dict[int, StoredMessage] = {}
    stale: list[StoredMessage] = []  # placed by the per-message path: re-read at the end
    for i in fresh:
        cid = contact_ids[i]
        if cid in per_message:
            results[i] = await _store_one(
                conn,
                user_id=user_id,
                contact_id=cid,
                msg=items[i],
                message_id=message_ids[i],
                history=history,
                now_ms=now_ms,
            )
            stale.append(results[i])
            continue
        where, placement = placed[i], contacts[cid]
        session_id = placement.resolve(where.session_id)
        results[i] = StoredMessage(
            message_ids[i],
            session_id,
            False,
            session_opened=where.opened,
            session_status=placement.status(session_id) or rule.CLOSED,
            contact_id=cid,
            merged_session_ids=where.absorbed,
        )
    for i, found in replayed.items():
        replay = StoredMessage(found.message_id, found.session_id, True)
        placement_of = contacts.get(found.contact_id)
        status = placement_of.status(found.session_id) if placement_of else None
        if found.contact_id in per_message:
            stale.append(replay)
        elif placement_of is not None and status is not None:
            replay.session_id = placement_of.resolve(found.session_id)
            replay.session_status = status
        else:
            replay.session_status = rule.status_of(
                now_ms=now_ms, closed_at_ms=found.closed_at_ms, expires_ms=found.expires_ms
            )
        results[i] = replay
    await _refresh_sessions(conn, user_id, stale, now_ms)
    for i, first in repeat_of.items():
        original = results[first]
        results[i] = StoredMessage(
            original.message_id, original.session_id, True, session_status=original.session_status
        )
    return [results[i] for i in range(len(items))]


async def _resolve_contacts(
    conn: AsyncConnection, user_id: str, items: list[NewMessage], now_ms: int
) -> tuple[list[str], Loaded]:
    """Each item's contact id (locked), and what ``lock_and_load`` read."""
    given = {it.contact_id for it in items if it.contact_id is not None}
    loaded = await messages_store.lock_and_load(
        conn, user_id, [cid for cid in given if ids.is_id(cid)]
    )
    for it in items:
        if it.contact_id is not None and it.contact_id not in loaded.locked:
            raise NotFound(
                f"{it.prefix}contactId: contact not found", parameter=f"{it.prefix}contactId"
            )
    resolved: list[str] = []
    created: set[str] = set()
    for it in items:
        if it.contact_id is not None:
            resolved.append(it.contact_id)
            continue
        assert it.contact is not None
        contact, was_created = await contacts_service.find_or_create_contact(
            conn, user_id=user_id, fields=it.contact, now_ms=now_ms, prefix=it.prefix + "contact."
        )
        if was_created:
            created.add(contact.id)
        resolved.append(contact.id)
    # Found-by-identifier contacts are locked too; created ones are ours until commit.
    inline = set(resolved) - loaded.locked
    await contacts_store.lock_contacts(conn, user_id, inline - created)
    if inline and loaded.subscriptions:
        loaded.contacts.update(await messages_store.contact_fields(conn, user_id, sorted(inline)))
    return resolved, loaded


async def _refresh_sessions(
    conn: AsyncConnection, user_id: str, results: list[StoredMessage], now_ms: int
) -> None:
    """Set each result's *current* session id and status (a later item may have merged it)."""
    if not results:
        return
    m, s = tables.messages.c, tables.sessions.c
    message_ids = sorted({r.message_id for r in results})
    current: dict[str, str] = {}
    for chunk_start in range(0, len(message_ids), 500):
        chunk = message_ids[chunk_start : chunk_start + 500]
        rows = await conn.execute(
            select(m.id, m.session_id).where(m.user_id == user_id, m.id.in_(chunk))
        )
        current.update({row.id: row.session_id for row in rows})
    session_ids = sorted(set(current.values()))
    status: dict[str, str] = {}
    for chunk_start in range(0, len(session_ids), 500):
        chunk = session_ids[chunk_start : chunk_start + 500]
        rows = await conn.execute(
            select(s.id, s.closed_at_ms, s.expires_ms).where(s.user_id == user_id, s.id.in_(chunk))
        )
        for row in rows:
            status[row.id] = rule.status_of(
                now_ms=now_ms, closed_at_ms=row.closed_at_ms, expires_ms=row.expires_ms
            )
    for r in results:
        r.session_id = current.get(r.message_id, r.session_id)
        r.session_status = status.get(r.session_id, rule.CLOSED)
