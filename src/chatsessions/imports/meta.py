"""Meta's JSON export of one conversation (Instagram and Messenger share the shape).

A conversation comes as ``message_1.json``, ``message_2.json``, …: each holds
``participants`` and ``messages`` (newest first), each message ``sender_name``,
``timestamp_ms``, ``content`` and attachments (``photos``, ``videos``, ``audio_files``,
``gifs``, ``files``, ``sticker``, ``share``). Meta writes UTF-8 text as if each byte were a
Latin-1 character ("Ã©" for "é"); a string is repaired only when it round-trips (its
characters are all Latin-1 and their bytes are valid UTF-8), so correct text stays as it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

from chatsessions.imports.jsonfile import field_error, load_json
from chatsessions.imports.model import ImportedMessage, ParseOptions, Source

__all__ = ["parse_meta", "repair_mojibake"]

_ATTACHMENTS = ("photos", "videos", "audio_files", "gifs", "files")
_NOTICE_TYPES = {"Call", "Subscribe", "Unsubscribe"}
_PART = re.compile(r"message_(\d+)\.json$")


def repair_mojibake(text: str) -> str:
    """``text`` with Latin-1-decoded UTF-8 undone, when it is that; otherwise unchanged."""
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def _part_number(source: Source) -> int:
    found = _PART.search(source.name)
    return int(found.group(1)) if found else 0


def _message(msg: Any, source: Source, where: str, number: int) -> ImportedMessage:
    if not isinstance(msg, dict):
        raise field_error(source, where, "must be an object")
    sender = msg.get("sender_name")
    if not isinstance(sender, str) or not sender.strip():
        raise field_error(source, f"{where}.sender_name", "is missing")
    stamp = msg.get("timestamp_ms")
    if not isinstance(stamp, int) or isinstance(stamp, bool) or stamp < 0:
        raise field_error(source, f"{where}.timestamp_ms", "must be epoch milliseconds")
    author = repair_mojibake(sender).strip()
    content = msg.get("content")
    if content is not None and not isinstance(content, str):
        raise field_error(source, f"{where}.content", "must be a string")
    text = repair_mojibake(content) if content else ""
    file = source.name
    if msg.get("type") in _NOTICE_TYPES:
        return ImportedMessage(file, number, author, text, "system", stamp, None)
    uris = [
        str(item.get("uri"))
        for key in _ATTACHMENTS
        for item in (msg.get(key) or [])
        if isinstance(item, dict) and item.get("uri")
    ]
    sticker = msg.get("sticker")
    if isinstance(sticker, dict) and sticker.get("uri"):
        uris.append(str(sticker["uri"]))
    if uris:
        return ImportedMessage(file, number, author, text or "\n".join(uris), "media", stamp, None)
    share = msg.get("share")
    if isinstance(share, dict) and isinstance(share.get("link"), str):
        link = share["link"]
        text = text if link in text else (f"{text}\n{link}" if text else link)
    if not text:
        # Unsent messages and reactions-only entries carry nothing to keep.
        return ImportedMessage(file, number, author, "", "system", stamp, None)
    return ImportedMessage(file, number, author, text, "text", stamp, None)


def parse_meta(sources: Sequence[Source], options: ParseOptions) -> Iterator[ImportedMessage]:
    """The conversation's messages, oldest first, from all its parts together."""
    del options
    collected: list[ImportedMessage] = []
    # message_1.json holds the newest messages: read the parts oldest first, each reversed,
    # so that messages of the same millisecond keep the order they were sent in.
    for source in sorted(sources, key=_part_number, reverse=True):
        data = load_json(source)
        if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
            raise field_error(
                source, "messages", "is missing (not a Messenger/Instagram message_N.json)"
            )
        messages: list[Any] = data["messages"]
        for i in range(len(messages) - 1, -1, -1):
            collected.append(_message(messages[i], source, f"messages[{i}]", i + 1))
    collected.sort(key=lambda m: m.ts_ms or 0)
    yield from collected
