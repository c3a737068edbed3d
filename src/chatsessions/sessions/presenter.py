"""How a session and a message look in JSON: the one presentation shared by the read API
and the webhook event bodies (both import it; neither imports the other)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chatsessions.sessions import rule, store
from chatsessions.sessions.store import ListedSession
from chatsessions.timeutil import format_ms

__all__ = ["contact_name", "listed_row_as_json", "message_as_json", "session_as_json"]


def message_as_json(msg: Sequence[Any]) -> dict[str, Any]:
    """A message as the API shows it, from a :class:`MessageRow` or a row in its column
    order (a listing's messages come straight from the driver: up to 10,000 a page)."""
    (
        message_id,
        _session_id,
        _contact_id,
        direction,
        role,
        type_,
        content,
        media_url,
        ts_ms,
        external_id,
    ) = msg
    return {
        "message_id": message_id,
        "direction": direction,
        "role": role,
        "type": type_,
        "content": content,
        "media_url": media_url,
        "timestamp": format_ms(ts_ms),
        "external_id": external_id,
    }


def contact_name(first: str | None, last: str | None) -> str | None:
    """``firstName lastName`` trimmed; null when both are empty."""
    return f"{first or ''} {last or ''}".strip() or None


def session_as_json(
    listed: ListedSession,
    *,
    now_ms: int,
    messages: Sequence[Sequence[Any]] | None = None,
    truncated: bool = False,
) -> dict[str, Any]:
    """The §4 session object; ``messages`` given adds ``messages`` and ``messages_truncated``.

    ``truncated`` says the 10,000-messages-per-response cap shortened this list.
    """
    return listed_row_as_json(
        store.listed_row(listed), now_ms=now_ms, messages=messages, truncated=truncated
    )


def listed_row_as_json(
    row: Sequence[Any],
    *,
    now_ms: int,
    messages: Sequence[Sequence[Any]] | None = None,
    truncated: bool = False,
) -> dict[str, Any]:
    """:func:`session_as_json` of a flat listed row (:func:`store.list_sessions`).

    Runs for every listed session (up to 1,000 a page): the row is unpacked by position
    and :func:`rule.end_and_reason` is inlined.
    """
    (
        session_id,
        contact_id,
        start_ms,
        last_ms,
        expires_ms,
        closed_at_ms,
        _activity_ms,
        message_count,
        inbound_count,
        outbound_count,
        _created_at_ms,
        first_name,
        last_name,
        phone,
        email,
        channel,
    ) = row
    last = format_ms(last_ms)
    if closed_at_ms is not None:
        end, reason, status = format_ms(closed_at_ms), "closed", rule.CLOSED
    elif now_ms < expires_ms:
        end, reason, status = None, None, rule.OPENED
    else:
        end, reason, status = last, "inactivity", rule.CLOSED
    out: dict[str, Any] = {
        "session_id": session_id,
        "contact_id": contact_id,
        "contact_name": contact_name(first_name, last_name) if first_name or last_name else None,
        "contact_phone": phone,
        "contact_email": email,
        "channel": channel,
        "start_date_time": format_ms(start_ms),
        "last_message_date_time": last,
        "end_date_time": end,
        "status": status,
        "closed_reason": reason,
        "message_count": message_count,
        "inbound_count": inbound_count,
        "outbound_count": outbound_count,
    }
    if messages is not None:
        out["messages"] = [message_as_json(msg) for msg in messages]
        out["messages_truncated"] = truncated
    return out
