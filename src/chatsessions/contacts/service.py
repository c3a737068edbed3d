"""The rules of contacts: normalisation, uniqueness, find-or-create, erase."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions import ids
from chatsessions.contacts import store
from chatsessions.contacts.normalise import normalise_email, normalise_phone
from chatsessions.contacts.schemas import ContactFields
from chatsessions.contacts.store import ContactRow
from chatsessions.errors import Conflict, InvalidParameter, NotFound
from chatsessions.timeutil import format_ms

__all__ = [
    "contact_as_json",
    "create_contact",
    "erase_contact",
    "find_contact",
    "find_or_create_contact",
    "find_or_create_contacts",
    "find_or_plan_contacts",
    "get_owned_contact",
    "normalised_identifiers",
    "update_contact",
]

_IDENTIFIERS = (("externalId", "external_id"), ("phoneNumber", "phone"), ("email", "email"))
_COLUMNS = tuple(column for _api, column in _IDENTIFIERS)  # in the order they are matched


def normalised_identifiers(fields: ContactFields, prefix: str = "") -> dict[str, str | None]:
    """``{"external_id", "phone", "email"}`` from the request, normalised (400 naming the field)."""
    out: dict[str, str | None] = {"external_id": None, "phone": None, "email": None}
    if fields.externalId is not None and fields.externalId.strip():
        out["external_id"] = fields.externalId.strip()
    if fields.phoneNumber is not None and fields.phoneNumber.strip():
        try:
            out["phone"] = normalise_phone(fields.phoneNumber)
        except ValueError as exc:
            raise InvalidParameter(prefix + "phoneNumber", str(exc)) from None
    if fields.email is not None and fields.email.strip():
        try:
            out["email"] = normalise_email(fields.email)
        except ValueError as exc:
            raise InvalidParameter(prefix + "email", str(exc)) from None
    return out


def _row_values(fields: ContactFields, idents: dict[str, str | None]) -> dict[str, Any]:
    return {
        "first_name": (fields.firstName or "").strip() or None,
        "last_name": (fields.lastName or "").strip() or None,
        "phone": idents["phone"],
        "email": idents["email"],
        "channel": (fields.channel or "").strip() or None,
        "external_id": idents["external_id"],
        "instagram_id": (fields.instagramId or "").strip() or None,
        "is_bot_active": True if fields.is_bot_active is None else fields.is_bot_active,
        "do_not_disturb": False if fields.do_not_disturb is None else fields.do_not_disturb,
    }


def _conflict(api_name: str, contact_id: str) -> Conflict:
    """409 carrying the existing contact's id (top level, and in ``data`` as on success)."""
    return Conflict(
        f"a contact with this {api_name} already exists",
        contactId=contact_id,
        data={"contactId": contact_id},
    )


async def _first_taken(
    conn: AsyncConnection, user_id: str, idents: dict[str, str | None], exclude: str | None = None
) -> tuple[str, ContactRow] | None:
    for api_name, column in _IDENTIFIERS:
        value = idents.get(column)
        if value is None:
            continue
        found = await store.find_contact_by(conn, user_id, field=column, value=value)
        if found is not None and found.id != exclude:
            return api_name, found
    return None


async def create_contact(
    conn: AsyncConnection, *, user_id: str, fields: ContactFields, now_ms: int
) -> ContactRow:
    """Create a contact (409 with the existing id when phone, email or externalId is taken)."""
    idents = normalised_identifiers(fields)
    if idents["phone"] is None and idents["email"] is None:
        raise InvalidParameter("phoneNumber", "is required unless email is given")
    taken = await _first_taken(conn, user_id, idents)
    if taken is not None:
        api_name, existing = taken
        raise _conflict(api_name, existing.id)
    # Its single messages are written without the lock from the first one on (write_seq
    # above 0, messages.store.write_unlocked): a contact made through the API is what
    # single messages name by contactId. One found or created by messages or an import
    # starts at 0, which spares its batches the move (its first single message enables it).
    enabled = 1 if conn.dialect.name == "postgresql" else 0  # SQLite: always locked
    return await _insert(conn, user_id, fields, idents, now_ms, write_seq=enabled)


def _new_row(
    user_id: str,
    fields: ContactFields,
    idents: dict[str, str | None],
    now_ms: int,
    new_id: Callable[[], str] = ids.new_id,
) -> dict[str, Any]:
    row = _row_values(fields, idents)  # one dict, not two merged: a batch makes 1,000
    row["user_id"] = user_id
    row["id"] = new_id()
    row["created_at_ms"] = now_ms
    row["updated_at_ms"] = now_ms
    return row


def _contact_of(values: dict[str, Any]) -> ContactRow:
    # Positional: a batch makes up to 1,000 (1.3 us each, against 1.8 by keyword).
    return ContactRow(
        values["id"],
        values["user_id"],
        values["first_name"],
        values["last_name"],
        values["phone"],
        values["email"],
        values["channel"],
        values["external_id"],
        values["instagram_id"],
        values["is_bot_active"],
        values["do_not_disturb"],
        values["created_at_ms"],
    )


async def _insert(
    conn: AsyncConnection,
    user_id: str,
    fields: ContactFields,
    idents: dict[str, str | None],
    now_ms: int,
    *,
    write_seq: int = 0,
) -> ContactRow:
    values = _new_row(user_id, fields, idents, now_ms)
    values["write_seq"] = write_seq
    await store.insert_contact(conn, values)
    return _contact_of(values)


async def find_contact(
    conn: AsyncConnection, *, user_id: str, idents: dict[str, str | None]
) -> ContactRow | None:
    """Match ``external_id``, then phone, then email."""
    for _api, column in _IDENTIFIERS:
        value = idents.get(column)
        if value is not None:
            found = await store.find_contact_by(conn, user_id, field=column, value=value)
            if found is not None:
                return found
    return None


async def find_or_create_contact(
    conn: AsyncConnection,
    *,
    user_id: str,
    fields: ContactFields,
    now_ms: int,
    prefix: str = "contact.",
) -> tuple[ContactRow, bool]:
    """The contact matching ``externalId``, then phone, then email; created when none does.

    Returns ``(contact, created)``: :func:`find_or_create_contacts` of one.
    """
    [found] = await find_or_create_contacts(
        conn, user_id=user_id, wanted=[(fields, prefix)], now_ms=now_ms
    )
    return found


async def find_or_create_contacts(
    conn: AsyncConnection,
    *,
    user_id: str,
    wanted: list[tuple[ContactFields, str]],
    now_ms: int,
) -> list[tuple[ContactRow, bool]]:
    """For each ``(fields, error prefix)`` in order, the contact matching ``externalId``,
    then phone, then email, created when none does (a later entry finds one created for
    an earlier): the result of finding or creating them one by one, in a few statements.

    Returns ``(contact, created)`` per entry. A concurrent creation of the same contact
    makes the insert fail on a unique constraint; the caller's transaction retry then
    finds it.
    """
    out, new_rows = await find_or_plan_contacts(conn, user_id=user_id, wanted=wanted, now_ms=now_ms)
    await store.insert_contacts(conn, new_rows)
    return out


async def find_or_plan_contacts(
    conn: AsyncConnection,
    *,
    user_id: str,
    wanted: list[tuple[ContactFields, str]],
    now_ms: int,
    identifiers: Sequence[dict[str, str | None] | None] | None = None,
) -> tuple[list[tuple[ContactRow, bool]], list[dict[str, Any]]]:
    """:func:`find_or_create_contacts` without the insert: also returns the rows of the
    contacts to create (each holds every column), for the caller to insert later in the
    same transaction (ingest writes them with its messages, ``messages.store.write``).

    ``identifiers``: each entry's :func:`normalised_identifiers`, where the caller already
    has them (None: normalised here), in ``wanted``'s order."""
    idents_of = []
    given = identifiers if identifiers is not None else [None] * len(wanted)
    for (fields, prefix), known_idents in zip(wanted, given, strict=True):
        idents = (
            known_idents if known_idents is not None else normalised_identifiers(fields, prefix)
        )
        if idents["external_id"] is None and idents["phone"] is None and idents["email"] is None:
            raise InvalidParameter(prefix.rstrip("."), "needs phoneNumber, email or externalId")
        idents_of.append(idents)
    # A batch may create 1,000 contacts: their ids drawn in blocks (~0.3 us an id, not ~3).
    new_id = ids.IdSupply()
    known: dict[str, dict[str, ContactRow]] = {}
    for column in _COLUMNS:
        values = [v for idents in idents_of if (v := idents[column]) is not None]
        known[column] = (
            await store.find_contacts_by(conn, user_id, field=column, values=values)
            if values
            else {}
        )
    out: list[tuple[ContactRow, bool]] = []
    new_rows: list[dict[str, Any]] = []
    for (fields, _prefix), idents in zip(wanted, idents_of, strict=True):
        found = None
        for column in _COLUMNS:  # externalId, then phone, then email
            value = idents[column]
            if value is not None:
                found = known[column].get(value)
                if found is not None:
                    break
        if found is not None:
            out.append((found, False))
            continue
        row = _new_row(user_id, fields, idents, now_ms, new_id)
        new_rows.append(row)
        created = _contact_of(row)
        for column in _COLUMNS:
            value = idents[column]
            if value is not None:
                known[column][value] = created
        out.append((created, True))
    return out, new_rows


async def get_owned_contact(conn: AsyncConnection, *, user_id: str, contact_id: str) -> ContactRow:
    """The caller's contact, or 404 (another tenant's contact does not exist for the caller)."""
    contact = await store.get_contact(conn, user_id, contact_id) if ids.is_id(contact_id) else None
    if contact is None:
        raise NotFound("contact not found")
    return contact


async def update_contact(
    conn: AsyncConnection, *, user_id: str, contact_id: str, fields: ContactFields, now_ms: int
) -> None:
    """Change the fields given (DM Champ's PUT); 409 when an identifier is taken by another."""
    await get_owned_contact(conn, user_id=user_id, contact_id=contact_id)
    given = fields.model_fields_set
    idents = normalised_identifiers(fields)
    taken = await _first_taken(conn, user_id, idents, exclude=contact_id)
    if taken is not None:
        api_name, existing = taken
        raise _conflict(api_name, existing.id)
    column_of = {
        "firstName": "first_name",
        "lastName": "last_name",
        "phoneNumber": "phone",
        "email": "email",
        "channel": "channel",
        "externalId": "external_id",
        "instagramId": "instagram_id",
        "is_bot_active": "is_bot_active",
        "do_not_disturb": "do_not_disturb",
    }
    full = _row_values(fields, idents)
    values: dict[str, Any] = {}
    for api_name in given:
        column = column_of[api_name]
        if column in ("is_bot_active", "do_not_disturb") and getattr(fields, api_name) is None:
            raise InvalidParameter(api_name, "must be true or false")
        values[column] = full[column]
    if not values:
        return
    values["updated_at_ms"] = now_ms
    await store.update_contact(conn, user_id, contact_id, values)
    after = await store.get_contact(conn, user_id, contact_id)
    if (
        after is not None
        and after.phone is None
        and after.email is None
        and after.external_id is None
    ):
        raise InvalidParameter("phoneNumber", "a contact needs a phoneNumber, email or externalId")


async def erase_contact(conn: AsyncConnection, *, user_id: str, contact_id: str) -> None:
    """Erase the contact with all its messages and sessions (404 when not the caller's)."""
    await get_owned_contact(conn, user_id=user_id, contact_id=contact_id)
    # No write_seq to move: a write that read the contact before finds it gone.
    await store.lock_contacts(conn, user_id, [contact_id], bump=False)
    await store.delete_contact(conn, user_id, contact_id)


def contact_as_json(contact: ContactRow) -> dict[str, Any]:
    """The DM Champ shape of a contact."""
    return {
        "contactId": contact.id,
        "phoneNumber": contact.phone,
        "firstName": contact.first_name,
        "lastName": contact.last_name,
        "email": contact.email,
        "channel": contact.channel,
        "externalId": contact.external_id,
        "instagramId": contact.instagram_id,
        "is_bot_active": contact.is_bot_active,
        "do_not_disturb": contact.do_not_disturb,
        "createdAt": format_ms(contact.created_at_ms),
    }
