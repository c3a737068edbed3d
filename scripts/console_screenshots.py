"""Screenshots of every console page into ``docs/console/`` (``make screenshots``).

Loads the demo tenant into a fresh SQLite file, serves it with ``chatsessions serve`` on
a free port and drives Debian's Chromium (``/usr/bin/chromium``) with Playwright; no
browser is downloaded. ``docs/console.md`` shows the pictures.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "console"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _shoot(page: Page, name: str) -> None:
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(OUT / f"{name}.png"), full_page=False)
    print(f"wrote docs/console/{name}.png")


def main() -> None:
    """Serve the demo tenant and photograph each page."""
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "CHATSESSIONS_DATABASE_URL": f"sqlite:///{tmp}/demo.db"}
        demo = subprocess.run(
            [sys.executable, "-m", "chatsessions.cli", "demo"],
            env=env,
            cwd=tmp,
            capture_output=True,
            text=True,
            check=True,
        )
        found = re.search(r"apiKey: (csk_\w+)", demo.stdout)
        assert found, demo.stdout
        key = found.group(1)
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [sys.executable, "-m", "chatsessions.cli", "serve", "--port", str(port)],
            env=env,
            cwd=tmp,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the server did not start")
                time.sleep(0.2)
            _photograph(base, key)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)


def _photograph(base: str, key: str) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        for scheme in ("light", "dark"):
            context = browser.new_context(
                viewport={"width": 1280, "height": 900},
                timezone_id="Europe/Amsterdam",
                color_scheme=scheme,
            )
            page = context.new_page()
            suffix = "" if scheme == "light" else "-dark"
            page.goto(base + "/console")
            if scheme == "light":
                _shoot(page, "sign-in")
            page.fill("#api-key", key)
            page.click("button:has-text('Sign in')")
            page.wait_for_selector("h1:has-text('Sessions')")
            page.wait_for_selector("body[data-tz='Europe/Amsterdam']")
            _shoot(page, "sessions" + suffix)
            if scheme == "dark":
                context.close()
                continue
            page.click("#sessions-results tbody a >> nth=0")
            page.wait_for_selector("h1:has-text('Conversation')")
            _shoot(page, "conversation")
            page.goto(base + "/console/contacts")
            _shoot(page, "contacts")
            page.click("#main tbody a >> nth=0")
            _shoot(page, "contact")
            page.goto(base + "/console/analytics")
            page.wait_for_selector("#daily-chart canvas")
            _shoot(page, "analytics")
            page.goto(base + "/console/webhooks")
            _shoot(page, "webhooks")
            context.close()
        browser.close()


if __name__ == "__main__":
    main()
