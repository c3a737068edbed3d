"""The console over HTTP: sign-in, cookie, CSRF, CSP, pages, close, CSV, isolation.

Browsers run in tests/browser; these tests hold what a page returns to any client.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from chatsessions.app import create_app
from chatsessions.config import Settings
from chatsessions.db import Database
from tests.conftest import T0, FakeClock, Tenant
from tests.console.helpers import csrf_of, sign_in
from tests.factories import make_contact, post_message

MIN = 60_000


def _client(app: Any, base_url: str = "http://testserver") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


@asynccontextmanager
async def _signed_in(app: Any, tenant: Tenant) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(app) as browser:
        r = await sign_in(browser, tenant.api_key)
        assert r.status_code == 303, r.text
        yield browser


async def _conversation(
    client: httpx.AsyncClient, tenant: Tenant, **contact: Any
) -> dict[str, str]:
    contact_id = await make_contact(client, tenant.auth, **contact)
    first = await post_message(client, tenant.auth, contact_id, T0 - 10 * MIN, content="Hi there")
    await post_message(
        client, tenant.auth, contact_id, T0 - 9 * MIN, direction="outbound", content="Hello!"
    )
    return {"contact": contact_id, "session": first["sessionId"]}


async def test_sign_in_refuses_a_wrong_key_and_sets_a_strict_cookie_for_the_right_one(
    app: Any, tenant: Tenant
) -> None:
    async with _client(app) as browser:
        wrong = await sign_in(browser, "csk_" + "x" * 40)
        assert wrong.status_code == 401
        assert "not valid" in wrong.text
        assert "cs_console" not in browser.cookies
        right = await sign_in(browser, tenant.api_key)
        assert right.status_code == 303
        assert right.headers["location"] == "/console/sessions"
        cookie = right.headers["set-cookie"]
        assert "cs_console=" in cookie
        for flag in ("HttpOnly", "SameSite=strict", "Max-Age=43200", "Path=/console"):
            assert flag.lower() in cookie.lower(), (flag, cookie)
        assert "secure" not in cookie.lower()  # plain http: a Secure cookie would be lost
        page = await browser.get("/console/sessions")
        assert page.status_code == 200
        assert "<h1>Sessions</h1>" in page.text


async def test_the_cookie_is_secure_behind_https(app: Any, tenant: Tenant) -> None:
    async with _client(app, "https://testserver") as browser:
        r = await sign_in(browser, tenant.api_key)
        assert r.status_code == 303
        assert "; secure" in r.headers["set-cookie"].lower()


async def test_pages_need_a_sign_in_and_a_forged_cookie_is_worthless(app: Any) -> None:
    async with _client(app) as browser:
        for path in ("/console", "/console/sessions", "/console/analytics"):
            r = await browser.get(path)
            assert r.status_code == 303
            assert r.headers["location"] == "/console/sign-in"
        browser.cookies.set("cs_console", "forged.token", path="/console")
        r = await browser.get("/console/sessions")
        assert r.headers["location"] == "/console/sign-in"


async def test_sign_out_ends_the_session_even_for_a_copied_cookie(app: Any, tenant: Tenant) -> None:
    async with _signed_in(app, tenant) as browser:
        copied = browser.cookies["cs_console"]
        page = await browser.get("/console/sessions")
        r = await browser.post("/console/sign-out", data={"csrf": csrf_of(page.text)})
        assert r.status_code == 303
        assert r.headers["location"] == "/console/sign-in"
    async with _client(app) as thief:
        thief.cookies.set("cs_console", copied, path="/console")
        r = await thief.get("/console/sessions")
        assert r.status_code == 303
        assert r.headers["location"] == "/console/sign-in"


async def test_revoking_the_key_ends_its_console_sessions(
    app: Any, tenant: Tenant, database: Database, clock: FakeClock
) -> None:
    from chatsessions.auth import service as auth_service

    async with _signed_in(app, tenant) as browser:

        async def revoke(conn: Any) -> bool:
            return await auth_service.revoke_key(conn, api_key_or_id=tenant.api_key, now_ms=clock())

        assert await database.run_write(revoke)
        r = await browser.get("/console/sessions")
        assert r.status_code == 303


async def test_a_session_expires_after_12_hours(app: Any, tenant: Tenant, clock: FakeClock) -> None:
    async with _signed_in(app, tenant) as browser:
        clock.advance(12 * 60 * MIN - 1)
        assert (await browser.get("/console/sessions")).status_code == 200
        clock.advance(1)
        assert (await browser.get("/console/sessions")).status_code == 303


async def test_state_changing_forms_refuse_a_missing_or_wrong_csrf_token(
    app: Any, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    ids = await _conversation(client, tenant)
    async with _signed_in(app, tenant) as browser:
        for data in ({}, {"csrf": "not-the-token"}):
            r = await browser.post(f"/console/sessions/{ids['session']}/close", data=data)
            assert r.status_code == 403
            r = await browser.post("/console/sign-out", data=data)
            assert r.status_code == 403
            r = await browser.post("/console/preferences", data={**data, "theme": "dark"})
            assert r.status_code == 403
        session = await client.get(f"/v1/sessions/{ids['session']}", headers=tenant.auth)
        assert session.json()["session"]["status"] == "ChatSessionOpened"
        assert (await browser.get("/console/sessions")).status_code == 200  # still signed in
    async with _client(app) as fresh:
        r = await fresh.post("/console/sign-in", data={"apiKey": tenant.api_key})
        assert r.status_code == 403
        assert "cs_console" not in fresh.cookies


async def test_closing_from_the_console_is_the_apis_close(
    app: Any, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    ids = await _conversation(client, tenant)
    async with _signed_in(app, tenant) as browser:
        page = await browser.get(f"/console/sessions/{ids['session']}")
        assert "Hi there" in page.text and "Hello!" in page.text
        assert page.text.index("Hi there") < page.text.index("Hello!")
        r = await browser.post(
            f"/console/sessions/{ids['session']}/close", data={"csrf": csrf_of(page.text)}
        )
        assert r.status_code == 303
        after = await browser.get(f"/console/sessions/{ids['session']}")
        assert "status-closed" in after.text and 'id="close-session"' not in after.text
    api = await client.get(f"/v1/sessions/{ids['session']}", headers=tenant.auth)
    assert api.json()["session"]["closed_reason"] == "closed"


async def test_failed_sign_ins_are_throttled(
    backend_settings: Settings, database: Database
) -> None:
    settings = backend_settings.model_copy(update={"auth_failure_limit": 3})
    app = create_app(settings, clock=FakeClock(), database=database)
    async with _client(app) as browser:
        for _ in range(3):
            assert (await sign_in(browser, "csk_" + "y" * 40)).status_code == 401
        r = await sign_in(browser, "csk_" + "y" * 40)
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) >= 1


async def test_every_page_has_the_csp_and_no_inline_script(
    app: Any, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    ids = await _conversation(client, tenant)
    async with _signed_in(app, tenant) as browser:
        paths = [
            "/console/sessions",
            f"/console/sessions/{ids['session']}",
            "/console/contacts",
            f"/console/contacts/{ids['contact']}",
            "/console/analytics",
            "/console/webhooks",
        ]
        async with _client(app) as anonymous:
            pages = [await anonymous.get("/console/sign-in")]
        pages += [await browser.get(p) for p in paths]
        for page in pages:
            assert page.status_code == 200, page.url
            csp = page.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp
            assert "frame-ancestors 'none'" in csp
            for tag in re.findall(r"<script[^>]*>", page.text):
                assert "src=" in tag or 'type="application/json"' in tag, (page.url, tag)
            assert " on" not in "".join(re.findall(r"<[a-z]+ [^>]*\bon\w+=", page.text))
            assert "style=" not in page.text


async def test_sessions_page_filters_search_and_pages(
    app: Any, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    names = []
    for i in range(30):
        contact = await make_contact(
            client, tenant.auth, firstName=f"Person{i:02d}", channel="sms" if i % 3 else "whatsapp"
        )
        await post_message(client, tenant.auth, contact, T0 - (i + 1) * MIN)
        names.append(f"Person{i:02d}")
    async with _signed_in(app, tenant) as browser:
        seen: list[str] = []
        url: str | None = "/console/sessions?hours=24"
        while url:
            page = await browser.get(url)
            assert page.status_code == 200
            seen += re.findall(r">(Person\d\d) Smith<", page.text)
            found = re.search(r'<a href="([^"]+)" rel="next">', page.text)
            url = found.group(1).replace("&amp;", "&") if found else None
        assert seen == names  # newest activity first, each once, across pages
        whatsapp = await browser.get("/console/sessions?hours=24&channel=WhatsApp")
        assert re.findall(r">(Person\d\d) Smith<", whatsapp.text) == names[::3]
        search = await browser.get("/console/sessions?hours=24&q=person07")
        assert re.findall(r">(Person\d\d) Smith<", search.text) == ["Person07"]
        by_phone = await browser.get("/console/sessions?hours=24&q=%2B1%20555")
        # Filtered, a page holds every match of the listing pages it read (50 each).
        assert re.findall(r">(Person\d\d) Smith<", by_phone.text) == names
        bad = await browser.get("/console/sessions?hours=0")
        assert bad.status_code == 400 and "hours" in bad.text


async def test_analytics_page_and_csv_show_the_apis_numbers(
    app: Any, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await _conversation(client, tenant, channel="whatsapp")
    await _conversation(client, tenant, channel="sms")
    api = (await client.get("/v1/analytics/summary", headers=tenant.auth)).json()["data"]
    assert api["sessions"] == 2 and api["firstResponse"]["median"] == 60
    async with _signed_in(app, tenant) as browser:
        page = await browser.get("/console/analytics")
        assert re.search(r'id="card-sessions">.*?class="value">2<', page.text)
        assert 'data-seconds="60.0"' in page.text
        r = await browser.get("/console/analytics/csv/summary")
        assert r.headers["content-type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(r.text)))
        assert rows[0] == ["figure", "n", "median (s)", "p90 (s)", "mean (s)"]
        assert rows[1] == ["first response", "2", "60.0", "60.0", "60.0"]
        daily = list(
            csv.reader(io.StringIO((await browser.get("/console/analytics/csv/daily")).text))
        )
        assert sum(int(row[1]) for row in daily[1:]) == 2
        # Every CSV row is on the page too.
        for row in daily[1:]:
            assert f'">{row[0]}</a></th>' in page.text
        assert (await browser.get("/console/analytics/csv/nope")).status_code == 404
        # A day of the chart's table leads to the sessions that started that day.
        links = re.findall(
            r'<th scope="row"><a href="(/console/analytics/sessions\?[^"]+)">', page.text
        )
        busy = [row[0] for row in daily[1:] if row[1] == "2"]
        assert len(links) == len(daily) - 1 and len(busy) == 1
        link = links[[row[0] for row in daily[1:]].index(busy[0])].replace("&amp;", "&")
        behind = await browser.get(link)
        assert behind.status_code == 200
        assert behind.text.count('href="/console/sessions/') == 2


async def test_times_are_shown_in_the_chosen_zone(
    app: Any, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    ids = await _conversation(client, tenant)
    async with _signed_in(app, tenant) as browser:
        page = await browser.get(f"/console/contacts/{ids['contact']}")
        r = await browser.post(
            "/console/preferences",
            data={"csrf": csrf_of(page.text), "tz": "Asia/Kolkata", "back": "/console/contacts"},
        )
        assert r.status_code == 303 and r.headers["location"] == "/console/contacts"
        page = await browser.get(f"/console/contacts/{ids['contact']}")
        assert " IST" in page.text and 'value="Asia/Kolkata"' in page.text
        bad = await browser.post(
            "/console/preferences", data={"csrf": csrf_of(page.text), "tz": "Mars/Base"}
        )
        assert bad.status_code == 400


async def test_console_routes_stay_out_of_the_api_document(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    assert not [p for p in document["paths"] if p.startswith("/console")]


def _console_routes(app: FastAPI) -> list[tuple[str, str]]:
    from fastapi import routing as fastapi_routing

    out: list[tuple[str, str]] = []
    iter_contexts = getattr(fastapi_routing, "iter_route_contexts", None)
    routes = (
        [ctx.original_route for ctx in iter_contexts(app.routes)] if iter_contexts else app.routes
    )
    for route in routes:
        if isinstance(route, APIRoute) and route.path.startswith("/console/"):
            for method in route.methods:
                out.append((method, route.path))
    return out


async def test_another_tenants_console_urls_are_not_found(
    app: Any, client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    """Every console route with an id, called by tenant B with tenant A's ids: 404 and
    none of A's data; A's session stays open."""
    ids = await _conversation(
        client, tenant, firstName="Alicesecret", phoneNumber="+15559870000", channel="whatsapp"
    )
    values = {"sessionId": ids["session"], "contactId": ids["contact"], "table": "summary"}
    probed = []
    async with _signed_in(app, other_tenant) as browser:
        token = csrf_of((await browser.get("/console/sessions")).text)
        for method, path in _console_routes(app):
            names = re.findall(r"{(\w+)}", path)
            if not names or names == ["table"]:
                continue
            url = path
            for name in names:
                url = url.replace("{" + name + "}", values[name])
            r = await browser.request(
                method, url, data={"csrf": token} if method == "POST" else None
            )
            probed.append(f"{method} {path}")
            assert r.status_code == 404, (method, path, r.status_code)
            # (The ids are in the URL B typed: the page echoing them leaks nothing.)
            for secret in ("Alicesecret", "+15559870000", "Hi there", "Hello!"):
                assert secret not in r.text, (method, path, secret)
        mine = await browser.get("/console/sessions?hours=876000")
        assert "Alicesecret" not in mine.text
        bucket = await browser.get("/console/analytics/sessions?from=2000-01-01")
        assert "Alicesecret" not in bucket.text and "/console/sessions/" not in bucket.text
        analytics = await browser.get("/console/analytics")
        assert re.search(r'id="card-sessions">.*?class="value">0<', analytics.text)
    assert {
        "GET /console/sessions/{sessionId}",
        "POST /console/sessions/{sessionId}/close",
        "GET /console/contacts/{contactId}",
    } <= set(probed)
    api = await client.get(f"/v1/sessions/{ids['session']}", headers=tenant.auth)
    assert api.json()["session"]["status"] == "ChatSessionOpened"


@pytest.mark.parametrize("theme", ["dark", "light", "system"])
async def test_the_theme_override_is_kept(app: Any, tenant: Tenant, theme: str) -> None:
    async with _signed_in(app, tenant) as browser:
        page = await browser.get("/console/sessions")
        await browser.post(
            "/console/preferences", data={"csrf": csrf_of(page.text), "theme": theme}
        )
        page = await browser.get("/console/sessions")
        assert f'<html lang="en" data-theme="{theme}">' in page.text


async def test_channels_page_shows_each_channels_counters_and_path(
    app: Any, client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    from tests.channels.payloads import create_channel, post_telegram, tg_update

    channel = await create_channel(client, tenant.auth, "telegram")
    r = await post_telegram(client, channel["webhookPath"], tg_update(1, message_id=1))
    assert r.status_code == 200, r.text
    async with _signed_in(app, tenant) as browser:
        page = await browser.get("/console/webhooks")
        row = re.search(r"<tr><td>telegram</td>(.*?)</tr>", page.text)
        assert row, page.text
        cells = re.findall(r"<td>(.*?)</td>", row.group(1))
        assert cells[:6] == [
            "my telegram",
            f"<code>{channel['webhookPath']}</code>",
            "1",
            "1",
            "0",
            "0",
        ]
        assert "secret" not in row.group(1).lower()
    async with _signed_in(app, other_tenant) as browser:
        page = await browser.get("/console/webhooks")
        assert channel["webhookPath"] not in page.text and "No channels." in page.text
