"""DM Champ's chat export: GET /v1/chat-exports/recent (json and txt, filters, bounds)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from chatsessions.db import Database
from chatsessions.exports import service as exports_service
from tests.conftest import T0, Tenant
from tests.factories import make_contact, post_message

MIN = 60_000
URL = "/v1/chat-exports/recent"


@dataclass
class Scene:
    jane: str
    bob: str


async def _scene(client: httpx.AsyncClient, tenant: Tenant) -> Scene:
    """Jane: text, reply, media, tool use, a text with a media URL, an old message; Bob: text."""
    auth = tenant.auth
    jane = await make_contact(
        client, auth, phoneNumber="+15551234567", email="jane@example.com", channel="whatsapp"
    )
    bob = await make_contact(client, auth, phoneNumber="+15557654321", firstName="", lastName="")
    await make_contact(client, auth, phoneNumber="+15550000000", firstName="Silent")
    await post_message(client, auth, jane, T0 - 5 * 60 * MIN, content="old news")
    await post_message(client, auth, jane, T0 - 30 * MIN, content="Hi!")
    await post_message(
        client, auth, jane, T0 - 29 * MIN, direction="outbound", content="Hello Jane"
    )
    await post_message(
        client,
        auth,
        jane,
        T0 - 28 * MIN,
        type="media",
        content="my receipt",
        mediaUrl="https://cdn.example.com/r.jpg",
    )
    await post_message(
        client,
        auth,
        jane,
        T0 - 27 * MIN,
        direction="outbound",
        role="tool",
        type="tool_use",
        content="lookup_order(42)",
    )
    await post_message(
        client,
        auth,
        jane,
        T0 - 26 * MIN,
        type="text",
        content="and this",
        mediaUrl="https://cdn.example.com/s.png",
    )
    await post_message(client, auth, bob, T0 - 10 * MIN, content="Bob here")
    return Scene(jane=jane, bob=bob)


async def _export(client: httpx.AsyncClient, tenant: Tenant, query: str) -> dict[str, Any]:
    r = await client.get(f"{URL}?{query}", headers=tenant.auth)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = r.json()
    assert body["success"] is True
    assert body["count"] == len(body["data"])
    return body


JANE_ALL = (
    "[2026-11-18 10:36:40 UTC] Jane Smith (user): Hi!\n"
    "[2026-11-18 10:37:40 UTC] Assistant (assistant): Hello Jane\n"
    "[2026-11-18 10:38:40 UTC] Jane Smith (user): my receipt [media: https://cdn.example.com/r.jpg]\n"
    "[2026-11-18 10:39:40 UTC] Tool (tool): [tool_use] lookup_order(42)\n"
    "[2026-11-18 10:40:40 UTC] Jane Smith (user): and this [media: https://cdn.example.com/s.png]"
)


async def test_json_export_shape_order_and_transcript(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    scene = await _scene(client, tenant)
    body = await _export(client, tenant, "hours=1")
    assert body["count"] == 2
    assert body["truncated"] is False
    bob, jane = body["data"]
    assert set(jane) >= {
        "contactId",
        "contactName",
        "phoneNumber",
        "email",
        "messageCount",
        "chatExport",
    }
    assert bob["contactId"] == scene.bob, "newest activity first"
    assert bob["contactName"] is None
    assert bob["phoneNumber"] == "+15557654321"
    assert bob["messageCount"] == 1
    assert bob["chatExport"] == "[2026-11-18 10:56:40 UTC] +15557654321 (user): Bob here"
    assert jane["contactId"] == scene.jane
    assert jane["contactName"] == "Jane Smith"
    assert jane["phoneNumber"] == "+15551234567"
    assert jane["email"] == "jane@example.com"
    assert jane["messageCount"] == 5
    assert jane["chatExport"] == JANE_ALL


async def test_window_is_the_past_hours(client: httpx.AsyncClient, tenant: Tenant) -> None:
    scene = await _scene(client, tenant)
    body = await _export(client, tenant, "hours=6")
    jane = next(d for d in body["data"] if d["contactId"] == scene.jane)
    assert jane["messageCount"] == 6
    assert jane["chatExport"].startswith("[2026-11-18 06:06:40 UTC] Jane Smith (user): old news\n")
    assert jane["chatExport"].endswith(JANE_ALL)
    # The window's lower bound is inclusive, to the millisecond.
    contact = await make_contact(client, tenant.auth)
    await post_message(client, tenant.auth, contact, T0 - 2 * 60 * MIN, content="edge")
    ids = [d["contactId"] for d in (await _export(client, tenant, "hours=2"))["data"]]
    assert contact in ids
    await post_message(client, tenant.auth, scene.bob, T0 - 3 * 60 * MIN - 1)
    body = await _export(client, tenant, "hours=3")
    bob = next(d for d in body["data"] if d["contactId"] == scene.bob)
    assert bob["messageCount"] == 1


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (
            "media",
            {
                "jane": (
                    "[2026-11-18 10:38:40 UTC] Jane Smith (user): my receipt "
                    "[media: https://cdn.example.com/r.jpg]\n"
                    "[2026-11-18 10:40:40 UTC] Jane Smith (user): and this "
                    "[media: https://cdn.example.com/s.png]"
                )
            },
        ),
        (
            "tool_use",
            {"jane": "[2026-11-18 10:39:40 UTC] Tool (tool): [tool_use] lookup_order(42)"},
        ),
        (
            "text",
            {
                "bob": "[2026-11-18 10:56:40 UTC] +15557654321 (user): Bob here",
                "jane": (
                    "[2026-11-18 10:36:40 UTC] Jane Smith (user): Hi!\n"
                    "[2026-11-18 10:37:40 UTC] Assistant (assistant): Hello Jane"
                ),
            },
        ),
        (
            "all",
            {"bob": "[2026-11-18 10:56:40 UTC] +15557654321 (user): Bob here", "jane": JANE_ALL},
        ),
        (
            "ALL",
            {"bob": "[2026-11-18 10:56:40 UTC] +15557654321 (user): Bob here", "jane": JANE_ALL},
        ),
    ],
)
async def test_filters(
    client: httpx.AsyncClient, tenant: Tenant, flt: str, expected: dict[str, str]
) -> None:
    scene = await _scene(client, tenant)
    names = {scene.jane: "jane", scene.bob: "bob"}
    body = await _export(client, tenant, f"hours=1&filter={flt}")
    got = {names[d["contactId"]]: d["chatExport"] for d in body["data"]}
    assert got == expected
    assert list(got) == [k for k in ("bob", "jane") if k in expected], "newest activity first"
    for d in body["data"]:
        assert d["messageCount"] == expected[names[d["contactId"]]].count("\n[") + 1


async def test_order_by_filtered_activity_and_ties_by_contact_id(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    a = await make_contact(client, tenant.auth)
    b = await make_contact(client, tenant.auth)
    c = await make_contact(client, tenant.auth)
    await post_message(client, tenant.auth, a, T0 - 5 * MIN)
    await post_message(client, tenant.auth, b, T0 - 5 * MIN)
    await post_message(client, tenant.auth, c, T0 - 20 * MIN)
    await post_message(client, tenant.auth, c, T0 - 30 * MIN, type="tool_use")
    body = await _export(client, tenant, "hours=1")
    assert [d["contactId"] for d in body["data"]] == [*sorted([a, b]), c]
    body = await _export(client, tenant, "hours=1&filter=tool_use")
    assert [d["contactId"] for d in body["data"]] == [c]


async def test_limit_counts_contacts(client: httpx.AsyncClient, tenant: Tenant) -> None:
    scene = await _scene(client, tenant)
    body = await _export(client, tenant, "hours=1&limit=1")
    assert body["count"] == 1
    assert body["data"][0]["contactId"] == scene.bob
    body = await _export(client, tenant, "hours=1&limit=5000")  # counts as 1,000
    assert body["count"] == 2
    body = await _export(client, tenant, "hours=1&limit=")  # empty counts as absent
    assert body["count"] == 2


async def test_empty_export(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await make_contact(client, tenant.auth)
    assert await _export(client, tenant, "hours=1") == {
        "success": True,
        "count": 0,
        "truncated": False,
        "data": [],
    }
    r = await client.get(f"{URL}?hours=1&format=txt", headers=tenant.auth)
    assert r.status_code == 200
    assert "No messages in the past 1 hour(s)." in r.text


async def test_other_tenants_and_erased_contacts_are_not_exported(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    scene = await _scene(client, tenant)
    assert (await _export(client, other_tenant, "hours=876000"))["data"] == []
    r = await client.get(f"{URL}?hours=1&format=txt", headers=other_tenant.auth)
    assert "Jane" not in r.text and scene.jane not in r.text
    assert (
        await client.delete(f"/v1/contacts/{scene.jane}", headers=tenant.auth)
    ).status_code == 200
    body = await _export(client, tenant, "hours=24")
    assert [d["contactId"] for d in body["data"]] == [scene.bob]


async def test_txt_export(client: httpx.AsyncClient, tenant: Tenant) -> None:
    scene = await _scene(client, tenant)
    r = await client.get(f"{URL}?hours=1&format=txt", headers=tenant.auth)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.headers["content-disposition"] == 'attachment; filename="chat-export-2026-11-18.txt"'
    text = r.text
    assert text.startswith("Chat export\nGenerated: 2026-11-18 11:06:40 UTC\n")
    assert "Window: past 1 hour(s) | Filter: all | Contacts: 2" in text
    jane_header = (
        "Contact: Jane Smith\n"
        f"Contact ID: {scene.jane}\n"
        "Phone: +15551234567\n"
        "Email: jane@example.com\n"
        "Messages: 5\n"
    )
    assert jane_header in text
    assert f"Contact ID: {scene.bob}\nPhone: +15557654321\nEmail: -\nMessages: 1\n" in text
    assert JANE_ALL in text
    assert text.index(scene.bob) < text.index(scene.jane), "newest activity first"
    assert text.endswith("[media: https://cdn.example.com/s.png]\n")
    r = await client.get(f"{URL}?hours=1&format=TXT&filter=tool_use", headers=tenant.auth)
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert "Bob here" not in r.text and "lookup_order(42)" in r.text


async def test_multiline_content_is_indented(client: httpx.AsyncClient, tenant: Tenant) -> None:
    contact = await make_contact(client, tenant.auth)
    await post_message(
        client, tenant.auth, contact, T0 - MIN, content="line one\r\n[2020-01-01] fake\nthree"
    )
    body = await _export(client, tenant, "hours=1")
    assert body["data"][0]["chatExport"] == (
        "[2026-11-18 11:05:40 UTC] Jane Smith (user): line one\n    [2020-01-01] fake\n    three"
    )


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("", "hours"),
        ("hours=", "hours"),
        ("hours=0", "hours"),
        ("hours=-1", "hours"),
        ("hours=1e3", "hours"),
        ("hours=0x10", "hours"),
        ("hours=1.0", "hours"),
        ("hours=%2B5", "hours"),
        ("hours=%205", "hours"),
        ("hours=abc", "hours"),
        ("hours=1&format=xml", "format"),
        ("hours=1&format=csv", "format"),
        ("hours=1&limit=0", "limit"),
        ("hours=1&limit=ten", "limit"),
        ("hours=1&limit=-5", "limit"),
        ("hours=1&filter=images", "filter"),
        ("hours=1&filter=tool-use", "filter"),
    ],
)
async def test_invalid_parameters_are_400(
    client: httpx.AsyncClient, tenant: Tenant, query: str, param: str
) -> None:
    r = await client.get(f"{URL}?{query}", headers=tenant.auth)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["success"] is False
    assert body["code"] == "invalid_parameter"
    assert param in body["error"]


async def test_huge_hours_counts_as_a_century(client: httpx.AsyncClient, tenant: Tenant) -> None:
    contact = await make_contact(client, tenant.auth)
    await post_message(client, tenant.auth, contact, 0, content="1970")
    body = await _export(client, tenant, "hours=99999999999999999999")
    assert body["count"] == 1
    assert body["data"][0]["chatExport"] == "[1970-01-01 00:00:00 UTC] Jane Smith (user): 1970"


async def test_requires_authentication(client: httpx.AsyncClient) -> None:
    r = await client.get(f"{URL}?hours=1")
    assert r.status_code == 401
    assert r.json()["code"] == "unauthorized"


async def test_bounded_to_the_newest_messages(
    client: httpx.AsyncClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exports_service, "MAX_EXPORT_MESSAGES", 3)
    old = await make_contact(client, tenant.auth, firstName="Old")
    new = await make_contact(client, tenant.auth, firstName="New")
    await post_message(client, tenant.auth, old, T0 - 40 * MIN, content="o1")
    await post_message(client, tenant.auth, old, T0 - 30 * MIN, content="o2")
    await post_message(client, tenant.auth, new, T0 - 20 * MIN, content="n1")
    await post_message(client, tenant.auth, new, T0 - 10 * MIN, content="n2")
    body = await _export(client, tenant, "hours=1")
    assert body["truncated"] is True
    assert "3" in body["note"]
    first, second = body["data"]
    assert first["contactId"] == new and first["messageCount"] == 2
    assert first["omittedMessageCount"] == 0
    assert second["contactId"] == old and second["messageCount"] == 1
    assert second["omittedMessageCount"] == 1
    assert second["chatExport"].splitlines()[0].startswith("[1 earlier message(s) omitted")
    assert second["chatExport"].splitlines()[1].endswith("Old Smith (user): o2")
    r = await client.get(f"{URL}?hours=1&format=txt", headers=tenant.auth)
    assert "Note: an export holds at most 3 messages; the newest were kept." in r.text
    # The message lines, not bare "o1": a random 20-char id contains it now and then.
    assert "(user): o1" not in r.text and "(user): o2" in r.text
    body = await _export(client, tenant, "hours=1&limit=1")
    assert body["truncated"] is False


@contextmanager
def _count_statements(database: Database) -> Iterator[list[str]]:
    seen: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(database.engine.sync_engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", before)


async def test_one_message_query_for_all_contacts(
    client: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    contacts = [await make_contact(client, tenant.auth) for _ in range(2)]
    for i, contact in enumerate(contacts):
        await post_message(client, tenant.auth, contact, T0 - (i + 1) * MIN)
    with _count_statements(database) as few:
        assert (await _export(client, tenant, "hours=1"))["count"] == 2
    for i in range(6):
        contact = await make_contact(client, tenant.auth)
        await post_message(client, tenant.auth, contact, T0 - (i + 10) * MIN)
    with _count_statements(database) as many:
        assert (await _export(client, tenant, "hours=1"))["count"] == 8
    assert len(many) == len(few), "statements must not grow with the number of contacts"
    assert sum("messages" in s.lower() for s in many) <= 2
