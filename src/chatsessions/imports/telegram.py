"""Telegram Desktop's JSON export (``result.json``): one chat, or the whole account.

A one-chat export is ``{"name", "type", "id", "messages": […]}``; a whole-account export
holds its chats in ``chats.list`` and ``--chat NAME`` picks one. A message's ``text`` is a
string or a list of strings and entity objects (``{"type": "bold", "text": …}``); its time
is ``date_unixtime`` (seconds, absolute) or, in older exports, only ``date`` (wall clock).
``service`` messages (joins, calls, pins) are Telegram's own notices.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from chatsessions.imports.jsonfile import field_error, load_json
from chatsessions.imports.model import ImportedMessage, ParseOptions, Source

__all__ = ["CHANNEL", "DATE_ORDER", "parse"]

CHANNEL = "telegram"
DATE_ORDER: str | None = "ymd"  # the wall-clock "date" of old exports is ISO


def _text(value: Any, source: Source, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts: list[str] = []
        for part in value:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            else:
                raise field_error(
                    source, where, "must be a string or a list of strings and entities"
                )
        return "".join(parts)
    if value is None:
        return ""
    raise field_error(source, where, "must be a string or a list of strings and entities")


def _chat(data: Any, source: Source, options: ParseOptions) -> tuple[dict[str, Any], str]:
    """The chat to import and where its messages are (for errors)."""
    if not isinstance(data, dict):
        raise field_error(source, "", "is not a Telegram export (expected a JSON object)")
    if isinstance(data.get("messages"), list):
        if (
            options.chat is not None
            and str(data.get("name", "")).casefold() != options.chat.casefold()
        ):
            raise field_error(
                source,
                "name",
                f"this export holds only the chat {data.get('name')!r}, not {options.chat!r}",
            )
        return data, "messages"
    chats = data.get("chats")
    listed = chats.get("list") if isinstance(chats, dict) else None
    if not isinstance(listed, list):
        raise field_error(source, "", "is not a Telegram export (no messages and no chats.list)")
    names = [str(c.get("name")) for c in listed if isinstance(c, dict)]
    if options.chat is None:
        raise field_error(
            source,
            "chats.list",
            "a whole-account export: choose the chat with --chat (chat=); chats: "
            + ", ".join(repr(n) for n in names[:20])
            + (" …" if len(names) > 20 else ""),
        )
    wanted = options.chat.casefold()
    found = [
        (i, c)
        for i, c in enumerate(listed)
        if isinstance(c, dict) and str(c.get("name")).casefold() == wanted
    ]
    if len(found) != 1:
        problem = "no chat" if not found else f"{len(found)} chats"
        raise field_error(source, "chats.list", f"{problem} named {options.chat!r}")
    index, chat = found[0]
    if not isinstance(chat.get("messages"), list):
        raise field_error(source, f"chats.list[{index}].messages", "is missing")
    return chat, f"chats.list[{index}].messages"


def _wall_of(raw: Any, source: Source, where: str) -> tuple[int, int, int, int, int, int]:
    try:
        dt = datetime.fromisoformat(str(raw))
    except ValueError:
        raise field_error(source, where, "must be a time (YYYY-MM-DDTHH:MM:SS)") from None
    return (dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second)


def _message(msg: Any, source: Source, where: str, number: int) -> ImportedMessage:
    if not isinstance(msg, dict):
        raise field_error(source, where, "must be an object")
    file = source.name
    stamp = msg.get("date_unixtime")
    ts_ms: int | None = None
    wall = None
    if stamp is not None:
        if not str(stamp).isdigit():
            raise field_error(source, f"{where}.date_unixtime", "must be seconds since 1970")
        ts_ms = int(stamp) * 1000
    elif "date" in msg:
        wall = _wall_of(msg["date"], source, f"{where}.date")
    else:
        raise field_error(source, f"{where}.date_unixtime", "is missing")
    if msg.get("type") != "message":
        return ImportedMessage(file, number, "", "", "system", ts_ms, wall)
    author = msg.get("from")
    if not isinstance(author, str) or not author.strip():
        # A deleted account has no name; its id still tells it apart.
        author = f"user {msg.get('from_id')}" if msg.get("from_id") is not None else ""
    if not author:
        raise field_error(source, f"{where}.from", "is missing")
    text = _text(msg.get("text"), source, f"{where}.text")
    attached = msg.get("photo") or msg.get("file")
    if attached:
        return ImportedMessage(
            file, number, author.strip(), text or str(attached), "media", ts_ms, wall
        )
    if msg.get("sticker_emoji"):
        return ImportedMessage(
            file, number, author.strip(), str(msg["sticker_emoji"]), "media", ts_ms, wall
        )
    if not text:
        # Polls, locations, contacts without text: nothing to keep as a message.
        return ImportedMessage(file, number, author.strip(), "", "system", ts_ms, wall)
    return ImportedMessage(file, number, author.strip(), text, "text", ts_ms, wall)


def parse(sources: Sequence[Source], options: ParseOptions) -> Iterator[ImportedMessage]:
    """The messages of one Telegram chat."""
    for source in sources:
        chat, path = _chat(load_json(source), source, options)
        for i, msg in enumerate(chat["messages"]):
            yield _message(msg, source, f"{path}[{i}]", i + 1)
