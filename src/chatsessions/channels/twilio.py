"""Twilio Messaging: SMS, MMS and WhatsApp through Twilio.

Proof: ``X-Twilio-Signature`` = base64 HMAC-SHA1(auth token, the URL Twilio called + every
form field sorted by name, each as name followed by value; a name given several times
contributes each of its values, sorted). The URL verifies with or without its default
port (``:443``, ``:80``). A JSON body is covered instead by the URL's ``bodySHA256`` query
parameter (the body's SHA-256 hex), and the signature is then over the URL alone.

Stored: an inbound message per request (``MessageSid`` as its ``externalId``; Twilio sends
no time: the time of receipt), the contact found or created by phone from ``From``
(``whatsapp:`` removed: channel ``whatsapp``, else ``sms``; ``ProfileName`` as first
name). Status callbacks (``MessageStatus`` other than ``received``) are ignored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Annotated, ClassVar
from urllib.parse import parse_qs, parse_qsl, urlsplit, urlunsplit

import orjson
from pydantic import ConfigDict, StringConstraints, field_validator

from chatsessions.channels.base import (
    ChannelConfig,
    ConfigModel,
    Identity,
    IncomingMessage,
    ProofRejected,
    Translation,
)
from chatsessions.contacts.normalise import normalise_phone

__all__ = ["TYPE", "Config", "signature", "translate", "url_variants", "verify"]

TYPE = "twilio"
_DEFAULT_PORTS = {"https": 443, "http": 80}


class TwilioConfig(ConfigModel):
    """``twilio`` channels."""

    model_config = ConfigDict(extra="forbid")
    HMAC_FIELD: ClassVar[str | None] = "authToken"
    PLAIN_FIELDS: ClassVar[tuple[str, ...]] = ("publicUrl",)

    authToken: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    publicUrl: Annotated[str, StringConstraints(max_length=2048)] | None = None

    @field_validator("authToken")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    @field_validator("publicUrl")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in _DEFAULT_PORTS or not parts.netloc:
                raise ValueError("must be the http(s) URL configured in Twilio")
        return value


Config: type[ConfigModel] = TwilioConfig


def signature(auth_token: str, url: str, params: list[tuple[str, str]]) -> str:
    """Twilio's signature of a request to ``url`` with form ``params``."""
    data = url + "".join(name + value for name, value in sorted(params))
    mac = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(mac).decode()


def url_variants(url: str) -> list[str]:
    """The URL as given, and with its default port added or removed."""
    parts = urlsplit(url)
    default = _DEFAULT_PORTS.get(parts.scheme)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    userinfo = parts.netloc.rpartition("@")[0]
    userinfo = userinfo + "@" if userinfo else ""
    variants = [url]
    if default is not None and parts.port is None:
        variants.append(urlunsplit(parts._replace(netloc=f"{userinfo}{host}:{default}")))
    elif default is not None and parts.port == default:
        variants.append(urlunsplit(parts._replace(netloc=f"{userinfo}{host}")))
    return variants


def verify(raw_body: bytes, headers: Mapping[str, str], config: ChannelConfig, *, url: str) -> None:
    """Check ``X-Twilio-Signature`` over the URL and the form fields (or ``bodySHA256``)."""
    given = headers.get("x-twilio-signature", "")
    if not given or not config.hmac_keys:
        raise ProofRejected("X-Twilio-Signature is missing")
    body_hash = parse_qs(urlsplit(url).query).get("bodySHA256")
    if body_hash:
        params: list[tuple[str, str]] = []
        actual = hashlib.sha256(raw_body).hexdigest()
        if not hmac.compare_digest(actual.encode(), body_hash[0].lower().encode()):
            raise ProofRejected("bodySHA256 does not match the body")
    else:
        params = parse_qsl(raw_body.decode("utf-8", "replace"), keep_blank_values=True)
    ok = False
    for key in config.hmac_keys:
        for variant in url_variants(url):
            ok |= hmac.compare_digest(signature(key, variant, params).encode(), given.encode())
    if not ok:
        raise ProofRejected("X-Twilio-Signature does not match")


def _fields(raw_body: bytes, content_type: str) -> dict[str, str]:
    if content_type.startswith("application/json"):
        data = orjson.loads(raw_body)
        if not isinstance(data, dict):
            return {}
        return {k: v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in data.items()}
    return dict(parse_qsl(raw_body.decode("utf-8", "replace"), keep_blank_values=True))


def _identity(sender: str, profile_name: str | None) -> Identity:
    scheme, sep, address = sender.partition(":")
    channel = scheme.lower() if sep and scheme.isalpha() else "sms"
    address = address if sep else sender
    try:
        return Identity(channel=channel, phone=normalise_phone(address), first_name=profile_name)
    except ValueError:  # a short code, an alphanumeric sender, another address kind
        return Identity(channel=channel, external_id=f"twilio:{sender}", first_name=profile_name)


def translate(raw_body: bytes, config: ChannelConfig, *, content_type: str) -> Translation:
    """The one message of an inbound request; a status callback is ignored."""
    fields = _fields(raw_body, content_type)
    status = (fields.get("MessageStatus") or fields.get("SmsStatus") or "received").lower()
    sid = fields.get("MessageSid") or fields.get("SmsSid")
    sender = fields.get("From")
    if status != "received" or not sid or not sender:
        return Translation(ignored=1)
    media_count = fields.get("NumMedia", "0")
    body = fields.get("Body") or None
    kind, media_url = "text", None
    if media_count.isdigit() and int(media_count) > 0:
        kind, media_url = "media", fields.get("MediaUrl0")
    elif fields.get("Latitude") and fields.get("Longitude"):
        kind, body = "location", f"{fields['Latitude']},{fields['Longitude']}"
    message = IncomingMessage(
        external_id=sid,
        contact=_identity(sender, fields.get("ProfileName") or None),
        direction="inbound",
        type=kind,
        content=body,
        media_url=media_url,
        ts_ms=None,
    )
    return Translation(messages=[message])
