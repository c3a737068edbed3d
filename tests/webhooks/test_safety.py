"""SSRF safety (docs/contract.md#webhooks): only https to global addresses, checked at creation and at each
delivery, connecting to the checked address; the private-address flag opens it up."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import httpx
import pytest

from chatsessions.db import Database
from chatsessions.webhooks import safety
from chatsessions.webhooks.worker import DeliveryWorker
from tests.conftest import T0, FakeClock, Tenant
from tests.factories import make_contact, post_message
from tests.webhooks.receiver import Receiver

REFUSED = [
    "http://127.0.0.1/hook",
    "https://127.0.0.1/hook",
    "https://169.254.169.254/latest/meta-data",
    "https://[::ffff:127.0.0.1]/hook",
    "https://[64:ff9b::a00:1]/hook",
    "https://[::1]/hook",
    "https://0.0.0.0/hook",
    "https://10.1.2.3/hook",
    "https://[fe80::1]/hook",
    "https://224.0.0.1/hook",
    "https://internal.example/hook",  # resolves to 10.x (see the fake resolver)
    "https://mixed.example/hook",  # one public and one private address
    "http://public.example/hook",  # public, but not https
]


@pytest.fixture(autouse=True)
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Names resolve from this table only (no real DNS in tests)."""
    table = {
        "internal.example": ["10.20.30.40"],
        "mixed.example": ["93.184.216.34", "192.168.1.1"],
        "public.example": ["93.184.216.34"],
        "hooks.test": ["127.0.0.1"],
        "dual.test": ["::1", "127.0.0.1"],  # like localhost on many systems
    }

    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError("no such host")
        return list(table[host])

    monkeypatch.setattr(safety, "resolve_host", resolve)
    return table


@pytest.mark.parametrize("url", REFUSED)
async def test_refused_without_the_flag(
    client: httpx.AsyncClient, tenant: Tenant, url: str
) -> None:
    r = await client.post(
        "/v1/webhooks", json={"url": url, "events": ["MessageReceived"]}, headers=tenant.auth
    )
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "invalid_parameter"
    assert r.json()["error"].startswith("url")


@pytest.mark.parametrize("url", REFUSED)
async def test_allowed_with_the_flag(pclient: httpx.AsyncClient, tenant: Tenant, url: str) -> None:
    r = await pclient.post(
        "/v1/webhooks", json={"url": url, "events": ["MessageReceived"]}, headers=tenant.auth
    )
    assert r.status_code == 201, r.text


async def test_public_https_and_unresolvable_names_accepted(
    client: httpx.AsyncClient, tenant: Tenant, worker: DeliveryWorker
) -> None:
    """A name that does not resolve (yet) is accepted: each delivery checks it again."""
    for url in ("https://public.example/hook", "https://nowhere.example/hook"):
        r = await client.post(
            "/v1/webhooks", json={"url": url, "events": ["MessageReceived"]}, headers=tenant.auth
        )
        assert r.status_code == 201, r.text
    hook = r.json()["data"]["webhookId"]
    contact = await make_contact(client, tenant.auth)
    await post_message(client, tenant.auth, contact, T0 - 1000)
    worker.allow_private = False
    await worker.run_once()
    page = (await client.get(f"/v1/webhooks/{hook}/deliveries", headers=tenant.auth)).json()
    [d] = page["data"]
    assert d["status"] == "pending" and "does not resolve" in d["lastError"]


async def test_checked_again_at_delivery(
    client: httpx.AsyncClient,
    tenant: Tenant,
    worker: DeliveryWorker,
    fake_dns: dict[str, list[str]],
) -> None:
    """A name that was public at creation and now points inside is not connected to."""
    r = await client.post(
        "/v1/webhooks",
        json={"url": "https://public.example/hook", "events": ["MessageReceived"]},
        headers=tenant.auth,
    )
    hook = r.json()["data"]["webhookId"]
    fake_dns["public.example"] = ["127.0.0.1"]  # DNS rebinding
    worker.allow_private = False
    contact = await make_contact(client, tenant.auth)
    await post_message(client, tenant.auth, contact, T0 - 1000)
    assert await worker.run_once() == 1
    page = (await client.get(f"/v1/webhooks/{hook}/deliveries", headers=tenant.auth)).json()
    [d] = page["data"]
    assert d["status"] == "pending" and d["attempts"] == 1 and d["lastStatusCode"] is None
    assert "refused" in d["lastError"]


async def test_connects_to_the_checked_address_with_the_host_header(
    pclient: httpx.AsyncClient, tenant: Tenant, receiver: Receiver, worker: DeliveryWorker
) -> None:
    """``hooks.test`` exists only in the fake resolver: the request reached the receiver,
    so it went to the address that was checked, naming the host in ``Host``."""
    url = f"http://hooks.test:{receiver.port}/hook"
    r = await pclient.post(
        "/v1/webhooks", json={"url": url, "events": ["MessageReceived"]}, headers=tenant.auth
    )
    receiver.secret = r.json()["data"]["secret"]
    contact = await make_contact(pclient, tenant.auth)
    await post_message(pclient, tenant.auth, contact, T0 - 1000)
    assert await worker.drain() == 1
    [got] = receiver.received
    assert got.headers["host"] == f"hooks.test:{receiver.port}"


async def test_next_checked_address_when_one_is_unreachable(
    pclient: httpx.AsyncClient, tenant: Tenant, receiver: Receiver, worker: DeliveryWorker
) -> None:
    """The receiver listens on 127.0.0.1 only; ``dual.test`` resolves to ::1 first."""
    r = await pclient.post(
        "/v1/webhooks",
        json={"url": f"http://dual.test:{receiver.port}/hook", "events": ["MessageReceived"]},
        headers=tenant.auth,
    )
    receiver.secret = r.json()["data"]["secret"]
    contact = await make_contact(pclient, tenant.auth)
    await post_message(pclient, tenant.auth, contact, T0 - 1000)
    assert await worker.drain() == 1
    assert len(receiver.received) == 1


async def test_redirects_are_not_followed(
    pclient: httpx.AsyncClient, tenant: Tenant, receiver: Receiver, worker: DeliveryWorker
) -> None:
    target = Receiver().start()
    try:
        receiver.status = 307
        receiver.location = target.url
        r = await pclient.post(
            "/v1/webhooks",
            json={"url": receiver.url, "events": ["MessageReceived"]},
            headers=tenant.auth,
        )
        hook = r.json()["data"]["webhookId"]
        contact = await make_contact(pclient, tenant.auth)
        await post_message(pclient, tenant.auth, contact, T0 - 1000)
        assert await worker.run_once() == 1
        assert target.attempts == 0
        page = (await pclient.get(f"/v1/webhooks/{hook}/deliveries", headers=tenant.auth)).json()
        assert page["data"][0]["lastStatusCode"] == 307
        assert page["data"][0]["status"] == "pending"
    finally:
        target.stop()


def test_address_rules() -> None:
    import ipaddress

    for addr in ["8.8.8.8", "2606:4700:4700::1111", "64:ff9b::808:808"]:
        assert safety.is_allowed_address(ipaddress.ip_address(addr)), addr
    for addr in ["127.0.0.1", "10.0.0.1", "172.16.0.1", "192.168.0.1", "169.254.169.254",
                 "100.64.0.1", "0.0.0.0", "255.255.255.255", "224.0.0.1", "240.0.0.1",
                 "::1", "::", "fe80::1", "fc00::1", "ff02::1", "::ffff:10.0.0.1",
                 "64:ff9b::7f00:1", "64:ff9b:1::1", "2002:7f00:1::1", "::127.0.0.1"]:  # fmt: skip
        assert not safety.is_allowed_address(ipaddress.ip_address(addr)), addr


def _self_signed(tmp_path: Path, host: str) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", f"/CN={host}", "-addext", f"subjectAltName=DNS:{host}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return cert, key


async def test_https_to_the_checked_address_with_sni_and_certificate_check(
    pclient: httpx.AsyncClient,
    tenant: Tenant,
    database: Database,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    """https: the request goes to the checked IP, yet TLS asks for (SNI) and verifies the
    certificate of the URL's host name."""
    cert, key = _self_signed(tmp_path, "hooks.test")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    receiver = Receiver(tls=server_ctx).start()
    trusting = httpx.AsyncClient(
        verify=ssl.create_default_context(cafile=str(cert)), trust_env=False, timeout=10
    )
    worker = DeliveryWorker(database, clock=clock, allow_private=True, client=trusting)
    try:
        r = await pclient.post(
            "/v1/webhooks",
            json={"url": f"https://hooks.test:{receiver.port}/hook", "events": ["MessageReceived"]},
            headers=tenant.auth,
        )
        receiver.secret = r.json()["data"]["secret"]
        contact = await make_contact(pclient, tenant.auth)
        await post_message(pclient, tenant.auth, contact, T0 - 1000)
        assert await worker.drain() == 1
        assert receiver.sni == ["hooks.test"]
        [got] = receiver.received
        assert got.headers["host"] == f"hooks.test:{receiver.port}"
        # A certificate for another name is refused (no delivery, retried later).
        (tmp_path / "other").mkdir()
        receiver2_cert, receiver2_key = _self_signed(tmp_path / "other", "other.test")
        other_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        other_ctx.load_cert_chain(receiver2_cert, receiver2_key)
        impostor = Receiver(tls=other_ctx, secret=receiver.secret).start()
        try:
            r = await pclient.post(
                "/v1/webhooks",
                json={
                    "url": f"https://hooks.test:{impostor.port}/hook",
                    "events": ["MessageReceived"],
                },
                headers=tenant.auth,
            )
            other_hook = r.json()["data"]["webhookId"]
            await post_message(pclient, tenant.auth, contact, T0 - 999)
            await worker.drain()
            assert impostor.received == []
            page = (
                await pclient.get(f"/v1/webhooks/{other_hook}/deliveries", headers=tenant.auth)
            ).json()
            assert page["data"][0]["status"] == "pending" and page["data"][0]["lastError"]
        finally:
            impostor.stop()
    finally:
        await trusting.aclose()
        receiver.stop()
