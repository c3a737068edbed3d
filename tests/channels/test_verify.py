"""The proofs: published test vectors, and tampering (pure functions, then over HTTP).

Vectors used (inputs and expected outputs are published facts):
- Twilio's request-validator tests (twilio-python ``tests/unit/test_request_validator.py``):
  auth token ``12345``, URL ``https://mycompany.com/myapp.php?foo=1&bar=2``, five call
  parameters → ``RSOYDt4T1cUTdK1PDd93/VVr8B8=``; with ``:443`` → ``kvajT1Ptam85bY51eRf/AJRuM3w=``;
  ``http`` with ``:80`` → ``0ZXoZLH/DfblKGATFgpif+LLRf4=``; ``http`` with ``:1234`` →
  ``Zmvh+3yNM1Phv2jhDCwEM3q5ebU=``; repeated ``Digits`` → ``IK+Dwps556ElfBT0I3Rgjkr1wJU=``; a
  JSON body with ``bodySHA256=0a1f…6620`` → ``a9nBmqA0ju/hNViExpshrM61xv4=``.
- HMAC-SHA256 (RFC 4231, test case 2): key ``Jefe``, data ``what do ya want for nothing?``
  → ``5bdcc146…64ec3843``: Meta's ``X-Hub-Signature-256`` is exactly this over the raw body.
- A real Meta-signed WhatsApp Cloud API delivery (pywa, ``david-lev/pywa``
  ``tests/test_server.py::test_webhook_updates_validator``; the app secret was reset by its
  owner after publication): the body's exact bytes, app secret ``1222e786…93676`` and the
  ``X-Hub-Signature-256`` Meta sent, ``sha256=54edfa1d…1bc441``.
"""

from __future__ import annotations

from urllib.parse import urlencode

import httpx
import pytest

from chatsessions.channels import telegram, twilio, vault, whatsapp
from chatsessions.channels.base import ChannelConfig, ProofRejected
from tests.channels.payloads import (
    APP_SECRET,
    TELEGRAM_SECRET,
    TWILIO_TOKEN,
    create_channel,
    dumps,
    messages_of,
    meta_signature,
    post_meta,
    post_telegram,
    post_twilio,
    tg_update,
    twilio_form,
    twilio_signature,
    twilio_sms,
    wa_text,
)
from tests.conftest import Tenant

TWILIO_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
TWILIO_PARAMS = [
    ("CallSid", "CA1234567890ABCDE"),
    ("Digits", "1234"),
    ("From", "+14158675309"),
    ("To", "+18005551212"),
    ("Caller", "+14158675309"),
]
TWILIO_CONFIG = ChannelConfig(type="twilio", hmac_keys=("12345",))
JSON_BODY = b'{"property": "value", "boolean": true}'
JSON_BODY_SHA256 = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
RFC4231_KEY, RFC4231_DATA = "Jefe", b"what do ya want for nothing?"
RFC4231_MAC = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
# Signed by Meta, not by us: see the module docstring for the source.
META_SIGNED_SECRET = "1222e786b144d0e85b9f365372d93676"
META_SIGNED_BODY = (
    b'{"object":"whatsapp_business_account","entry":[{"id":"264937493375603","changes":[{"value":'
    b'{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550953877",'
    b'"phone_number_id":"277321005464405"},"contacts":[{"profile":{"name":"PyWa Tests"},'
    b'"wa_id":"972544401243"}],"messages":[{"from":"972544401243","id":'
    b'"wamid.HBgMOTcyNTQ0NDAxMjQzFQIAEhggM0RFQTNCMEEwRTY3QzUwODYzMDc4NjQ4QzM4ODAxM0YA",'
    b'"timestamp":"1730231903","text":{"body":"Hey there! I am using PyWa."},"type":"text"}]},'
    b'"field":"messages"}]}]}'
)
META_SIGNED_HEADER = "sha256=54edfa1d7259e0eb13c677cc7d73d1b5c86cfa12433d19156e058ab9251bc441"


def _twilio(url: str, body: bytes, sig: str | None, config: ChannelConfig = TWILIO_CONFIG) -> None:
    headers = {"x-twilio-signature": sig} if sig is not None else {}
    twilio.verify(body, headers, config, url=url)


def test_twilio_published_signature() -> None:
    assert twilio.signature("12345", TWILIO_URL, TWILIO_PARAMS) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    _twilio(TWILIO_URL, twilio_form(TWILIO_PARAMS), "RSOYDt4T1cUTdK1PDd93/VVr8B8=")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # Signed with the default port, called without it (and the reverse).
        (TWILIO_URL, "kvajT1Ptam85bY51eRf/AJRuM3w="),
        (TWILIO_URL.replace(".com", ".com:443"), "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
        (TWILIO_URL.replace("https", "http"), "0ZXoZLH/DfblKGATFgpif+LLRf4="),
        # Another port is part of the URL that was signed.
        (
            TWILIO_URL.replace(".com", ".com:1234").replace("https", "http"),
            "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=",
        ),
    ],
)
def test_twilio_published_port_variants(url: str, expected: str) -> None:
    _twilio(url, twilio_form(TWILIO_PARAMS), expected)


def test_twilio_published_repeated_parameters() -> None:
    params = [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234")]
    assert twilio.signature("12345", TWILIO_URL, params) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="
    _twilio(TWILIO_URL, twilio_form(params), "IK+Dwps556ElfBT0I3Rgjkr1wJU=")


def test_twilio_published_json_body() -> None:
    url = TWILIO_URL + "&bodySHA256=" + JSON_BODY_SHA256
    _twilio(url, JSON_BODY, "a9nBmqA0ju/hNViExpshrM61xv4=")
    with pytest.raises(ProofRejected):  # one byte of the body changed
        _twilio(url, JSON_BODY.replace(b"true", b"tru3"), "a9nBmqA0ju/hNViExpshrM61xv4=")


@pytest.mark.parametrize(
    ("url", "body", "sig", "config"),
    [
        (
            TWILIO_URL,
            twilio_form(TWILIO_PARAMS).replace(b"1234", b"1235"),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
            TWILIO_CONFIG,
        ),
        (
            TWILIO_URL.replace("foo=1", "foo=2"),
            twilio_form(TWILIO_PARAMS),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
            TWILIO_CONFIG,
        ),
        (
            TWILIO_URL.replace(".com", ".com:8443"),
            twilio_form(TWILIO_PARAMS),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
            TWILIO_CONFIG,
        ),
        (TWILIO_URL, twilio_form(TWILIO_PARAMS), "RSOYDt4T1cUTdK1PDd93/VVr8B9=", TWILIO_CONFIG),
        (TWILIO_URL, twilio_form(TWILIO_PARAMS), None, TWILIO_CONFIG),
        (TWILIO_URL, twilio_form(TWILIO_PARAMS), "", TWILIO_CONFIG),
        (
            TWILIO_URL,
            twilio_form(TWILIO_PARAMS),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
            ChannelConfig(type="twilio", hmac_keys=("12346",)),
        ),
    ],
    ids=[
        "body-byte",
        "url",
        "non-default-port",
        "signature-byte",
        "missing",
        "empty",
        "wrong-token",
    ],
)
def test_twilio_tampering_is_rejected(
    url: str, body: bytes, sig: str | None, config: ChannelConfig
) -> None:
    with pytest.raises(ProofRejected):
        _twilio(url, body, sig, config)


def _meta(body: bytes, header: str | None, keys: tuple[str, ...] = (RFC4231_KEY,)) -> None:
    headers = {"x-hub-signature-256": header} if header is not None else {}
    whatsapp.verify(body, headers, ChannelConfig(type="whatsapp", hmac_keys=keys), url="")


def test_meta_signature_is_hmac_sha256_of_the_raw_bytes_rfc4231() -> None:
    _meta(RFC4231_DATA, "sha256=" + RFC4231_MAC)
    _meta(RFC4231_DATA, "sha256=" + RFC4231_MAC, keys=("old-secret", RFC4231_KEY))  # rotation list


def test_meta_signature_of_a_real_meta_signed_delivery() -> None:
    _meta(META_SIGNED_BODY, META_SIGNED_HEADER, keys=(META_SIGNED_SECRET,))
    for i in (0, len(META_SIGNED_BODY) // 2, len(META_SIGNED_BODY) - 1):  # one byte changed
        tampered = bytearray(META_SIGNED_BODY)
        tampered[i] ^= 0x01
        with pytest.raises(ProofRejected):
            _meta(bytes(tampered), META_SIGNED_HEADER, keys=(META_SIGNED_SECRET,))
    with pytest.raises(ProofRejected):  # the same body, re-serialised, is not what Meta signed
        _meta(META_SIGNED_BODY.replace(b",", b", "), META_SIGNED_HEADER, keys=(META_SIGNED_SECRET,))


@pytest.mark.parametrize(
    ("body", "header", "keys"),
    [
        (RFC4231_DATA.replace(b"want", b"wont"), "sha256=" + RFC4231_MAC, (RFC4231_KEY,)),
        (RFC4231_DATA, "sha256=" + RFC4231_MAC[:-1] + "4", (RFC4231_KEY,)),
        (RFC4231_DATA, None, (RFC4231_KEY,)),
        (RFC4231_DATA, "sha1=" + RFC4231_MAC, (RFC4231_KEY,)),
        (RFC4231_DATA, "sha256=", (RFC4231_KEY,)),
        (RFC4231_DATA, "sha256=" + RFC4231_MAC, ("jefe",)),
        (RFC4231_DATA, "sha256=" + RFC4231_MAC, ()),
    ],
    ids=[
        "body-byte",
        "signature-byte",
        "missing",
        "other-scheme",
        "empty",
        "wrong-secret",
        "no-secret",
    ],
)
def test_meta_tampering_is_rejected(body: bytes, header: str | None, keys: tuple[str, ...]) -> None:
    with pytest.raises(ProofRejected):
        _meta(body, header, keys)


def test_telegram_secret_token() -> None:
    config = ChannelConfig(type="telegram", token_hash=vault.hash_token("abc_DEF-123"))
    telegram.verify(b"{}", {"x-telegram-bot-api-secret-token": "abc_DEF-123"}, config, url="")
    for given in ("abc_DEF-124", "abc_DEF-12", "", None):
        headers = {"x-telegram-bot-api-secret-token": given} if given is not None else {}
        with pytest.raises(ProofRejected):
            telegram.verify(b"{}", headers, config, url="")


# --- Over HTTP: 401, nothing stored, counted ---


async def _rejected(client: httpx.AsyncClient, tenant: Tenant, channel_id: str) -> int:
    r = await client.get(f"/v1/channels/{channel_id}", headers=tenant.auth)
    value: int = r.json()["data"]["counters"]["rejected"]
    return value


async def test_bad_meta_proofs_are_401_counted_and_store_nothing(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    channel = await create_channel(client, tenant.auth, "whatsapp")
    path = channel["webhookPath"]
    body = dumps(wa_text("wamid.T1"))
    tampered = body.replace(b"text of", b"text 0f")
    attempts = [
        {"X-Hub-Signature-256": meta_signature(body)},  # signature of another body
        {},
        {"X-Hub-Signature-256": meta_signature(body, "not-the-secret")},
    ]
    for i, headers in enumerate(attempts):
        r = await client.post(path, content=tampered if i == 0 else body, headers=headers)
        assert r.status_code == 401, r.text
        assert r.json()["code"] == "unauthorized" and r.json()["success"] is False
    assert await messages_of(client, tenant.auth) == []
    assert await _rejected(client, tenant, channel["channelId"]) == 3
    r = await client.post(path, content=body, headers={"X-Hub-Signature-256": meta_signature(body)})
    assert r.status_code == 200


async def test_a_real_meta_signed_delivery_is_stored_and_a_tampered_one_refused(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    channel = await create_channel(
        client, tenant.auth, "whatsapp", appSecret=META_SIGNED_SECRET, accountId="277321005464405"
    )
    path = channel["webhookPath"]
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": META_SIGNED_HEADER}
    tampered = META_SIGNED_BODY.replace(b"Hey there!", b"Hey there?")
    r = await client.post(path, content=tampered, headers=headers)
    assert r.status_code == 401, r.text
    assert await messages_of(client, tenant.auth) == []
    r = await client.post(path, content=META_SIGNED_BODY, headers=headers)
    assert r.status_code == 200, r.text
    [stored] = await messages_of(client, tenant.auth)
    assert stored["external_id"] == (
        "wamid.HBgMOTcyNTQ0NDAxMjQzFQIAEhggM0RFQTNCMEEwRTY3QzUwODYzMDc4NjQ4QzM4ODAxM0YA"
    )
    assert stored["content"] == "Hey there! I am using PyWa."
    assert stored["timestamp"] == "2024-10-29T19:58:23.000Z"  # Meta's Unix seconds
    assert stored["contact_name"] == "PyWa Tests"
    assert stored["contact_phone"] == "+972544401243"


async def test_old_secrets_stop_verifying_after_rotation(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    wa = await create_channel(client, tenant.auth, "whatsapp")
    tw = await create_channel(client, tenant.auth, "twilio")
    tg = await create_channel(client, tenant.auth, "telegram")
    new_meta, new_twilio, new_tg = APP_SECRET[::-1], TWILIO_TOKEN[::-1], TELEGRAM_SECRET[::-1]
    # A list: the old and the new secret both verify while the platform switches over.
    r = await client.patch(
        f"/v1/channels/{wa['channelId']}",
        json={"config": {"appSecret": [APP_SECRET, new_meta]}},
        headers=tenant.auth,
    )
    assert r.status_code == 200, r.text
    assert (await post_meta(client, wa["webhookPath"], wa_text("wamid.R1"))).status_code == 200
    assert (
        await post_meta(client, wa["webhookPath"], wa_text("wamid.R2"), secret=new_meta)
    ).status_code == 200
    for channel, config in (
        (wa, {"appSecret": new_meta}),
        (tw, {"authToken": new_twilio}),
        (tg, {"secretToken": new_tg}),
    ):
        r = await client.patch(
            f"/v1/channels/{channel['channelId']}", json={"config": config}, headers=tenant.auth
        )
        assert r.status_code == 200, r.text
    assert (await post_meta(client, wa["webhookPath"], wa_text("wamid.R3"))).status_code == 401
    assert (await post_twilio(client, tw["webhookPath"], twilio_sms("SMR1"))).status_code == 401
    assert (
        await post_telegram(client, tg["webhookPath"], tg_update(1, message_id=1))
    ).status_code == 401
    assert (
        await post_meta(client, wa["webhookPath"], wa_text("wamid.R4"), secret=new_meta)
    ).status_code == 200
    assert (
        await post_twilio(client, tw["webhookPath"], twilio_sms("SMR2"), token=new_twilio)
    ).status_code == 200
    r = await post_telegram(client, tg["webhookPath"], tg_update(2, message_id=2), secret=new_tg)
    assert r.status_code == 200
    stored = {m["external_id"] for m in await messages_of(client, tenant.auth)}
    assert stored == {"wamid.R1", "wamid.R2", "wamid.R4", "SMR2", "tg:777000111:2"}


async def test_twilio_url_from_a_trusted_proxy_only(
    backend_settings: object, database: object, clock: object, tenant: Tenant
) -> None:
    from chatsessions.app import create_app
    from chatsessions.config import Settings
    from chatsessions.db import Database

    assert isinstance(backend_settings, Settings) and isinstance(database, Database)
    public = "https://chat.example.com"
    for trusted, expected in (([], 401), (["127.0.0.0/8"], 200)):
        settings = backend_settings.model_copy(update={"trusted_proxies": trusted})
        app = create_app(settings, clock=clock, database=database)  # type: ignore[arg-type]
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5555))
        async with httpx.AsyncClient(transport=transport, base_url="http://internal:8000") as c:
            channel = await create_channel(c, tenant.auth, "twilio")
            params = twilio_sms(f"SMP{len(trusted)}")
            sig = twilio_signature(public + channel["webhookPath"], params)
            r = await c.post(
                channel["webhookPath"],
                content=urlencode(params).encode(),
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "X-Twilio-Signature": sig,
                    "X-Forwarded-Proto": "https",
                    "X-Forwarded-Host": "chat.example.com",
                },
            )
            assert r.status_code == expected, (trusted, r.text)


async def test_a_flood_of_bad_proofs_is_throttled_per_address(
    backend_settings: object, database: object, clock: object, tenant: Tenant
) -> None:
    from chatsessions.app import create_app
    from chatsessions.config import Settings
    from chatsessions.db import Database

    assert isinstance(backend_settings, Settings) and isinstance(database, Database)
    settings = backend_settings.model_copy(update={"auth_failure_limit": 3})
    app = create_app(settings, clock=clock, database=database)  # type: ignore[arg-type]
    forger = httpx.ASGITransport(app=app, client=("203.0.113.5", 4444))
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c,
        httpx.AsyncClient(transport=forger, base_url="http://t") as f,
    ):
        channel = await create_channel(c, tenant.auth, "telegram")
        path = channel["webhookPath"]
        codes = []
        for n in range(5):
            r = await post_telegram(f, path, tg_update(n, message_id=n), secret="forged")
            codes.append(r.status_code)
        assert codes == [401, 401, 401, 429, 429]
        # Throttled requests are refused before any write: only the three were counted.
        assert await _rejected(c, tenant, channel["channelId"]) == 3
        # The platform, from its own address, is not affected.
        assert (await post_telegram(c, path, tg_update(9, message_id=9))).status_code == 200

    # Guesses at a Meta verify token are throttled the same way.
    guesser = httpx.ASGITransport(app=app, client=("203.0.113.6", 4444))
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c,
        httpx.AsyncClient(transport=guesser, base_url="http://t") as g,
    ):
        channel = await create_channel(c, tenant.auth, "whatsapp")
        codes = []
        for guess in ("a", "b", "c", "d"):
            params = {"hub.mode": "subscribe", "hub.verify_token": guess, "hub.challenge": "1"}
            codes.append((await g.get(channel["webhookPath"], params=params)).status_code)
        assert codes == [403, 403, 403, 429]
