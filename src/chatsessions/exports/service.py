"""DM Champ's chat export: the recent conversations of each contact as transcript text.

Usage::

    export = await build_export(db, user_id=uid, query=ExportQuery(24, "json", 50, "all"),
                                now_ms=now)
    body = export_as_json(export)   # or export_as_text(export)
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chatsessions.db import Database
from chatsessions.exports import store
from chatsessions.exports.store import ExportContact
from chatsessions.sessions.store import MessageRow

__all__ = [
    "MAX_EXPORT_MESSAGES",
    "ContactExport",
    "Export",
    "ExportQuery",
    "build_export",
    "export_as_json",
    "export_as_text",
    "export_filename",
    "format_line",
]

MAX_EXPORT_MESSAGES = 10_000
"""One export holds at most this many messages; the newest are kept."""

HOUR_MS = 3_600_000
_SPEAKERS = {"assistant": "Assistant", "agent": "Agent", "system": "System", "tool": "Tool"}
_RULE = "=" * 60


@dataclass(frozen=True)
class ExportQuery:
    """A validated export request."""

    hours: int
    format: str  # "json" | "txt"
    limit: int  # contacts
    filter: str  # one of store.FILTERS


@dataclass(frozen=True)
class ContactExport:
    """One contact's part of an export: its transcript lines, oldest first."""

    contact: ExportContact
    lines: list[str]
    message_count: int  # messages in the transcript
    omitted: int  # older matching messages left out to keep the export bounded

    @property
    def name(self) -> str | None:
        """``firstName lastName`` trimmed; None when both are empty."""
        c = self.contact
        return f"{c.first_name or ''} {c.last_name or ''}".strip() or None

    def transcript(self) -> str:
        """The transcript text (a note first when older messages were left out)."""
        lines = list(self.lines)
        if self.omitted:
            lines.insert(
                0,
                f"[{self.omitted} earlier message(s) omitted: an export holds at most "
                f"{MAX_EXPORT_MESSAGES:,} messages, the newest are kept]",
            )
        return "\n".join(lines)


@dataclass(frozen=True)
class Export:
    """A whole export: the contacts, newest activity first."""

    query: ExportQuery
    now_ms: int
    contacts: list[ContactExport]
    truncated: bool


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _display_name(contact: ExportContact) -> str:
    name = f"{contact.first_name or ''} {contact.last_name or ''}".strip()
    return name or contact.phone or contact.email or "Contact"


def _message_text(msg: MessageRow) -> str:
    kind = msg.type.lower()
    parts: list[str] = []
    if kind != "text" and not (kind == "media" and msg.media_url):
        parts.append(f"[{msg.type}]")
    if msg.content:
        parts.append(msg.content)
    if msg.media_url:
        parts.append(f"[media: {msg.media_url}]")
    text = " ".join(parts)
    # Continuation lines are indented, so every message line starts with its timestamp.
    return "\n    ".join(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))


def format_line(msg: MessageRow, contact: ExportContact) -> str:
    """``[2026-11-24 09:00:00 UTC] Jane Smith (user): Hi!``."""
    speaker = _display_name(contact) if msg.role == "user" else _SPEAKERS.get(msg.role, msg.role)
    return f"[{_utc(msg.ts_ms)}] {speaker} ({msg.role}): {_message_text(msg)}"


async def build_export(db: Database, *, user_id: str, query: ExportQuery, now_ms: int) -> Export:
    """Contacts with matching messages in the past ``hours``, each with its transcript.

    Two statements in all: the page of contacts, then the newest
    :data:`MAX_EXPORT_MESSAGES` (+1, to tell truncation) messages of all of them.
    """
    since_ms = now_ms - query.hours * HOUR_MS
    async with db.read(snapshot=True) as conn:
        contacts = await store.contacts_page(
            conn, user_id=user_id, since_ms=since_ms, kind=query.filter, limit=query.limit
        )
        rows = await store.messages_of(
            conn,
            user_id=user_id,
            contact_ids=[c.id for c in contacts],
            since_ms=since_ms,
            kind=query.filter,
            limit=MAX_EXPORT_MESSAGES + 1,
        )
    truncated = len(rows) > MAX_EXPORT_MESSAGES
    by_contact: dict[str, list[MessageRow]] = defaultdict(list)
    for row in reversed(rows[:MAX_EXPORT_MESSAGES]):  # oldest first
        by_contact[row.contact_id].append(row)
    parts = []
    for contact in contacts:
        msgs = by_contact.get(contact.id, [])
        parts.append(
            ContactExport(
                contact=contact,
                lines=[format_line(msg, contact) for msg in msgs],
                message_count=len(msgs),
                omitted=contact.message_count - len(msgs),
            )
        )
    return Export(query=query, now_ms=now_ms, contacts=parts, truncated=truncated)


def export_as_json(export: Export) -> dict[str, Any]:
    """``{"success": true, "count": N, "truncated": bool, "data": [...]}``."""
    out: dict[str, Any] = {
        "success": True,
        "count": len(export.contacts),
        "truncated": export.truncated,
        "data": [
            {
                "contactId": part.contact.id,
                "contactName": part.name,
                "phoneNumber": part.contact.phone,
                "email": part.contact.email,
                "messageCount": part.message_count,
                "omittedMessageCount": part.omitted,
                "chatExport": part.transcript(),
            }
            for part in export.contacts
        ],
    }
    if export.truncated:
        out["note"] = (
            f"an export holds at most {MAX_EXPORT_MESSAGES:,} messages; the newest were kept "
            "(ask for fewer hours or contacts for the rest)"
        )
    return out


def export_as_text(export: Export) -> str:
    """All transcripts in one text, with a header per contact."""
    q = export.query
    head = [
        "Chat export",
        f"Generated: {_utc(export.now_ms)}",
        f"Window: past {q.hours} hour(s) | Filter: {q.filter} | Contacts: {len(export.contacts)}",
    ]
    if export.truncated:
        head.append(
            f"Note: an export holds at most {MAX_EXPORT_MESSAGES:,} messages; the newest were kept."
        )
    blocks = ["\n".join(head)]
    if not export.contacts:
        blocks.append(f"No messages in the past {q.hours} hour(s).")
    for part in export.contacts:
        c = part.contact
        header = [
            _RULE,
            f"Contact: {part.name or _display_name(c)}",
            f"Contact ID: {c.id}",
            f"Phone: {c.phone or '-'}",
            f"Email: {c.email or '-'}",
            f"Messages: {part.message_count}",
            _RULE,
        ]
        blocks.append("\n".join([*header, part.transcript()]).rstrip("\n"))
    return "\n\n".join(blocks) + "\n"


def export_filename(now_ms: int) -> str:
    """``chat-export-2026-11-24.txt`` (the UTC date of the export)."""
    day = datetime.fromtimestamp(now_ms // 1000, tz=UTC).strftime("%Y-%m-%d")
    return f"chat-export-{day}.txt"
