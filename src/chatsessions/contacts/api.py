"""Routes of the contacts API (DM Champ shapes)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions.auth.api import CurrentUser
from chatsessions.contacts import service
from chatsessions.contacts.schemas import ContactFields, ContactIn, ContactLookup, ContactUpdate
from chatsessions.errors import InvalidParameter, NotFound
from chatsessions.web import (
    DB,
    ClockDep,
    DomainRouter,
    json_response,
    read_json_body,
    schema_of,
    validate_body,
)

router = DomainRouter(prefix="/v1", tags=["contacts"])


@router.post(
    "/contacts",
    openapi_extra=schema_of(ContactIn),
    summary="Create a contact",
    operation_id="createContact",
)
async def create_contact(
    request: Request, caller: CurrentUser, db: DB, clock: ClockDep
) -> Response:
    """Create a contact; 409 with the existing `contactId` when an identifier is taken."""
    fields = validate_body(
        ContactIn, await read_json_body(request, limit=db.settings.max_body_bytes)
    )

    async def work(conn: AsyncConnection) -> str:
        contact = await service.create_contact(
            conn, user_id=caller.user_id, fields=fields, now_ms=clock()
        )
        return contact.id

    contact_id = await db.run_write(work)
    return json_response(
        {
            "success": True,
            "data": {"message": "Successfully created new contact", "contactId": contact_id},
        }
    )


@router.get(
    "/contacts",
    summary="Find a contact by phoneNumber, email or externalId",
    operation_id="findContact",
    openapi_extra=ContactLookup.openapi(),
)
async def find_contact(
    caller: CurrentUser,
    db: DB,
    lookup: Annotated[ContactLookup, Depends(ContactLookup.from_request)],
) -> Response:
    """`{"success": true, "contactId": …}` or 404."""
    given = lookup.model_dump()
    if given["email"] is not None and "@" in given["email"]:
        # An unencoded "+" (jane+tag@…) arrives as a space, which no address contains.
        given["email"] = given["email"].strip().replace(" ", "+")
    fields = validate_body(ContactFields, given)
    if fields.phoneNumber is None and fields.email is None and fields.externalId is None:
        raise InvalidParameter("phoneNumber", "give phoneNumber, email or externalId")
    idents = service.normalised_identifiers(fields)
    async with db.read() as conn:
        contact = await service.find_contact(conn, user_id=caller.user_id, idents=idents)
    if contact is None:
        raise NotFound("contact not found")
    return json_response({"success": True, "contactId": contact.id})


@router.get("/contacts/{contactId}", summary="Read a contact", operation_id="getContact")
async def read_contact(caller: CurrentUser, db: DB, contactId: Annotated[str, Path()]) -> Response:
    """The contact in DM Champ's shape."""
    async with db.read() as conn:
        contact = await service.get_owned_contact(
            conn, user_id=caller.user_id, contact_id=contactId
        )
    return json_response({"success": True, "data": service.contact_as_json(contact)})


@router.put(
    "/contacts/{contactId}",
    openapi_extra=schema_of(ContactUpdate),
    summary="Update a contact",
    operation_id="updateContact",
)
async def update_contact(
    request: Request,
    caller: CurrentUser,
    db: DB,
    clock: ClockDep,
    contactId: Annotated[str, Path()],
) -> Response:
    """Change the fields given."""
    fields = validate_body(
        ContactUpdate, await read_json_body(request, limit=db.settings.max_body_bytes)
    )

    async def work(conn: AsyncConnection) -> None:
        await service.update_contact(
            conn, user_id=caller.user_id, contact_id=contactId, fields=fields, now_ms=clock()
        )

    await db.run_write(work)
    return json_response({"success": True, "message": "Contact updated successfully"})


@router.delete(
    "/contacts/{contactId}",
    summary="Erase a contact and everything of it",
    operation_id="deleteContact",
)
async def delete_contact(
    caller: CurrentUser, db: DB, contactId: Annotated[str, Path()]
) -> Response:
    """Erase the contact with its messages and sessions, in one transaction."""

    async def work(conn: AsyncConnection) -> None:
        await service.erase_contact(conn, user_id=caller.user_id, contact_id=contactId)

    await db.run_write(work)
    return json_response({"success": True})
