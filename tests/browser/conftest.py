"""A real ``chatsessions serve`` process and Debian's Chromium driven by Playwright.

The browser is the system's (``/usr/bin/chromium``, installed by ``make test`` when
missing); Playwright never downloads one. The server runs on a SQLite file (storage
behaviour on both backends is covered by the HTTP tests; these test the pages in a
browser).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from chatsessions.timeutil import format_ms
from tests.resilience.harness import Server, create_user

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
AXE = Path(__file__).parent / "vendor" / "axe-core-4.14.1" / "axe.min.js"
MIN = 60_000


@dataclass
class Scene:
    """The server, two tenants and what tenant A owns."""

    base_url: str
    key_a: str
    key_b: str
    names: list[str]  # A's contacts, newest activity first
    session_of: dict[str, str]  # A's contact name → its session id
    b_session: str

    def api(self, key: str) -> httpx.Client:
        """An API client of one tenant."""
        return httpx.Client(base_url=self.base_url, headers={"X-API-Key": key}, timeout=30)


def _seed(base_url: str, key_a: str, key_b: str) -> Scene:
    now = int(time.time() * 1000)
    names: list[str] = []
    session_of: dict[str, str] = {}
    with httpx.Client(base_url=base_url, timeout=30) as client:
        messages = []
        for i in range(30):
            name = f"Person{i:02d}"
            r = client.post(
                "/v1/contacts",
                json={
                    "phoneNumber": f"+1555010{i:04d}",
                    "firstName": name,
                    "lastName": "Tester",
                    "channel": "whatsapp" if i % 3 == 0 else "sms",
                },
                headers={"X-API-Key": key_a},
            )
            assert r.status_code == 200, r.text
            contact = r.json()["data"]["contactId"]
            names.append(name)
            when = now - (i + 2) * MIN
            messages.append(
                {
                    "contactId": contact,
                    "direction": "inbound",
                    "content": f"Hello from {name}",
                    "timestamp": format_ms(when),
                }
            )
            if i < 3:
                messages.append(
                    {
                        "contactId": contact,
                        "direction": "outbound",
                        "content": f"Hi {name}!",
                        "timestamp": format_ms(when + (i + 1) * 30_000),
                        "mediaUrl": "https://example.com/menu.pdf" if i == 0 else None,
                    }
                )
        r = client.post(
            "/v1/messages/batch", json={"messages": messages}, headers={"X-API-Key": key_a}
        )
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        inbound = [m for m in messages if m["direction"] == "inbound"]
        ids = [
            res["sessionId"]
            for res, m in zip(results, messages, strict=True)
            if m["direction"] == "inbound"
        ]
        assert len(ids) == len(inbound)
        session_of = dict(zip(names, ids, strict=True))
        r = client.post(
            "/v1/messages",
            json={
                "contact": {"phoneNumber": "+15550999999"},
                "direction": "inbound",
                "content": "Bobsecret here",
                "timestamp": format_ms(now - MIN),
            },
            headers={"X-API-Key": key_b},
        )
        assert r.status_code == 201, r.text
        b_session = r.json()["sessionId"]
    return Scene(base_url, key_a, key_b, names, session_of, b_session)


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    """A fresh server with two tenants' data."""
    directory = tmp_path_factory.mktemp("browser")
    url = f"sqlite:///{directory / 'console.db'}"
    _, key_a = create_user(url)
    _, key_b = create_user(url)
    server = Server(url, directory)
    server.start()
    try:
        yield _seed(server.base_url, key_a, key_b)
    finally:
        server.terminate()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless."""
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


def new_context(browser: Browser, **options: object) -> BrowserContext:
    """A fresh browser profile (no cookies), UTC and light unless told otherwise."""
    settings: dict[str, object] = {
        "timezone_id": "UTC",
        "color_scheme": "light",
        "accept_downloads": True,
    }
    settings.update(options)
    context = browser.new_context(**settings)  # type: ignore[arg-type]
    context.set_default_timeout(10_000)
    return context


def sign_in(page: Page, scene: Scene, key: str) -> None:
    """Sign in through the form."""
    page.goto(scene.base_url + "/console")
    page.fill("#api-key", key)
    page.click("button:has-text('Sign in')")
    page.wait_for_selector("h1:has-text('Sessions')")
