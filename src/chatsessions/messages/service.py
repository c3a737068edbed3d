"""Storing messages: validation, idempotency, and the one write path (``ingest``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions import ids, planner_stats
from chatsessions.contacts import service as contacts_service
from chatsessions.contacts import store as contacts_store
from chatsessions.contacts.schemas import ContactFields
from chatsessions.db import Database, sent_ahead
from chatsessions.errors import InvalidParameter, NotFound
from chatsessions.messages import store as messages_store
from chatsessions.messages.placement import ContactPlacement, Placed, figures_likely_wanted
from chatsessions.messages.schemas import MessageIn
from chatsessions.messages.store import ContactFields as ContactFieldsShown
from chatsessions.messages.store import Loaded, MessageWrite, StoredExternal, Writes
from chatsessions.sessions import rule
from chatsessions.sessions import store as sessions_store
from chatsessions.sessions.rule import TimeoutHistory
from chatsessions.sessions.store import MessageRow
from chatsessions.timeutil import parse_iso_ms
from chatsessions.webhooks import outbox

T = TypeVar("T")
__all__ = [
    "ANSWER_WHILE_WRITING_FROM",
    "CONTACTS_AHEAD_FROM",
    "GENERIC_PLANS",
    "MAX_FUTURE_MS",
    "WRITE_AHEAD_FROM",
    "WRITE_AHEAD_STALE_FROM",
    "NewMessage",
    "StoredMessage",
    "ingest",
    "prepare_message",
    "recut_after_timeout_change",
    "run_ingest_transaction",
    "store_messages",
]

MAX_FUTURE_MS = 5 * 60_000
ANSWER_WHILE_WRITING_FROM = 64
"""Items from which a request builds its answers while its write runs (db.sent_ahead). The
task that overlaps them cost a single message 10-40 us of the client's CPU (0.69 against
0.68 ms a message in three alternated pairs, 0.70 against 0.66 in three run the other
way round), where its answer takes ~2 us to build."""

WRITE_AHEAD_FROM = 64
"""Items from which :func:`ingest` may write a request's new messages (and the contacts
it creates) in a statement of their own, sent once every message is placed, while the
figures are settled and the sessions' rows made: the rest follows in a second statement.
For fewer, the round trips the second statement adds cost more than the overlap gains."""
CONTACTS_AHEAD_FROM = 64
"""Contacts created by a request (PostgreSQL) from which their rows are written in a
statement of their own, sent once the request's read ahead is done, while its messages
are placed; the rest follows it. Shape e of bench/ingest_shapes.py (1,000 new contacts a
batch) placed its messages for ~18 ms while the database waited, then wrote contacts,
sessions and messages in one statement."""

WRITE_AHEAD_STALE_FROM = 32
"""Stored sessions whose figures a request makes stale (messages inserted among theirs:
the figures are recomputed from stored messages read) from which it writes its messages
ahead (:data:`WRITE_AHEAD_FROM`). Batches of random arrivals (shape a of
bench/ingest_shapes.py, ~630 such sessions a batch) gained 5-20 % a batch; appends and
new contacts, with little to settle, gained nothing and paid the second statement."""

GENERIC_PLANS = False
"""How :func:`store_messages` (the routes' way) runs :func:`ingest` on PostgreSQL.

False: planned for the values at each run (the connection's ``force_custom_plan``). A
generic plan is made once per connection from the statistics of that moment; made on
near-empty tables it probed the replayed externalIds through ``ix_messages_user_ts`` (every
message of the tenant per probe: 2.4 s per batch at 10,000 stored messages, 5.7 s at
30,000; ``bench/ingest_plans.py``, docs/performance.md). With statistics, a contact's
sessions before a time were read through a bitmap and sorted, not backwards through the
index (0.65 ms per contact of 1,000 sessions): ingest runs without bitmap scans."""
_DEFAULT_ROLE = {"inbound": "user", "outbound": "assistant"}
_MAX_TS_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


class NewMessage(NamedTuple):
    """A validated message, ready to store (its contact resolved inside the transaction).

    Immutable; a NamedTuple rather than a frozen dataclass because one is made per
    message (0.4 us instead of 1.9).
    """

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
    # The inline contact's identifiers, normalised when the item was checked (None: not
    # yet): the contact is then found or created without normalising them again.
    identifiers: dict[str, str | None] | None = None


@dataclass(slots=True)
class StoredMessage:
    """What storing one message did (fields in this order: made positionally)."""

    message_id: str
    session_id: str
    duplicate: bool
    session_opened: bool = False
    session_status: str = rule.OPENED
    contact_id: str = ""
    merged_session_ids: list[str] = field(default_factory=list)


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
    idents = None
    if item.contactId is None and item.contact is not None:
        # Validate the inline contact's identifiers now, so a batch fails before writing.
        idents = contacts_service.normalised_identifiers(item.contact, prefix + "contact.")
        if all(v is None for v in idents.values()):
            raise InvalidParameter(prefix + "contact", "needs phoneNumber, email or externalId")
    return NewMessage(  # positional: one per message, 0.4 us against 1.0 by keyword
        prefix,
        item.contactId,
        item.contact if item.contactId is None else None,
        item.direction,
        item.role or _DEFAULT_ROLE[item.direction],
        item.type or "text",
        item.content,
        item.mediaUrl,
        parse_timestamp(item.timestamp, now_ms=now_ms, name=prefix + "timestamp"),
        item.externalId or item.messageSid,
        idents,
    )


async def ingest(
    conn: AsyncConnection, *, user_id: str, items: list[NewMessage], now_ms: int
) -> list[StoredMessage]:
    """Store messages in one transaction; the result is that of storing them one by one
    in request order (replays by externalId return the original with its current session).

    The one write path of messages: a single message is a batch of one. Contacts are
    locked first (in id order), so concurrent writers for one contact apply the session
    rule one after another and never split or duplicate a session. The rule is applied in
    memory (``messages.placement``) to each contact's sessions around the request's
    timestamps (read in one statement), and the net result, events included, is written in
    one (``messages.store``).

    >>> # inside db.run_write: one message, then its replay
    >>> # [first] = await ingest(conn, user_id=u, items=[prepare_message(m, now_ms=t)], now_ms=t)
    """
    contact_ids, new_contacts, loaded = await _resolve_contacts(conn, user_id, items, now_ms)
    TENANTS_WITH_ENDPOINTS.note(user_id, bool(loaded.subscriptions))
    created = {row["id"] for row in new_contacts}
    times = _times_by_contact(items, contact_ids)
    ranges = {cid: (min(ts), max(ts)) for cid, ts in times.items()}
    owing_since_ms = outbox.close_subscribers_since(loaded.subscriptions)
    # A single message to a known contact stays in the probe phase (db.PG_PROBES) up to
    # its write, which is then planned once per connection (messages_store.write); the
    # read of sessions owing a close, planned for its values, ends the phase itself.
    probes = len(items) == 1 and items[0].contact_id is not None and owing_since_ms is None
    state = await messages_store.read_state(
        conn,
        user_id,
        # A contact created by this request has no sessions yet: nothing to read.
        ranges={cid: r for cid, r in ranges.items() if cid not in created},
        external_ids=[it.external_id for it in items if it.external_id is not None],
        owing_since_ms=owing_since_ms,
        now_ms=now_ms,
        end_probes=not probes,
    )
    for cid in created:
        state.sessions[cid] = []
    # A batch's new messages (and the contacts it creates, which they refer to) are
    # written while the figures are settled and the sessions' rows made: they are final
    # once every message is placed (the sessions follow in a second statement).
    ahead: Writes | None = None
    write_ahead = None
    # Many contacts created: their rows go first, in a statement of their own sent as the
    # messages are placed (CONTACTS_AHEAD_FROM).
    contacts_ahead = None
    if len(new_contacts) >= CONTACTS_AHEAD_FROM and conn.dialect.name == "postgresql":
        contacts_ahead = Writes(contacts=new_contacts)
    if len(items) >= WRITE_AHEAD_FROM and conn.dialect.name == "postgresql":
        ahead = Writes(contacts=new_contacts if contacts_ahead is None else [])

        def write_ahead(placements: Iterable[ContactPlacement]) -> Callable[[], Awaitable[None]]:
            assert ahead is not None
            for placement in placements:
                placement.collect_messages(ahead)
            return messages_store.prepare_write(conn, user_id, ahead, now_ms=now_ms)

    async with contextlib.AsyncExitStack() as pending:
        placed = await _place(
            conn,
            user_id,
            items,
            contact_ids,
            loaded,
            state,
            now_ms,
            times,
            write_ahead,
            pending,
            None
            if contacts_ahead is None
            else messages_store.prepare_write(conn, user_id, contacts_ahead, now_ms=now_ms),
        )
        # Every contact locked here may see its sessions change: the write moves the
        # write_seq of those whose single messages may be written without the lock (what
        # such a write checks, write_unlocked), and a single message's write enables it
        # for its contact. Those found inline (no write_seq read) are left to the
        # statement. (Pointless for a tenant with endpoints, which always writes under the
        # lock.)
        seqs = loaded.write_seqs
        enables = len(items) == 1 and items[0].contact_id is not None and not loaded.subscriptions
        # What went ahead, if it went (not for few stale figures: WRITE_AHEAD_STALE_FROM).
        written = ahead if placed.messages_ahead else None
        writes = Writes(
            contacts=new_contacts if written is None and contacts_ahead is None else [],
            bumped=sorted(
                c for c in state.sessions if c not in created and (enables or seqs.get(c, 1) > 0)
            ),
            enable=enables,
        )
        placed.collect(writes, messages=written is None)
        # The answers are made while the write runs (they do not depend on its result),
        # but for a few messages: a task costs more than it overlaps.
        writing = messages_store.write(
            conn, user_id, writes, now_ms=now_ms, probes=probes, after=placed.written_ahead
        )
        if len(items) < ANSWER_WHILE_WRITING_FROM:
            await writing
            results = placed.results()
            _count_writes(user_id, writes, written, contacts_ahead)
        else:
            async with sent_ahead(writing):
                results = placed.results()
                _count_writes(user_id, writes, written, contacts_ahead)
                # The request's working objects (~10^5 for 1,000 messages: placements, the
                # state read, the rows made) are freed while the write runs: at the return
                # they took ~6 ms in series before the commit (bench/ingest-findings.md).
                del placed, state, times, ranges, writes, written, ahead, write_ahead
                del contacts_ahead
    return results


def _count_writes(user_id: str, *written: Writes | None) -> None:
    """Report the rows a request's writes insert (planner_stats)."""
    done = [w for w in written if w is not None]
    planner_stats.count_writes(
        user_id,
        contacts=sum(len(w.contacts) for w in done),
        sessions=sum(len(w.inserted) for w in done),
        messages=sum(len(w.messages) for w in done),
    )


@dataclass
class _Placement:
    """Where :func:`_place` put a request's messages: what to write and what to answer."""

    items: list[NewMessage]
    now_ms: int
    contact_ids: list[str]
    contacts: dict[str, ContactPlacement]
    fresh: list[int]
    placed: dict[int, tuple[str, Placed]]
    replayed: dict[int, StoredExternal]
    repeat_of: dict[int, int]
    # The last statement sent ahead on the connection (the contacts', the messages'), if
    # any; whether the messages went ahead (_place's write_ahead).
    written_ahead: asyncio.Task[None] | None = None
    messages_ahead: bool = False

    def collect(self, writes: Writes, *, messages: bool = True) -> None:
        """Add the net result of every contact's placement to ``writes`` (``messages``:
        the new messages too, unless they were written ahead)."""
        for placement in self.contacts.values():
            placement.collect(writes, messages=messages)

    def results(self) -> list[StoredMessage]:
        """What the request answers, in request order."""
        return _results(
            self.items,
            self.now_ms,
            self.fresh,
            self.placed,
            self.contact_ids,
            self.contacts,
            self.replayed,
            self.repeat_of,
        )


async def _place(
    conn: AsyncConnection,
    user_id: str,
    items: list[NewMessage],
    contact_ids: list[str],
    loaded: Loaded,
    state: messages_store.State,
    now_ms: int,
    times: dict[str, list[int]] | None = None,
    write_ahead: Callable[[Iterable[ContactPlacement]], Callable[[], Awaitable[None]]]
    | None = None,
    pending: contextlib.AsyncExitStack | None = None,
    write_contacts: Callable[[], Awaitable[None]] | None = None,
) -> _Placement:
    """Apply the session rule to the request's messages, in request order, against the
    state read (``state.sessions``: every contact of the request), emitting events for
    ``loaded.subscriptions`` and settling the figures (reading the stored messages they
    need on ``conn``): the one place of both paths of :func:`ingest` and
    :func:`store_messages`. ``times``: :func:`_times_by_contact`, if the caller has it."""
    history = _history(loaded)
    subscriptions = loaded.subscriptions
    if times is None:
        times = _times_by_contact(items, contact_ids)

    placed: dict[int, tuple[str, Placed]] = {}  # item -> (message id, where it went)
    # The stored messages the figures will likely need are read while the messages are
    # placed (the database's work overlapping the client's); what the guess missed is
    # read after (_FiguresReads).
    guess: dict[str, tuple[int, int]] = {}
    for cid, sessions in state.sessions.items():
        if sessions and cid in times:
            guess.update(figures_likely_wanted(sessions, times[cid], history))
    # The messages go ahead (write_ahead) once every read of the request is done (a read
    # after them would find them): the moment the read ahead ends, if it covers what the
    # figures need, their parameters made while it ran.
    writes_ahead = write_ahead is not None and len(guess) >= WRITE_AHEAD_STALE_FROM
    send: Callable[[], Awaitable[None]] | None = None
    writing: asyncio.Task[None] | None = None

    async def send_ahead(send: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        # Awaited by whoever writes next (``pending``'s end waits for it).
        assert pending is not None
        task = await pending.enter_async_context(sent_ahead(send()))
        assert task is not None
        return task

    read_ahead: dict[str, list[tuple[int, str, str]]] | None = None
    keys_read: Callable[[], dict[str, list[tuple[int, str, str]]]] = dict
    async with sent_ahead(
        sessions_store.read_message_keys_around(conn, user_id, guess) if guess else None
    ) as reading:
        # The contacts created go next, once the read is done (a connection runs one
        # statement at a time): what reads after them waits for them.
        contacts_sent = None
        if write_contacts is not None:
            contacts_sent = await send_ahead(_after(reading, write_contacts))
        # Replays (of a stored message, or of an earlier item of this request): found once
        # the read is sent, as is all that follows.
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

        new_id = ids.IdSupply()  # sessions' and events' ids, drawn in blocks
        contacts = {
            cid: ContactPlacement(cid, sessions, history=history, now_ms=now_ms, new_id=new_id)
            for cid, sessions in state.sessions.items()
        }
        for i, message_id in zip(fresh, ids.new_ids(len(fresh)), strict=True):
            msg, cid = items[i], contact_ids[i]
            placement = contacts[cid]
            where = placement.place(message_id, msg.ts_ms, msg.direction)
            if where is None:  # a re-cut: read the stored messages it needs, then place
                if reading is not None and read_ahead is None:
                    read_ahead = (await reading)()  # the connection's statement first
                if contacts_sent is not None:
                    await contacts_sent
                wanted = await sessions_store.message_keys(conn, user_id, placement.wanted)
                placement.load(wanted)
                where = placement.place(message_id, msg.ts_ms, msg.direction)
                assert where is not None
            row = MessageWrite(
                message_id,
                cid,
                where.session_id,
                msg.direction,
                msg.role,
                msg.type,
                msg.content,
                msg.media_url,
                msg.ts_ms,
                msg.external_id,
            )
            placement.keep(row)
            placed[i] = (message_id, where)
            if subscriptions:
                placement.emit(
                    where.events(row.id),
                    subscriptions=subscriptions,
                    contact=loaded.contacts.get(cid),
                    message=MessageRow(*row),
                )
        figures = _FiguresReads(contacts.values(), guess)
        if writes_ahead and not figures.missing:
            assert write_ahead is not None
            send = write_ahead(contacts.values())
        if reading is not None and read_ahead is None:
            keys_read = await reading
            if send is not None:
                writing = await send_ahead(_after(contacts_sent, send))
    if read_ahead is None:
        read_ahead = keys_read()
    if figures.missing and contacts_sent is not None:
        await contacts_sent
    keys = await figures.read(conn, user_id, read_ahead)
    if writes_ahead and writing is None:  # after the reads the guess missed
        assert write_ahead is not None
        writing = await send_ahead(_after(contacts_sent, send or write_ahead(contacts.values())))
    figures.settle(keys)
    return _Placement(
        items,
        now_ms,
        contact_ids,
        contacts,
        fresh,
        placed,
        replayed,
        repeat_of,
        writing or contacts_sent,
        messages_ahead=writing is not None,
    )


def _after(
    previous: asyncio.Task[Any] | None, send: Callable[[], Awaitable[None]]
) -> Callable[[], Awaitable[None]]:
    """``send``, once ``previous`` (the connection's statement before it) is done."""
    if previous is None:
        return send

    async def sent() -> None:
        await previous
        await send()

    return sent


def _times_by_contact(items: list[NewMessage], contact_ids: list[str]) -> dict[str, list[int]]:
    """Each contact's timestamps, in request order."""
    times: dict[str, list[int]] = {}
    for msg, cid in zip(items, contact_ids, strict=True):
        got = times.get(cid)
        if got is None:
            times[cid] = [msg.ts_ms]
        else:
            got.append(msg.ts_ms)
    return times


def _results(
    items: list[NewMessage],
    now_ms: int,
    fresh: list[int],
    placed: dict[int, tuple[str, Placed]],
    contact_ids: list[str],
    contacts: dict[str, ContactPlacement],
    replayed: dict[int, StoredExternal],
    repeat_of: dict[int, int],
) -> list[StoredMessage]:
    """What :func:`ingest` answers for each item, in request order."""
    results: dict[int, StoredMessage] = {}
    statuses: dict[str, str] = {}  # by session: a batch's messages share a few
    for i in fresh:
        (message_id, where), placement = placed[i], contacts[contact_ids[i]]
        session_id = placement.session_of(message_id, where.session_id)
        status = statuses.get(session_id)
        if status is None:
            status = statuses[session_id] = placement.status(session_id) or rule.CLOSED
        results[i] = StoredMessage(  # positional: one per message (0.3 us, by keyword 0.7)
            message_id,
            session_id,
            False,
            where.opened,
            status,
            contact_ids[i],
            where.absorbed,
        )
    for i, found in replayed.items():
        replay = StoredMessage(found.message_id, found.session_id, True)
        placement_of = contacts.get(found.contact_id)
        current = (
            placement_of.session_of(found.message_id, found.session_id)
            if placement_of is not None
            else found.session_id
        )
        status = placement_of.status(current) if placement_of is not None else None
        if status is not None:
            replay.session_id, replay.session_status = current, status
        else:  # not touched by this request: as stored
            replay.session_status = rule.status_of(
                now_ms=now_ms, closed_at_ms=found.closed_at_ms, expires_ms=found.expires_ms
            )
        results[i] = replay
    for i, first in repeat_of.items():
        original = results[first]
        results[i] = StoredMessage(
            original.message_id, original.session_id, True, session_status=original.session_status
        )
    return [results[i] for i in range(len(items))]


async def store_messages(
    db: Database,
    *,
    user_id: str,
    items: list[NewMessage],
    now_ms: int,
    conn: AsyncConnection | None = None,
) -> list[StoredMessage]:
    """:func:`ingest` in its own write transaction, retried on a race, with the plan
    settings ingest's statements are written for: what the HTTP routes call. ``conn``: as
    for ``Database.write`` (the connection the request authenticated on).

    On PostgreSQL a single message to a known contact is first tried without the
    contact's lock (:func:`_store_unlocked`: two statements, no transaction), on ``conn``
    if it is the probe pool's (``Database.read(probes=True)``) or on one of its own; what
    that leaves to the lock is stored here under it, on the same connection.

    >>> # results = await store_messages(db, user_id=u, items=[prepare_message(m, now_ms=t)], now_ms=t)
    """

    async def work(tx: AsyncConnection) -> list[StoredMessage]:
        return await ingest(tx, user_id=user_id, items=items, now_ms=now_ms)

    if not _may_write_unlocked(db, user_id, items, conn):
        return await run_ingest_transaction(db, work, conn=conn)
    async with (
        contextlib.nullcontext(conn) if conn is not None else db.read(probes=True)
    ) as probe_conn:
        assert probe_conn is not None
        done = await _store_unlocked(db, probe_conn, user_id=user_id, item=items[0], now_ms=now_ms)
        if done is not None:
            return [done]
        UNLOCKED_FALLBACKS.inc()
        return await run_ingest_transaction(db, work, conn=probe_conn)


UNLOCKED_WRITES = Counter(
    "chatsessions_ingest_unlocked_total",
    "Single messages stored without the contact's lock (read, then a guarded write)",
)
UNLOCKED_FALLBACKS = Counter(
    "chatsessions_ingest_unlocked_fallbacks_total",
    "Single messages that tried the unlocked path and went to the locked one instead "
    "(a contact's first, a concurrent writer, a tenant with endpoints, a merge or re-cut, "
    "an unknown contact)",
)


WRITE_SINGLES_UNLOCKED = True
"""Whether :func:`store_messages` tries a single message without the contact's lock
(PostgreSQL). Off only in tests that compare the paths."""


class TenantsWithEndpoints:
    """The tenants this process last saw with enabled webhook endpoints (in ingest's load,
    or in the unlocked read): their single messages go straight to the locked path, which
    writes their events, instead of after a read that would only find the endpoints. A
    hint, never relied on: the unlocked read checks for endpoints itself, and every
    ingest corrects it (a tenant whose endpoints are gone is forgotten at its next
    write). At most ``limit`` tenants, the oldest noted forgotten first."""

    def __init__(self, limit: int = 100_000) -> None:
        self._tenants: dict[str, None] = {}
        self._limit = limit

    def note(self, user_id: str, has_endpoints: bool) -> None:
        """What a read of the tenant's endpoints found."""
        if not has_endpoints:
            self._tenants.pop(user_id, None)
        elif user_id not in self._tenants:
            if len(self._tenants) >= self._limit:
                del self._tenants[next(iter(self._tenants))]
            self._tenants[user_id] = None

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._tenants


TENANTS_WITH_ENDPOINTS = TenantsWithEndpoints()


def _may_write_unlocked(
    db: Database, user_id: str, items: list[NewMessage], conn: AsyncConnection | None
) -> bool:
    """A single message to a known contact on PostgreSQL, on a probe pool connection (or
    none: then one is taken; never a second connection beside the caller's), of a tenant
    not known to have webhook endpoints."""
    return (
        WRITE_SINGLES_UNLOCKED
        and db.settings.unlocked_single_writes
        and user_id not in TENANTS_WITH_ENDPOINTS
        and len(items) == 1
        and items[0].contact_id is not None
        and ids.is_id(items[0].contact_id)
        and db.probe_engine is not None
        and (conn is None or db.is_probe_connection(conn))
    )


async def _store_unlocked(
    db: Database, conn: AsyncConnection, *, user_id: str, item: NewMessage, now_ms: int
) -> StoredMessage | None:
    """Store one message without the contact's lock, in two statements outside a
    transaction (PostgreSQL): a read of what the rule needs, with the contact's
    write_seq (``messages_store.read_unlocked``), then one write of the session and the
    message that commits only if write_seq is unchanged (``write_unlocked``). A replay
    writes nothing: it is answered from the read. None when the locked path must store it
    (nothing was written): the contact is not found (its 404 comes from there), the
    tenant has webhook endpoints (events, close announcements), the rule changes more
    than one session (a merge, a re-cut, an absorbed session), or the guard failed.

    The rule, the figures and the answers are :func:`_place`'s, as under the lock: the
    two paths differ only in how they read and write."""
    assert item.contact_id is not None
    read = await messages_store.read_unlocked(
        conn, user_id, contact_id=item.contact_id, ts_ms=item.ts_ms, external_id=item.external_id
    )
    if read is not None and read.has_endpoints:
        TENANTS_WITH_ENDPOINTS.note(user_id, True)
    if read is None or read.has_endpoints or read.write_seq == 0:
        return None  # (0: not enabled yet for the contact; the locked write enables it)
    placed = await _place(conn, user_id, [item], [item.contact_id], read.loaded, read.state, now_ms)
    writes = Writes()
    placed.collect(writes)
    if not placed.fresh:  # a replay: nothing to write
        UNLOCKED_WRITES.inc()
        return placed.results()[0]
    if messages_store.unlocked_session_part(writes) is None:
        return None
    tally = planner_stats.WriteTally()
    with planner_stats.tallying(tally):
        written = await messages_store.write_unlocked(
            conn, user_id, writes, contact_id=item.contact_id, seen=read.write_seq, now_ms=now_ms
        )
        if not written:
            return None
        _count_writes(user_id, writes)
    db.statistics.wrote(tally)
    UNLOCKED_WRITES.inc()
    return placed.results()[0]


async def run_ingest_transaction(
    db: Database,
    work: Callable[[AsyncConnection], Awaitable[T]],
    *,
    conn: AsyncConnection | None = None,
) -> T:
    """Run ``work``, which calls :func:`ingest` together with whatever else belongs in the
    same transaction (a channel's counters, an import's contact), in one write transaction
    (retried on a race) with the plan settings ingest's statements are written for. Every
    caller of :func:`ingest` goes through here or :func:`store_messages`."""
    tally = planner_stats.WriteTally()

    async def counted(tx: AsyncConnection) -> T:
        with planner_stats.tallying(tally):
            return await work(tx)

    result = await db.run_write(
        counted, generic_plans=GENERIC_PLANS, index_scans=True, probe_plans=True, conn=conn
    )
    db.statistics.wrote(tally)  # committed: what it wrote may outgrow the statistics
    return result


def _history(loaded: Loaded) -> TimeoutHistory:
    if not loaded.timeout_changes:
        return TimeoutHistory.constant(rule.DEFAULT_TIMEOUT_MS)
    return TimeoutHistory(tuple(loaded.timeout_changes))


async def recut_after_timeout_change(
    conn: AsyncConnection, *, user_id: str, ranges: dict[str, tuple[int, int]], now_ms: int
) -> None:
    """Re-cut, under the user's timeout history as it now is, each contact's sessions
    starting in its ``(lo, hi)`` range, with the same placement and write as ingest (the
    contacts are locked here, in id order)."""
    loaded = await messages_store.lock_and_load(conn, user_id, sorted(ranges))
    history = _history(loaded)
    subscriptions = loaded.subscriptions
    state = await messages_store.read_state(
        conn,
        user_id,
        ranges=ranges,
        external_ids=[],
        owing_since_ms=outbox.close_subscribers_since(subscriptions),
        now_ms=now_ms,
    )
    placements = []
    for cid, sessions in sorted(state.sessions.items()):
        placement = ContactPlacement(cid, sessions, history=history, now_ms=now_ms)
        placements.append(placement)
        lo, hi = ranges[cid]
        done = placement.recut_range(lo, hi)
        if done is None:
            placement.load(await sessions_store.message_keys(conn, user_id, placement.wanted))
            done = placement.recut_range(lo, hi)
            assert done is not None
        if subscriptions:
            placement.emit(
                done.events(),
                subscriptions=subscriptions,
                contact=loaded.contacts.get(cid),
                message=None,
            )
    await _settle_figures(conn, user_id, placements)
    # The re-cut contacts' write_seq moves (those enabled: see ingest).
    writes = Writes(bumped=sorted(ranges))
    for placement in placements:
        placement.collect(writes)
    await messages_store.write(conn, user_id, writes, now_ms=now_ms)


async def _settle_figures(
    conn: AsyncConnection, user_id: str, placements: Iterable[ContactPlacement]
) -> None:
    """Recompute the figures a request made stale, reading the stored messages they need
    (whole sessions, or those around inserted messages) in one statement for every
    contact."""
    figures = _FiguresReads(placements, {})
    figures.settle(await figures.read(conn, user_id, {}))


class _FiguresReads:
    """The stored messages the figures a request made stale need, by session: each
    placement's ``figures_wanted``, and (``missing``) the spans of those not covered by
    ``read_ahead``'s, the spans read ahead (``sessions.store.message_keys_around``; a
    wider read gives the same figures). Made once every message is placed."""

    def __init__(
        self, placements: Iterable[ContactPlacement], read_ahead: Mapping[str, tuple[int, int]]
    ) -> None:
        self.wanted = {p: p.figures_wanted() for p in placements}
        spans: dict[str, tuple[int, int]] = {}
        every = sessions_store.EVERY
        for whole, around in self.wanted.values():
            for sid in whole:
                spans[sid] = every
            if around:
                spans.update(around)
        self.covered: list[str] = []
        self.missing: dict[str, tuple[int, int]] = {}
        for sid, (lo, hi) in spans.items():
            got = read_ahead.get(sid)
            # EVERY is the widest span: it covers any, and only it covers EVERY.
            if got is not None and got[0] <= lo and hi <= got[1]:
                self.covered.append(sid)
            else:
                self.missing[sid] = (lo, hi)

    async def read(
        self,
        conn: AsyncConnection,
        user_id: str,
        read_ahead: Mapping[str, list[tuple[int, str, str]]],
    ) -> dict[str, list[tuple[int, str, str]]]:
        """The keys :meth:`settle` needs: those read ahead (``read_ahead``, by session)
        where they cover them, the ``missing`` read here."""
        keys = {sid: read_ahead[sid] for sid in self.covered}
        if self.missing:
            keys.update(await sessions_store.message_keys_around(conn, user_id, self.missing))
        return keys

    def settle(self, keys: Mapping[str, list[tuple[int, str, str]]]) -> None:
        """Settle every placement's figures from the stored messages' ``keys``
        (:meth:`read`), without the database."""
        for placement, (whole, around) in self.wanted.items():
            if whole:
                placement.load({sid: keys[sid] for sid in whole})
            if around:
                placement.load_around({sid: keys[sid] for sid in around})
            placement.settle_figures()


async def _resolve_contacts(
    conn: AsyncConnection, user_id: str, items: list[NewMessage], now_ms: int
) -> tuple[list[str], list[dict[str, Any]], Loaded]:
    """Each item's contact id (locked), the rows of the contacts this request creates
    (inserted by the write), and what ``lock_and_load`` read."""
    given = {it.contact_id for it in items if it.contact_id is not None}
    loaded = await messages_store.lock_and_load(
        conn,
        user_id,
        [cid for cid in given if ids.is_id(cid)],
        # Inline contacts are found or created next: not probes (db.PG_PROBES).
        probes_follow=all(it.contact_id is not None for it in items),
    )
    for it in items:
        if it.contact_id is not None and it.contact_id not in loaded.locked:
            raise NotFound(
                f"{it.prefix}contactId: contact not found", parameter=f"{it.prefix}contactId"
            )
    asked = [it for it in items if it.contact_id is None and it.contact is not None]
    found_or_planned, new_rows = await contacts_service.find_or_plan_contacts(
        conn,
        user_id=user_id,
        wanted=[(it.contact, it.prefix + "contact.") for it in asked if it.contact is not None],
        now_ms=now_ms,
        identifiers=[it.identifiers for it in asked],
    )
    found = iter(found_or_planned)
    resolved: list[str] = []
    created: set[str] = set()
    for it in items:
        if it.contact_id is not None:
            resolved.append(it.contact_id)
            continue
        contact, was_created = next(found)
        if was_created:
            created.add(contact.id)
        resolved.append(contact.id)
    # Found-by-identifier contacts are locked too; created ones are ours until commit.
    inline = set(resolved) - loaded.locked
    # The write moves their write_seq (with the other contacts'): no bump here.
    await contacts_store.lock_contacts(conn, user_id, inline - created, bump=False)
    if inline and loaded.subscriptions:
        found_inline = sorted(inline - created)
        loaded.contacts.update(await messages_store.contact_fields(conn, user_id, found_inline))
        for row in new_rows:  # not inserted yet: their fields are the rows'
            loaded.contacts[row["id"]] = ContactFieldsShown(
                row["first_name"], row["last_name"], row["phone"], row["email"], row["channel"]
            )
    return resolved, new_rows, loaded
