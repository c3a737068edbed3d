"""Facebook Messenger's JSON export of a conversation (``message_1.json``, … : Meta's shape)."""

from __future__ import annotations

from chatsessions.imports.meta import parse_meta

__all__ = ["CHANNEL", "DATE_ORDER", "parse"]

CHANNEL = "messenger"
DATE_ORDER: str | None = None  # absolute times: no date order
parse = parse_meta
