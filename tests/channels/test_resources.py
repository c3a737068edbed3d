"""Channel resources: create, list, read, update, delete; config checked per type; secrets
write-only, masked, and not readable from the database alone."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from chatsessions import tables
from chatsessions.channels import vault
from chatsessions.channels.store import Counts
from chatsessions.config import Settings
from chatsessions.db import Database
from tests.channels.payloads import (
    APP_SECRET,
    TELEGRAM_SECRET,
    TWILIO_TOKEN,
    VERIFY_TOKEN,
    create_channel,
    post_meta,
    wa_text,
)
from tests.conftest import Tenant


async def test_create_read_list_with_secrets_masked(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    wa = await create_channel(client, tenant.auth, "whatsapp", accountId="106540352242922")
    assert wa["type"] == "whatsapp" and wa["name"] == "my whatsapp"
    assert wa["webhookPath"] == f"/v1/channels/{wa['channelId']}/webhook"
    assert wa["config"] == {
        "appSecret": "…93676",
        "verifyToken": "…-0123",
        "accountId": "106540352242922",
    }
    ig = await create_channel(client, tenant.auth, "instagram", appSecret=[APP_SECRET, "b" * 32])
    assert ig["config"]["appSecret"] == ["…93676", "…bbbbb"]
    tw = await create_channel(client, tenant.auth, "twilio")
    assert tw["config"] == {"authToken": "…bcdef"}
    tg = await create_channel(client, tenant.auth, "telegram")
    assert tg["config"] == {"secretToken": "…56789"}

    r = await client.get(f"/v1/channels/{wa['channelId']}", headers=tenant.auth)
    assert r.status_code == 200
    data = r.json()["data"]
    assert data["config"] == wa["config"]
    assert data["counters"] == {
        "received": 0,
        "stored": 0,
        "duplicates": 0,
        "ignored": 0,
        "rejected": 0,
        "lastEventAt": None,
        "lastError": None,
        "lastErrorAt": None,
    }
    r = await client.get("/v1/channels", headers=tenant.auth)
    # Oldest first; created at the same (fake) time here, so by id.
    assert [c["channelId"] for c in r.json()["data"]] == sorted(
        [wa["channelId"], ig["channelId"], tw["channelId"], tg["channelId"]]
    )
    for secret in (APP_SECRET, VERIFY_TOKEN, TWILIO_TOKEN, TELEGRAM_SECRET):
        assert secret not in r.text


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ({"type": "signal", "config": {}}, "type"),
        ({"type": "whatsapp"}, "config"),
        ({"type": "whatsapp", "config": {"verifyToken": "t"}}, "config.appSecret"),
        ({"type": "whatsapp", "config": {"appSecret": "s"}}, "config.verifyToken"),
        ({"type": "whatsapp", "config": {"appSecret": [], "verifyToken": "t"}}, "config.appSecret"),
        (
            {"type": "messenger", "config": {"appSecret": " ", "verifyToken": "t"}},
            "config.appSecret",
        ),
        (
            {
                "type": "instagram",
                "config": {"appSecret": "s", "verifyToken": "t", "app_secret": "x"},
            },
            "config.app_secret",
        ),
        ({"type": "twilio", "config": {}}, "config.authToken"),
        (
            {"type": "twilio", "config": {"authToken": "t", "publicUrl": "ftp://x/y"}},
            "config.publicUrl",
        ),
        ({"type": "telegram", "config": {"secretToken": "has space"}}, "config.secretToken"),
        ({"type": "telegram", "config": {"secretToken": ""}}, "config.secretToken"),
        ({"type": "telegram", "config": {"secretToken": "a" * 257}}, "config.secretToken"),
        ({"type": "telegram", "config": {}}, "config.secretToken"),
    ],
)
async def test_bad_config_is_400_naming_the_key(
    client: httpx.AsyncClient, tenant: Tenant, body: dict[str, Any], names: str
) -> None:
    r = await client.post("/v1/channels", json=body, headers=tenant.auth)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "invalid_parameter"
    assert r.json()["error"].startswith(names), r.json()
    r = await client.get("/v1/channels", headers=tenant.auth)
    assert r.json()["data"] == []


async def test_patch_changes_only_what_is_given(client: httpx.AsyncClient, tenant: Tenant) -> None:
    wa = await create_channel(client, tenant.auth, "whatsapp")
    path = f"/v1/channels/{wa['channelId']}"
    r = await client.patch(path, json={"name": "support line"}, headers=tenant.auth)
    assert r.status_code == 200, r.text
    assert r.json()["data"]["name"] == "support line"
    assert r.json()["data"]["config"] == wa["config"]
    r = await client.patch(path, json={"config": {"accountId": "42"}}, headers=tenant.auth)
    assert r.status_code == 200, r.text
    assert r.json()["data"]["config"] == {**wa["config"], "accountId": "42"}
    # The secret and the verify token kept: the handshake and the signature still verify.
    handshake = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "7"}
    assert (await client.get(wa["webhookPath"], params=handshake)).text == "7"
    assert (await post_meta(client, wa["webhookPath"], wa_text("wamid.P1"))).status_code == 200
    r = await client.patch(
        path, json={"config": {"verifyToken": "a-new-token-for-meta"}}, headers=tenant.auth
    )
    assert r.json()["data"]["config"]["verifyToken"] == "…-meta"
    assert (await client.get(wa["webhookPath"], params=handshake)).status_code == 403
    r = await client.patch(path, json={"config": {"bogus": 1}}, headers=tenant.auth)
    assert r.status_code == 400 and r.json()["error"].startswith("config.bogus")
    r = await client.patch(path, json={"config": {"appSecret": []}}, headers=tenant.auth)
    assert r.status_code == 400


async def test_delete_makes_the_webhook_404(client: httpx.AsyncClient, tenant: Tenant) -> None:
    wa = await create_channel(client, tenant.auth, "whatsapp")
    r = await client.delete(f"/v1/channels/{wa['channelId']}", headers=tenant.auth)
    assert r.status_code == 200 and r.json() == {"success": True}
    assert (
        await client.get(f"/v1/channels/{wa['channelId']}", headers=tenant.auth)
    ).status_code == 404
    assert (
        await client.delete(f"/v1/channels/{wa['channelId']}", headers=tenant.auth)
    ).status_code == 404
    assert (await post_meta(client, wa["webhookPath"], wa_text("wamid.D1"))).status_code == 404
    for path in ("/v1/channels/AAAAAAAAAAAAAAAAAAAA/webhook", "/v1/channels/not-an-id/webhook"):
        assert (await post_meta(client, path, wa_text("wamid.D2"))).status_code == 404
        assert (await client.get(path, params={"hub.mode": "subscribe"})).status_code == 404


async def test_a_database_dump_alone_does_not_reveal_secrets(
    client: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    made = [
        await create_channel(client, tenant.auth, "whatsapp"),
        await create_channel(client, tenant.auth, "twilio"),
        await create_channel(client, tenant.auth, "telegram"),
    ]
    async with database.read() as conn:
        rows = (
            await conn.execute(
                select(tables.channels).where(tables.channels.c.user_id == tenant.user_id)
            )
        ).all()
    dump = repr(rows)
    for secret in (APP_SECRET, VERIFY_TOKEN, TWILIO_TOKEN, TELEGRAM_SECRET, "93676", "56789"):
        assert secret not in dump
    by_id = {row.id: row for row in rows}
    assert (
        by_id[made[2]["channelId"]].token_hash
        == hashlib.sha256(TELEGRAM_SECRET.encode()).hexdigest()
    )
    assert (
        by_id[made[0]["channelId"]].token_hash == hashlib.sha256(VERIFY_TOKEN.encode()).hexdigest()
    )
    # The sealed values open only with the server key (not in the database), for their row.
    sealed = by_id[made[1]["channelId"]].secret_box
    aad = f"channel/{tenant.user_id}/{made[1]['channelId']}"
    assert vault.load_vault(database.settings).open(sealed, aad=aad) == {"hmac": TWILIO_TOKEN}
    with pytest.raises(vault.SealedSecretError):
        vault.Vault(b"another server key").open(sealed, aad=aad)
    with pytest.raises(vault.SealedSecretError):
        vault.load_vault(database.settings).open(
            sealed, aad=f"channel/{tenant.user_id}/{made[0]['channelId']}"
        )


def test_the_server_key_file_is_made_once_private_and_beside_the_database(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/db/chat.db", secret_key=None)
    path = vault.key_file_path(settings)
    assert path == tmp_path / "db" / "secret.key"
    first = vault.load_vault(settings)
    sealed = first.seal(["a-secret"], aad="x")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert vault.load_vault(settings).open(sealed, aad="x") == ["a-secret"]  # the same key again
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
    pg = Settings(database_url="postgresql://u@h/db", secret_key=None)
    assert vault.key_file_path(pg) == Path("data") / "secret.key"
    assert vault.key_file_path(pg.model_copy(update={"secret_key_file": "/etc/cs.key"})) == Path(
        "/etc/cs.key"
    )
    # CHATSESSIONS_SECRET_KEY set: the key is derived from it (no file).
    keyed = Settings(database_url=f"sqlite:///{tmp_path}/k/chat.db", secret_key="s3cret")
    assert vault.load_vault(keyed).open(vault.load_vault(keyed).seal(1, aad="y"), aad="y") == 1
    assert not (tmp_path / "k").exists()


def test_counter_increments_add_up_and_keep_the_latest_event_and_error() -> None:
    first = Counts(received=1, stored=2, last_event_at_ms=10, last_error="a", last_error_at_ms=10)
    second = Counts(received=1, duplicates=3, ignored=1, last_event_at_ms=20)
    third = Counts(rejected=1, last_error="c", last_error_at_ms=30)
    assert first.plus(second).plus(third) == Counts(
        received=2,
        stored=2,
        duplicates=3,
        ignored=1,
        rejected=1,
        last_event_at_ms=20,
        last_error="c",
        last_error_at_ms=30,
    )
    assert first.plus(second).last_error == "a"  # a later delivery without an error
