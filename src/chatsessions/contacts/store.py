"""SQL for contacts. Every statement is scoped by ``user_id``."""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import orjson
from sqlalchemy import BigInteger, Boolean, String, delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions import tables
from chatsessions.db import (
    fetch_rows,
    joined_numbers,
    json_texts,
    pg_joined_numbers,
    pg_json_texts,
    sqlite_executemany,
    sqlite_fetch,
)

__all__ = [
    "ContactRow",
    "bump_sql",
    "delete_contact",
    "find_contact_by",
    "find_contacts_by",
    "get_contact",
    "insert_contact",
    "insert_contacts",
    "insert_params",
    "insert_sql",
    "lock_contacts",
    "update_contact",
]

c = tables.contacts.c


class ContactRow(NamedTuple):
    """A stored contact.

    A NamedTuple rather than a frozen dataclass: a batch finds or creates up to 1,000
    (0.5 us each, against 3.7)."""

    id: str
    user_id: str
    first_name: str | None
    last_name: str | None
    phone: str | None
    email: str | None
    channel: str | None
    external_id: str | None
    instagram_id: str | None
    is_bot_active: bool
    do_not_disturb: bool
    created_at_ms: int

    @classmethod
    def from_row(cls, row: Any) -> ContactRow:
        """Build from a ``contacts`` row."""
        return cls(
            id=row.id,
            user_id=row.user_id,
            first_name=row.first_name,
            last_name=row.last_name,
            phone=row.phone,
            email=row.email,
            channel=row.channel,
            external_id=row.external_id,
            instagram_id=row.instagram_id,
            is_bot_active=bool(row.is_bot_active),
            do_not_disturb=bool(row.do_not_disturb),
            created_at_ms=row.created_at_ms,
        )


_COLUMNS = (
    c.id,
    c.user_id,
    c.first_name,
    c.last_name,
    c.phone,
    c.email,
    c.channel,
    c.external_id,
    c.instagram_id,
    c.is_bot_active,
    c.do_not_disturb,
    c.created_at_ms,
)


async def get_contact(conn: AsyncConnection, user_id: str, contact_id: str) -> ContactRow | None:
    """The caller's contact with this id, or None."""
    row = (
        await conn.execute(select(*_COLUMNS).where(c.user_id == user_id, c.id == contact_id))
    ).first()
    return ContactRow.from_row(row) if row else None


async def find_contact_by(
    conn: AsyncConnection, user_id: str, *, field: str, value: str
) -> ContactRow | None:
    """The caller's contact whose ``field`` (phone, email, external_id) equals ``value``."""
    column = {"phone": c.phone, "email": c.email, "external_id": c.external_id}[field]
    row = (
        await conn.execute(select(*_COLUMNS).where(c.user_id == user_id, column == value))
    ).first()
    return ContactRow.from_row(row) if row else None


async def find_contacts_by(
    conn: AsyncConnection, user_id: str, *, field: str, values: Sequence[str]
) -> dict[str, ContactRow]:
    """The caller's contacts whose ``field`` (phone, email, external_id) is one of
    ``values``, by that value (one statement, a unique index probe a value)."""
    found: dict[str, ContactRow] = {}
    unique = sorted(set(values))
    if conn.dialect.name == "postgresql":
        # One statement on the driver, the values as one array: a batch creating 1,000
        # contacts by phone spent ~8 ms in SQLAlchemy's two 500-value IN lists.
        rows = await fetch_rows(conn, _FIND_BY_PG[field], {"user_id": user_id, "values": unique})
    else:  # the same on SQLite, the values as one JSON array (~2 ms of such a batch)
        params = {"user_id": user_id, "values": orjson.dumps(unique).decode()}
        rows = await sqlite_fetch(conn, _FIND_BY_SQLITE[field], params)
    for row in rows:
        contact = ContactRow(
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            row[5],
            row[6],
            row[7],
            row[8],
            bool(row[9]),
            bool(row[10]),
            row[11],
        )
        found[getattr(contact, field)] = contact
    return found


# One probe of the identifier's partial unique index (tables.py) per value, written as
# ingest's probes are (messages.store): "field BETWEEN v AND v ORDER BY field" in a LATERAL
# subquery. With "field = ANY(values)" and no statistics PostgreSQL scanned every contact
# of the tenant that has the identifier, filtering on the values (docs/ingest-plans.md).
_FIND_BY_PG = {
    field: text(
        f"SELECT c.* FROM unnest(CAST(:values AS varchar[])) AS k(v) CROSS JOIN LATERAL ("
        f"SELECT {', '.join(col.name for col in _COLUMNS)} FROM contacts "
        f"WHERE user_id = :user_id AND {field} BETWEEN k.v AND k.v AND {field} IS NOT NULL "
        f"ORDER BY {field} LIMIT 1) AS c"
    )
    for field in ("phone", "email", "external_id")
}
# SQLite: a probe of the identifier's unique constraint (its index) per value.
_FIND_BY_SQLITE = {
    field: (
        f"SELECT {', '.join('c.' + col.name for col in _COLUMNS)} "
        f"FROM json_each(:values) AS k CROSS JOIN contacts AS c "
        f"WHERE c.user_id = :user_id AND c.{field} = k.value"
    )
    for field in ("phone", "email", "external_id")
}


async def insert_contact(conn: AsyncConnection, values: Mapping[str, Any]) -> None:
    """Insert a contact row (``values`` holds every column)."""
    await conn.execute(tables.contacts.insert().values(**values))


# Every column but write_seq, which a new contact starts at its default (0).
_INSERTED = tuple(col for col in tables.contacts.columns if col.name != "write_seq")
_INSERT_COLUMNS = tuple(col.name for col in _INSERTED)
_INSERT_VALUES = operator.itemgetter(*_INSERT_COLUMNS)
# Positional: sqlite3 finds a named parameter in a row's dict by a string it makes anew for
# each parameter of each row (~0.3 us each; 1,000 new contacts: ~4 ms).
_INSERT_SQLITE = (
    f"INSERT INTO contacts ({', '.join(_INSERT_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _name in _INSERT_COLUMNS)})"
)


def _array_sql(column: Any, param: str) -> str:
    """SQL of the array of a column's values in ``param``: texts as JSON
    (db.pg_json_texts), numbers and booleans joined (db.pg_joined_numbers), either way
    not an array the driver checks element by element."""
    if isinstance(column.type, String):
        return pg_json_texts(param, "varchar")
    for kind, name in ((Boolean, "boolean"), (BigInteger, "bigint")):
        if isinstance(column.type, kind):
            return pg_joined_numbers(param, name)
    raise TypeError(f"contacts.{column.name}: no array type for {column.type}")


_TEXT_COLUMNS = frozenset(c.name for c in _INSERTED if isinstance(c.type, String))


def insert_sql(prefix: str = "") -> str:
    """The PostgreSQL INSERT of contact rows given as one array per column, the parameters
    named ``prefix`` + column (:func:`insert_params`): also a part of ingest's write."""
    return (
        f"INSERT INTO contacts ({', '.join(_INSERT_COLUMNS)}) SELECT * FROM unnest("
        + ", ".join(_array_sql(col, prefix + col.name) for col in _INSERTED)
        + ")"
    )


def insert_params(rows: Sequence[Mapping[str, Any]], prefix: str = "") -> dict[str, Any]:
    """The parameters of :func:`insert_sql` for ``rows`` (each holds every column)."""
    if not rows:
        return {prefix + name: None if name in _TEXT_COLUMNS else "" for name in _INSERT_COLUMNS}
    # Transposed in C (zip), not a comprehension per column: a batch inserts up to 1,000.
    columns = zip(*map(_INSERT_VALUES, rows), strict=True)
    params: dict[str, Any] = {}
    for name, column in zip(_INSERT_COLUMNS, columns, strict=True):
        values = list(column)
        params[prefix + name] = (
            json_texts(values) if name in _TEXT_COLUMNS else joined_numbers(values)
        )
    return params


_INSERT_PG = text(insert_sql())


async def insert_contacts(conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert contact rows (each holds every column) in one statement.

    A batch of messages may create 1,000 contacts: the rows go to the driver without
    SQLAlchemy's per-row parameter processing (~35 ms of 1,000 rows), on PostgreSQL as one
    array per column, on SQLite to ``executemany`` in the same transaction.
    """
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        await fetch_rows(conn, _INSERT_PG, insert_params(rows))
        return
    await sqlite_executemany(conn, _INSERT_SQLITE, list(map(_INSERT_VALUES, rows)))


async def update_contact(
    conn: AsyncConnection, user_id: str, contact_id: str, values: Mapping[str, Any]
) -> None:
    """Update some columns of a contact."""
    await conn.execute(
        update(tables.contacts).where(c.user_id == user_id, c.id == contact_id).values(**values)
    )


async def delete_contact(conn: AsyncConnection, user_id: str, contact_id: str) -> bool:
    """Erase a contact with everything of it; True when it existed.

    Every table that carries ``(user_id, contact_id)`` is cleared for the contact, children
    first: messages, sessions, and whatever a later domain keys by contact (such as pending
    webhook events), so an erasure cannot miss a table added after this was written.
    """
    for table in reversed(tables.metadata.sorted_tables):
        if table is tables.contacts or not {"user_id", "contact_id"} <= set(table.c.keys()):
            continue
        await conn.execute(
            delete(table).where(table.c.user_id == user_id, table.c.contact_id == contact_id)
        )
    result = await conn.execute(
        delete(tables.contacts).where(c.user_id == user_id, c.id == contact_id)
    )
    return bool(result.rowcount)


async def lock_contacts(
    conn: AsyncConnection, user_id: str, contact_ids: Iterable[str], *, bump: bool = True
) -> set[str]:
    """Lock contacts for this transaction (PostgreSQL row locks, in id order to avoid
    deadlocks; SQLite already holds the database write lock). Returns the ids that exist.

    ``bump`` (PostgreSQL): also move the contacts' ``write_seq`` (one more statement), as
    every transaction that changes a contact's sessions must, so that a single message
    written without the lock (``messages.store.write_unlocked``) that read them before
    does not commit. False only where the transaction's own write moves it (ingest's) or
    where it changes nothing of the sessions."""
    wanted = sorted(set(contact_ids))
    if not wanted:
        return set()
    if conn.dialect.name == "postgresql":
        params = {"user_id": user_id, "ids": wanted}
        rows = await fetch_rows(conn, _LOCK_PG, params)
        if bump:
            # A statement of its own: its snapshot, taken with the locks held, sees the
            # rows' latest versions, which it updates by ctid (see BUMP_SQL).
            await fetch_rows(conn, _BUMP_PG, params)
        return {row[0] for row in rows}
    stmt = select(c.id).where(c.user_id == user_id, c.id.in_(wanted)).order_by(c.id)
    return {row.id for row in await conn.execute(stmt)}


# The locks taken in the order of the given (sorted) ids, one primary-key probe each, as
# ingest's lock (messages.store._LOAD_PG): with "id IN (...)" and no statistics
# PostgreSQL read every contact of the tenant through the key, filtering on the ids.
_LOCK_PG = text(
    """
    SELECT c.id FROM unnest(CAST(:ids AS varchar[])) AS k(id) CROSS JOIN LATERAL (
        SELECT id FROM contacts
        WHERE user_id = :user_id AND id BETWEEN (k.id COLLATE "C") AND (k.id COLLATE "C")
        ORDER BY id FOR UPDATE
    ) AS c
    """
)


def bump_sql(ids: str, enable: str) -> str:
    """The PostgreSQL UPDATE that moves ``write_seq`` of the contacts whose ids are the SQL
    array ``ids`` (found by one primary-key probe each, updated by ctid: a TID scan, no
    index to choose), of those where it is above 0 unless ``enable`` (an SQL boolean):
    0 means no single message is written without the lock for the contact, so that no
    change needs to show (messages.store.write_unlocked; a single message's write under
    the lock enables it). Only on contacts this transaction holds locked, in a statement
    begun after the lock: its snapshot then sees their latest versions, which nobody else
    can change meanwhile (nor enable: that takes the lock)."""
    return f"""
        UPDATE contacts SET write_seq = write_seq + 1
        WHERE ctid = ANY(ARRAY(
            SELECT p.ctid FROM unnest({ids}) AS k(id) CROSS JOIN LATERAL (
                SELECT ctid FROM contacts
                WHERE user_id = :user_id AND id BETWEEN (k.id COLLATE "C") AND (k.id COLLATE "C")
                ORDER BY id LIMIT 1
            ) AS p
        ))
          AND (write_seq > 0 OR {enable})
    """


_BUMP_PG = text(bump_sql("CAST(:ids AS varchar[])", "false"))
