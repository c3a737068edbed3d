"""``POST /v1/imports`` on both backends: what is stored, idempotency, errors, isolation."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import httpx

from tests.conftest import Tenant
from tests.factories import make_contact
from tests.imports.helpers import FIXTURES, utc

ALL = "hours=876000&limit=1000&includeMessages=true&messageLimit=1000"


async def post_import(
    client: httpx.AsyncClient, tenant: Tenant, body: bytes, expect: int = 200, **params: str
) -> dict[str, Any]:
    """POST the export; assert the status; the JSON answer."""
    r = await client.post("/v1/imports", params=params, content=body, headers=tenant.auth)
    assert r.status_code == expect, r.text
    data: dict[str, Any] = r.json()
    return data


async def contact_messages(
    client: httpx.AsyncClient, tenant: Tenant, contact_id: str
) -> list[dict[str, Any]]:
    """Every message of the contact, oldest first."""
    r = await client.get(f"/v1/chat-sessions/{contact_id}?{ALL}", headers=tenant.auth)
    assert r.status_code == 200, r.text
    sessions = sorted(r.json()["sessions"], key=lambda s: s["start_date_time"])
    return [m for s in sessions for m in s["messages"]]


async def stored_count(client: httpx.AsyncClient, tenant: Tenant) -> int:
    """How many messages the tenant has in all."""
    r = await client.get(f"/v1/chat-sessions/recent?{ALL}", headers=tenant.auth)
    assert r.status_code == 200, r.text
    return sum(s["message_count"] for s in r.json()["sessions"])


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


async def test_whatsapp_import_stores_one_contact_with_its_sessions(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    body = fixture("whatsapp_android_dmy_24h.txt")
    out = await post_import(
        client, tenant, body, format="whatsapp", me="Corner Shop", tz="Europe/Berlin"
    )
    data = out["data"]
    # 15 Jan 10:00-10:04 is one session; 16 Jan and 31 Jan one each (timeout 60 minutes).
    assert {k: data[k] for k in ("messages", "duplicates", "sessions", "skipped")} == {
        "messages": 6,
        "duplicates": 0,
        "sessions": 3,
        "skipped": 1,
    }
    assert data["timeZone"] == "Europe/Berlin" and data["dateOrder"] == "dmy"
    r = await client.get(f"/v1/contacts/{data['contactId']}", headers=tenant.auth)
    contact = r.json()["data"]
    assert (contact["firstName"], contact["lastName"], contact["channel"]) == (
        "Layla",
        "Haddad",
        "whatsapp",
    )
    messages = await contact_messages(client, tenant, data["contactId"])
    assert [(m["direction"], m["role"], m["type"]) for m in messages[:3]] == [
        ("inbound", "user", "text"),
        ("outbound", "agent", "text"),
        ("inbound", "user", "media"),
    ]
    assert messages[1]["content"] == "Yes it is.\nSizes: S, M and L\n\nPrice: 49 €"
    assert messages[0]["timestamp"] == "2023-01-15T09:00:00.000Z"  # 10:00 in Berlin (UTC+1)
    assert all(m["external_id"].startswith("import:whatsapp:") for m in messages)


async def test_same_file_twice_and_an_overlapping_later_export(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    lines = fixture("whatsapp_android_dmy_24h.txt").decode().splitlines(keepends=True)
    early, later = "".join(lines[:7]), "".join(lines[6:])  # both hold line 7 (the media)
    first = (
        await post_import(client, tenant, early.encode(), format="whatsapp", me="Corner Shop")
    )["data"]
    assert (first["messages"], first["duplicates"]) == (3, 0)
    again = (
        await post_import(client, tenant, early.encode(), format="whatsapp", me="Corner Shop")
    )["data"]
    assert (again["messages"], again["duplicates"], again["contactId"]) == (
        0,
        3,
        first["contactId"],
    )
    rest = (await post_import(client, tenant, later.encode(), format="whatsapp", me="Corner Shop"))[
        "data"
    ]
    assert (rest["messages"], rest["duplicates"], rest["contactId"]) == (3, 1, first["contactId"])
    whole = (
        await post_import(
            client,
            tenant,
            fixture("whatsapp_android_dmy_24h.txt"),
            format="whatsapp",
            me="Corner Shop",
        )
    )["data"]
    assert whole["messages"] == 0 and whole["duplicates"] == 6
    assert await stored_count(client, tenant) == 6


async def test_an_existing_contact_is_found_by_name_or_phone(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    existing = await make_contact(
        client, tenant.auth, firstName="Layla", lastName="Haddad", phoneNumber="+15550100123"
    )
    body = fixture("telegram_single.json")
    by_name = (await post_import(client, tenant, body, format="telegram", me="Corner Shop"))["data"]
    assert by_name["contactId"] == existing and by_name["messages"] == 5
    signal = fixture("signal_chat.md")
    by_phone = (
        await post_import(
            client, tenant, signal, format="signal", me="Me", contactPhone="+1 555 010 0123"
        )
    )["data"]
    assert by_phone["contactId"] == existing and by_phone["messages"] == 4


async def test_meta_export_mojibake_repaired_when_stored(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    out = (
        await post_import(
            client, tenant, fixture("meta_message_1.json"), format="instagram", me="Corner Shop"
        )
    )["data"]
    messages = await contact_messages(client, tenant, out["contactId"])
    assert [m["content"] for m in messages] == [
        "your_activity/messages/inbox/zoe_1/photos/1.jpg",
        "https://example.com/p/123",
        "Merci, à bientôt 😊",
    ]
    r = await client.get(f"/v1/contacts/{out['contactId']}", headers=tenant.auth)
    assert (r.json()["data"]["firstName"], r.json()["data"]["channel"]) == ("Zoë", "instagram")


async def test_bad_files_store_nothing(client: httpx.AsyncClient, tenant: Tenant) -> None:
    good = fixture("whatsapp_android_dmy_24h.txt")
    cut_in_a_character = good[: good.index("🙏".encode()) + 2]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("_chat.txt", good * 50)
    truncated_zip = buffer.getvalue()[: len(buffer.getvalue()) // 2]
    garbage = bytes(range(256)) * 4
    cases = [
        (cut_in_a_character, "whatsapp", "line 11"),
        (truncated_zip, "whatsapp", "not a readable .zip"),
        (garbage, "whatsapp", "line 1"),
        (good + b"\n\n", "telegram", "not valid JSON"),
        (fixture("telegram_single.json")[:-40], "telegram", "ends too soon"),
        (fixture("meta_message_1.json")[:300], "messenger", "not valid JSON"),
        (fixture("telegram_single.json"), "whatsapp", "line 1"),
        (b"hello\nthere\n", "signal", "line 1"),
    ]
    for body, fmt, named in cases:
        out = await post_import(client, tenant, body, expect=400, format=fmt, me="Corner Shop")
        assert out["code"] == "invalid_parameter" and named in out["error"], (fmt, out)
    assert await stored_count(client, tenant) == 0
    r = await client.get("/v1/contacts?phoneNumber=%2B15550100999", headers=tenant.auth)
    assert r.status_code == 404


async def test_group_and_ambiguous_files_store_nothing(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    group = await post_import(
        client,
        tenant,
        fixture("whatsapp_group.txt"),
        expect=400,
        format="whatsapp",
        me="Corner Shop",
    )
    assert "group chat" in group["error"]
    ambiguous = await post_import(
        client,
        tenant,
        fixture("whatsapp_ambiguous.txt"),
        expect=400,
        format="whatsapp",
        me="Corner Shop",
    )
    assert ambiguous["error"].startswith("dateOrder:")
    assert await stored_count(client, tenant) == 0
    given = await post_import(
        client,
        tenant,
        fixture("whatsapp_ambiguous.txt"),
        format="whatsapp",
        me="Corner Shop",
        dateOrder="mdy",
    )
    messages = await contact_messages(client, tenant, given["data"]["contactId"])
    assert messages[0]["timestamp"] == "2023-03-04T10:00:00.000Z"


async def test_bad_parameters_are_400_naming_them(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    body = fixture("whatsapp_android_dmy_24h.txt")
    cases: list[tuple[dict[str, str], str]] = [
        ({}, "format"),
        ({"format": "icq"}, "format"),
        ({"format": "whatsapp", "me": "Corner Shop", "tz": "Mars/Olympus"}, "tz"),
        ({"format": "whatsapp", "me": "Corner Shop", "dateOrder": "dym"}, "dateOrder"),
        ({"format": "whatsapp", "me": "Corner Shop", "contactPhone": "call me"}, "contactPhone"),
        ({"format": "whatsapp"}, "me"),
        ({"format": "whatsapp", "me": "Nobody"}, "me"),
    ]
    for params, name in cases:
        out = await post_import(client, tenant, body, expect=400, **params)
        assert out["error"].startswith(f"{name}:") and out["code"] == "invalid_parameter", out
    empty = await post_import(client, tenant, b"", expect=400, format="whatsapp", me="Corner Shop")
    assert empty["error"].startswith("body:")
    assert await stored_count(client, tenant) == 0


async def test_body_over_32_mib_is_413(client: httpx.AsyncClient, tenant: Tenant) -> None:
    body = b"x" * (32 * 1024 * 1024 + 1)
    out = await post_import(client, tenant, body, expect=413, format="whatsapp", me="Corner Shop")
    assert out["code"] == "payload_too_large"


async def test_imports_are_tenant_isolated(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    body = fixture("signal_chat.md")
    mine = (await post_import(client, tenant, body, format="signal", me="Me"))["data"]
    r = await client.get(f"/v1/contacts/{mine['contactId']}", headers=other_tenant.auth)
    assert r.status_code == 404
    r = await client.get(f"/v1/chat-sessions/{mine['contactId']}", headers=other_tenant.auth)
    assert r.status_code == 404
    # The same export for another tenant is new there: derived ids are per tenant.
    theirs = (await post_import(client, other_tenant, body, format="signal", me="Me"))["data"]
    assert theirs["contactId"] != mine["contactId"] and (
        theirs["messages"],
        theirs["duplicates"],
    ) == (4, 0)
    assert await stored_count(client, tenant) == 4 and await stored_count(client, other_tenant) == 4
    r = await client.post("/v1/imports?format=signal&me=Me", content=body)
    assert r.status_code == 401


async def test_dst_change_with_tz(client: httpx.AsyncClient, tenant: Tenant) -> None:
    body = (
        b"25/03/2023, 23:30 - Layla Haddad: before the change\n"
        b"26/03/2023, 03:30 - Corner Shop: after clocks went forward\n"
        b"29/10/2023, 02:30 - Layla Haddad: this hour happens twice\n"
        b"29/10/2023, 03:30 - Corner Shop: after clocks went back\n"
    )
    out = (
        await post_import(
            client, tenant, body, format="whatsapp", me="Corner Shop", tz="Europe/Berlin"
        )
    )["data"]
    stamps = [m["timestamp"] for m in await contact_messages(client, tenant, out["contactId"])]
    assert stamps == [
        "2023-03-25T22:30:00.000Z",  # UTC+1
        "2023-03-26T01:30:00.000Z",  # UTC+2
        "2023-10-29T00:30:00.000Z",  # the first 02:30 (still UTC+2)
        "2023-10-29T02:30:00.000Z",  # UTC+1
    ]
    assert utc(2023, 3, 26, 1, 30) < utc(2023, 10, 29, 0, 30)


async def test_two_contacts_with_the_name_is_a_conflict(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    for phone in ("+15550100201", "+15550100202"):
        await make_contact(
            client, tenant.auth, firstName="Layla", lastName="Haddad", phoneNumber=phone
        )
    body = fixture("whatsapp_android_dmy_24h.txt")
    out = await post_import(client, tenant, body, expect=409, format="whatsapp", me="Corner Shop")
    assert "several contacts are named 'Layla Haddad'" in out["error"]
    assert await stored_count(client, tenant) == 0
    chosen = await post_import(
        client, tenant, body, format="whatsapp", me="Corner Shop", contactPhone="+15550100202"
    )
    r = await client.get("/v1/contacts?phoneNumber=%2B15550100202", headers=tenant.auth)
    assert r.json()["contactId"] == chosen["data"]["contactId"]
