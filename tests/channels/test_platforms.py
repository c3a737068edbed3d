"""Messenger, Instagram, Twilio and Telegram payloads through a channel's webhook."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import orjson

from chatsessions.timeutil import format_ms
from tests.channels.payloads import (
    IG_ACCOUNT_ID,
    PAGE_ID,
    SECONDS,
    create_channel,
    messages_of,
    messaging_message,
    messaging_payload,
    post_meta,
    post_telegram,
    post_twilio,
    tg_update,
    twilio_form,
    twilio_signature,
    twilio_sms,
)
from tests.conftest import T0, Tenant


async def _contact(client: httpx.AsyncClient, tenant: Tenant, contact_id: str) -> dict[str, Any]:
    r = await client.get(f"/v1/contacts/{contact_id}", headers=tenant.auth)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


async def test_messenger_text_attachment_echo_delivery_and_read(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    channel = await create_channel(client, tenant.auth, "messenger", accountId=PAGE_ID)
    user = "6254021218007721"
    events = [
        messaging_message("m_TEXT", user=user, account=PAGE_ID, ts=T0 - 50_000, text="hi page"),
        messaging_message(
            "m_ATTACH",
            user=user,
            account=PAGE_ID,
            ts=T0 - 40_000,
            text=None,
            attachments=[
                {"type": "image", "payload": {"url": "https://scontent.xx.fbcdn.net/v/a.jpg"}}
            ],
        ),
        messaging_message(
            "m_ECHO",
            user=user,
            account=PAGE_ID,
            ts=T0 - 30_000,
            text="hello from the page",
            echo=True,
        ),
        {
            "sender": {"id": user},
            "recipient": {"id": PAGE_ID},
            "delivery": {"mids": ["m_ECHO"], "watermark": T0 - 20_000},
        },
        {
            "sender": {"id": user},
            "recipient": {"id": PAGE_ID},
            "timestamp": T0 - 10_000,
            "read": {"watermark": T0 - 20_000},
        },
    ]
    r = await post_meta(client, channel["webhookPath"], messaging_payload("page", PAGE_ID, events))
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True, "stored": 3, "duplicates": 0, "ignored": 2}

    got = {m["external_id"]: m for m in await messages_of(client, tenant.auth)}
    assert set(got) == {"m_TEXT", "m_ATTACH", "m_ECHO"}
    assert got["m_TEXT"]["content"] == "hi page" and got["m_TEXT"]["direction"] == "inbound"
    assert got["m_TEXT"]["timestamp"] == format_ms(T0 - 50_000)
    assert got["m_ATTACH"]["type"] == "media"
    assert got["m_ATTACH"]["media_url"] == "https://scontent.xx.fbcdn.net/v/a.jpg"
    assert got["m_ECHO"]["direction"] == "outbound" and got["m_ECHO"]["role"] == "assistant"
    [contact_id] = {m["contact_id"] for m in got.values()}
    contact = await _contact(client, tenant, contact_id)
    assert contact["externalId"] == f"messenger:{user}" and contact["channel"] == "messenger"


async def test_instagram_text_and_echo(client: httpx.AsyncClient, tenant: Tenant) -> None:
    channel = await create_channel(client, tenant.auth, "instagram", accountId=IG_ACCOUNT_ID)
    user = "1122334455667788"
    events = [
        messaging_message("ig_IN", user=user, account=IG_ACCOUNT_ID, ts=T0 - 20_000, text="hey"),
        messaging_message(
            "ig_OUT",
            user=user,
            account=IG_ACCOUNT_ID,
            ts=T0 - 10_000,
            text="we sent this",
            echo=True,
        ),
    ]
    r = await post_meta(
        client, channel["webhookPath"], messaging_payload("instagram", IG_ACCOUNT_ID, events)
    )
    assert r.status_code == 200 and r.json()["stored"] == 2, r.text
    got = {m["external_id"]: m for m in await messages_of(client, tenant.auth)}
    # An echo is the business's own message: outbound, never shown as the customer's.
    assert got["ig_IN"]["direction"] == "inbound" and got["ig_OUT"]["direction"] == "outbound"
    assert got["ig_IN"]["contact_id"] == got["ig_OUT"]["contact_id"]
    contact = await _contact(client, tenant, got["ig_IN"]["contact_id"])
    assert contact["externalId"] == f"instagram:{user}"
    assert contact["instagramId"] == user and contact["channel"] == "instagram"


async def test_twilio_sms(client: httpx.AsyncClient, tenant: Tenant, clock: Any) -> None:
    channel = await create_channel(client, tenant.auth, "twilio")
    r = await post_twilio(client, channel["webhookPath"], twilio_sms("SM0001", body="hello by sms"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/xml") and "<Response>" in r.text
    [m] = await messages_of(client, tenant.auth)
    assert m["content"] == "hello by sms" and m["external_id"] == "SM0001"
    # Twilio sends no time: the time of receipt.
    assert m["timestamp"] == format_ms(clock())
    assert m["contact_phone"] == "+15551230002" and m["channel"] == "sms"


async def test_whatsapp_through_twilio_with_profile_name_and_media(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    channel = await create_channel(client, tenant.auth, "twilio")
    params = [
        ("MessageSid", "MM0002"),
        ("SmsMessageSid", "MM0002"),
        ("SmsStatus", "received"),
        ("From", "whatsapp:+15551230003"),
        ("To", "whatsapp:+15550009999"),
        ("ProfileName", "Maria"),
        ("WaId", "15551230003"),
        ("Body", "see photo"),
        ("NumMedia", "1"),
        ("MediaContentType0", "image/jpeg"),
        ("MediaUrl0", "https://api.twilio.com/2010-04-01/Accounts/AC0/Messages/MM0002/Media/ME1"),
        ("AccountSid", "AC00000000000000000000000000000000"),
    ]
    r = await post_twilio(client, channel["webhookPath"], params)
    assert r.status_code == 200, r.text
    [m] = await messages_of(client, tenant.auth)
    assert m["type"] == "media" and m["content"] == "see photo"
    assert m["media_url"].endswith("/Media/ME1")
    assert m["contact_phone"] == "+15551230003" and m["contact_name"] == "Maria"
    assert m["channel"] == "whatsapp"


async def test_twilio_status_callbacks_are_ignored(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    channel = await create_channel(client, tenant.auth, "twilio")
    params = [("MessageSid", "SM0009"), ("MessageStatus", "delivered"), ("From", "+15550009999")]
    r = await post_twilio(client, channel["webhookPath"], params)
    assert r.status_code == 200, r.text
    assert await messages_of(client, tenant.auth) == []


async def test_twilio_json_body_with_body_sha256(client: httpx.AsyncClient, tenant: Tenant) -> None:
    channel = await create_channel(client, tenant.auth, "twilio")
    body = orjson.dumps(
        {
            "MessageSid": "SM0003",
            "From": "+15551230004",
            "Body": "json body",
            "SmsStatus": "received",
        }
    )
    path = f"{channel['webhookPath']}?bodySHA256={hashlib.sha256(body).hexdigest()}"
    url = str(client.base_url.join(path))
    headers = {"Content-Type": "application/json", "X-Twilio-Signature": twilio_signature(url, [])}
    r = await client.post(path, content=body, headers=headers)
    assert r.status_code == 200, r.text
    [m] = await messages_of(client, tenant.auth)
    assert m["content"] == "json body" and m["external_id"] == "SM0003"
    # The same signature with another body: the hash no longer matches.
    r = await client.post(path, content=body.replace(b"json", b"JSON"), headers=headers)
    assert r.status_code == 401


async def test_twilio_public_url_is_what_the_signature_covers(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    public = "https://chat.example.com/hooks/twilio?tenant=a"
    channel = await create_channel(client, tenant.auth, "twilio", publicUrl=public)
    params = twilio_sms("SM0004")
    signed_for_public = twilio_signature(public, params)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    body = twilio_form(params)
    r = await client.post(
        channel["webhookPath"],
        content=body,
        headers={**headers, "X-Twilio-Signature": signed_for_public},
    )
    assert r.status_code == 200, r.text
    # Signed for the URL the request reached instead: refused (publicUrl is the one).
    local = str(client.base_url.join(channel["webhookPath"]))
    r = await client.post(
        channel["webhookPath"],
        content=body,
        headers={**headers, "X-Twilio-Signature": twilio_signature(local, twilio_sms("SM0005"))},
    )
    assert r.status_code == 401


async def test_telegram_private_edited_group_and_non_message(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    channel = await create_channel(client, tenant.auth, "telegram")
    path = channel["webhookPath"]
    r = await post_telegram(client, path, tg_update(1, message_id=10, text="privet"))
    assert r.status_code == 200 and r.json()["stored"] == 1, r.text
    # The edit names the same message: nothing new is stored.
    edited = tg_update(2, message_id=10, text="privet!", key="edited_message")
    r = await post_telegram(client, path, edited)
    assert r.status_code == 200 and r.json()["duplicates"] == 1, r.text
    r = await post_telegram(
        client, path, tg_update(3, message_id=11, chat_type="group", text="all")
    )
    assert r.status_code == 200 and r.json()["ignored"] == 1, r.text
    poll = {"update_id": 4, "poll": {"id": "5", "question": "?", "options": []}}
    r = await post_telegram(client, path, poll)
    assert r.status_code == 200 and r.json()["ignored"] == 1, r.text
    photo = tg_update(
        5,
        message_id=12,
        text=None,
        date=SECONDS - 30,
        extra={"photo": [{"file_id": "AgAC", "width": 90, "height": 90}], "caption": "a cat"},
    )
    r = await post_telegram(client, path, photo)
    assert r.status_code == 200 and r.json()["stored"] == 1, r.text

    got = await messages_of(client, tenant.auth)
    assert [(m["external_id"], m["type"], m["content"]) for m in got] == [
        ("tg:777000111:10", "text", "privet"),
        ("tg:777000111:12", "media", "a cat"),
    ]
    assert got[0]["timestamp"] == format_ms((SECONDS - 60) * 1000)
    contact = await _contact(client, tenant, got[0]["contact_id"])
    assert contact["externalId"] == "telegram:777000111"
    assert (contact["firstName"], contact["lastName"]) == ("Ivan", "Petrov")
    r = await client.get(f"/v1/channels/{channel['channelId']}", headers=tenant.auth)
    counters = r.json()["data"]["counters"]
    assert {
        k: counters[k] for k in ("received", "stored", "duplicates", "ignored", "rejected")
    } == {
        "received": 5,
        "stored": 2,
        "duplicates": 1,
        "ignored": 2,
        "rejected": 0,
    }
