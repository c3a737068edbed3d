"""The console in a real Chromium: what an operator does with a mouse, a keyboard, in
another time zone, in dark mode; and what it must refuse."""

from __future__ import annotations

import csv
import re
from datetime import UTC, datetime, timedelta

from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import AXE, Scene, new_context, sign_in


def _rows(page: Page) -> list[str]:
    return re.findall(
        r"Person\d\d", " ".join(page.locator("#sessions-results tbody a").all_inner_texts())
    )


def test_sign_in_refuses_a_wrong_key_then_accepts_the_right_one(
    browser: Browser, scene: Scene
) -> None:
    context = new_context(browser)
    page = context.new_page()
    page.goto(scene.base_url + "/console")
    assert page.url.endswith("/console/sign-in")
    page.fill("#api-key", "csk_" + "w" * 40)
    page.click("button:has-text('Sign in')")
    assert page.locator("[role=alert]").inner_text() == "That API key is not valid."
    page.fill("#api-key", scene.key_a)
    page.click("button:has-text('Sign in')")
    page.wait_for_selector("h1:has-text('Sessions')")
    cookie = next(c for c in context.cookies() if c["name"] == "cs_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie").find("cs_console") == -1  # not readable by script
    context.close()


def test_sessions_filters_paging_and_refresh_toggle(browser: Browser, scene: Scene) -> None:
    context = new_context(browser)
    page = context.new_page()
    sign_in(page, scene, scene.key_a)
    assert _rows(page) == scene.names[:25]
    page.click("a[rel=next]")
    page.wait_for_url(re.compile(r"cursor="))
    assert _rows(page) == scene.names[25:]
    page.goto(scene.base_url + "/console/sessions")
    page.fill("#f-q", "person07")
    page.click("button:has-text('Filter')")  # htmx swaps the results and pushes the URL
    page.wait_for_url(re.compile(r"q=person07"))
    expect(page.locator("#sessions-results tbody a")).to_have_count(1)
    assert _rows(page) == ["Person07"]
    page.fill("#f-q", "")
    page.fill("#f-channel", "whatsapp")
    page.click("button:has-text('Filter')")
    page.wait_for_url(re.compile(r"channel=whatsapp"))
    expect(page.locator("#sessions-results tbody a")).to_have_count(10)
    assert _rows(page) == scene.names[::3]
    page.select_option("#f-status", "closed")
    page.click("button:has-text('Filter')")
    page.wait_for_selector("#sessions-results td:has-text('No sessions.')")
    page.check("#auto-refresh")
    assert page.locator("#refresh-state").inner_text() == "Auto-refresh on"
    page.uncheck("#auto-refresh")
    assert page.locator("#refresh-state").inner_text() == "Auto-refresh paused"
    context.close()


def test_open_a_conversation_and_close_it(browser: Browser, scene: Scene) -> None:
    context = new_context(browser)
    page = context.new_page()
    sign_in(page, scene, scene.key_a)
    page.click("#sessions-results a:has-text('Person00')")
    page.wait_for_selector("h1:has-text('Conversation with Person00 Tester')")
    messages = page.locator(".messages li").all_inner_texts()
    assert "Hello from Person00" in messages[0] and "inbound" in messages[0]
    assert "Hi Person00!" in messages[1] and "role assistant" in messages[1]
    assert page.locator("a:has-text('Media: https://example.com/menu.pdf')").count() == 1
    assert page.locator("#session-status").inner_text() == "Open"
    page.click("#close-session")
    page.wait_for_selector("#session-status:has-text('Closed')")
    with scene.api(scene.key_a) as api:
        session = api.get(f"/v1/sessions/{scene.session_of['Person00']}").json()["session"]
    assert session["status"] == "ChatSessionClosed" and session["closed_reason"] == "closed"
    context.close()


def test_analytics_cards_equal_the_api_and_the_csv_equals_the_table(
    browser: Browser, scene: Scene
) -> None:
    today = datetime.now(UTC).date()
    span = {"from": str(today - timedelta(days=1)), "to": str(today + timedelta(days=1))}
    with scene.api(scene.key_a) as api:
        expected = api.get("/v1/analytics/summary", params={**span, "tz": "UTC"}).json()["data"]
    context = new_context(browser)
    page = context.new_page()
    sign_in(page, scene, scene.key_a)
    page.goto(f"{scene.base_url}/console/analytics?from={span['from']}&to={span['to']}")
    cards = {
        "sessions": "#card-sessions",
        "contacts": "#card-contacts",
        "messagesIn": "#card-in",
        "messagesOut": "#card-out",
        "unanswered": "#card-unanswered",
    }
    for key, selector in cards.items():
        assert page.locator(f"{selector} .value").inner_text() == str(expected[key]), key
    shown = page.locator("#card-firstResponse .value").get_attribute("data-seconds")
    assert float(shown or "nan") == expected["firstResponse"]["median"]
    assert (
        f"n = {expected['firstResponse']['n']}" in page.locator("#card-firstResponse").inner_text()
    )
    assert page.locator("#daily-chart canvas").count() == 1  # uPlot drew the chart
    with page.expect_download() as download:
        page.click("a:has-text('Download “Summary” as CSV')")
    with open(download.value.path(), newline="") as f:
        rows = list(csv.reader(f))
    table = [
        [cell.strip() for cell in row.split("\t")]
        for row in page.locator("#table-summary tbody tr").all_inner_texts()
    ]
    assert [[("—" if v == "" else v) for v in row] for row in rows[1:]] == table
    assert rows[1][:3] == [
        "first response",
        str(expected["firstResponse"]["n"]),
        str(float(expected["firstResponse"]["median"])),
    ]
    # A day of the chart's table opens the sessions that started that day.
    today = page.locator("#table-daily tbody tr").last
    started = int(today.locator("td").first.inner_text())
    today.locator("th a").click()
    page.wait_for_selector("h1:has-text('Sessions started from')")
    assert page.locator("main tbody a").count() == started > 0
    context.close()


def test_keyboard_only(browser: Browser, scene: Scene) -> None:
    context = new_context(browser)
    page = context.new_page()
    sign_in(page, scene, scene.key_a)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    box = page.locator(".skip-link").bounding_box()
    assert box is not None and box["x"] >= 0  # shown when focused
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    for _ in range(40):
        page.keyboard.press("Tab")
        href = page.evaluate("document.activeElement.getAttribute('href') || ''")
        if re.fullmatch(r"/console/sessions/\w{20}", href):
            break
    else:
        raise AssertionError("no session row reachable by Tab")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"  # the focus is visible
    page.keyboard.press("Enter")
    page.wait_for_selector("h1:has-text('Conversation with')")
    context.close()


def test_dark_mode_follows_the_system_and_can_be_overridden(browser: Browser, scene: Scene) -> None:
    context = new_context(browser, color_scheme="dark")
    page = context.new_page()
    sign_in(page, scene, scene.key_a)
    background = "getComputedStyle(document.body).backgroundColor"
    assert page.evaluate(background) == "rgb(15, 20, 25)"
    page.select_option("#pref-theme", "light")
    page.click("button:has-text('Apply')")
    page.wait_for_selector("html[data-theme=light]")
    assert page.evaluate(background) == "rgb(255, 255, 255)"
    context.close()


def test_times_are_in_the_browsers_zone(browser: Browser, scene: Scene) -> None:
    context = new_context(browser, timezone_id="America/New_York")
    page = context.new_page()
    sign_in(page, scene, scene.key_a)
    # The first page sends the browser's zone and reloads once.
    page.wait_for_selector("body[data-tz='America/New_York']")
    assert page.locator("#pref-tz").input_value() == "America/New_York"
    title = page.locator("#sessions-results time").first.get_attribute("title") or ""
    assert re.search(r" E[SD]T$", title), title
    context.close()


def test_a_forged_csrf_token_is_refused(browser: Browser, scene: Scene) -> None:
    context = new_context(browser)
    page = context.new_page()
    sign_in(page, scene, scene.key_a)
    page.goto(f"{scene.base_url}/console/sessions/{scene.session_of['Person01']}")
    page.evaluate(
        "document.querySelector('form[action$=\"/close\"] input[name=csrf]').value = 'forged'"
    )
    page.click("#close-session")
    page.wait_for_selector("text=did not come from this console")
    with scene.api(scene.key_a) as api:
        session = api.get(f"/v1/sessions/{scene.session_of['Person01']}").json()["session"]
    assert session["status"] == "ChatSessionOpened"
    context.close()


def test_another_tenants_urls_are_refused(browser: Browser, scene: Scene) -> None:
    context = new_context(browser)
    page = context.new_page()
    sign_in(page, scene, scene.key_b)
    session = scene.session_of["Person02"]
    response = page.goto(f"{scene.base_url}/console/sessions/{session}")
    assert response is not None and response.status == 404
    assert "Person02" not in page.content() and "Hello from" not in page.content()
    assert "Bobsecret" not in page.content()
    page.goto(f"{scene.base_url}/console/sessions?hours=24")
    assert "Person" not in page.locator("main").inner_text()
    context.close()


def test_no_page_breaks_its_content_security_policy_or_has_serious_accessibility_issues(
    browser: Browser, scene: Scene
) -> None:
    with scene.api(scene.key_a) as api:
        contact = api.get("/v1/contacts", params={"phoneNumber": "+15550100001"}).json()
    pages = [
        "/console/sessions",
        f"/console/sessions/{scene.session_of['Person01']}",
        "/console/contacts",
        f"/console/contacts/{contact['contactId']}",
        "/console/analytics",
        "/console/webhooks",
    ]
    axe = AXE.read_text()
    for scheme in ("light", "dark"):
        # The pages' own scripts run under the CSP; axe is evaluated by the test itself.
        context = new_context(browser, color_scheme=scheme)
        page = context.new_page()
        blocked: list[str] = []
        page.on(
            "console",
            lambda m, seen=blocked: seen.append(m.text) if "Security Policy" in m.text else None,
        )
        page.goto(scene.base_url + "/console/sign-in")
        problems = _axe(page, axe)
        sign_in(page, scene, scene.key_a)
        for path in pages:
            page.goto(scene.base_url + path)
            problems += _axe(page, axe)
        assert not problems, (scheme, problems)
        assert not blocked, blocked
        context.close()


def _axe(page: Page, source: str) -> list[str]:
    page.evaluate(source)
    found: list[dict[str, object]] = page.evaluate(
        "axe.run(document).then(r => r.violations.map(v => ({id: v.id, impact: v.impact,"
        " nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 3)})))"
    )
    return [
        f"{page.url}: {v['id']} ({v['impact']}) {v['nodes']}"
        for v in found
        if v["impact"] in ("serious", "critical")
    ]
