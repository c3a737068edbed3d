"""Sending one webhook request: Standard Webhooks signature, the checked address, the
retry schedule.

Every attempt of one event carries the same ``webhook-id`` (the event id); the
``webhook-timestamp`` is the real time of the attempt (receivers reject stale ones).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from standardwebhooks import Webhook

from chatsessions.webhooks import safety

__all__ = [
    "MAX_RESPONSE_BYTES",
    "RETRY_DELAYS_MS",
    "AttemptResult",
    "new_client",
    "next_delay_ms",
    "send",
    "sign_headers",
]

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
# Delays before the 2nd, 3rd, … attempt (the 1st is at once); after the last: failed.
RETRY_DELAYS_MS = (
    5 * SECOND,
    5 * MINUTE,
    30 * MINUTE,
    2 * HOUR,
    5 * HOUR,
    10 * HOUR,
    14 * HOUR,
    20 * HOUR,
    24 * HOUR,
)
TIMEOUT_S = 10.0
MAX_RESPONSE_BYTES = 1024
USER_AGENT = "chatsessions-webhooks/1"


@dataclass(frozen=True)
class AttemptResult:
    """What one attempt gave: a status code, or an error (refused, timeout, unsafe …)."""

    status_code: int | None
    error: str | None
    response: str | None

    @property
    def ok(self) -> bool:
        """A 2xx answer."""
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def gone(self) -> bool:
        """410: the receiver asks us to stop (the endpoint is disabled)."""
        return self.status_code == 410


def next_delay_ms(attempts_made: int, rng: random.Random | None = None) -> int | None:
    """Delay before the next attempt after ``attempts_made`` failed ones (±10 % jitter),
    or None when the schedule is exhausted."""
    if attempts_made < 1 or attempts_made > len(RETRY_DELAYS_MS):
        return None
    base = RETRY_DELAYS_MS[attempts_made - 1]
    return int(base * (rng or random).uniform(0.9, 1.1))


def sign_headers(
    secret: str, event_id: str, body: str, *, at: float | None = None
) -> dict[str, str]:
    """The Standard Webhooks headers for ``body``."""
    when = datetime.fromtimestamp(time.time() if at is None else at, tz=UTC)
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(event_id, when, body),
    }


def new_client() -> httpx.AsyncClient:
    """The HTTP client of a delivery loop: no env proxies, no redirects, 10 s timeouts."""
    return httpx.AsyncClient(
        timeout=TIMEOUT_S,
        trust_env=False,
        follow_redirects=False,
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
    )


def _request_url(target: safety.CheckedTarget, address: str) -> httpx.URL:
    return httpx.URL(target.url).copy_with(host=address)


async def send(
    client: httpx.AsyncClient,
    *,
    url: str,
    secret: str,
    event_id: str,
    body: str,
    allow_private: bool,
) -> AttemptResult:
    """One signed POST of ``body`` to ``url``, to the address checked just before."""
    try:
        target = await safety.check_url(url, allow_private=allow_private)
    except safety.Unresolvable as exc:
        return AttemptResult(None, str(exc)[:255], None)
    except safety.UnsafeUrl as exc:
        return AttemptResult(None, f"url refused: {exc}"[:255], None)
    host_header = target.host if ":" not in target.host else f"[{target.host}]"
    default_port = 443 if target.scheme == "https" else 80
    if target.port != default_port:
        host_header += f":{target.port}"
    headers = {
        **sign_headers(secret, event_id, body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "host": host_header,
    }
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    try:
        async with asyncio.timeout(TIMEOUT_S + 2):
            # Every address was checked; the next is tried only when one cannot be reached
            # (e.g. ``localhost`` → ::1 while the receiver listens on 127.0.0.1 only).
            for i, address in enumerate(target.addresses):
                try:
                    return await _post(
                        client, _request_url(target, address), body, headers, extensions
                    )
                except httpx.ConnectError:
                    if i == len(target.addresses) - 1:
                        raise
    except TimeoutError:
        return AttemptResult(None, "timeout", None)
    except httpx.TimeoutException:
        return AttemptResult(None, "timeout", None)
    except httpx.ConnectError:
        return AttemptResult(None, "connection refused or failed", None)
    except httpx.HTTPError as exc:
        return AttemptResult(None, f"http error: {type(exc).__name__}", None)
    except OSError as exc:
        return AttemptResult(None, f"network error: {type(exc).__name__}", None)
    raise AssertionError("unreachable: a checked target has at least one address")


async def _post(
    client: httpx.AsyncClient,
    url: httpx.URL,
    body: str,
    headers: dict[str, str],
    extensions: dict[str, str],
) -> AttemptResult:
    async with client.stream(
        "POST", url, content=body.encode(), headers=headers, extensions=extensions
    ) as response:
        kept = bytearray()
        async for chunk in response.aiter_raw():
            kept += chunk[: MAX_RESPONSE_BYTES - len(kept)]
            if len(kept) >= MAX_RESPONSE_BYTES:
                break
        return AttemptResult(response.status_code, None, bytes(kept).decode("utf-8", "replace"))
