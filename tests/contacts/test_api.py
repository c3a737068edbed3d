"""The contacts API in DM Champ's shapes (docs/contract.md#writes): create, find, read, update, erase."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from chatsessions.timeutil import format_ms
from tests.conftest import T0, FakeClock, Tenant
from tests.factories import make_contact, post_message

CONTACT_KEYS = {
    "contactId",
    "phoneNumber",
    "firstName",
    "lastName",
    "email",
    "channel",
    "externalId",
    "instagramId",
    "is_bot_active",
    "do_not_disturb",
    "createdAt",
}


async def _create(
    client: httpx.AsyncClient, tenant: Tenant, body: Any, **kw: Any
) -> httpx.Response:
    return await client.post("/v1/contacts", json=body, headers=tenant.auth, **kw)


async def _read(client: httpx.AsyncClient, tenant: Tenant, contact_id: str) -> dict[str, Any]:
    r = await client.get(f"/v1/contacts/{contact_id}", headers=tenant.auth)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


def _assert_invalid(r: httpx.Response, field: str) -> None:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["success"] is False
    assert body["code"] == "invalid_parameter"
    assert field in body["error"]


# --- create -------------------------------------------------------------------------


async def test_create_returns_dm_champ_shape_and_full_contact(
    client: httpx.AsyncClient, tenant: Tenant, clock: FakeClock
) -> None:
    r = await _create(
        client,
        tenant,
        {
            "phoneNumber": "+1 (555) 123-4567",
            "firstName": "Jane",
            "lastName": "Smith",
            "email": "Jane.Smith@Example.com",
            "channel": "whatsapp",
            "externalId": "crm-42",
            "instagramId": "jane.ig",
            "is_bot_active": False,
            "do_not_disturb": True,
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"success", "data"}
    assert body["success"] is True
    assert set(body["data"]) == {"message", "contactId"}
    assert isinstance(body["data"]["message"], str) and body["data"]["message"]
    contact_id = body["data"]["contactId"]
    assert len(contact_id) == 20 and contact_id.isalnum()

    r = await client.get(f"/v1/contacts/{contact_id}", headers=tenant.auth)
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"success", "data"}
    data = r.json()["data"]
    assert set(data) == CONTACT_KEYS
    assert data == {
        "contactId": contact_id,
        "phoneNumber": "+15551234567",
        "firstName": "Jane",
        "lastName": "Smith",
        "email": "jane.smith@example.com",
        "channel": "whatsapp",
        "externalId": "crm-42",
        "instagramId": "jane.ig",
        "is_bot_active": False,
        "do_not_disturb": True,
        "createdAt": "2026-11-18T11:06:40.000Z",
    }
    assert format_ms(clock()) == data["createdAt"]


async def test_defaults_of_a_minimal_contact(client: httpx.AsyncClient, tenant: Tenant) -> None:
    contact_id = await make_contact(client, tenant.auth, phoneNumber="+447911123456")
    data = await _read(client, tenant, contact_id)
    assert data["phoneNumber"] == "+447911123456"
    assert data["email"] is None
    assert data["externalId"] is None
    assert data["instagramId"] is None
    assert data["channel"] is None
    assert data["is_bot_active"] is True
    assert data["do_not_disturb"] is False


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("+1 (555) 123-4567", "+15551234567"),
        ("+1.555.123.4567", "+15551234567"),
        ("15551234567", "+15551234567"),
        ("0015551234567", "+15551234567"),
        ("+44 20 7946 0958", "+442079460958"),
    ],
)
async def test_phone_is_normalised_to_e164(
    client: httpx.AsyncClient, tenant: Tenant, raw: str, e164: str
) -> None:
    contact_id = await make_contact(client, tenant.auth, phoneNumber=raw)
    assert (await _read(client, tenant, contact_id))["phoneNumber"] == e164


@pytest.mark.parametrize(
    "raw", ["+1 555", "12", "+999 1234567", "not a phone", "+1555123456789012"]
)
async def test_impossible_phone_is_400_naming_phone(
    client: httpx.AsyncClient, tenant: Tenant, raw: str
) -> None:
    _assert_invalid(await _create(client, tenant, {"phoneNumber": raw}), "phoneNumber")


async def test_phone_required_unless_email(client: httpx.AsyncClient, tenant: Tenant) -> None:
    _assert_invalid(await _create(client, tenant, {"firstName": "Jane"}), "phoneNumber")
    _assert_invalid(
        await _create(client, tenant, {"firstName": "Jane", "externalId": "x-1"}), "phoneNumber"
    )
    r = await _create(client, tenant, {"email": "only@example.com"})
    assert r.status_code == 200, r.text
    data = await _read(client, tenant, r.json()["data"]["contactId"])
    assert data["phoneNumber"] is None
    assert data["email"] == "only@example.com"


@pytest.mark.parametrize("email", ["not-an-email", "a@", "@example.com", "a b@example.com"])
async def test_bad_email_is_400_naming_email(
    client: httpx.AsyncClient, tenant: Tenant, email: str
) -> None:
    _assert_invalid(await _create(client, tenant, {"email": email}), "email")


@pytest.mark.parametrize(
    ("field", "taken_body", "new_body"),
    [
        ("phone", {"phoneNumber": "+15551230001"}, {"phoneNumber": "+1 555 123 0001"}),
        (
            "email",
            {"phoneNumber": "+15551230002", "email": "dup@example.com"},
            {"phoneNumber": "+15551230003", "email": "DUP@example.com"},
        ),
        (
            "externalId",
            {"phoneNumber": "+15551230004", "externalId": "ext-dup"},
            {"phoneNumber": "+15551230005", "externalId": "ext-dup"},
        ),
    ],
)
async def test_taken_identifier_is_409_with_existing_id(
    client: httpx.AsyncClient,
    tenant: Tenant,
    field: str,
    taken_body: dict[str, Any],
    new_body: dict[str, Any],
) -> None:
    existing = await make_contact(client, tenant.auth, **taken_body)
    r = await _create(client, tenant, new_body)
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["success"] is False
    assert body["code"] == "conflict"
    assert body["contactId"] == existing
    assert body["data"] == {"contactId": existing}
    # Nothing was written: the new phone is still free.
    if field != "phone":
        r = await client.get(
            "/v1/contacts", params={"phoneNumber": new_body["phoneNumber"]}, headers=tenant.auth
        )
        assert r.status_code == 404, r.text


async def test_same_identifiers_in_another_tenant_are_free(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    body = {"phoneNumber": "+15551239999", "email": "x@example.com", "externalId": "same"}
    first = await make_contact(client, tenant.auth, **body)
    r = await _create(client, other_tenant, body)
    assert r.status_code == 200, r.text
    assert r.json()["data"]["contactId"] != first


async def test_unknown_fields_are_ignored(client: httpx.AsyncClient, tenant: Tenant) -> None:
    r = await _create(
        client,
        tenant,
        {"phoneNumber": "+15551234567", "listId": "list-7", "tags": ["a"], "custom": {"x": 1}},
    )
    assert r.status_code == 200, r.text
    data = await _read(client, tenant, r.json()["data"]["contactId"])
    assert set(data) == CONTACT_KEYS


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("firstName", 5),
        ("lastName", ["Smith"]),
        ("email", 7),
        ("channel", {"name": "whatsapp"}),
        ("externalId", 12.5),
        ("instagramId", True),
        ("is_bot_active", "maybe"),
        ("do_not_disturb", "sometimes"),
        ("phoneNumber", 15551234567),
        ("firstName", "x" * 256),
    ],
)
async def test_known_field_of_wrong_type_is_400_naming_it(
    client: httpx.AsyncClient, tenant: Tenant, field: str, value: Any
) -> None:
    body = {"phoneNumber": "+15551234567", field: value}
    _assert_invalid(await _create(client, tenant, body), field)
    r = await client.get(
        "/v1/contacts", params={"phoneNumber": "+15551234567"}, headers=tenant.auth
    )
    assert r.status_code == 404, "a rejected body must not write anything"


@pytest.mark.parametrize("field", ["firstName", "lastName", "externalId", "channel", "email"])
async def test_nul_in_a_string_is_400(
    client: httpx.AsyncClient, tenant: Tenant, field: str
) -> None:
    body = {"phoneNumber": "+15551234567", field: "bad\x00value"}
    _assert_invalid(await _create(client, tenant, body), field)


@pytest.mark.parametrize(
    "content", [b"{not json", b"[]", b'[{"phoneNumber": "+15551234567"}]', b'"text"', b"42", b""]
)
async def test_body_that_is_not_a_json_object_is_400(
    client: httpx.AsyncClient, tenant: Tenant, content: bytes
) -> None:
    r = await client.post(
        "/v1/contacts",
        content=content,
        headers={**tenant.auth, "Content-Type": "application/json"},
    )
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "invalid_parameter"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_body_is_json_whatever_the_content_type(
    client: httpx.AsyncClient, tenant: Tenant, content_type: str | None
) -> None:
    headers = dict(tenant.auth)
    if content_type is not None:
        headers["Content-Type"] = content_type
    r = await client.post(
        "/v1/contacts",
        content=b'{"phoneNumber": "+15551234567", "firstName": "Ann"}',
        headers=headers,
    )
    assert r.status_code == 200, r.text
    assert (await _read(client, tenant, r.json()["data"]["contactId"]))["firstName"] == "Ann"


async def test_create_requires_authentication(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/contacts", json={"phoneNumber": "+15551234567"})
    assert r.status_code == 401
    assert r.json()["code"] == "unauthorized"


# --- find ---------------------------------------------------------------------------


async def test_find_by_each_identifier(client: httpx.AsyncClient, tenant: Tenant) -> None:
    contact_id = await make_contact(
        client, tenant.auth, phoneNumber="+15551234567", email="jane@example.com", externalId="e-1"
    )
    for params in (
        {"phoneNumber": "+15551234567"},
        {"phoneNumber": "+1 (555) 123-4567"},
        {"email": "JANE@example.com"},
        {"externalId": "e-1"},
    ):
        r = await client.get("/v1/contacts", params=params, headers=tenant.auth)
        assert r.status_code == 200, (params, r.text)
        assert r.json() == {"success": True, "contactId": contact_id}


async def test_find_with_unencoded_plus_in_query(client: httpx.AsyncClient, tenant: Tenant) -> None:
    contact_id = await make_contact(client, tenant.auth, phoneNumber="+15551234567")
    # A raw "+" in a query string means a space; the number must still match.
    r = await client.get("/v1/contacts?phoneNumber=+15551234567", headers=tenant.auth)
    assert r.status_code == 200, r.text
    assert r.json()["contactId"] == contact_id
    r = await client.get("/v1/contacts?phoneNumber=%2B15551234567", headers=tenant.auth)
    assert r.json()["contactId"] == contact_id


async def test_find_email_with_unencoded_plus(client: httpx.AsyncClient, tenant: Tenant) -> None:
    contact_id = await make_contact(client, tenant.auth, email="jane+crm@example.com")
    for query in ("email=jane+crm@example.com", "email=jane%2Bcrm%40example.com"):
        r = await client.get(f"/v1/contacts?{query}", headers=tenant.auth)
        assert r.status_code == 200, (query, r.text)
        assert r.json()["contactId"] == contact_id


async def test_find_unknown_is_404(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await make_contact(client, tenant.auth, phoneNumber="+15551234567", externalId="e-1")
    for params in (
        {"phoneNumber": "+15557654321"},
        {"email": "no@example.com"},
        {"externalId": "e-2"},
    ):
        r = await client.get("/v1/contacts", params=params, headers=tenant.auth)
        assert r.status_code == 404, r.text
        assert r.json()["code"] == "not_found"
        assert r.json()["success"] is False


async def test_find_needs_an_identifier(client: httpx.AsyncClient, tenant: Tenant) -> None:
    _assert_invalid(await client.get("/v1/contacts", headers=tenant.auth), "phoneNumber")
    _assert_invalid(
        await client.get("/v1/contacts?phoneNumber=", headers=tenant.auth), "phoneNumber"
    )
    r = await client.get("/v1/contacts", params={"externalId": "a\x00b"}, headers=tenant.auth)
    _assert_invalid(r, "externalId")


# --- read ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad_id", ["AAAAAAAAAAAAAAAAAAAA", "short", "x" * 300, "..%2F..", "a%00b"])
async def test_read_unknown_contact_is_404(
    client: httpx.AsyncClient, tenant: Tenant, bad_id: str
) -> None:
    r = await client.get(f"/v1/contacts/{bad_id}", headers=tenant.auth)
    assert r.status_code == 404, r.text
    assert r.json()["code"] == "not_found"


# --- update -------------------------------------------------------------------------


async def test_update_changes_the_fields_given(client: httpx.AsyncClient, tenant: Tenant) -> None:
    contact_id = await make_contact(
        client, tenant.auth, phoneNumber="+15551234567", email="a@example.com", externalId="e-1"
    )
    before = await _read(client, tenant, contact_id)
    r = await client.put(
        f"/v1/contacts/{contact_id}",
        json={
            "firstName": "Janet",
            "phoneNumber": "+1 555 765 4321",
            "do_not_disturb": True,
            "listId": "ignored",
        },
        headers=tenant.auth,
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True, "message": "Contact updated successfully"}
    after = await _read(client, tenant, contact_id)
    assert after == {
        **before,
        "firstName": "Janet",
        "phoneNumber": "+15557654321",
        "do_not_disturb": True,
    }
    # The new number finds it, the old one no longer does.
    r = await client.get(
        "/v1/contacts", params={"phoneNumber": "+15557654321"}, headers=tenant.auth
    )
    assert r.json()["contactId"] == contact_id
    r = await client.get(
        "/v1/contacts", params={"phoneNumber": "+15551234567"}, headers=tenant.auth
    )
    assert r.status_code == 404


async def test_update_may_keep_its_own_identifiers(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    contact_id = await make_contact(
        client, tenant.auth, phoneNumber="+15551234567", externalId="e-1"
    )
    r = await client.put(
        f"/v1/contacts/{contact_id}",
        json={"phoneNumber": "+15551234567", "externalId": "e-1", "lastName": "Doe"},
        headers=tenant.auth,
    )
    assert r.status_code == 200, r.text
    assert (await _read(client, tenant, contact_id))["lastName"] == "Doe"


@pytest.mark.parametrize(
    "change",
    [{"phoneNumber": "+15550000001"}, {"email": "taken@example.com"}, {"externalId": "taken"}],
)
async def test_update_to_a_taken_identifier_is_409(
    client: httpx.AsyncClient, tenant: Tenant, change: dict[str, str]
) -> None:
    owner = await make_contact(
        client,
        tenant.auth,
        phoneNumber="+15550000001",
        email="taken@example.com",
        externalId="taken",
    )
    contact_id = await make_contact(client, tenant.auth, phoneNumber="+15550000002")
    before = await _read(client, tenant, contact_id)
    r = await client.put(
        f"/v1/contacts/{contact_id}", json={**change, "firstName": "Changed"}, headers=tenant.auth
    )
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "conflict"
    assert r.json()["contactId"] == owner
    assert await _read(client, tenant, contact_id) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"firstName": 5}, "firstName"),
        ({"is_bot_active": "maybe"}, "is_bot_active"),
        ({"is_bot_active": None}, "is_bot_active"),
        ({"phoneNumber": "+1 555"}, "phoneNumber"),
        ({"email": "nope"}, "email"),
        ({"lastName": "a\x00"}, "lastName"),
    ],
)
async def test_update_with_a_bad_field_is_400_and_changes_nothing(
    client: httpx.AsyncClient, tenant: Tenant, body: dict[str, Any], field: str
) -> None:
    contact_id = await make_contact(client, tenant.auth)
    before = await _read(client, tenant, contact_id)
    _assert_invalid(
        await client.put(f"/v1/contacts/{contact_id}", json=body, headers=tenant.auth), field
    )
    assert await _read(client, tenant, contact_id) == before


async def test_update_cannot_remove_every_identifier(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    contact_id = await make_contact(client, tenant.auth, phoneNumber="+15551234567")
    r = await client.put(
        f"/v1/contacts/{contact_id}", json={"phoneNumber": None}, headers=tenant.auth
    )
    assert r.status_code == 400, r.text
    assert (await _read(client, tenant, contact_id))["phoneNumber"] == "+15551234567"


async def test_update_unknown_contact_is_404(client: httpx.AsyncClient, tenant: Tenant) -> None:
    r = await client.put(
        "/v1/contacts/AAAAAAAAAAAAAAAAAAAA", json={"firstName": "X"}, headers=tenant.auth
    )
    assert r.status_code == 404, r.text
    assert r.json()["code"] == "not_found"


async def test_update_body_must_be_a_json_object(client: httpx.AsyncClient, tenant: Tenant) -> None:
    contact_id = await make_contact(client, tenant.auth)
    for content in (b"[]", b"nope"):
        r = await client.put(f"/v1/contacts/{contact_id}", content=content, headers=tenant.auth)
        assert r.status_code == 400, r.text


# --- erase --------------------------------------------------------------------------


async def test_delete_erases_contact_messages_and_sessions(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    contact_id = await make_contact(client, tenant.auth, phoneNumber="+15551234567")
    keep = await make_contact(client, tenant.auth, phoneNumber="+15557654321")
    first = await post_message(
        client, tenant.auth, contact_id, T0 - 3 * 3_600_000, externalId="wamid.1"
    )
    second = await post_message(client, tenant.auth, contact_id, T0 - 60_000, externalId="wamid.2")
    kept = await post_message(client, tenant.auth, keep, T0 - 60_000)
    assert first["sessionId"] != second["sessionId"]

    r = await client.delete(f"/v1/contacts/{contact_id}", headers=tenant.auth)
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True}

    r = await client.get(f"/v1/contacts/{contact_id}", headers=tenant.auth)
    assert r.status_code == 404
    r = await client.get(
        "/v1/contacts", params={"phoneNumber": "+15551234567"}, headers=tenant.auth
    )
    assert r.status_code == 404
    r = await client.get(f"/v1/chat-sessions/{contact_id}", headers=tenant.auth)
    assert r.status_code == 404
    for posted in (first, second):
        r = await client.get(f"/v1/sessions/{posted['sessionId']}", headers=tenant.auth)
        assert r.status_code == 404, r.text
    r = await client.get("/v1/chat-sessions/recent?hours=24", headers=tenant.auth)
    assert [s["session_id"] for s in r.json()["sessions"]] == [kept["sessionId"]]

    # The other contact is untouched.
    r = await client.get(f"/v1/sessions/{kept['sessionId']}", headers=tenant.auth)
    assert r.status_code == 200 and r.json()["session"]["message_count"] == 1

    # The erased messages' external ids are free again: a replay stores a new message.
    again = await make_contact(client, tenant.auth, phoneNumber="+15551234567")
    assert again != contact_id
    replay = await post_message(client, tenant.auth, again, T0 - 60_000, externalId="wamid.2")
    assert "duplicate" not in replay
    assert replay["messageId"] != second["messageId"]
    assert replay["sessionOpened"] is True


async def test_delete_is_404_the_second_time(client: httpx.AsyncClient, tenant: Tenant) -> None:
    contact_id = await make_contact(client, tenant.auth)
    assert (
        await client.delete(f"/v1/contacts/{contact_id}", headers=tenant.auth)
    ).status_code == 200
    r = await client.delete(f"/v1/contacts/{contact_id}", headers=tenant.auth)
    assert r.status_code == 404
    assert r.json()["code"] == "not_found"
