"""The PostgreSQL write statement gets every parameter it names, and only those of the
parts a request has (``messages.store.pg_params``): built for every combination of parts,
each of one row or of two, and compiled as the driver receives it."""

from __future__ import annotations

from itertools import combinations
from typing import Any

from sqlalchemy.dialects import postgresql

from chatsessions import tables
from chatsessions.messages import store as messages_store
from chatsessions.messages.store import MessageWrite, TrackedSession, Writes
from chatsessions.sessions.figures import EMPTY as EMPTY_FIGURES
from chatsessions.webhooks.outbox import OutboxWrite

KINDS = (
    "contacts", "deleted", "moved", "reassigned", "inserted", "updated", "notified", "bumped"
)  # fmt: skip


def _session(n: int) -> TrackedSession:
    return TrackedSession(
        id=f"s{n:019d}",
        contact_id="c" * 20,
        start_ms=n,
        last_ms=n,
        expires_ms=n + 1,
        closed_at_ms=None,
        activity_ms=n,
        message_count=1,
        inbound_count=1,
        outbound_count=0,
        created_at_ms=n,
        figures=EMPTY_FIGURES,
    )


def _writes(kinds: tuple[str, ...], rows: int, messages: int, events: int) -> Writes:
    w = Writes()
    for n in range(rows):
        if "contacts" in kinds:
            w.contacts.append({c.name: None for c in tables.contacts.columns})
        if "deleted" in kinds:
            w.deleted.append(f"d{n:019d}")
        if "moved" in kinds:
            w.moved.append((f"d{n:019d}", f"s{n:019d}"))
        if "reassigned" in kinds:
            w.reassigned.append((f"m{n:019d}", f"s{n:019d}"))
        if "inserted" in kinds:
            w.inserted.append(_session(n))
        if "updated" in kinds:
            w.updated.append(_session(100 + n))
        if "notified" in kinds:
            w.notified.append((f"s{n:019d}", n))
        if "bumped" in kinds:
            w.bumped.append(f"c{n:019d}")
    w.messages = [
        MessageWrite(
            f"m{n:019d}", "c" * 20, "s" * 20, "inbound", "user", "text", "hi", None, n, None
        )
        for n in range(messages)
    ]
    w.outbox = [
        OutboxWrite(f"e{n:019d}", "c" * 20, "message.created", b"{}", ["w" * 20] * (n % 2))
        for n in range(events)
    ]
    return w


def _statement_names(w: Writes) -> tuple[set[str], dict[str, Any]]:
    one_row = messages_store.one_row_parts(w)
    stmt = messages_store._write_pg(messages_store.write_parts(w), False, one_row)
    compiled = stmt.compile(dialect=postgresql.asyncpg.dialect())  # type: ignore[no-untyped-call]
    return set(compiled.positiontup or ()), messages_store.pg_params(
        "u" * 20, w, 0, one_row=one_row
    )


def test_the_write_gets_the_parameters_of_its_parts_and_no_others() -> None:
    checked = 0
    for size in range(len(KINDS) + 1):
        for kinds in combinations(KINDS, size):
            for rows, messages, events in ((1, 1, 0), (2, 2, 2), (1, 0, 1), (2, 1, 0)):
                w = _writes(kinds, rows, messages, events)
                if not messages_store.write_parts(w):
                    continue
                names, params = _statement_names(w)
                assert names <= set(params), (kinds, rows, names - set(params))
                # Nothing is built for a part the statement does not have (the events'
                # parameters are the outbox's: all of them when there are events).
                extra = {
                    n for n in set(params) - names if not (w.outbox and n.startswith(("e_", "d_")))
                }
                assert extra <= {"now_ms"}, (kinds, extra)
                checked += 1
    assert checked > 800


def test_a_single_messages_write_sends_scalars() -> None:
    w = _writes(("updated",), 1, 1, 0)
    _names, params = _statement_names(w)
    assert messages_store.one_row_parts(w) == {"added", "changed", "inserted"}
    assert params["s_id"] == "s0000000000000000100"
    assert params["s_count"] == 1 and params["s_new"] is False
    assert params["m_id"] == "m0000000000000000000" and params["m_ts"] == 0
    assert params["m_media"] is None
    assert not any(n.startswith(("nc_", "gone", "move_", "r_", "n_")) for n in params)


def test_the_unlocked_write_is_made_for_one_session_and_one_message_only() -> None:
    for size in range(len(KINDS) + 1):
        for kinds in combinations(KINDS, size):
            for rows, messages, events in ((1, 1, 0), (2, 2, 2), (1, 0, 1), (1, 1, 1)):
                w = _writes(kinds, rows, messages, events)
                part = messages_store.unlocked_session_part(w)
                single = (rows, messages, events) == (1, 1, 0)
                if single and set(kinds) - {"bumped"} in ({"inserted"}, {"updated"}):
                    assert part == ("added" if "inserted" in kinds else "changed"), kinds
                else:
                    assert part is None, (kinds, rows, messages, events)


def test_the_unlocked_writes_parameters_are_those_of_the_one_row_write() -> None:
    for kind, part in (("inserted", "added"), ("updated", "changed")):
        w = _writes((kind,), 1, 1, 0)
        stmt = messages_store._unlocked_write_pg(part)
        compiled = stmt.compile(dialect=postgresql.asyncpg.dialect())  # type: ignore[no-untyped-call]
        names = set(compiled.positiontup or ()) - {"g_contact", "g_seen"}
        one_row = frozenset({"added", "changed", "inserted"})
        expected = messages_store.pg_params("u" * 20, w, 7, one_row=one_row)
        built = messages_store.unlocked_params("u" * 20, w, 7)
        assert set(built) == names
        assert built == {n: expected[n] for n in names}
