"""SQL of message ingest, set-based: a fixed number of statements per request, whatever
the number of messages. Every statement is scoped by user.

One request runs, after authentication:

1. :func:`lock_and_load` — lock the request's contacts (in id order) and read what the
   session rule and the webhook outbox need of the user: its timeout history and its
   enabled endpoints (plus the contacts' fields, for event bodies);
2. :func:`read_state` — *after* the lock (a fresh snapshot that sees every earlier writer
   of these contacts): the stored messages with the request's externalIds, each contact's
   sessions around the request's timestamps (the last one starting at or before the
   smallest, every one starting inside the range, the first one after the largest), and,
   when an endpoint wants ``ChatSessionClosed``, the contacts' sessions owing that close;
3. :func:`write` — the net result: contacts created inline inserted, absorbed sessions
   deleted and their messages moved, sessions inserted or updated in their final state,
   messages inserted, outbox rows.

On PostgreSQL each step is one statement (arrays through ``unnest``; the writes as
data-modifying CTEs of one statement). On SQLite, which holds the database write lock
for the whole transaction and has no arrays, the same steps run as a few statements each.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson
from sqlalchemy import TextClause, bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions import tables
from chatsessions.contacts import store as contacts_store
from chatsessions.db import (
    END_PROBES,
    Raced,
    fetch_rows,
    is_race,
    joined_ids,
    joined_numbers,
    json_texts,
    pg_joined_ids,
    pg_joined_numbers,
    pg_json_texts,
    sqlite_executemany,
)
from chatsessions.sessions.figures import Figures
from chatsessions.sessions.store import SessionRow
from chatsessions.webhooks import outbox
from chatsessions.webhooks.outbox import OutboxWrite, Subscription

__all__ = [
    "Loaded",
    "MessageWrite",
    "State",
    "StoredExternal",
    "TrackedSession",
    "UnlockedRead",
    "Writes",
    "contact_fields",
    "lock_and_load",
    "read_state",
    "read_unlocked",
    "unlocked_params",
    "unlocked_session_part",
    "write",
    "write_parts",
    "write_unlocked",
]


@dataclass
class TrackedSession(SessionRow):
    """A session as ingest holds it in memory (with its close-announcement mark, and its
    figures as read: what ``sessions.figures.figures_after_inserts`` starts from)."""

    close_notified_ms: int | None = None
    stored_figures: Figures | None = None


@dataclass(frozen=True)
class ContactFields:
    """What an event body shows of a contact."""

    first_name: str | None
    last_name: str | None
    phone: str | None
    email: str | None
    channel: str | None


@dataclass
class Loaded:
    """What :func:`lock_and_load` read."""

    locked: set[str]
    contacts: dict[str, ContactFields]  # read only for a tenant with subscriptions
    timeout_changes: list[tuple[int, int]]
    subscriptions: list[Subscription]
    # The locked contacts' write_seq (PostgreSQL): 0 until a single message enabled
    # writes without the lock for the contact (see Writes.bumped).
    write_seqs: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredExternal:
    """A stored message found by externalId, with its session's status columns."""

    message_id: str
    contact_id: str
    session_id: str
    closed_at_ms: int | None
    expires_ms: int


@dataclass
class State:
    """What :func:`read_state` read."""

    external: dict[str, StoredExternal] = field(default_factory=dict)
    sessions: dict[str, list[TrackedSession]] = field(default_factory=dict)  # by contact


class MessageWrite(NamedTuple):
    """One message row to insert (a NamedTuple: one per message, cheap to make, and
    its columns come out of ``zip(*rows)`` in one pass)."""

    id: str
    contact_id: str
    session_id: str
    direction: str
    role: str
    type: str
    content: str | None
    media_url: str | None
    ts_ms: int
    external_id: str | None


@dataclass
class Writes:
    """The net result of a request, written by :func:`write`."""

    # Contacts the request creates (rows holding every column): inserted by the write,
    # whose foreign-key checks run on generic plans (_GENERIC_CHECKS_FROM).
    contacts: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)  # stored sessions absorbed
    moved: list[tuple[str, str]] = field(default_factory=list)  # (absorbed id, survivor id)
    reassigned: list[tuple[str, str]] = field(default_factory=list)  # (message id, session id)
    inserted: list[TrackedSession] = field(default_factory=list)
    updated: list[TrackedSession] = field(default_factory=list)
    notified: list[tuple[str, int]] = field(default_factory=list)  # (session id, mark)
    messages: list[MessageWrite] = field(default_factory=list)
    outbox: list[OutboxWrite] = field(default_factory=list)
    # Contacts (locked by the transaction) whose write_seq the write moves, PostgreSQL:
    # those whose sessions it may change and on which single messages are written without
    # the lock (see write_unlocked): write_seq > 0. With ``enable``, whatever their
    # write_seq (a single message's write, which enables it for its contact). Moved only
    # when the write writes something else.
    bumped: list[str] = field(default_factory=list)
    enable: bool = False


_SESSION_COLS = (
    "id, contact_id, start_ms, last_ms, expires_ms, closed_at_ms, activity_ms, "
    "message_count, inbound_count, outbound_count, created_at_ms, close_notified_ms, "
    "first_inbound_ms, first_response_ms, reply_sum_ms, reply_count, unanswered_since_ms"
)
# Owing a close announcement, in the words of the partial index ix_sessions_close_due
# (the SQL form of webhooks.outbox.owes_close).
_OWING = (
    f"{tables.SESSION_CLOSE_PENDING.compile()} "
    f"AND {tables.SESSION_CLOSE_DUE.compile()} BETWEEN :since_ms AND :now_ms"
)

# -- 1. lock and load ------------------------------------------------------------------------

_LOAD_TAIL = """
    UNION ALL
    SELECT 1, NULL, effective_from_ms, timeout_ms, NULL, NULL, NULL, NULL, NULL
    FROM timeout_changes WHERE user_id = :user_id
    UNION ALL
    SELECT 2, id, created_at_ms, NULL, events, NULL, NULL, NULL, NULL
    FROM webhook_endpoints WHERE user_id = :user_id AND enabled
"""
# The CTE takes the row locks in the order of the given ids (sorted by the caller: byte
# order, the ids' collation), one primary-key probe per id (a LATERAL subquery with a
# locking clause stays a per-id probe), before the other branches run. Those read the
# statement's snapshot, taken before any wait for a lock: fine for the timeout history
# and the endpoints (a change that commits meanwhile is concurrent with this request
# either way), never for sessions or messages (step 2). The statement runs in the probe
# phase of the transaction (db.PG_PROBES, a plan made once per connection): no
# "id = ANY(ids)", whose plan a generic planner may cost for ten ids and trade for a scan
# of the tenant's contacts through another index. It ends the phase when asked (the
# statements that follow are not probes).
_LOAD_PG = text(
    f"""
    WITH locked AS (
        SELECT c.* FROM unnest({pg_joined_ids("contact_ids")}) AS k(id)
        CROSS JOIN LATERAL (
            SELECT id, first_name, last_name, phone, email, channel, write_seq FROM contacts
            WHERE user_id = :user_id AND id BETWEEN (k.id COLLATE "C") AND (k.id COLLATE "C")
            ORDER BY id FOR UPDATE
        ) AS c
    )
    SELECT 0 AS kind, CAST(id AS varchar) AS name, CAST(write_seq AS bigint) AS a,
           CAST(NULL AS bigint) AS b, CAST(first_name AS text) AS t1, CAST(last_name AS text),
           CAST(phone AS text), CAST(email AS text), CAST(channel AS text)
    FROM locked"""
    + _LOAD_TAIL
    + f"""
    UNION ALL
    SELECT 3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
    WHERE CASE WHEN CAST(:end_probes AS boolean) THEN {END_PROBES} IS NULL ELSE false END
"""
)
# SQLite: SQL text run on the driver (db.fetch_rows), lists as JSON arrays (json_each).
_LOAD_SQLITE = (
    """
    SELECT 0 AS kind, id AS name, NULL AS a, NULL AS b, first_name AS t1, last_name, phone,
           email, channel
    FROM contacts WHERE user_id = :user_id AND id IN (SELECT value FROM json_each(:contact_ids))"""
    + _LOAD_TAIL
)


async def lock_and_load(
    conn: AsyncConnection, user_id: str, contact_ids: Sequence[str], *, probes_follow: bool = False
) -> Loaded:
    """Lock the contacts (PostgreSQL row locks in id order; SQLite holds the write lock)
    and read the user's timeout history and enabled endpoints: one statement.

    ``probes_follow``: the next statement is :func:`read_state` (which ends the probe phase
    of the transaction, ``db.PG_PROBES``); otherwise this one ends it."""
    wanted = sorted(set(contact_ids))
    loaded = Loaded(set(), {}, [], [])
    params: dict[str, Any] = {"user_id": user_id, "end_probes": not probes_follow}
    stmt: TextClause | str
    if conn.dialect.name == "postgresql":
        stmt, params["contact_ids"] = _LOAD_PG, joined_ids(wanted)
    else:
        stmt, params["contact_ids"] = _LOAD_SQLITE, orjson.dumps(wanted).decode()
    contacts = []
    for row in await fetch_rows(conn, stmt, params):
        kind = row[0]
        if kind == 0:
            contacts.append(row)
        elif kind == 1:
            loaded.timeout_changes.append((row[2], row[3]))
        elif kind == 2:
            loaded.subscriptions.append(Subscription(row[1], list(orjson.loads(row[4])), row[2]))
    loaded.locked.update(row[1] for row in contacts)
    # PostgreSQL's (SQLite reads none)
    loaded.write_seqs = {row[1]: row[2] for row in contacts if row[2] is not None}
    if loaded.subscriptions:  # only events show a contact's fields
        loaded.contacts = {
            row[1]: ContactFields(row[4], row[5], row[6], row[7], row[8]) for row in contacts
        }
    loaded.timeout_changes.sort()
    return loaded


async def contact_fields(
    conn: AsyncConnection, user_id: str, contact_ids: Sequence[str]
) -> dict[str, ContactFields]:
    """The fields event bodies show of these contacts (for contacts not read by
    :func:`lock_and_load`, e.g. created inline)."""
    if not contact_ids:
        return {}
    rows = await conn.execute(
        _CONTACT_FIELDS, {"user_id": user_id, "contact_ids": sorted(set(contact_ids))}
    )
    return {row[0]: ContactFields(*row[1:]) for row in rows}


_CONTACT_FIELDS = text(
    "SELECT id, first_name, last_name, phone, email, channel FROM contacts "
    "WHERE user_id = :user_id AND id IN :contact_ids"
).bindparams(bindparam("contact_ids", expanding=True))

# -- 2. read the state -----------------------------------------------------------------------

# A probe by key is written "key BETWEEN v AND v ORDER BY key" (here and in the lock): an
# equality would make the ORDER BY redundant, and statistics under which every index of a
# tenant looks like one row (e.g. analyzed when each tenant had one: user_id then looks
# unique) leave the planner a tie between the key's index and any other index of the
# tenant, which the smallest wins (ix_messages_user_ts: a scan of the tenant's messages).
# In key order only the key's index serves the probe without a sort: it wins on empty
# tables, on such statistics and on a big tenant's (tests/messages/test_probe_plans.py).
# Only a table that grew far past statistics of one row per tenant, before the next
# ANALYZE, can still mislead it, as it misleads custom plans: the service runs that
# ANALYZE itself when a tenant outgrows the planner's estimate (planner_stats).
#
# Driven by the externalIds (one probe of uq_messages_user_id_external_id each): with
# "external_id = ANY(...)", or a join PostgreSQL may flatten, it misjudged a growing tenant
# from stale statistics and read every message of the tenant through its sessions (0.9 s
# per batch at 10M messages).
_EXTERNAL_PG = """
    SELECT 1, m.id, m.contact_id, NULL, NULL, s.expires_ms, s.closed_at_ms,
           NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           m.external_id, m.session_id
    FROM (SELECT CAST(value AS varchar) FROM json_array_elements_text(CAST(:external_ids AS json)))
         AS e(external_id)
    CROSS JOIN LATERAL (
        SELECT mm.id, mm.contact_id, mm.external_id, mm.session_id FROM messages AS mm
        WHERE mm.user_id = :user_id
          AND mm.external_id BETWEEN e.external_id AND e.external_id
        ORDER BY mm.external_id
        LIMIT 1  -- unique anyway; keeps the subquery a per-id probe (not flattened)
    ) AS m
    CROSS JOIN LATERAL (  -- after the message: its session by primary key
        SELECT ss.expires_ms, ss.closed_at_ms FROM sessions AS ss
        WHERE ss.user_id = :user_id AND ss.id BETWEEN m.session_id AND m.session_id
        ORDER BY ss.id LIMIT 1
    ) AS s
"""
# The contact as a range and the order of ix_sessions_contact_start: only that index gives
# both (with "=" and statistics of one row per tenant, ix_sessions_start, by start time,
# looked as good, and would scan the tenant's sessions of that time for one contact).
_CONTACT_IS_R = 'contact_id BETWEEN (r.contact_id COLLATE "C") AND (r.contact_id COLLATE "C")'
_AROUND_PG = f"""
    SELECT 0 AS kind, x.*, CAST(NULL AS varchar) AS external_id,
           CAST(NULL AS varchar) AS session_id
    FROM unnest({pg_joined_ids("contact_ids")}, {pg_joined_numbers("los", "bigint")},
                {pg_joined_numbers("his", "bigint")}) AS r(contact_id, lo, hi)
    CROSS JOIN LATERAL (
        (SELECT {_SESSION_COLS} FROM sessions
         WHERE user_id = :user_id AND {_CONTACT_IS_R} AND start_ms <= r.lo
         ORDER BY contact_id DESC, start_ms DESC LIMIT 1)
        UNION ALL
        (SELECT {_SESSION_COLS} FROM sessions
         WHERE user_id = :user_id AND {_CONTACT_IS_R} AND start_ms > r.lo AND start_ms <= r.hi
         ORDER BY contact_id, start_ms)  -- in index order: never a scan of the tenant's sessions
        UNION ALL
        (SELECT {_SESSION_COLS} FROM sessions
         WHERE user_id = :user_id AND {_CONTACT_IS_R} AND start_ms > r.hi
         ORDER BY contact_id, start_ms LIMIT 1)
    ) AS x
"""
_OWING_PG = f"""
    SELECT 2, {_SESSION_COLS}, NULL, NULL FROM sessions
    WHERE user_id = :user_id AND {_OWING}
      AND contact_id = ANY({pg_joined_ids("contact_ids")})
"""
# Ends the probe phase of the transaction (db.PG_PROBES): what follows is not probes.
_END_PROBES_PG = f"""
    SELECT 3, {", ".join(["NULL"] * 19)}  -- as many columns as the other parts
    WHERE {END_PROBES} IS NULL
"""
# The reads are made of key probes driven by the given arrays (no "= ANY(array)"), in the
# probe phase: a generic plan (made once per connection) probes the key indexes (see
# above and tests/messages/test_probe_plans.py). The sessions owing a close are not
# probes (which index is best depends on the data): that read ends the phase first.
_READ_PG = text(_AROUND_PG + "UNION ALL" + _EXTERNAL_PG + "UNION ALL" + _END_PROBES_PG)
_READ_OWING_PG = text(_AROUND_PG + "UNION ALL" + _EXTERNAL_PG + "UNION ALL" + _OWING_PG)
_READ_IN_PROBES_PG = text(_AROUND_PG + "UNION ALL" + _EXTERNAL_PG)  # read_state(end_probes=False)
_END_PROBES_ALONE_PG = text(_END_PROBES_PG)

# SQLite: one statement for every contact (no LATERAL: the ranges come as one JSON array
# of [contact_id, lo, hi], driving index probes; CROSS JOIN keeps them the outer loop).
# One statement per contact cost a thread hop each: 190 ms for 630 contacts. The
# externalIds' probes (and the sessions owing a close) are parts of the same statement:
# a hop to aiosqlite's thread less per request (2.7 % of a single message's instructions).
_SESSION_ROW_SQLITE = f"0 AS kind, {_SESSION_COLS}"
_AROUND_SQLITE = f"""
    WITH r(cid, lo, hi) AS (
        SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),
               json_extract(value, '$[2]')
        FROM json_each(:ranges)
    )
    SELECT {_SESSION_ROW_SQLITE} FROM r CROSS JOIN sessions
    WHERE user_id = :user_id AND id = (SELECT b.id FROM sessions AS b
        WHERE b.user_id = :user_id AND b.contact_id = r.cid AND b.start_ms <= r.lo
        ORDER BY b.start_ms DESC LIMIT 1)
    UNION ALL
    SELECT {_SESSION_ROW_SQLITE} FROM r CROSS JOIN sessions
    WHERE user_id = :user_id AND contact_id = r.cid AND start_ms > r.lo AND start_ms <= r.hi
    UNION ALL
    SELECT {_SESSION_ROW_SQLITE} FROM r CROSS JOIN sessions
    WHERE user_id = :user_id AND id = (SELECT a.id FROM sessions AS a
        WHERE a.user_id = :user_id AND a.contact_id = r.cid AND a.start_ms > r.hi
        ORDER BY a.start_ms ASC LIMIT 1)
    """
_EXTERNAL_SQLITE = f"""
    SELECT 1, m.id, m.contact_id, s.expires_ms, s.closed_at_ms, m.external_id, m.session_id,
           {", ".join(["NULL"] * 11)}
    FROM json_each(:external_ids) AS e
    CROSS JOIN messages AS m
    JOIN sessions AS s ON s.user_id = m.user_id AND s.id = m.session_id
    WHERE m.user_id = :user_id AND m.external_id = e.value
    """
_OWING_SQLITE = f"""
    SELECT {_SESSION_ROW_SQLITE} FROM sessions
    WHERE user_id = :user_id AND {_OWING}
      AND contact_id IN (SELECT value FROM json_each(:contact_ids))
    """
_READ_SQLITE = _AROUND_SQLITE + "UNION ALL" + _EXTERNAL_SQLITE
_READ_OWING_SQLITE = _READ_SQLITE + "UNION ALL" + _OWING_SQLITE


def _tracked(row: Sequence[Any]) -> TrackedSession:
    (sid, contact_id, start, last, expires, closed, activity, count, inbound, outbound) = row[:10]
    figures = Figures(row[12], row[13], row[14], row[15], row[16])
    return TrackedSession(  # positional: a batch reads hundreds (by keyword: 0.5 us more)
        sid,
        contact_id,
        start,
        last,
        expires,
        closed,
        activity,
        count,
        inbound,
        outbound,
        row[10],  # created_at_ms
        figures,
        row[11],  # close_notified_ms
        figures,  # stored_figures
    )


async def read_state(
    conn: AsyncConnection,
    user_id: str,
    *,
    ranges: dict[str, tuple[int, int]],
    external_ids: Sequence[str],
    owing_since_ms: int | None,
    now_ms: int,
    end_probes: bool = True,
) -> State:
    """The stored messages with these externalIds, and per contact the sessions around its
    ``(smallest, largest)`` timestamp (plus those owing a close announcement since
    ``owing_since_ms``, when given). Call it with the contacts locked.

    Ends the probe phase of the transaction (``db.PG_PROBES``) unless ``end_probes`` is
    false and ``owing_since_ms`` is None: then the statements after it are probes too, up
    to a :func:`write` that ends the phase if its own statement is not."""
    state = State(sessions={cid: [] for cid in ranges})
    seen: set[str] = set()

    def add_session(session: TrackedSession) -> None:
        if session.id not in seen:
            seen.add(session.id)
            state.sessions[session.contact_id].append(session)

    def add_external(ext: str, mid: str, cid: str, sid: str, closed: int | None, exp: int) -> None:
        state.external[ext] = StoredExternal(mid, cid, sid, closed, exp)

    contacts = sorted(ranges)
    params: dict[str, Any] = {"user_id": user_id, "since_ms": owing_since_ms, "now_ms": now_ms}
    if conn.dialect.name == "postgresql":
        params.update(
            contact_ids=joined_ids(contacts),
            los=joined_numbers([ranges[c][0] for c in contacts]),
            his=joined_numbers([ranges[c][1] for c in contacts]),
            external_ids=orjson.dumps(sorted(set(external_ids))).decode(),
        )
        if owing_since_ms is None:
            stmt = _READ_PG if end_probes else _READ_IN_PROBES_PG
        else:  # planned for the values: the phase ends before it (one more round trip)
            await fetch_rows(conn, _END_PROBES_ALONE_PG, {})
            stmt = _READ_OWING_PG
        for row in await fetch_rows(conn, stmt, params):
            if row[0] == 1:
                add_external(row[18], row[1], row[2], row[19], row[6], row[5])
            else:
                add_session(_tracked(row[1:18]))
        return state
    if not contacts and not external_ids:
        return state
    params.update(
        ranges=orjson.dumps([[cid, *ranges[cid]] for cid in contacts]).decode(),
        external_ids=orjson.dumps(sorted(set(external_ids))).decode(),
    )
    sql = _READ_SQLITE
    if owing_since_ms is not None and contacts:
        sql, params["contact_ids"] = _READ_OWING_SQLITE, orjson.dumps(contacts).decode()
    for row in await fetch_rows(conn, sql, params):
        if row[0] == 1:
            add_external(row[5], row[1], row[2], row[6], row[4], row[3])
        else:
            add_session(_tracked(row[1:18]))
    return state


# -- 1+2 without the lock: a single message's read (PostgreSQL) ----------------------------

# What lock_and_load and read_state read, for one contact, in one statement of its own
# (autocommit: one snapshot) and without the lock, with the contact's write_seq: the
# guarded write (write_unlocked) commits only if that is unchanged, i.e. if no writer of
# the contact committed since this snapshot. Key probes only, planned once per connection
# of the probe pool (Database.read(probes=True); tests/messages/test_probe_plans.py). The
# endpoints are only asked about: a tenant with some takes the locked path.
_UNLOCKED_TAIL_PG = f"""
    SELECT 4, k.id, NULL, k.write_seq, {", ".join(["NULL"] * 16)}
    FROM (
        SELECT id, write_seq FROM contacts WHERE user_id = :user_id
          AND id BETWEEN CAST(:contact_id AS varchar) AND CAST(:contact_id AS varchar)
        ORDER BY id LIMIT 1
    ) AS k
    UNION ALL
    SELECT 5, NULL, NULL, effective_from_ms, timeout_ms, {", ".join(["NULL"] * 15)}
    FROM timeout_changes WHERE user_id = :user_id
    UNION ALL
    SELECT 6, {", ".join(["NULL"] * 19)}
    WHERE EXISTS (SELECT FROM webhook_endpoints WHERE user_id = :user_id AND enabled)
"""
_READ_UNLOCKED_PG = text(_AROUND_PG + "UNION ALL" + _EXTERNAL_PG + "UNION ALL" + _UNLOCKED_TAIL_PG)


@dataclass
class UnlockedRead:
    """What :func:`read_unlocked` read: the contact's write_seq, what the rule needs of
    the tenant (``loaded``: no contact fields, no endpoints) and the contact's state."""

    write_seq: int
    loaded: Loaded
    state: State
    has_endpoints: bool


async def read_unlocked(
    conn: AsyncConnection,
    user_id: str,
    *,
    contact_id: str,
    ts_ms: int,
    external_id: str | None,
) -> UnlockedRead | None:
    """One statement, no lock, no transaction (PostgreSQL, a probe pool connection): the
    contact's write_seq, the tenant's timeout history and whether it has endpoints, the
    contact's sessions around ``ts_ms`` and the stored message with ``external_id``.
    None when the contact is not found."""
    params = {
        "user_id": user_id,
        "contact_id": contact_id,
        "contact_ids": joined_ids([contact_id]),
        "los": joined_numbers([ts_ms]),
        "his": joined_numbers([ts_ms]),
        "external_ids": orjson.dumps([external_id] if external_id is not None else []).decode(),
    }
    state = State(sessions={contact_id: []})
    loaded = Loaded({contact_id}, {}, [], [])
    write_seq: int | None = None
    has_endpoints = False
    seen: set[str] = set()
    for row in await fetch_rows(conn, _READ_UNLOCKED_PG, params):
        kind = row[0]
        if kind == 0:
            if row[1] not in seen:
                seen.add(row[1])
                state.sessions[contact_id].append(_tracked(row[1:18]))
        elif kind == 1:
            state.external[row[18]] = StoredExternal(row[1], row[2], row[19], row[6], row[5])
        elif kind == 4:
            write_seq = row[3]
        elif kind == 5:
            loaded.timeout_changes.append((row[3], row[4]))
        elif kind == 6:
            has_endpoints = True
    if write_seq is None:
        return None
    loaded.timeout_changes.sort()
    return UnlockedRead(write_seq, loaded, state, has_endpoints)


# -- 3. write --------------------------------------------------------------------------------


_NUMBERS = frozenset({"bigint", "int", "boolean"})  # columns sent joined (pg_joined_numbers)


# The columns of the write's session and message rows: (parameter, SQL type; None: ids
# joined in one text, pg_joined_ids), in the order of the row's columns.
_SESSION_PARAMS = (
    ("s_id", None), ("s_contact", None), ("s_start", "bigint"), ("s_last", "bigint"),
    ("s_expires", "bigint"), ("s_closed", "bigint"), ("s_activity", "bigint"),
    ("s_count", "int"), ("s_in", "int"), ("s_out", "int"), ("s_created", "bigint"),
    ("s_notified", "bigint"), ("s_new", "boolean"), ("s_first_in", "bigint"),
    ("s_first_resp", "bigint"), ("s_reply_sum", "bigint"), ("s_reply_count", "int"),
    ("s_waiting", "bigint"),
)  # fmt: skip
# The write statement's parameter of each MessageWrite field, in field order.
_MESSAGE_PARAMS = tuple(
    {
        "id": "m_id",
        "contact_id": "m_contact",
        "session_id": "m_session",
        "direction": "m_direction",
        "role": "m_role",
        "type": "m_type",
        "content": "m_content",
        "media_url": "m_media",
        "ts_ms": "m_ts",
        "external_id": "m_external",
    }[name]
    for name in MessageWrite._fields
)
# SQL types of the message columns (the others, ids and the direction, are sent as joined
# ids), for the rows (_rows).
_MESSAGE_TYPES = {
    "m_role": "varchar", "m_type": "varchar", "m_content": "text", "m_media": "text",
    "m_ts": "bigint", "m_external": "varchar",
}  # fmt: skip
_MESSAGE_ROW_PARAMS = tuple((name, _MESSAGE_TYPES.get(name)) for name in _MESSAGE_PARAMS)
_SESSION_V = """v(id, contact_id, start_ms, last_ms, expires_ms, closed_at_ms, activity_ms,
         message_count, inbound_count, outbound_count, created_at_ms, close_notified_ms, is_new,
         first_inbound_ms, first_response_ms, reply_sum_ms, reply_count, unanswered_since_ms)"""


def _rows(params: tuple[tuple[str, str | None], ...], one_row: bool) -> str:
    """SQL of the rows whose columns are these parameters: ``unnest`` of one array per
    column, or, ``one_row``, one row of scalars. PostgreSQL plans the UPDATE of a session
    joined to one row of scalars in ~0.04 ms, joined to ``unnest`` of 18 arrays in ~0.23
    ms: the write of a single message is planned at every run."""
    if one_row:
        return "(SELECT " + ", ".join(f"CAST(:{p} AS {t or 'varchar'})" for p, t in params) + ")"
    arrays = (
        pg_joined_ids(p)
        if t is None
        else pg_joined_numbers(p, t)
        if t in _NUMBERS
        else pg_json_texts(p, t)
        for p, t in params
    )
    return "unnest(" + ", ".join(arrays) + ")"


def _session_parts(one_row: bool, guarded: bool = False) -> dict[str, str]:
    rows = f"{_rows(_SESSION_PARAMS, one_row)} AS {_SESSION_V}"
    # guarded (write_unlocked): each part writes only if the statement's guard updated
    # the contact (a one-time filter: the guard runs, and waits, first).
    guard = " AND EXISTS (SELECT FROM guard)" if guarded else ""
    # One row: the session is found by a key probe (the probe idiom of read_state: only
    # the primary key gives "id BETWEEN v AND v ORDER BY id" without a sort) and updated
    # where the probe found it (a TID scan: no index to choose). "s.id = :s_id" left the
    # choice to the planner, and a plan made on empty tables or on statistics of one
    # session per tenant took ix_sessions_start and filtered the id: every session of the
    # tenant per message (a single message's write runs in the probe phase, generic plans:
    # write(probes=True)). The contacts are locked, so no ingest moves the row meanwhile;
    # an update without that lock (the offline refigure) would make this UPDATE skip the
    # row (its new version has another ctid), so the write counts what it updated and
    # raises db.Raced, retried, where it missed it.
    where = (
        """s.ctid = (SELECT k.ctid FROM sessions AS k WHERE k.user_id = :user_id
            AND k.id BETWEEN CAST(:s_id AS varchar) AND CAST(:s_id AS varchar)
            ORDER BY k.id LIMIT 1)"""
        if one_row
        else f"""s.user_id = :user_id AND s.id = v.id COLLATE "C"
          AND s.id = ANY({pg_joined_ids("s_id")} COLLATE "C")"""
    )
    return {
        "added": f"""
        INSERT INTO sessions (user_id, id, contact_id, start_ms, last_ms, expires_ms,
            closed_at_ms, activity_ms, message_count, inbound_count, outbound_count,
            created_at_ms, updated_at_ms, close_notified_ms, first_inbound_ms,
            first_response_ms, reply_sum_ms, reply_count, unanswered_since_ms)
        SELECT :user_id, v.id, v.contact_id, v.start_ms, v.last_ms, v.expires_ms,
            v.closed_at_ms, v.activity_ms, v.message_count, v.inbound_count, v.outbound_count,
            v.created_at_ms, :now_ms, v.close_notified_ms, v.first_inbound_ms,
            v.first_response_ms, v.reply_sum_ms, v.reply_count, v.unanswered_since_ms
        FROM {rows} WHERE v.is_new{guard}
    """,
        "changed": f"""
        UPDATE sessions AS s SET start_ms = v.start_ms, last_ms = v.last_ms,
            expires_ms = v.expires_ms, closed_at_ms = v.closed_at_ms,
            activity_ms = v.activity_ms, message_count = v.message_count,
            inbound_count = v.inbound_count, outbound_count = v.outbound_count,
            close_notified_ms = v.close_notified_ms, updated_at_ms = :now_ms,
            first_inbound_ms = v.first_inbound_ms, first_response_ms = v.first_response_ms,
            reply_sum_ms = v.reply_sum_ms, reply_count = v.reply_count,
            unanswered_since_ms = v.unanswered_since_ms
        FROM {rows}
        WHERE NOT v.is_new{guard} AND {where}{" RETURNING 1" if one_row else ""}
    """,
    }


def _message_parts(one_row: bool, gate: str | None = None) -> dict[str, str]:
    # gate (write_unlocked): the part whose row must have been written first.
    gated = f" WHERE EXISTS (SELECT FROM {gate}) RETURNING 1" if gate else ""
    return {
        "inserted": f"""
        INSERT INTO messages (user_id, id, contact_id, session_id, direction, role, type,
            content, media_url, ts_ms, external_id, created_at_ms)
        SELECT :user_id, v.*, :now_ms
        FROM {_rows(_MESSAGE_ROW_PARAMS, one_row)} AS v{gated}
    """
    }


# The "= ANY(ids)" beside each join makes the ids an index condition of the scan: with
# stale statistics of a growing tenant PostgreSQL otherwise scanned every message (or
# session) of the tenant as the outer side (270 ms for one message on the small bench).
# One statement: its parts see one snapshot and touch disjoint rows (a session is deleted,
# inserted, updated or only marked, never two of them; the moved messages are stored
# ones, the inserted ones carry their final session already). Contacts created by the
# request are inserted here too: the foreign-key checks of a statement run at its end.
# The parts of sessions and of messages have a one-row form (_rows) for a request that
# writes one session or one message (a single message writes one of each).
_WRITE_PARTS = {
    "bumped": contacts_store.bump_sql(pg_joined_ids("b_contacts"), "CAST(:b_enable AS boolean)"),
    "contacts": contacts_store.insert_sql("nc_"),
    "gone": """
        DELETE FROM sessions WHERE user_id = :user_id AND id = ANY(CAST(:gone AS varchar[]) COLLATE "C")
    """,
    "moved": """
        UPDATE messages AS m SET session_id = mv.to_id
        FROM unnest(CAST(:move_from AS varchar[]), CAST(:move_to AS varchar[]))
             AS mv(from_id, to_id)
        WHERE m.user_id = :user_id AND m.session_id = mv.from_id COLLATE "C"
          AND m.session_id = ANY(CAST(:move_from AS varchar[]) COLLATE "C")
    """,
    **_session_parts(one_row=False),
    "marked": """
        UPDATE sessions AS s SET close_notified_ms = n.mark
        FROM unnest(CAST(:n_id AS varchar[]), CAST(:n_mark AS bigint[])) AS n(id, mark)
        WHERE s.user_id = :user_id AND s.id = n.id COLLATE "C"
          AND s.id = ANY(CAST(:n_id AS varchar[]) COLLATE "C")
    """,
    **_message_parts(one_row=False),
    "reassigned": """
        UPDATE messages AS m SET session_id = r.session_id
        FROM unnest(CAST(:r_id AS varchar[]), CAST(:r_session AS varchar[]))
             AS r(id, session_id)
        WHERE m.user_id = :user_id AND m.id = r.id COLLATE "C"
          AND m.id = ANY(CAST(:r_id AS varchar[]) COLLATE "C")
    """,
    **outbox.PG_PARTS,
}
_ONE_ROW_PARTS = {**_session_parts(one_row=True), **_message_parts(one_row=True)}

# The guard of write_unlocked: moves the contact's write_seq if it is still the one read.
# Found by a key probe and updated by ctid (as a session's one-row update). If a writer
# holds the contact, the UPDATE waits for it and then checks its latest version: a writer
# that committed moved write_seq (every writer of a contact's sessions does: Writes.bumped,
# contacts.store.lock_contacts), and the guard updates nothing.
_GUARD_PG = """
        UPDATE contacts SET write_seq = write_seq + 1
        WHERE ctid = (SELECT k.ctid FROM contacts AS k WHERE k.user_id = :user_id
            AND k.id BETWEEN CAST(:g_contact AS varchar) AND CAST(:g_contact AS varchar)
            ORDER BY k.id LIMIT 1)
          AND write_seq = CAST(:g_seen AS bigint)
        RETURNING 1
"""


@functools.cache
def _unlocked_write_pg(session_part: str) -> TextClause:
    """The guarded write of one session (``added`` or ``changed``) and one message."""
    session = _session_parts(one_row=True, guarded=True)[session_part]
    # An update that missed its row (a refigure moved it) writes no message either.
    message = _message_parts(
        one_row=True, gate=session_part if session_part == "changed" else "guard"
    )
    return text(
        f"WITH guard AS ({_GUARD_PG}),\n{session_part} AS ({session}),\n"
        f"inserted AS ({message['inserted']})\n"
        "SELECT (SELECT count(*) FROM guard), (SELECT count(*) FROM inserted)"
    )


def unlocked_session_part(writes: Writes) -> str | None:
    """The session part (``added`` or ``changed``) of a write that :func:`write_unlocked`
    can make: one session, one message, nothing else. None for any other write."""
    if (
        len(writes.messages) != 1
        or len(writes.inserted) + len(writes.updated) != 1
        or writes.contacts
        or writes.deleted
        or writes.moved
        or writes.reassigned
        or writes.notified
        or writes.outbox
    ):
        return None
    return "added" if writes.inserted else "changed"


def unlocked_params(user_id: str, writes: Writes, now_ms: int) -> dict[str, Any]:
    """The parameters of the unlocked write's session and message parts (one row each):
    what :func:`pg_params` gives them, built straight (a third of its time;
    tests/messages/test_write_params.py holds the two equal)."""
    session = writes.inserted[0] if writes.inserted else writes.updated[0]
    fig = _figures(session)
    params = dict(zip(_MESSAGE_PARAMS, writes.messages[0], strict=True))
    params.update(
        user_id=user_id,
        now_ms=now_ms,
        s_id=session.id,
        s_contact=session.contact_id,
        s_start=session.start_ms,
        s_last=session.last_ms,
        s_expires=session.expires_ms,
        s_closed=session.closed_at_ms,
        s_activity=session.activity_ms,
        s_count=session.message_count,
        s_in=session.inbound_count,
        s_out=session.outbound_count,
        s_created=session.created_at_ms,
        s_notified=session.close_notified_ms,
        s_new=bool(writes.inserted),
        s_first_in=fig.first_inbound_ms,
        s_first_resp=fig.first_response_ms,
        s_reply_sum=fig.reply_sum_ms,
        s_reply_count=fig.reply_count,
        s_waiting=fig.unanswered_since_ms,
    )
    return params


async def write_unlocked(
    conn: AsyncConnection,
    user_id: str,
    writes: Writes,
    *,
    contact_id: str,
    seen: int,
    now_ms: int,
) -> bool:
    """Write one session and one message (:func:`unlocked_session_part`) in one statement
    outside a transaction (PostgreSQL, autocommit: it commits as it ends), only if the
    contact's write_seq is still ``seen`` (:func:`read_unlocked`). True when written;
    False, having written nothing of the session's or the message's, when a writer of the
    contact committed since the read, the session's row moved, or a concurrent write won
    a unique key (the same externalId): the caller then takes the locked path."""
    session_part = unlocked_session_part(writes)
    if session_part is None:
        raise ValueError("write_unlocked writes one session and one message")
    params = unlocked_params(user_id, writes, now_ms)
    params["g_contact"] = contact_id
    params["g_seen"] = seen
    try:
        [row] = await fetch_rows(conn, _unlocked_write_pg(session_part), params)
    except Exception as exc:
        if is_race(exc):
            return False
        raise
    return bool(row[0] == 1 and row[1] == 1)


@functools.cache
def _write_pg(
    parts: tuple[str, ...],
    generic_checks: bool,
    one_row: frozenset[str] = frozenset(),
    end_probes: bool = False,
) -> TextClause:
    """The write statement with only the parts a request needs (built once per shape).

    Leaving out the empty parts keeps a planner misled by stale statistics from scanning
    a whole tenant for nothing (e.g. the merge's UPDATE of messages with no merge).
    ``generic_checks``: see :data:`_GENERIC_CHECKS_FROM`. ``one_row``: the parts written
    in their one-row form (:func:`one_row_parts`). ``end_probes``: the statement, planned
    in the probe phase, ends it as it runs (what the caller runs next in the transaction
    plans as it would have after ingest's read).
    """
    ctes = ",\n".join(
        f"{name} AS ({(_ONE_ROW_PARTS if name in one_row else _WRITE_PARTS)[name]})"
        for name in parts
    )
    # The row it returns: the notification, then (generic_checks) the caller's plan mode,
    # then (one-row "changed") the count of sessions updated, last.
    columns = ["(SELECT pg_notify(:channel, '') WHERE CAST(:notify AS boolean))"]
    if generic_checks:
        columns += [
            "current_setting('plan_cache_mode')",
            "set_config('plan_cache_mode', 'force_generic_plan', true)",
        ]
    if end_probes:
        columns.append(END_PROBES)
    if "changed" in parts and "changed" in one_row:  # its RETURNING (_session_parts)
        columns.append("(SELECT count(*) FROM changed)")
    return text(f"WITH {ctes}\nSELECT {', '.join(columns)}")


# The foreign-key checks of the write (one per inserted message or session, PostgreSQL's
# own queries, run when the statement ends) are prepared statements of the connection,
# re-planned at every run under ingest's force_custom_plan: ~24 us each, a third of the
# write of 1,000 messages. Their plan (a primary-key probe) cannot depend on the values,
# so the write statement, once planned, switches them to their generic plan for the rest
# of the statement (set_config, local to the transaction); a second statement puts the
# caller's mode back for whatever the transaction runs next. That round trip costs more
# than re-planning a few checks: only from this many inserted rows.
_GENERIC_CHECKS_FROM = 16
_RESTORE_PLAN_MODE = text("SELECT set_config('plan_cache_mode', :mode, true)")


def _figures(row: TrackedSession) -> Figures:
    """The figures to store: settled by the placement (``settle_figures``) before any write."""
    if row.figures is None:
        raise RuntimeError(f"session {row.id}: figures not settled before the write")
    return row.figures


def _session_row(row: TrackedSession, user_id: str, now_ms: int) -> tuple[Any, ...]:
    """A session's parameters of :data:`_SQLITE_INSERT_SESSION` and
    :data:`_SQLITE_UPDATE_SESSION` (numbered: ``?1`` is the first)."""
    return (
        user_id, row.id, row.contact_id, row.start_ms, row.last_ms, row.expires_ms,
        row.closed_at_ms, row.activity_ms, row.message_count, row.inbound_count,
        row.outbound_count, row.created_at_ms, now_ms, row.close_notified_ms, *_figures(row),
    )  # fmt: skip


def write_parts(writes: Writes) -> tuple[str, ...]:
    """The parts of the PostgreSQL write statement that ``writes`` needs (those with rows)."""
    present = {
        "contacts": writes.contacts,
        "gone": writes.deleted,
        "moved": writes.moved,
        "reassigned": writes.reassigned,
        "added": writes.inserted,
        "changed": writes.updated,
        "marked": writes.notified,
        "inserted": writes.messages,
    }
    parts = (
        *(name for name, given in present.items() if given),
        *outbox.pg_parts(writes.outbox),
    )
    return ("bumped", *parts) if parts and writes.bumped else parts


def one_row_parts(writes: Writes) -> frozenset[str]:
    """The parts of the PostgreSQL write statement that ``writes`` fills with one row, and
    that have a one-row form: the session's when one session is written, the message's
    when one message is."""
    one: tuple[str, ...] = ()
    if len(writes.inserted) + len(writes.updated) == 1:
        one += ("added", "changed")
    if len(writes.messages) == 1:
        one += ("inserted",)
    return frozenset(one)


_PROBE_PARTS = frozenset({"added", "changed", "inserted"})
"""The parts whose one-row forms are key probes and inserts (tests/messages/
test_probe_plans.py): a write of only these, each of one row, and of the bump of
write_seq (key probes, then a TID scan, in any number), may be planned in the probe
phase (generic plans, once per connection)."""


def is_probes(parts: Sequence[str], one_row: frozenset[str]) -> bool:
    """Whether the write statement of these parts is probes only (see :data:`_PROBE_PARTS`)."""
    return all(name == "bumped" or (name in _PROBE_PARTS and name in one_row) for name in parts)


async def write(
    conn: AsyncConnection,
    user_id: str,
    writes: Writes,
    *,
    now_ms: int,
    probes: bool = False,
    after: Awaitable[Any] | None = None,
) -> None:
    """Write the net result (one statement on PostgreSQL, which also notifies the webhook
    delivery workers at commit when deliveries were written).

    ``probes``: the transaction is still in its probe phase (``read_state(end_probes=
    False)``). A single message's write (one session, one message) is then planned as a
    probe, once per connection (its custom plan cost ~0.1 ms of PostgreSQL's time per
    message), and ends the phase as it runs: what the caller runs next in the transaction
    plans as before. Any other write, and a write of nothing, end the phase first (one more
    round trip).

    ``after``: the statement running on ``conn`` (``db.sent_ahead``), awaited once this
    write's parameters are made, before its own statement."""
    send = prepare_write(conn, user_id, writes, now_ms=now_ms, probes=probes)
    if after is not None:
        await after
    await send()


def prepare_write(
    conn: AsyncConnection, user_id: str, writes: Writes, *, now_ms: int, probes: bool = False
) -> Callable[[], Awaitable[None]]:
    """:func:`write` in two steps: its parameters made now (PostgreSQL), its statement
    sent when the function returned is called (e.g. the moment the connection's statement
    before it ends)."""
    if conn.dialect.name != "postgresql":
        return functools.partial(_write_sqlite, conn, user_id, writes, now_ms)
    parts = write_parts(writes)
    one_row = one_row_parts(writes)
    end_probes = probes and bool(parts) and is_probes(parts, one_row)
    params = pg_params(user_id, writes, now_ms, one_row=one_row) if parts else {}
    return functools.partial(
        _send_write_pg, conn, writes, parts, one_row, params, probes, end_probes
    )


async def _send_write_pg(
    conn: AsyncConnection,
    writes: Writes,
    parts: tuple[str, ...],
    one_row: frozenset[str],
    params: dict[str, Any],
    probes: bool,
    end_probes: bool,
) -> None:
    if probes and not end_probes:  # e.g. a replay, which writes nothing
        await fetch_rows(conn, _END_PROBES_ALONE_PG, {})
    if not parts:
        return
    inserted = (
        len(writes.contacts) + len(writes.messages) + len(writes.inserted) + len(writes.outbox)
    )
    generic_checks = inserted >= _GENERIC_CHECKS_FROM
    stmt = _write_pg(parts, generic_checks, one_row, end_probes)
    [row] = await fetch_rows(conn, stmt, params)
    if "changed" in one_row and writes.updated and row[-1] != len(writes.updated):
        raise Raced(f"session {writes.updated[0].id} changed under the write")
    if generic_checks:
        await fetch_rows(conn, _RESTORE_PLAN_MODE, {"mode": row[1]})


def _nulls_as_null(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with each column holding only NULLs sent as one NULL array.

    ``unnest`` of several arrays pads the shorter ones with NULLs (a NULL array is empty),
    so the rows are the same; the driver encodes one NULL instead of checking and writing
    each element (~0.15 ms a 1,000-row column: a new contact's name and email, a text
    message's media URL, an open session's close)."""
    for name, value in params.items():
        if type(value) is list and value and value.count(None) == len(value):
            params[name] = None
    return params


def pg_params(
    user_id: str, w: Writes, now_ms: int, *, one_row: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The parameters of the PostgreSQL write statement for ``w``: those of the parts it
    has (:func:`write_parts`; a single message's are two of ten), scalars for the
    ``one_row`` parts."""
    params: dict[str, Any] = {"user_id": user_id, "now_ms": now_ms}
    # The notification's parameters (channel, notify) always: the statement selects it.
    params.update(outbox.pg_params(w.outbox) if w.outbox else outbox.NO_NOTIFICATION)
    if w.bumped:
        params["b_contacts"] = joined_ids(w.bumped)
        params["b_enable"] = w.enable
    if w.deleted:
        params["gone"] = w.deleted
    if w.moved:
        params["move_from"] = [f for f, _ in w.moved]
        params["move_to"] = [t for _, t in w.moved]
    if w.reassigned:
        params["r_id"] = [mid for mid, _ in w.reassigned]
        params["r_session"] = [sid for _, sid in w.reassigned]
    if w.notified:
        params["n_id"] = [sid for sid, _ in w.notified]
        params["n_mark"] = [mark for _, mark in w.notified]
    if w.contacts:
        params.update(contacts_store.insert_params(w.contacts, "nc_"))
    columns: list[tuple[tuple[tuple[str, str | None], ...], bool]] = []
    if w.inserted or w.updated:
        params.update(_session_columns([*w.inserted, *w.updated], len(w.inserted)))
        columns.append((_SESSION_PARAMS, "changed" in one_row))
    if w.messages:
        params.update(_message_columns(w.messages))
        columns.append((_MESSAGE_ROW_PARAMS, "inserted" in one_row))
    for names, one in columns:
        for name, kind in names:
            if one:
                params[name] = params[name][0]
            elif kind is None:
                params[name] = joined_ids(params[name])  # one id: the id itself
            elif kind in _NUMBERS:
                params[name] = joined_numbers(params[name])
            else:  # texts: role, type, content, media URL, externalId
                params[name] = json_texts(params[name])
    return _nulls_as_null(params)


_SESSION_FIELDS = operator.attrgetter(
    "id", "contact_id", "start_ms", "last_ms", "expires_ms", "closed_at_ms", "activity_ms",
    "message_count", "inbound_count", "outbound_count", "created_at_ms", "close_notified_ms",
)  # fmt: skip
"""A session's columns of :data:`_SESSION_PARAMS` but ``s_new`` and the figures, in order."""


def _session_columns(sessions: list[TrackedSession], new: int) -> dict[str, list[Any]]:
    """The session rows (the first ``new`` of them inserted, the rest updated) as one list
    per column of :data:`_SESSION_PARAMS`: transposed in C (``zip``), not a comprehension
    per column (18 of them over up to 1,000 sessions)."""
    if not sessions:
        return {name: [] for name, _kind in _SESSION_PARAMS}
    fields = zip(*map(_SESSION_FIELDS, sessions), strict=True)
    figures = zip(*map(_figures, sessions), strict=True)
    (ids, contacts, start, last, expires, closed, activity, count, inbound, outbound, created,
     notified) = map(list, fields)  # fmt: skip
    first_in, first_resp, reply_sum, reply_count, waiting = map(list, figures)
    return {
        "s_id": ids,
        "s_contact": contacts,
        "s_start": start,
        "s_last": last,
        "s_expires": expires,
        "s_closed": closed,
        "s_activity": activity,
        "s_count": count,
        "s_in": inbound,
        "s_out": outbound,
        "s_created": created,
        "s_notified": notified,
        "s_new": [True] * new + [False] * (len(sessions) - new),
        "s_first_in": first_in,
        "s_first_resp": first_resp,
        "s_reply_sum": reply_sum,
        "s_reply_count": reply_count,
        "s_waiting": waiting,
    }


def _message_columns(messages: list[MessageWrite]) -> dict[str, list[Any]]:
    """The message rows as one array per column (in MessageWrite's field order)."""
    if not messages:
        return {name: [] for name in _MESSAGE_PARAMS}
    # One transposition in C instead of a comprehension per column.
    return dict(zip(_MESSAGE_PARAMS, map(list, zip(*messages, strict=True)), strict=True))


_SQLITE_DELETE = text("DELETE FROM sessions WHERE user_id = :user_id AND id = :id")
_SQLITE_MOVE = text(
    "UPDATE messages SET session_id = :to_id WHERE user_id = :user_id AND session_id = :from_id"
)
# The session and message rows go to sqlite3 as tuples, their parameters positional (or
# numbered): sqlite3 finds a named parameter in a row's dict by a string it makes anew for
# each parameter of each row (~0.3 us each, 43 a new contact's message: ~12 ms a batch).
_SQLITE_INSERT_SESSION = """
    INSERT INTO sessions (user_id, id, contact_id, start_ms, last_ms, expires_ms, closed_at_ms,
        activity_ms, message_count, inbound_count, outbound_count, created_at_ms,
        updated_at_ms, close_notified_ms, first_inbound_ms, first_response_ms, reply_sum_ms,
        reply_count, unanswered_since_ms)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
        ?19)
"""
# The same row as the insert's (_session_row): ?3 (contact_id) and ?12 (created_at_ms) are
# bound and not used (SQLite allows it: a statement has as many parameters as its highest
# number).
_SQLITE_UPDATE_SESSION = """
    UPDATE sessions SET start_ms = ?4, last_ms = ?5, expires_ms = ?6, closed_at_ms = ?7,
        activity_ms = ?8, message_count = ?9, inbound_count = ?10, outbound_count = ?11,
        updated_at_ms = ?13, close_notified_ms = ?14, first_inbound_ms = ?15,
        first_response_ms = ?16, reply_sum_ms = ?17, reply_count = ?18,
        unanswered_since_ms = ?19
    WHERE user_id = ?1 AND id = ?2
"""
_SQLITE_MARK = text(
    "UPDATE sessions SET close_notified_ms = :mark WHERE user_id = :user_id AND id = :id"
)
# (user_id, then a MessageWrite's fields in order, each the column of its name, then
# created_at_ms)
_SQLITE_INSERT_MESSAGE = (
    f"INSERT INTO messages (user_id, {', '.join(MessageWrite._fields)}, created_at_ms) "
    f"VALUES ({', '.join('?' for _ in range(len(MessageWrite._fields) + 2))})"
)
_SQLITE_REASSIGN = text(
    "UPDATE messages SET session_id = :session_id WHERE user_id = :user_id AND id = :id"
)


async def _write_sqlite(conn: AsyncConnection, user_id: str, w: Writes, now_ms: int) -> None:
    # Rows go to the driver's executemany in this transaction (same connection): they need
    # no type processing, and SQLAlchemy's per-row parameter handling cost ~25 us a row,
    # 30 ms of a 1,000-message batch. sqlite3 takes the statements' ":name" parameters.

    async def many(stmt: TextClause, rows: list[dict[str, Any]]) -> None:
        await sqlite_executemany(conn, stmt.text, rows)

    await contacts_store.insert_contacts(conn, w.contacts)
    await many(_SQLITE_DELETE, [{"user_id": user_id, "id": sid} for sid in w.deleted])
    await many(_SQLITE_MOVE, [{"user_id": user_id, "from_id": f, "to_id": t} for f, t in w.moved])
    await many(
        _SQLITE_REASSIGN,
        [{"user_id": user_id, "id": mid, "session_id": sid} for mid, sid in w.reassigned],
    )
    await sqlite_executemany(
        conn, _SQLITE_INSERT_SESSION, [_session_row(x, user_id, now_ms) for x in w.inserted]
    )
    await sqlite_executemany(
        conn, _SQLITE_UPDATE_SESSION, [_session_row(x, user_id, now_ms) for x in w.updated]
    )
    await many(
        _SQLITE_MARK, [{"user_id": user_id, "id": sid, "mark": mark} for sid, mark in w.notified]
    )
    await sqlite_executemany(
        conn, _SQLITE_INSERT_MESSAGE, [(user_id, *m, now_ms) for m in w.messages]
    )
    await outbox.write_sqlite(conn, user_id, w.outbox, now_ms=now_ms)
