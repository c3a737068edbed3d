"""WhatsApp Cloud API (``object: whatsapp_business_account``).

Proof: Meta's ``X-Hub-Signature-256`` (``meta.py``). Every ``entry[].changes[]`` is read:
each ``value.messages[]`` item is an inbound message (``id``, the ``wamid``, as its
``externalId``; ``timestamp`` in Unix seconds), each ``value.message_echoes[]`` item one the
business sent from its own app (outbound, to ``to``). ``statuses`` and other fields are
counted as ignored. The contact is found or created by phone ``+<wa_id>`` with the
profile name as first name, or, for a user known only by a user id, by ``externalId``
``whatsapp:<user_id>``. ``accountId`` (the ``phone_number_id``) filters out other numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from chatsessions.channels import meta
from chatsessions.channels.base import (
    ChannelConfig,
    ConfigModel,
    Identity,
    IncomingMessage,
    Translation,
    media_or_word,
    seconds_to_ms,
)
from chatsessions.contacts.normalise import normalise_phone

__all__ = ["TYPE", "Config", "translate", "verify"]

TYPE = "whatsapp"
Config: type[ConfigModel] = meta.MetaConfig
_IGNORE = ConfigDict(extra="ignore")


class _Profile(BaseModel):
    model_config = _IGNORE
    name: str | None = None


class _Contact(BaseModel):
    model_config = _IGNORE
    wa_id: str | None = None
    user_id: str | None = None
    profile: _Profile | None = None


class _Metadata(BaseModel):
    model_config = _IGNORE
    phone_number_id: str | None = None


class _Value(BaseModel):
    model_config = _IGNORE
    metadata: _Metadata | None = None
    contacts: list[_Contact] = []
    messages: list[dict[str, Any]] = []
    message_echoes: list[dict[str, Any]] = []
    statuses: list[Any] = []


class _Change(BaseModel):
    model_config = _IGNORE
    field: str | None = None
    value: dict[str, Any] = {}


class _Entry(BaseModel):
    model_config = _IGNORE
    changes: list[_Change] = []


class _Payload(BaseModel):
    model_config = _IGNORE
    entry: list[_Entry] = []


def verify(raw_body: bytes, headers: Mapping[str, str], config: ChannelConfig, *, url: str) -> None:
    """Meta's signature over the raw body (the URL plays no part)."""
    meta.verify_signature(raw_body, headers, config)


def translate(raw_body: bytes, config: ChannelConfig, *, content_type: str) -> Translation:
    """Every message and echo of every change of every entry; the rest counted as ignored."""
    out = Translation()
    for entry in _Payload.model_validate_json(raw_body).entry:
        for change in entry.changes:
            value = _Value.model_validate(change.value)
            items = len(value.messages) + len(value.message_echoes) + len(value.statuses)
            account = value.metadata.phone_number_id if value.metadata else None
            if config.account_id is not None and account != config.account_id:
                out.ignored += max(1, items)
                continue
            out.ignored += len(value.statuses)
            if not value.messages and not value.message_echoes and not value.statuses:
                out.ignored += 1  # another field (account updates, templates, …)
            for raw in value.messages:
                _add(out, _message_of(raw, value.contacts, echo=False))
            for raw in value.message_echoes:
                _add(out, _message_of(raw, value.contacts, echo=True))
    return out


def _add(out: Translation, message: IncomingMessage | None) -> None:
    if message is None:
        out.ignored += 1
    else:
        out.messages.append(message)


def _text(value: object, key: str) -> str | None:
    if isinstance(value, dict):
        found = value.get(key)
        if isinstance(found, str):
            return found
    return None


def _identity(raw: dict[str, Any], contacts: list[_Contact], *, echo: bool) -> Identity | None:
    """The customer: the sender of a message, the recipient of an echo."""
    phone = raw.get("to" if echo else "from")
    user_id = raw.get("to_user_id" if echo else "from_user_id")
    match = None
    for contact in contacts:
        if (phone and contact.wa_id == phone) or (user_id and contact.user_id == user_id):
            match = contact
    if match is None and len(contacts) == 1 and not echo:
        match = contacts[0]
    if match is not None:
        phone = phone or match.wa_id
        user_id = user_id or match.user_id
    name = match.profile.name if match is not None and match.profile is not None else None
    if isinstance(phone, str) and phone.strip("+").isdigit():
        try:
            return Identity(channel=TYPE, phone=normalise_phone(phone), first_name=name)
        except ValueError:  # not a number the phone library accepts: keep the wa_id as an id
            return Identity(channel=TYPE, external_id=f"whatsapp:{phone}", first_name=name)
    if isinstance(user_id, str) and user_id:
        return Identity(channel=TYPE, external_id=f"whatsapp:{user_id}", first_name=name)
    return None


def _message_of(
    raw: dict[str, Any], contacts: list[_Contact], *, echo: bool
) -> IncomingMessage | None:
    wamid = raw.get("id")
    identity = _identity(raw, contacts, echo=echo)
    if not isinstance(wamid, str) or not wamid or identity is None:
        return None
    kind = raw.get("type") if isinstance(raw.get("type"), str) else None
    body = raw.get(kind) if kind else None
    our_type = media_or_word(kind)
    content: str | None = None
    media_url: str | None = None
    if kind == "text":
        our_type, content = "text", _text(body, "body")
    elif our_type == "media":
        content = _text(body, "caption")
        media_url = _text(body, "url") or _text(body, "link")
    elif kind == "reaction":
        content = _text(body, "emoji") or None
    elif kind == "location" and isinstance(body, dict):
        lat, lon = body.get("latitude"), body.get("longitude")
        content = f"{lat},{lon}" if lat is not None and lon is not None else None
    elif kind == "button":
        content = _text(body, "text")
    elif kind == "interactive" and isinstance(body, dict):
        reply = body.get("button_reply") or body.get("list_reply")
        content = _text(reply, "title")
    return IncomingMessage(
        external_id=wamid,
        contact=identity,
        direction="outbound" if echo else "inbound",
        type=our_type,
        content=content,
        media_url=media_url,
        ts_ms=seconds_to_ms(raw.get("timestamp")),
    )
