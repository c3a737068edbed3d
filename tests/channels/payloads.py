"""Platform payloads written from each platform's documented shapes, and their signers.

Times are Unix seconds (WhatsApp, Telegram) or epoch ms (Messenger, Instagram) near the
tests' fixed clock (``T0``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson

from tests.conftest import T0

APP_SECRET = "6f0c1e7a9b2d4c8e0a1b3c5d7e993676"
VERIFY_TOKEN = "verify-me-please-0123"
TWILIO_TOKEN = "twilio-auth-token-0123456789abcdef"
TELEGRAM_SECRET = "tg_secret-token_0123456789"
PHONE_NUMBER_ID = "106540352242922"
PAGE_ID = "112233445566778"
IG_ACCOUNT_ID = "17841400000000000"
SECONDS = T0 // 1000


def meta_signature(body: bytes, secret: str = APP_SECRET) -> str:
    """``X-Hub-Signature-256`` of a body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def twilio_signature(url: str, params: list[tuple[str, str]], token: str = TWILIO_TOKEN) -> str:
    """``X-Twilio-Signature`` of a form post to ``url``."""
    data = url + "".join(k + v for k, v in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def dumps(payload: Any) -> bytes:
    """A payload's bytes as a platform sends them."""
    return orjson.dumps(payload)


# --- WhatsApp Cloud API ---


def wa_message(
    wamid: str,
    *,
    sender: str = "15551230001",
    ts: int = SECONDS - 60,
    kind: str = "text",
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One ``messages[]`` item."""
    item: dict[str, Any] = {"from": sender, "id": wamid, "timestamp": str(ts), "type": kind}
    item[kind] = body if body is not None else {"body": f"text of {wamid}"}
    return item


def wa_change(
    messages: list[dict[str, Any]] | None = None,
    *,
    contacts: list[dict[str, Any]] | None = None,
    statuses: list[dict[str, Any]] | None = None,
    echoes: list[dict[str, Any]] | None = None,
    phone_number_id: str = PHONE_NUMBER_ID,
    field: str = "messages",
) -> dict[str, Any]:
    """One ``changes[]`` item."""
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550009999", "phone_number_id": phone_number_id},
    }
    if contacts is not None:
        value["contacts"] = contacts
    if messages is not None:
        value["messages"] = messages
    if statuses is not None:
        value["statuses"] = statuses
    if echoes is not None:
        value["message_echoes"] = echoes
    return {"value": value, "field": field}


def wa_contact(wa_id: str = "15551230001", name: str = "Jane Doe") -> dict[str, Any]:
    """One ``contacts[]`` item."""
    return {"profile": {"name": name}, "wa_id": wa_id}


def wa_payload(*entries: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"object": "whatsapp_business_account", "entry": [...]}``, each entry its changes."""
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": changes} for changes in entries],
    }


def wa_text(
    wamid: str, *, sender: str = "15551230001", ts: int = SECONDS - 60, text: str | None = None
) -> dict[str, Any]:
    """A whole payload with one text message."""
    message = wa_message(wamid, sender=sender, ts=ts, body={"body": text or f"text of {wamid}"})
    return wa_payload([wa_change([message], contacts=[wa_contact(sender)])])


def wa_status(wamid: str, status: str = "delivered") -> dict[str, Any]:
    """A ``statuses[]`` item."""
    return {
        "id": wamid,
        "status": status,
        "timestamp": str(SECONDS - 30),
        "recipient_id": "15551230001",
    }


# --- Messenger and Instagram ---


def messaging_payload(obj: str, entry_id: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"object": "page"|"instagram", "entry": [{"id", "time", "messaging": [...]}]}``."""
    return {"object": obj, "entry": [{"id": entry_id, "time": T0, "messaging": events}]}


def messaging_message(
    mid: str,
    *,
    user: str,
    account: str,
    ts: int = T0 - 60_000,
    text: str | None = "hello",
    echo: bool = False,
    attachments: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A ``messaging[]`` item with a ``message`` (an echo goes from the account to the user)."""
    message: dict[str, Any] = {"mid": mid}
    if text is not None:
        message["text"] = text
    if echo:
        message["is_echo"] = True
        message["app_id"] = 1517776481860111
    if attachments is not None:
        message["attachments"] = attachments
    sender, recipient = (account, user) if echo else (user, account)
    return {
        "sender": {"id": sender},
        "recipient": {"id": recipient},
        "timestamp": ts,
        "message": message,
    }


# --- Twilio ---


def twilio_sms(
    sid: str, *, sender: str = "+15551230002", body: str = "hi by sms"
) -> list[tuple[str, str]]:
    """The form fields of an inbound SMS."""
    return [
        ("ToCountry", "US"),
        ("SmsMessageSid", sid),
        ("NumMedia", "0"),
        ("SmsSid", sid),
        ("SmsStatus", "received"),
        ("Body", body),
        ("To", "+15550009999"),
        ("NumSegments", "1"),
        ("MessageSid", sid),
        ("AccountSid", "AC00000000000000000000000000000000"),
        ("From", sender),
        ("ApiVersion", "2010-04-01"),
    ]


def twilio_form(params: list[tuple[str, str]]) -> bytes:
    """Form-encoded as Twilio posts it."""
    return urlencode(params).encode()


# --- Telegram ---


def tg_update(
    update_id: int,
    *,
    message_id: int,
    user_id: int = 777000111,
    chat_type: str = "private",
    text: str | None = "hi on telegram",
    key: str = "message",
    date: int = SECONDS - 60,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An update with a ``message`` (or ``edited_message``)."""
    chat_id = user_id if chat_type == "private" else -100123456789
    message: dict[str, Any] = {
        "message_id": message_id,
        "from": {"id": user_id, "is_bot": False, "first_name": "Ivan", "last_name": "Petrov"},
        "chat": {"id": chat_id, "type": chat_type},
        "date": date,
    }
    if text is not None:
        message["text"] = text
    if key == "edited_message":
        message["edit_date"] = date + 30
    message.update(extra or {})
    return {"update_id": update_id, key: message}


# --- Posting ---


async def create_channel(
    client: httpx.AsyncClient, auth: dict[str, str], channel_type: str, **config: Any
) -> dict[str, Any]:
    """Create a channel with the default test secrets (``config`` overrides); its data."""
    defaults: dict[str, dict[str, Any]] = {
        "whatsapp": {"appSecret": APP_SECRET, "verifyToken": VERIFY_TOKEN},
        "messenger": {"appSecret": APP_SECRET, "verifyToken": VERIFY_TOKEN},
        "instagram": {"appSecret": APP_SECRET, "verifyToken": VERIFY_TOKEN},
        "twilio": {"authToken": TWILIO_TOKEN},
        "telegram": {"secretToken": TELEGRAM_SECRET},
    }
    body = {
        "type": channel_type,
        "name": f"my {channel_type}",
        "config": {**defaults[channel_type], **config},
    }
    r = await client.post("/v1/channels", json=body, headers=auth)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


async def post_meta(
    client: httpx.AsyncClient, path: str, payload: Any, *, secret: str = APP_SECRET
) -> httpx.Response:
    """Post a Meta payload, signed."""
    body = dumps(payload)
    return await client.post(
        path,
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Hub-Signature-256": meta_signature(body, secret),
        },
    )


async def post_twilio(
    client: httpx.AsyncClient,
    path: str,
    params: list[tuple[str, str]],
    *,
    token: str = TWILIO_TOKEN,
) -> httpx.Response:
    """Post a Twilio form, signed over the URL the client calls."""
    url = str(client.base_url.join(path))
    return await client.post(
        path,
        content=twilio_form(params),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": twilio_signature(url, params, token),
        },
    )


async def post_telegram(
    client: httpx.AsyncClient, path: str, update: Any, *, secret: str = TELEGRAM_SECRET
) -> httpx.Response:
    """Post a Telegram update with the secret token header."""
    return await client.post(
        path,
        content=dumps(update),
        headers={"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": secret},
    )


async def post_signed(
    client: httpx.AsyncClient, channel: dict[str, Any], payload: Any
) -> httpx.Response:
    """Post a payload to a channel as its platform would."""
    path = channel["webhookPath"]
    if channel["type"] == "twilio":
        return await post_twilio(client, path, payload)
    if channel["type"] == "telegram":
        return await post_telegram(client, path, payload)
    return await post_meta(client, path, payload)


async def messages_of(client: httpx.AsyncClient, auth: dict[str, str]) -> list[dict[str, Any]]:
    """Every message of the tenant (with its session and contact), oldest first."""
    r = await client.get(
        "/v1/chat-sessions/recent",
        params={
            "hours": "876000",
            "includeMessages": "true",
            "limit": "1000",
            "messageLimit": "1000",
        },
        headers=auth,
    )
    assert r.status_code == 200, r.text
    out = []
    for session in r.json()["sessions"]:
        for m in session["messages"]:
            out.append(
                {
                    **m,
                    "session_id": session["session_id"],
                    "contact_id": session["contact_id"],
                    "contact_name": session["contact_name"],
                    "contact_phone": session["contact_phone"],
                    "channel": session["channel"],
                }
            )
    return sorted(out, key=lambda m: (m["timestamp"], m["message_id"]))
