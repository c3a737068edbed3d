"""The documented webhook receiver example works: it accepts signed events, refuses forged
ones, and reports each webhook-id once."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from standardwebhooks import Webhook

from tests.polling import DEFAULT_DEADLINE_S
from tests.resilience.harness import free_port

EXAMPLE = Path(__file__).parent.parent / "examples" / "webhook_receiver.py"


def test_example_receiver_verifies_and_deduplicates(tmp_path: Path) -> None:
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    port = free_port()
    log = open(tmp_path / "receiver.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-u", str(EXAMPLE)],
        env={**os.environ, "WEBHOOK_SECRET": secret, "PORT": str(port)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}/hook"
        deadline = time.monotonic() + DEFAULT_DEADLINE_S  # bounds a failure only
        while True:
            try:
                httpx.get(url, timeout=5)
                break
            except httpx.HTTPError:
                assert proc.poll() is None, "the example receiver exited"
                assert time.monotonic() < deadline, "the example receiver never listened"
                time.sleep(0.05)
        body = '{"type": "ChatSessionOpened", "data": {"session": {"session_id": "S1"}}}'
        now = datetime.now(tz=UTC)
        signature = Webhook(secret).sign("evt_1", now, body)
        headers = {
            "webhook-id": "evt_1",
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature,
            "content-type": "application/json",
        }
        assert httpx.post(url, content=body, headers=headers).status_code == 204
        assert httpx.post(url, content=body, headers=headers).status_code == 204  # a retry
        forged = {**headers, "webhook-signature": "v1," + base64.b64encode(b"x" * 32).decode()}
        assert httpx.post(url, content=body, headers=forged).status_code == 400
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
    printed = (tmp_path / "receiver.log").read_text()
    assert printed.count('ChatSessionOpened "S1"') == 1
