"""The HTTP floor: a bare ASGI app that answers every request with a static JSON body.

Run under the same uvicorn settings as ``chatsessions serve`` (see ``run.py``) with
``FLOOR_BODY_BYTES`` set to the size of the service's response, it measures what the
server, the HTTP parsing and the client cost on their own, with no framework, no
authentication and no database.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["create_app"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def static_body(size: int) -> bytes:
    """A JSON body of exactly ``size`` bytes (at least the envelope's)."""
    head, tail = b'{"success":true,"count":0,"next_cursor":null,"sessions":[],"pad":"', b'"}'
    return head + b"x" * max(0, size - len(head) - len(tail)) + tail


def create_app() -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """The ASGI app (a factory, as the service's)."""
    body = static_body(int(os.environ.get("FLOOR_BODY_BYTES", "2")))
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app
