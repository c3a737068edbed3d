"""WhatsApp Cloud API payloads through a channel's webhook, on both backends."""

from __future__ import annotations

import httpx

from chatsessions.timeutil import format_ms
from tests.channels.payloads import (
    PHONE_NUMBER_ID,
    SECONDS,
    VERIFY_TOKEN,
    create_channel,
    messages_of,
    post_meta,
    wa_change,
    wa_contact,
    wa_message,
    wa_payload,
    wa_status,
    wa_text,
)
from tests.conftest import FakeClock, Tenant


async def _counters(
    client: httpx.AsyncClient, tenant: Tenant, channel_id: str
) -> dict[str, object]:
    r = await client.get(f"/v1/channels/{channel_id}", headers=tenant.auth)
    assert r.status_code == 200, r.text
    counters: dict[str, object] = r.json()["data"]["counters"]
    return counters


async def test_a_text_message_is_stored_with_the_contact_by_phone(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    channel = await create_channel(client, tenant.auth, "whatsapp")
    r = await post_meta(client, channel["webhookPath"], wa_text("wamid.A1", text="Hola!"))
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True, "stored": 1, "duplicates": 0, "ignored": 0}

    [m] = await messages_of(client, tenant.auth)
    assert m["content"] == "Hola!" and m["type"] == "text" and m["direction"] == "inbound"
    assert m["role"] == "user"
    assert m["external_id"] == "wamid.A1"
    assert m["timestamp"] == format_ms((SECONDS - 60) * 1000)
    assert m["contact_phone"] == "+15551230001" and m["contact_name"] == "Jane Doe"
    assert m["channel"] == "whatsapp"
    counters = await _counters(client, tenant, channel["channelId"])
    assert counters["received"] == 1 and counters["stored"] == 1
    assert counters["lastEventAt"] is not None


async def test_media_reaction_location_and_echo(client: httpx.AsyncClient, tenant: Tenant) -> None:
    channel = await create_channel(client, tenant.auth, "whatsapp")
    t = SECONDS - 300
    messages = [
        wa_message(
            "wamid.IMG1",
            ts=t,
            kind="image",
            body={
                "caption": "my receipt",
                "mime_type": "image/jpeg",
                "sha256": "abc",
                "id": "1479537139650973",
                "url": "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1",
            },
        ),
        wa_message(
            "wamid.IMG2",
            ts=t + 1,
            kind="image",
            body={"mime_type": "image/jpeg", "sha256": "def", "id": "1479537139650974"},
        ),
        wa_message(
            "wamid.REACT",
            ts=t + 2,
            kind="reaction",
            body={"message_id": "wamid.OUT1", "emoji": "\U0001f44d"},
        ),
        wa_message(
            "wamid.LOC",
            ts=t + 3,
            kind="location",
            body={"latitude": 38.9, "longitude": -77.03, "name": "Office"},
        ),
    ]
    echo = {
        "from": "15550009999",
        "to": "15551230001",
        "id": "wamid.ECHO1",
        "timestamp": str(t + 4),
        "type": "text",
        "text": {"body": "we replied from the app"},
    }
    payload = wa_payload(
        [wa_change(messages, contacts=[wa_contact()])],
        [wa_change(contacts=[wa_contact()], echoes=[echo], field="smb_message_echoes")],
    )
    r = await post_meta(client, channel["webhookPath"], payload)
    assert r.status_code == 200, r.text
    assert r.json()["stored"] == 5

    got = {m["external_id"]: m for m in await messages_of(client, tenant.auth)}
    assert got["wamid.IMG1"]["type"] == "media"
    assert got["wamid.IMG1"]["content"] == "my receipt"
    assert got["wamid.IMG1"]["media_url"].startswith("https://lookaside.fbsbx.com/")
    assert got["wamid.IMG2"]["type"] == "media" and got["wamid.IMG2"]["media_url"] is None
    assert got["wamid.REACT"]["type"] == "reaction"
    assert got["wamid.REACT"]["content"] == "\U0001f44d"
    assert got["wamid.LOC"]["type"] == "location" and got["wamid.LOC"]["content"] == "38.9,-77.03"
    assert got["wamid.ECHO1"]["direction"] == "outbound"
    assert got["wamid.ECHO1"]["role"] == "assistant"
    # All five are one contact's (the echo goes to the customer, not to the business number).
    assert len({m["contact_id"] for m in got.values()}) == 1


async def test_statuses_are_acknowledged_and_counted_not_stored(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    channel = await create_channel(client, tenant.auth, "whatsapp")
    payload = wa_payload([wa_change(statuses=[wa_status("wamid.X"), wa_status("wamid.X", "read")])])
    r = await post_meta(client, channel["webhookPath"], payload)
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True, "stored": 0, "duplicates": 0, "ignored": 2}
    assert await messages_of(client, tenant.auth) == []
    counters = await _counters(client, tenant, channel["channelId"])
    assert counters["ignored"] == 2 and counters["stored"] == 0 and counters["received"] == 1


async def test_every_message_of_every_entry_and_change_is_stored(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    channel = await create_channel(client, tenant.auth, "whatsapp")
    a, b = "15551230011", "15551230012"
    payload = wa_payload(
        [
            wa_change(
                [
                    wa_message("wamid.E1M1", sender=a, ts=SECONDS - 50),
                    wa_message("wamid.E1M2", sender=b, ts=SECONDS - 49),
                ],
                contacts=[wa_contact(a, "Ann"), wa_contact(b, "Bob")],
            )
        ],
        [
            wa_change(
                [
                    wa_message("wamid.E2M1", sender=a, ts=SECONDS - 48),
                    wa_message("wamid.E2M2", sender=b, ts=SECONDS - 47),
                ],
                contacts=[wa_contact(a, "Ann"), wa_contact(b, "Bob")],
            )
        ],
    )
    r = await post_meta(client, channel["webhookPath"], payload)
    assert r.status_code == 200 and r.json()["stored"] == 4, r.text
    got = await messages_of(client, tenant.auth)
    assert [m["external_id"] for m in got] == [
        "wamid.E1M1",
        "wamid.E1M2",
        "wamid.E2M1",
        "wamid.E2M2",
    ]
    by_contact = {m["contact_name"]: m["contact_phone"] for m in got}
    assert by_contact == {"Ann": "+" + a, "Bob": "+" + b}


async def test_a_user_without_a_phone_is_found_by_user_id(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    channel = await create_channel(client, tenant.auth, "whatsapp")
    message = {
        "from_user_id": "US.13491208655302741918",
        "id": "wamid.NOPHONE",
        "timestamp": str(SECONDS - 10),
        "type": "text",
        "text": {"body": "no phone here"},
    }
    contact = {"profile": {"name": "Private Person"}, "user_id": "US.13491208655302741918"}
    r = await post_meta(
        client, channel["webhookPath"], wa_payload([wa_change([message], contacts=[contact])])
    )
    assert r.status_code == 200 and r.json()["stored"] == 1, r.text
    r = await client.get(
        "/v1/contacts",
        params={"externalId": "whatsapp:US.13491208655302741918"},
        headers=tenant.auth,
    )
    assert r.status_code == 200, r.text
    [m] = await messages_of(client, tenant.auth)
    assert m["contact_id"] == r.json()["contactId"] and m["contact_phone"] is None


async def test_other_phone_numbers_are_ignored_when_account_id_is_set(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    channel = await create_channel(client, tenant.auth, "whatsapp", accountId=PHONE_NUMBER_ID)
    mine = wa_change([wa_message("wamid.MINE")], contacts=[wa_contact()])
    theirs = wa_change([wa_message("wamid.THEIRS")], contacts=[wa_contact()], phone_number_id="999")
    r = await post_meta(client, channel["webhookPath"], wa_payload([mine, theirs]))
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True, "stored": 1, "duplicates": 0, "ignored": 1}
    assert [m["external_id"] for m in await messages_of(client, tenant.auth)] == ["wamid.MINE"]


async def test_meta_handshake(client: httpx.AsyncClient, tenant: Tenant) -> None:
    channel = await create_channel(client, tenant.auth, "whatsapp")
    path = channel["webhookPath"]
    ok = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}
    r = await client.get(path, params=ok)
    assert r.status_code == 200
    assert r.text == "1158201444" and r.headers["content-type"].startswith("text/plain")
    for bad in (
        {**ok, "hub.verify_token": VERIFY_TOKEN + "x"},
        {**ok, "hub.mode": "unsubscribe"},
        {k: v for k, v in ok.items() if k != "hub.verify_token"},
    ):
        r = await client.get(path, params=bad)
        assert r.status_code == 403, (bad, r.text)
        assert "1158201444" not in r.text


async def test_odd_platform_values_are_stored_safely_or_named(
    client: httpx.AsyncClient, tenant: Tenant, clock: FakeClock
) -> None:
    channel = await create_channel(client, tenant.auth, "whatsapp")
    messages = [
        wa_message("wamid.NUL", body={"body": "a\x00b"}),
        wa_message("wamid.BIG", body={"body": "é" * 40_000}),  # 80,000 bytes of UTF-8
        wa_message("wamid.FUTURE", ts=SECONDS + 3600),  # a clock an hour ahead
        wa_message("wamid." + "x" * 300),  # too long to be an externalId
        wa_message("wamid.SHORT", sender="12"),  # not a phone number the library accepts
    ]
    contacts = [wa_contact(), wa_contact("12", "Shorty")]
    r = await post_meta(
        client, channel["webhookPath"], wa_payload([wa_change(messages, contacts=contacts)])
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True, "stored": 4, "duplicates": 0, "ignored": 1}
    got = {m["external_id"]: m for m in await messages_of(client, tenant.auth)}
    assert got["wamid.NUL"]["content"] == "a\ufffdb"
    assert len(got["wamid.BIG"]["content"].encode()) == 64 * 1024
    assert got["wamid.FUTURE"]["timestamp"] == format_ms(clock())
    assert got["wamid.SHORT"]["contact_phone"] is None
    r = await client.get("/v1/contacts", params={"externalId": "whatsapp:12"}, headers=tenant.auth)
    assert r.status_code == 200 and r.json()["contactId"] == got["wamid.SHORT"]["contact_id"]
    r = await client.get(f"/v1/channels/{channel['channelId']}", headers=tenant.auth)
    assert "not stored" in r.json()["data"]["counters"]["lastError"]
