"""One contact's sessions held in memory while a request's messages are placed.

:class:`ContactPlacement` applies the session rule (:func:`rule.place_message`) to each
message in request order, exactly as the one-message-at-a-time path does against the
database (``service._place``), and records the events each message causes as ``emit``
would write them at that moment (bodies built from the sessions as they are then, the
silence closes the contact owes put in their place). What is left at the end is the net
change, written in a few statements by ``messages.store.write``.

It is given the contact's sessions around the request's timestamps (the last starting at
or before the smallest, every one starting inside the range, the first after the
largest), so the neighbours of any message of the request are among them, and the
sessions owing a close announcement. A message that needs a re-cut
(:attr:`PlacementKind.RESEGMENT`) is not handled here: the caller falls back to the
per-message path for the contact.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

from chatsessions import ids
from chatsessions.messages.store import (
    ContactFields,
    MessageWrite,
    OutboxWrite,
    TrackedSession,
    Writes,
)
from chatsessions.sessions import rule
from chatsessions.sessions import service as sessions_service
from chatsessions.sessions.rule import PlacementKind, TimeoutHistory
from chatsessions.sessions.store import ListedSession, MessageRow
from chatsessions.webhooks import events as webhook_events
from chatsessions.webhooks.events import SessionEvent
from chatsessions.webhooks.store import Subscription

__all__ = ["ContactPlacement", "Placed"]


@dataclass(frozen=True)
class Placed:
    """Where one message went: its session (at that moment), whether that session opened
    with it, and the session it absorbed, if any."""

    session_id: str
    opened: bool
    absorbed: list[str]


class ContactPlacement:
    """One contact's sessions, changed in memory message by message."""

    def __init__(
        self,
        contact_id: str,
        sessions: list[TrackedSession],
        *,
        history: TimeoutHistory,
        now_ms: int,
    ) -> None:
        self.contact_id = contact_id
        self.history = history
        self.now_ms = now_ms
        self.live: dict[str, TrackedSession] = {x.id: x for x in sessions}
        self._stored = set(self.live)  # ids that exist in the database
        self._ordered = sorted(sessions, key=lambda x: x.start_ms)
        self._starts = [x.start_ms for x in self._ordered]
        self._changed: set[str] = set()
        self._marked: set[str] = set()
        self._deleted: list[str] = []
        self._merged_into: dict[str, str] = {}
        self._messages: list[MessageWrite] = []
        self._outbox: list[OutboxWrite] = []

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

    def status(self, session_id: str) -> str | None:
        """The status of a session held here now (None: not held here)."""
        session = self.live.get(self.resolve(session_id))
        if session is None:
            return None
        return rule.status_of(
            now_ms=self.now_ms, closed_at_ms=session.closed_at_ms, expires_ms=session.expires_ms
        )

    # -- placing one message --------------------------------------------------------------

    def place(self, ts_ms: int, direction: str) -> Placed | None:
        """Apply the rule for a message (None: it needs a re-cut; nothing was changed)."""
        before, after = self._neighbours(ts_ms)
        history, now_ms = self.history, self.now_ms
        placement = rule.place_message(
            ts_ms, before.span() if before else None, after.span() if after else None, history
        )
        inbound = 1 if direction == "inbound" else 0
        if placement.kind is PlacementKind.RESEGMENT:
            return None
        if placement.kind is PlacementKind.NEW:
            session = TrackedSession(
                id=ids.new_id(),
                contact_id=self.contact_id,
                start_ms=ts_ms,
                last_ms=ts_ms,
                expires_ms=history.expires(ts_ms),
                closed_at_ms=None,
                activity_ms=ts_ms,
                message_count=1,
                inbound_count=inbound,
                outbound_count=1 - inbound,
                created_at_ms=now_ms,
            )
            self.live[session.id] = session
            self._index(session)
            return Placed(session.id, True, [])
        target = before if before is not None and placement.target == before.id else after
        assert target is not None
        was_open = rule.is_open(
            now_ms=now_ms, closed_at_ms=target.closed_at_ms, expires_ms=target.expires_ms
        )
        absorbed: list[str] = []
        self._unindex(target)
        if placement.kind is PlacementKind.MERGE:
            assert after is not None
            was_open = was_open or rule.is_open(
                now_ms=now_ms, closed_at_ms=after.closed_at_ms, expires_ms=after.expires_ms
            )
            target.absorb(after)
            self._absorb(after, into=target)
            absorbed.append(after.id)
        target.add_message(ts_ms, inbound=inbound, history=history)
        self._index(target)
        self._changed.add(target.id)
        now_open = rule.is_open(
            now_ms=now_ms, closed_at_ms=target.closed_at_ms, expires_ms=target.expires_ms
        )
        return Placed(target.id, not was_open and now_open, absorbed)

    def _absorb(self, gone: TrackedSession, *, into: TrackedSession) -> None:
        self._unindex(gone)
        del self.live[gone.id]
        self._merged_into[gone.id] = into.id
        self._changed.discard(gone.id)
        self._marked.discard(gone.id)
        if gone.id in self._stored:
            self._deleted.append(gone.id)

    def add_message(self, message: MessageWrite) -> None:
        """Keep a message to insert (its session id is resolved at the end)."""
        self._messages.append(message)

    # -- events ---------------------------------------------------------------------------

    def emit(
        self,
        events: list[SessionEvent],
        *,
        subscriptions: list[Subscription],
        contact: ContactFields | None,
        message: MessageRow | None,
    ) -> None:
        """Record ``events`` as ``webhook_events.emit`` would write them now."""
        if not events or not webhook_events.wants_any(events, subscriptions):
            return
        since = webhook_events.close_subscribers_since(subscriptions)
        if since is not None:
            owed = [
                (x.id, x.expires_ms, x.close_notified_ms)
                for x in self._ordered
                if self._owes_close(x, since)
            ]
            if owed:
                events, marks = webhook_events.place_silence_closes(events, owed)
                for session_id, expires_ms in marks:
                    self.live[session_id].close_notified_ms = expires_ms
                    self._marked.add(session_id)
        bodies: dict[str, dict[str, Any] | None] = {}
        for event in events:
            targets = webhook_events.targets_of(event.type, subscriptions)
            if not targets:
                continue
            if event.session_id not in bodies:
                bodies[event.session_id] = self._session_json(event.session_id, contact)
            data: dict[str, Any] = {"session": bodies[event.session_id]}
            if event.type == "MessageReceived" and event.message_id is not None:
                assert message is not None and message.id == event.message_id
                data["message"] = sessions_service.message_as_json(message)
            if event.type == "ChatSessionMerged":
                data["merged_session_id"] = event.merged_session_id
            self._outbox.append(
                OutboxWrite(
                    ids.new_id(),
                    self.contact_id,
                    event.type,
                    webhook_events.event_body(event.type, self.now_ms, data),
                    targets,
                )
            )

    def _owes_close(self, session: TrackedSession, since_ms: int) -> bool:
        """``tables.SESSION_CLOSE_PENDING`` and due in ``[since_ms, now]``."""
        if session.closed_at_ms is not None:
            return False
        notified = session.close_notified_ms
        if notified is not None and notified >= session.expires_ms:
            return False
        due = max(session.expires_ms, session.created_at_ms)
        return since_ms <= due <= self.now_ms

    def _session_json(self, session_id: str, contact: ContactFields | None) -> dict[str, Any] | None:
        session = self.live.get(session_id)
        if session is None or contact is None:
            return None
        listed = ListedSession(
            session, contact.first_name, contact.last_name, contact.phone, contact.email,
            contact.channel,
        )
        return sessions_service.session_as_json(listed, now_ms=self.now_ms)

    # -- the net result -------------------------------------------------------------------

    def collect(self, writes: Writes) -> None:
        """Add this contact's net change to ``writes``."""
        writes.deleted.extend(self._deleted)
        writes.moved.extend((gone, self.resolve(gone)) for gone in self._deleted)
        for session in self._ordered:
            if session.id not in self._stored:
                writes.inserted.append(session)
            elif session.id in self._changed:
                writes.updated.append(session)
            elif session.id in self._marked:
                assert session.close_notified_ms is not None
                writes.notified.append((session.id, session.close_notified_ms))
        for msg in self._messages:
            final = self.resolve(msg.session_id)
            if final != msg.session_id:
                msg = MessageWrite(
                    msg.id, msg.contact_id, final, msg.direction, msg.role, msg.type,
                    msg.content, msg.media_url, msg.ts_ms, msg.external_id,
                )
            writes.messages.append(msg)
        writes.outbox.extend(self._outbox)
