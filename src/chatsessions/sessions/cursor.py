"""Opaque, signed keyset cursors for the listing endpoints (docs/contract.md#listings).

A cursor is ``base64url(json payload) "." base64url(HMAC-SHA256(user id, payload)[:16])``.
It carries the query it belongs to (so it cannot be replayed with other parameters), the
request time that fixed the window, and the last (activity, id) seen. The user id is part
of what is signed but not of the payload: a cursor names no credential (a user id is one,
see docs/contract.md#authentication), and another user's cursor fails verification.

>>> token = encode_cursor({"l": 7}, b"secret", user_id="u1")
>>> decode_cursor(token, b"secret", user_id="u1")
{'l': 7}
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Any

import orjson

from chatsessions.errors import InvalidParameter

__all__ = ["decode_cursor", "encode_cursor"]

_MAX_LENGTH = 2048


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def _mac(secret: bytes, user_id: str, body: bytes) -> bytes:
    return hmac.new(secret, user_id.encode() + b"\x00" + body, hashlib.sha256).digest()[:16]


def _invalid() -> InvalidParameter:
    return InvalidParameter("cursor", "is not a valid cursor (use next_cursor as returned)")


def encode_cursor(payload: dict[str, Any], secret: bytes, *, user_id: str) -> str:
    """Sign ``payload`` for ``user_id`` and encode it."""
    body = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    return f"{_b64(body)}.{_b64(_mac(secret, user_id, body))}"


def decode_cursor(token: str, secret: bytes, *, user_id: str) -> dict[str, Any]:
    """Verify and decode a cursor; garbage, tampering or another user's cursor is a 400."""
    if len(token) > _MAX_LENGTH or not token.isascii():
        raise _invalid()
    try:
        body_part, mac_part = token.split(".")
        body = _unb64(body_part)
        mac = _unb64(mac_part)
    except (ValueError, binascii.Error):
        raise _invalid() from None
    if not hmac.compare_digest(mac, _mac(secret, user_id, body)):
        raise _invalid()
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _invalid() from None
    if not isinstance(payload, dict):
        raise _invalid()
    return payload
