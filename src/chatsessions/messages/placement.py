"""One contact's sessions held in memory while a request's messages are placed: the one
place where ingest applies the session rule.

:class:`ContactPlacement` applies :func:`rule.place_message` to each message in request
order (a single message is a batch of one), re-cuts with :func:`rule.resegment` where the
timeout changes inside the affected range (a message may then split a session), and
records the events each message causes with the event bodies as they are at that moment
(:mod:`chatsessions.webhooks.outbox`). It keeps each session's analytics figures
(:mod:`chatsessions.sessions.figures`): extended by a message appended at the end, else
recomputed by :meth:`ContactPlacement.settle_figures` from the messages of the session
(those stored read first, :meth:`ContactPlacement.figures_wanted`): after a merge or a
re-cut from every message, after inserts from the stored figures and the stored messages
around the inserted ones. What is left at the end is the net change, written in a few
statements by ``messages.store.write``.

It is given the contact's sessions around the request's timestamps (the last starting at
or before the smallest, every one starting inside the range, the first after the
largest), so the neighbours of any message of the request are among them, and the
sessions owing a close announcement. A re-cut needs the stored messages of the sessions
it touches: :meth:`ContactPlacement.place` then returns ``None`` with
:attr:`ContactPlacement.wanted` naming the sessions to read; the caller reads them
(``sessions.store.message_keys``), hands them to :meth:`ContactPlacement.load` and places
the message again.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chatsessions import ids
from chatsessions.messages.store import ContactFields, MessageWrite, TrackedSession, Writes
from chatsessions.sessions import presenter, rule
from chatsessions.sessions.figures import EMPTY as EMPTY_FIGURES
from chatsessions.sessions.figures import (
    extend_figures,
    figures_after_inserts,
    figures_of_keys,
)
from chatsessions.sessions.rule import PlacementKind, TimeoutHistory
from chatsessions.sessions.store import EVERY, ListedSession, MessageRow
from chatsessions.webhooks import outbox
from chatsessions.webhooks.outbox import OutboxWrite, SessionEvent, Subscription

__all__ = ["ContactPlacement", "Placed", "Recut", "figures_likely_wanted"]


@dataclass(slots=True)
class Placed:
    """Where one message went: its session (at that moment), whether that session opened
    with it, the sessions it absorbed, and those a re-cut split off (new sessions).

    A value, never changed once made; not frozen, because one is made per message placed
    and a frozen dataclass's constructor costs three times as much (0.91 vs 0.30 us)."""

    session_id: str
    opened: bool
    absorbed: list[str]
    split_off: list[str] = field(default_factory=list)

    def events(self, message_id: str) -> list[SessionEvent]:
        """The events this placement causes, in the order receivers get them."""
        out = [SessionEvent(outbox.OPENED, sid) for sid in self.split_off]
        if self.opened:
            out.append(SessionEvent(outbox.OPENED, self.session_id))
        out += [
            SessionEvent(outbox.MERGED, self.session_id, merged_session_id=gone)
            for gone in self.absorbed
        ]
        out.append(SessionEvent(outbox.RECEIVED, self.session_id, message_id=message_id))
        return out


@dataclass(frozen=True)
class Recut:
    """What a re-cut did: the sessions it created, those it absorbed (each into the one
    now holding its last message), and, given a new message, where it went."""

    created: list[str]
    merged_into: dict[str, str]
    home: str | None
    opened: bool

    def events(self) -> list[SessionEvent]:
        """The events of a re-cut without a new message (a timeout change)."""
        out = [SessionEvent(outbox.OPENED, sid) for sid in self.created]
        out += [
            SessionEvent(outbox.MERGED, into, merged_session_id=gone)
            for gone, into in self.merged_into.items()
        ]
        return out


AROUND_FROM = 32
"""Messages a session holds from which :meth:`ContactPlacement.figures_wanted` asks for the
stored messages around inserted ones rather than all of them: the two probes that find
the bounds cost about as much as reading a dozen messages (shape a of
bench/ingest_shapes.py, ~530 sessions of ~10 messages a batch, alternated runs: around,
2,510 rows in 15-17 ms; whole, 5,690 rows in 12-14 ms)."""


def figures_likely_wanted(
    sessions: list[TrackedSession], times: list[int], history: TimeoutHistory
) -> dict[str, tuple[int, int]]:
    """A guess, before placing, of the stored messages :meth:`ContactPlacement.figures_wanted`
    will ask for once messages at ``times`` (in request order) are placed among a
    contact's stored ``sessions``: what ``messages.service`` reads while it places them.

    A message at or before the last message of the session starting before it, or
    before the contact's first session and within the timeout of its start, makes that
    session's figures stale (as the request's own messages extend it); the span asked
    for is that of the request's messages in it, ``sessions.store.EVERY`` (read whole)
    for a session of :data:`AROUND_FROM` messages or fewer. Only a guess, cheap (a
    bisection a message): a merge, or a message joining a later session at its front, is
    missed, and its read comes after the placement, as without a guess; a wrong guess
    reads for nothing."""
    if not sessions:
        return {}
    if len(sessions) == 1:  # most contacts of a batch: the same, without the lists
        return _likely_wanted_of_one(sessions[0], times, history)
    return _likely_wanted(sessions, times, history)


def _likely_wanted(
    sessions: list[TrackedSession], times: list[int], history: TimeoutHistory
) -> dict[str, tuple[int, int]]:
    """:func:`figures_likely_wanted` for any number of sessions."""
    ordered = sorted(sessions, key=lambda x: x.start_ms)
    starts = [x.start_ms for x in ordered]
    lasts = [x.last_ms for x in ordered]
    spans: dict[int, tuple[int, int]] = {}
    stale: set[int] = set()
    for ts_ms in times:
        i = bisect.bisect_right(starts, ts_ms) - 1
        if i < 0:  # before every session: joins the first at its front, if near
            if starts[0] - ts_ms >= history.at(ts_ms):
                continue
            i = 0
            starts[0] = ts_ms
            stale.add(0)
        elif ts_ms <= lasts[i]:
            stale.add(i)
        elif ts_ms - lasts[i] < history.at(lasts[i]):
            lasts[i] = ts_ms
        else:  # too far after it: a session of its own
            continue
        lo, hi = spans.get(i, (ts_ms, ts_ms))
        spans[i] = (ts_ms if ts_ms < lo else lo, ts_ms if ts_ms > hi else hi)
    return {
        ordered[i].id: spans[i] if ordered[i].message_count > AROUND_FROM else EVERY for i in stale
    }


def _likely_wanted_of_one(
    session: TrackedSession, times: list[int], history: TimeoutHistory
) -> dict[str, tuple[int, int]]:
    """:func:`figures_likely_wanted` for a contact's only session: :func:`_likely_wanted`'s
    steps without its lists (0.65 against 2.9 us; tests/messages/test_placement.py holds
    the two equal)."""
    start, last = session.start_ms, session.last_ms
    stale = False
    lo = hi = 0
    seen = False
    for ts_ms in times:
        if ts_ms < start:  # before it: joins it at its front, if near
            if start - ts_ms >= history.at(ts_ms):
                continue
            start = ts_ms
            stale = True
        elif ts_ms <= last:
            stale = True
        elif ts_ms - last < history.at(last):
            last = ts_ms
        else:  # too far after it: a session of its own
            continue
        if not seen:
            lo = hi = ts_ms
            seen = True
        elif ts_ms < lo:
            lo = ts_ms
        elif ts_ms > hi:
            hi = ts_ms
    if not stale:
        return {}
    return {session.id: (lo, hi) if session.message_count > AROUND_FROM else EVERY}


# The kinds as module constants: an Enum member read off its class costs ~0.07 us, and
# ContactPlacement.place reads up to three for every message.
_RESEGMENT, _NEW, _MERGE = PlacementKind.RESEGMENT, PlacementKind.NEW, PlacementKind.MERGE


def _itself(session_id: str) -> str:
    """:meth:`ContactPlacement.resolve` when nothing was merged."""
    return session_id


class ContactPlacement:
    """One contact's sessions, changed in memory message by message."""

    def __init__(
        self,
        contact_id: str,
        sessions: list[TrackedSession],
        *,
        history: TimeoutHistory,
        now_ms: int,
        new_id: Callable[[], str] = ids.new_id,
    ) -> None:
        self.contact_id = contact_id
        self.new_id = new_id  # ids of the sessions and events made here (ids.IdSupply)
        self.history = history
        self.now_ms = now_ms
        self.wanted: list[str] = []  # stored sessions whose messages a re-cut needs
        if len(sessions) == 1:  # most contacts of a batch: without the comprehensions
            only = sessions[0]
            self.live: dict[str, TrackedSession] = {only.id: only}
            self._ordered = [only]
            self._starts = [only.start_ms]
        else:
            self.live = {x.id: x for x in sessions}
            self._ordered = sorted(sessions, key=lambda x: x.start_ms)
            self._starts = [x.start_ms for x in self._ordered]
        self._stored = set(self.live)  # ids that exist in the database
        self._changed: set[str] = set()
        self._marked: set[str] = set()
        self._deleted: list[str] = []
        self._merged_into: dict[str, str] = {}
        self._messages: list[MessageWrite] = []
        self._outbox: list[OutboxWrite] = []
        # This request's messages: their session (when placed) and (ts, direction).
        self._session_of: dict[str, str] = {}
        self._key_of: dict[str, tuple[int, str]] = {}
        # The stored messages read (:meth:`load`), kept as read, by stored session: they
        # move with their session (``resolve``) until a re-cut moves some one by one
        # (``_recut_moved``: message id -> the session the re-cut put it in).
        # Tracking every read message one by one cost ~0.5 us each in ``load``, and
        # _members and collect then resolved each one, for the rare re-cut's sake.
        self._loaded: dict[str, list[tuple[int, str, str]]] = {}
        self._recut_moved: dict[str, str] = {}
        # Sessions a merge or a re-cut made (their figures: from every message), and the
        # stored messages read around this request's in the others (load_around).
        self._reshaped: set[str] = set()
        self._around: dict[str, list[tuple[int, str, str]]] = {}

    # -- the sessions ---------------------------------------------------------------------

    def _neighbours(self, ts_ms: int) -> tuple[TrackedSession | None, TrackedSession | None]:
        i = bisect.bisect_right(self._starts, ts_ms)
        before = self._ordered[i - 1] if i > 0 else None
        after = self._ordered[i] if i < len(self._ordered) else None
        return before, after

    def _unindex(self, session: TrackedSession) -> None:
        i = bisect.bisect_left(self._starts, session.start_ms)
        while self._ordered[i] is not session:
            i += 1
        del self._ordered[i]
        del self._starts[i]

    def _index(self, session: TrackedSession) -> None:
        i = bisect.bisect_right(self._starts, session.start_ms)
        self._ordered.insert(i, session)
        self._starts.insert(i, session.start_ms)

    def resolve(self, session_id: str) -> str:
        """The session now holding what was in ``session_id`` (after merges)."""
        while session_id in self._merged_into:
            session_id = self._merged_into[session_id]
        return session_id

    def session_of(self, message_id: str, stored_session_id: str) -> str:
        """The session now holding a message (stored in ``stored_session_id``, or placed
        by this request)."""
        session_id = self._session_of.get(message_id)
        if session_id is None:
            session_id = self._recut_moved.get(message_id, stored_session_id)
        return self.resolve(session_id)

    def status(self, session_id: str) -> str | None:
        """The status of a session held here now (None: not held here)."""
        session = self.live.get(self.resolve(session_id))
        if session is None:
            return None
        return rule.status_of(
            now_ms=self.now_ms, closed_at_ms=session.closed_at_ms, expires_ms=session.expires_ms
        )

    # -- placing one message --------------------------------------------------------------

    def place(self, message_id: str, ts_ms: int, direction: str) -> Placed | None:
        """Apply the rule for a message (None: a re-cut needs the stored messages of
        :attr:`wanted` first; nothing was changed). Its row is given next, made with the
        session it went to (:meth:`keep`)."""
        history, now_ms = self.history, self.now_ms
        # The neighbours (as _neighbours), with their place: ordered[i - 1], ordered[i].
        i = bisect.bisect_right(self._starts, ts_ms)
        before = self._ordered[i - 1] if i > 0 else None
        after = self._ordered[i] if i < len(self._ordered) else None
        placement = rule.place_message(ts_ms, before, after, history)
        inbound = 1 if direction == "inbound" else 0
        kind = placement.kind
        if kind is _RESEGMENT:
            olds = [x for x in (before, after) if x is not None]
            self.wanted = self._unloaded(olds)
            if self.wanted:
                return None
            self._key_of[message_id] = (ts_ms, direction)
            done = self._recut(olds, new_message=message_id)
            assert done.home is not None
            split_off = [sid for sid in done.created if sid != done.home]
            where = Placed(done.home, done.opened, list(done.merged_into), split_off)
        elif kind is _NEW:
            session = TrackedSession(  # positional (0.3 us, by keyword 0.8): see SessionRow
                self.new_id(),
                self.contact_id,
                ts_ms,  # start_ms
                ts_ms,  # last_ms
                history.expires(ts_ms),
                None,  # closed_at_ms
                ts_ms,  # activity_ms
                1,  # message_count
                inbound,
                1 - inbound,  # outbound_count
                now_ms,  # created_at_ms
                extend_figures(EMPTY_FIGURES, ts_ms, inbound=inbound == 1),
            )
            self.live[session.id] = session
            self._index(session)
            where = Placed(session.id, True, [])
        else:
            target = before if before is not None and placement.target == before.id else after
            assert target is not None
            was_open = self._is_open(target)
            absorbed: list[str] = []
            if kind is _MERGE:
                assert after is not None
                self._unindex(target)
                was_open = was_open or self._is_open(after)
                target.absorb(after)
                self._reshaped.add(target.id)
                self._absorb(after, into=target.id)
                absorbed.append(after.id)
                target.add_message(ts_ms, inbound=inbound, history=history)
                self._index(target)
            else:
                target.add_message(ts_ms, inbound=inbound, history=history)
                # Un-indexing and indexing again would put it back where it is: every
                # start before i is <= ts, every one after i is > ts. Joining ``after``
                # moves only its start, to ts.
                if target is after:
                    self._starts[i] = target.start_ms
            self._changed.add(target.id)
            where = Placed(target.id, not was_open and self._is_open(target), absorbed)
        self._session_of[message_id] = where.session_id
        self._key_of[message_id] = (ts_ms, direction)
        return where

    def keep(self, message: MessageWrite) -> None:
        """Keep a placed message's row to insert. Made with the session :meth:`place` gave
        (:meth:`collect` makes it again only if a later message moved it: 0.4 us a row
        otherwise spent on every one)."""
        self._messages.append(message)

    def _is_open(self, session: TrackedSession) -> bool:
        return rule.is_open(
            now_ms=self.now_ms, closed_at_ms=session.closed_at_ms, expires_ms=session.expires_ms
        )

    def _absorb(self, gone: TrackedSession, *, into: str, indexed: bool = True) -> None:
        if indexed:
            self._unindex(gone)
        del self.live[gone.id]
        self._merged_into[gone.id] = into
        self._changed.discard(gone.id)
        self._marked.discard(gone.id)
        if gone.id in self._stored:
            self._deleted.append(gone.id)

    # -- re-cuts --------------------------------------------------------------------------

    def _unloaded(self, olds: list[TrackedSession]) -> list[str]:
        """Stored sessions (live or absorbed) whose messages are now in ``olds`` and have
        not been read yet."""
        loaded, stored = self._loaded, self._stored
        if not self._merged_into:  # every session is itself (most contacts)
            return sorted([x.id for x in olds if x.id in stored and x.id not in loaded])
        targets = {x.id for x in olds}
        return sorted(sid for sid in stored if sid not in loaded and self.resolve(sid) in targets)

    def load(self, messages: dict[str, list[tuple[int, str, str]]]) -> None:
        """Take the stored messages ``(ts, id, direction)`` of the sessions in
        :attr:`wanted`, by session (``sessions.store.message_keys``)."""
        self._loaded.update(messages)
        self.wanted = []

    def _members(self, session_ids: set[str]) -> dict[str, list[tuple[int, str, str]]]:
        """The messages ``(ts, id, direction)`` now in each of ``session_ids``, unordered
        (the stored ones of those sessions all read)."""
        out: dict[str, list[tuple[int, str, str]]] = {sid: [] for sid in session_ids}
        # Without a merge every session is itself (most contacts: skip the calls).
        resolve = self.resolve if self._merged_into else _itself
        moved = self._recut_moved
        for stored, keys in self._loaded.items():
            if not moved:  # no re-cut moved a read message: each moves with its session
                got = out.get(resolve(stored))
                if got is not None:
                    got.extend(keys)
                continue
            for key in keys:
                got = out.get(resolve(moved.get(key[1], stored)))
                if got is not None:
                    got.append(key)
        key_of = self._key_of
        for message_id, session_id in self._session_of.items():
            got = out.get(resolve(session_id))
            if got is not None:
                ts_ms, direction = key_of[message_id]
                got.append((ts_ms, message_id, direction))
        return out

    def recut_range(self, lo_ms: int, hi_ms: int) -> Recut | None:
        """Re-cut the held sessions starting in ``[lo_ms, hi_ms]`` under the history (after
        a timeout change). None: the stored messages of :attr:`wanted` are needed first."""
        olds = [x for x in self._ordered if lo_ms <= x.start_ms <= hi_ms]
        self.wanted = self._unloaded(olds)
        if self.wanted or not olds:
            return None if self.wanted else Recut([], {}, None, False)
        return self._recut(olds, new_message=None)

    def _recut(self, olds: list[TrackedSession], *, new_message: str | None) -> Recut:
        """Re-cut ``olds`` (consecutive sessions, messages all loaded) with an optional new
        message: ids stay stable as :func:`rule.resegment` says."""
        keyed = self._members({x.id for x in olds})
        members = {sid: [(ts, mid) for ts, mid, _d in keys] for sid, keys in keyed.items()}
        inbound_of = {mid: d == "inbound" for keys in keyed.values() for _ts, mid, d in keys}
        was_open = any(self._is_open(x) for x in olds)
        new_key = None
        if new_message is not None:
            new_ts, new_direction = self._key_of[new_message]
            new_key = (new_ts, new_message)
            inbound_of[new_message] = new_direction == "inbound"
        pieces = rule.resegment([(x.span(), members[x.id]) for x in olds], new_key, self.history)
        by_id = {x.id: x for x in olds}
        kept = {p.session_id for p in pieces if p.session_id is not None}
        absorbed = [x.id for x in olds if x.id not in kept]
        last_of = {sid: max(members[sid])[1] for sid in absorbed if members[sid]}
        for x in olds:
            self._unindex(x)
        created: list[str] = []
        into: dict[str, str] = {}
        home, opened = None, False
        for piece in pieces:
            seg = piece.segment
            inbound = sum(inbound_of[mid] for _ts, mid in seg.messages)
            session = by_id[piece.session_id] if piece.session_id is not None else None
            if session is None:
                session = TrackedSession(
                    self.new_id(), self.contact_id, 0, 0, 0, None, 0, 0, 0, 0, self.now_ms
                )
                created.append(session.id)
                self.live[session.id] = session
            session.start_ms, session.last_ms = seg.start_ms, seg.last_ms
            session.expires_ms = self.history.expires(seg.last_ms)
            session.closed_at_ms = seg.closed_at_ms
            session.activity_ms = max(seg.last_ms, seg.closed_at_ms or seg.last_ms)
            session.message_count = len(seg.messages)
            session.inbound_count = inbound
            session.outbound_count = len(seg.messages) - inbound
            session.figures = None  # recomputed from the messages by the write
            self._reshaped.add(session.id)
            if piece.session_id is not None:
                self._changed.add(session.id)
            self._index(session)
            held = {mid for _ts, mid in seg.messages}
            for mid in held:
                if mid in self._key_of:  # this request's (the new one placed after)
                    self._session_of[mid] = session.id
                else:  # a stored message read
                    self._recut_moved[mid] = session.id
            for gone, last in last_of.items():
                if last in held:
                    into[gone] = session.id
            if new_message is not None and new_message in held:
                home = session.id
                opened = piece.session_id is None or (not was_open and self._is_open(session))
        for gone in absorbed:
            self._absorb(by_id[gone], into=into[gone], indexed=False)
        return Recut(created, {gone: into[gone] for gone in absorbed}, home, opened)

    # -- figures --------------------------------------------------------------------------

    def figures_wanted(self) -> tuple[list[str], dict[str, tuple[int, int]]]:
        """What must be read before :meth:`settle_figures`, for the sessions whose figures
        a change other than an append made stale (a session new in this request needs
        nothing): the stored sessions to read whole (:meth:`load`), those now in a
        session a merge or a re-cut made; and, for a stored session that only had
        messages inserted and holds more than :data:`AROUND_FROM`, the times ``(lo, hi)``
        they span, to read the stored messages around (:meth:`load_around`,
        ``sessions.figures.figures_after_inserts``)."""
        # One pass, no comprehension: run for every contact of a batch (3.7 -> ~2 us).
        stale: list[TrackedSession] = []
        inserted: dict[str, TrackedSession] = {}
        stored, reshaped, loaded = self._stored, self._reshaped, self._loaded
        for x in self._ordered:
            if x.figures is not None:
                continue
            stale.append(x)
            if (
                x.message_count > AROUND_FROM
                and x.stored_figures is not None
                and x.id in stored
                and x.id not in reshaped
                and x.id not in loaded
            ):
                inserted[x.id] = x
        if not stale:
            return [], {}
        spans: dict[str, tuple[int, int]] = {}
        if inserted:
            key_of = self._key_of
            for message_id, session_id in self._session_of.items():
                if session_id in inserted:
                    ts_ms = key_of[message_id][0]
                    lo, hi = spans.get(session_id, (ts_ms, ts_ms))
                    spans[session_id] = (ts_ms if ts_ms < lo else lo, ts_ms if ts_ms > hi else hi)
        whole = [x for x in stale if x.id not in spans] if spans else stale
        return (self._unloaded(whole) if whole else []), spans

    def load_around(self, messages: dict[str, list[tuple[int, str, str]]]) -> None:
        """Take the stored messages read around this request's, by session, for the spans
        :meth:`figures_wanted` gave (``sessions.store.message_keys_around``)."""
        self._around.update(messages)

    def settle_figures(self) -> None:
        """Recompute the stale figures from the messages held here (after loading what
        :meth:`figures_wanted` asked for): the write then stores them with the rest of the
        row."""
        stale = [x for x in self._ordered if x.figures is None]
        if not stale:
            return
        around = self._around
        whole = [x for x in stale if x.id not in around] if around else stale
        if whole:
            members = self._members({x.id for x in whole})
            for session in whole:
                keys = members[session.id]
                keys.sort()  # by time, then id (ids are unique: directions never compared)
                session.figures = figures_of_keys(keys)
        if len(whole) == len(stale):
            return
        inserted: dict[str, list[tuple[int, str, str]]] = {
            x.id: [] for x in stale if x.id in around
        }
        key_of = self._key_of
        for message_id, session_id in self._session_of.items():
            got = inserted.get(session_id)
            if got is not None:
                ts_ms, direction = key_of[message_id]
                got.append((ts_ms, message_id, direction))
        for session in stale:
            new = inserted.get(session.id)
            if new is not None:
                assert session.stored_figures is not None
                read = around[session.id]
                read.sort()
                new.sort()
                session.figures = figures_after_inserts(session.stored_figures, read, new)

    # -- events ---------------------------------------------------------------------------

    def emit(
        self,
        events: list[SessionEvent],
        *,
        subscriptions: list[Subscription],
        contact: ContactFields | None,
        message: MessageRow | None,
    ) -> None:
        """Record ``events`` for the endpoints subscribed to them, with the silence closes
        the contact owes put in their place (``outbox.place_silence_closes``)."""
        if not events or not outbox.wants_any(events, subscriptions):
            return
        since = outbox.close_subscribers_since(subscriptions)
        if since is not None:
            owed = [
                (x.id, x.expires_ms, x.close_notified_ms)
                for x in self._ordered
                if outbox.owes_close(
                    closed_at_ms=x.closed_at_ms,
                    expires_ms=x.expires_ms,
                    close_notified_ms=x.close_notified_ms,
                    created_at_ms=x.created_at_ms,
                    since_ms=since,
                    now_ms=self.now_ms,
                )
            ]
            if owed:
                events, marks = outbox.place_silence_closes(events, owed)
                for session_id, expires_ms in marks:
                    self.live[session_id].close_notified_ms = expires_ms
                    self._marked.add(session_id)
        bodies: dict[str, dict[str, Any] | None] = {}
        for event in events:
            targets = outbox.targets_of(event.type, subscriptions)
            if not targets:
                continue
            if event.session_id not in bodies:
                bodies[event.session_id] = self._session_json(event.session_id, contact)
            data: dict[str, Any] = {"session": bodies[event.session_id]}
            if event.type == outbox.RECEIVED and event.message_id is not None:
                assert message is not None and message.id == event.message_id
                data["message"] = presenter.message_as_json(message)
            if event.type == outbox.MERGED:
                data["merged_session_id"] = event.merged_session_id
            self._outbox.append(
                OutboxWrite(
                    self.new_id(),
                    self.contact_id,
                    event.type,
                    outbox.event_body(event.type, self.now_ms, data),
                    targets,
                )
            )

    def _session_json(
        self, session_id: str, contact: ContactFields | None
    ) -> dict[str, Any] | None:
        session = self.live.get(session_id)
        if session is None or contact is None:
            return None
        listed = ListedSession(
            session,
            contact.first_name,
            contact.last_name,
            contact.phone,
            contact.email,
            contact.channel,
        )
        return presenter.session_as_json(listed, now_ms=self.now_ms)

    # -- the net result -------------------------------------------------------------------

    def collect(self, writes: Writes, *, messages: bool = True) -> None:
        """Add this contact's net change to ``writes`` (``messages``: its new messages
        too; else they were collected first, :meth:`collect_messages`)."""
        if self._deleted:
            writes.deleted.extend(self._deleted)
            # Messages of a stored session not read here move with it; read ones one by one.
            writes.moved.extend(
                (gone, self.resolve(gone)) for gone in self._deleted if gone not in self._loaded
            )
        moved = self._recut_moved
        # Read messages change session only by a merge or a re-cut (most contacts: neither).
        loaded = self._loaded.items() if self._merged_into or moved else ()
        for stored, keys in loaded:
            if not moved:  # no re-cut: a read message is where its session went
                final = self.resolve(stored)
                if final != stored:
                    writes.reassigned.extend((mid, final) for _ts, mid, _d in keys)
                continue
            for _ts, mid, _d in keys:
                final = self.resolve(moved.get(mid, stored))
                if final != stored:
                    writes.reassigned.append((mid, final))
        for session in self._ordered:
            if session.id not in self._stored:
                writes.inserted.append(session)
            elif session.id in self._changed:
                writes.updated.append(session)
            elif session.id in self._marked:
                assert session.close_notified_ms is not None
                writes.notified.append((session.id, session.close_notified_ms))
        writes.outbox.extend(self._outbox)
        if messages:
            self.collect_messages(writes)

    def collect_messages(self, writes: Writes) -> None:
        """Add this contact's new messages to ``writes``, each in its final session: once
        every message of the request is placed (settling the figures moves none)."""
        resolve = self.resolve if self._merged_into else _itself
        session_of = self._session_of
        # A row whose session a later message changed (a merge, a re-cut) is made again
        # with its final one, by tuple.__new__ (0.40 us; _replace: 1.02 us).
        make = tuple.__new__
        for msg in self._messages:
            final = resolve(session_of[msg.id])
            writes.messages.append(
                msg
                if final == msg.session_id
                else make(MessageWrite, (msg[0], msg[1], final, *msg[3:]))
            )
