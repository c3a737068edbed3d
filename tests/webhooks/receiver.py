"""A real HTTP receiver for webhook tests: a thread on 127.0.0.1 that verifies every
signature (Standard Webhooks) and records what it got, in arrival order.

It can answer 2xx, 500 or 410, or be down (its port closed: connection refused).
"""

from __future__ import annotations

import json
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    """One verified request."""

    webhook_id: str
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def type(self) -> str:
        return str(self.body["type"])


@dataclass
class Receiver:
    """Start with :meth:`start`; set :attr:`secret` once the endpoint exists."""

    secret: str | None = None
    status: int = 200
    answer: bytes = b'{"ok": true}'
    received: list[Received] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    attempts: int = 0
    tls: ssl.SSLContext | None = None  # serve https with this context
    sni: list[str | None] = field(default_factory=list)  # server names clients asked for
    location: str | None = None  # sent as Location (to try redirects)
    record_failures: bool = False  # verify and record even when answering an error
    port: int = 0
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver._lock:
                    receiver.attempts += 1
                    status = receiver.status
                    if status < 300 or receiver.record_failures:
                        try:
                            assert receiver.secret is not None, "no secret set"
                            body = Webhook(receiver.secret).verify(raw, headers)
                            receiver.received.append(Received(headers["webhook-id"], body, headers))
                        except (WebhookVerificationError, AssertionError, ValueError) as exc:
                            receiver.rejected.append(f"{type(exc).__name__}: {exc}")
                            status = 400
                self.send_response(status)
                self.send_header("content-type", "application/json")
                if receiver.location:
                    self.send_header("location", receiver.location)
                self.send_header("content-length", str(len(receiver.answer)))
                self.end_headers()
                self.wfile.write(receiver.answer)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        if self.tls is not None:
            self.tls.sni_callback = lambda _sock, name, _ctx: self.sni.append(name)  # type: ignore[assignment,misc]
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the port: the next attempts are refused connections."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def unique(self) -> list[Received]:
        """Received requests de-duplicated by ``webhook-id`` (first arrival kept)."""
        seen: set[str] = set()
        out = []
        for r in self.received:
            if r.webhook_id not in seen:
                seen.add(r.webhook_id)
                out.append(r)
        return out

    def types(self) -> list[str]:
        return [r.type for r in self.unique()]


def dump(receiver: Receiver) -> str:
    """For assertion messages."""
    return json.dumps([r.body for r in receiver.received], indent=1)[:4000]
