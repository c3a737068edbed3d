"""End-to-end: a message opens a session that the recent endpoint shows."""

from __future__ import annotations

from tests.conftest import T0, Tenant
from tests.factories import make_contact, post_message


async def test_message_opens_session_listed_as_recent(client, tenant: Tenant) -> None:
    contact = await make_contact(client, tenant.auth)
    posted = await post_message(client, tenant.auth, contact, T0 - 60_000)
    assert posted["sessionOpened"] is True
    r = await client.get(
        "/v1/chat-sessions/recent?hours=1&includeMessages=true", headers=tenant.auth
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == 1
    sess = body["sessions"][0]
    assert sess["session_id"] == posted["sessionId"]
    assert sess["status"] == "ChatSessionOpened"
    assert sess["contact_name"] == "Jane Smith"
    assert [m["message_id"] for m in sess["messages"]] == [posted["messageId"]]
