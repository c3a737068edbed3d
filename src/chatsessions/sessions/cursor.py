"""Opaque, signed keyset cursors for the listing endpoints (SPEC §4).

A cursor is ``base64url(json payload) "." base64url(HMAC-SHA256(payload)[:16])``. It
carries the query it belongs to (so it cannot be replayed with other parameters or by
another user), the request time that fixed the window, and the last (activity, id) seen.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import orjson

from chatsessions.errors import InvalidParameter

__all__ = ["decode_cursor", "encode_cursor"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_cursor(payload: dict[str, Any], secret: bytes) -> str:
    """Sign and encode ``payload``."""
    body = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    mac = hmac.new(secret, body, hashlib.sha256).digest()[:16]
    return f"{_b64(body)}.{_b64(mac)}"


def decode_cursor(token: str, secret: bytes) -> dict[str, Any]:
    """Verify and decode a cursor; any tampering or garbage is a 400 naming ``cursor``."""
    try:
        body_part, mac_part = token.split(".")
        body = _unb64(body_part)
        mac = _unb64(mac_part)
    except (ValueError, TypeError):
        raise InvalidParameter("cursor", "is not a valid cursor") from None
    expected = hmac.new(secret, body, hashlib.sha256).digest()[:16]
    if not hmac.compare_digest(mac, expected):
        raise InvalidParameter("cursor", "is not a valid cursor")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidParameter("cursor", "is not a valid cursor") from None
    if not isinstance(payload, dict):
        raise InvalidParameter("cursor", "is not a valid cursor")
    return payload
