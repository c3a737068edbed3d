"""``chatsessions export`` and ``import``: contacts and messages as JSON Lines.

One JSON object per line, DM Champ field names (those of ``POST /v1/contacts`` and
``POST /v1/messages``) plus a ``kind``::

    {"kind":"contact","userId":"…","contactId":"…","phoneNumber":"+15551234567",
     "firstName":"Jane","lastName":"Smith","email":null,"channel":"whatsapp",
     "externalId":null,"instagramId":null,"is_bot_active":true,"do_not_disturb":false,
     "createdAt":"2026-11-20T08:00:00.000Z"}
    {"kind":"message","userId":"…","contactId":"…","messageId":"…","sessionId":"…",
     "direction":"inbound","role":"user","type":"text","content":"Hi!","mediaUrl":null,
     "timestamp":"2026-11-24T09:00:00.000Z","externalId":"wamid.…"}

An export lists a user's contacts first, then their messages. An import reads such a file
for one user: it validates the whole file before writing anything, finds or creates each
contact (``externalId``, then phone, then email), and stores the messages in batches of up
to 1,000 through the same ingest the API uses — so sessions follow the target user's
timeout, and a message whose ``externalId`` is already stored is not stored again.
Sessions are not exported: they are a function of the messages. Explicit closes are not
carried over either (a close can only be made at the present time).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions import ids, tables
from chatsessions.auth import store as auth_store
from chatsessions.contacts import service as contacts_service
from chatsessions.contacts import store as contacts_store
from chatsessions.contacts.schemas import ContactFields
from chatsessions.contacts.store import ContactRow
from chatsessions.db import Database
from chatsessions.errors import ChatSessionsError
from chatsessions.messages import service as messages_service
from chatsessions.messages.schemas import MessageIn
from chatsessions.timeutil import format_ms, system_clock
from chatsessions.web import invalid_from_validation

__all__ = [
    "BATCH_SIZE",
    "ExportStats",
    "ImportFileError",
    "ImportStats",
    "export_jsonl",
    "import_jsonl",
    "scan_file",
]

BATCH_SIZE = 1000
Progress = Callable[[int], None]


class ImportFileError(Exception):
    """The file cannot be imported; ``problems`` name the lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass
class ExportStats:
    """What an export wrote."""

    users: int = 0
    contacts: int = 0
    messages: int = 0


@dataclass
class ImportStats:
    """What an import did."""

    contacts_created: int = 0
    contacts_matched: int = 0
    messages_stored: int = 0
    messages_duplicate: int = 0
    without_external_id: int = 0
    skipped_lines: int = 0


def _nothing(_n: int) -> None:
    return None


async def export_jsonl(
    db: Database,
    *,
    user_id: str | None,
    write: Callable[[bytes], object],
    on_start: Progress = _nothing,
    on_progress: Progress = _nothing,
) -> ExportStats:
    """Write every contact and message of ``user_id`` (or of every user) as JSON Lines.

    Reads one consistent snapshot (a single transaction; REPEATABLE READ on PostgreSQL).
    Raises LookupError when ``user_id`` is not a known user.
    """
    u, c, m = tables.users.c, tables.contacts.c, tables.messages.c
    stats = ExportStats()
    async with db.read(snapshot=True) as conn:
        if user_id is not None:
            if not await auth_store.user_exists(conn, user_id):
                raise LookupError("no such user")
            user_ids = [user_id]
        else:
            user_ids = list((await conn.scalars(select(u.id).order_by(u.id))).all())
        total = 0
        for table in (tables.contacts, tables.messages):
            stmt = select(func.count()).select_from(table)
            if user_id is not None:
                stmt = stmt.where(table.c.user_id == user_id)
            total += int(await conn.scalar(stmt) or 0)
        on_start(total)
        for uid in user_ids:
            stats.users += 1
            contacts = await conn.stream(
                select(*_CONTACT_COLUMNS).where(c.user_id == uid).order_by(c.created_at_ms, c.id)
            )
            async for row in contacts:
                contact = contacts_service.contact_as_json(ContactRow.from_row(row))
                write(orjson.dumps({"kind": "contact", "userId": uid, **contact}) + b"\n")
                stats.contacts += 1
                on_progress(1)
            messages = await conn.stream(
                select(*_MESSAGE_COLUMNS)
                .where(m.user_id == uid)
                .order_by(m.contact_id, m.ts_ms, m.id)
            )
            async for row in messages:
                write(orjson.dumps(_message_line(uid, row)) + b"\n")
                stats.messages += 1
                on_progress(1)
    return stats


def _message_line(user_id: str, row: Any) -> dict[str, Any]:
    return {
        "kind": "message",
        "userId": user_id,
        "contactId": row.contact_id,
        "messageId": row.id,
        "sessionId": row.session_id,
        "direction": row.direction,
        "role": row.role,
        "type": row.type,
        "content": row.content,
        "mediaUrl": row.media_url,
        "timestamp": format_ms(row.ts_ms),
        "externalId": row.external_id,
    }


@dataclass
class ScanResult:
    """The validation pass over an import file."""

    records: int = 0
    contacts: int = 0
    messages: int = 0
    skipped: int = 0
    problems: list[str] = field(default_factory=list)
    # contactIds that messages use without a contact line before them: line of first use
    unknown_contacts: dict[str, int] = field(default_factory=dict)


def _lines(path: Path) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed JSON or _BAD)`` for every non-blank line."""
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                yield lineno, orjson.loads(raw)
            except orjson.JSONDecodeError:
                yield lineno, _BAD


_BAD = object()
_MAX_PROBLEMS = 20


def _problem(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return invalid_from_validation(exc).message
    if isinstance(exc, ChatSessionsError):
        return exc.message
    return str(exc)


def scan_file(path: Path, *, now_ms: int) -> ScanResult:
    """Validate every line without touching the database; problems name their line."""
    result = ScanResult()
    seen_contacts: set[str] = set()
    for lineno, obj in _lines(path):
        if len(result.problems) >= _MAX_PROBLEMS:
            result.problems.append("… (stopped after 20 problems)")
            break
        if obj is _BAD or not isinstance(obj, dict):
            result.problems.append(f"line {lineno}: not a JSON object")
            continue
        kind = obj.get("kind")
        try:
            if kind == "contact":
                fields = ContactFields.model_validate(obj)
                idents = contacts_service.normalised_identifiers(fields)
                if all(v is None for v in idents.values()):
                    raise ValueError("a contact needs phoneNumber, email or externalId")
                if isinstance(obj.get("contactId"), str):
                    seen_contacts.add(obj["contactId"])
                result.contacts += 1
            elif kind == "message":
                item = MessageIn.model_validate(obj)
                messages_service.prepare_message(item, now_ms=now_ms)
                if item.contactId is not None and item.contactId not in seen_contacts:
                    result.unknown_contacts.setdefault(item.contactId, lineno)
                result.messages += 1
            else:
                result.skipped += 1
                continue
        except (ValidationError, ChatSessionsError, ValueError) as exc:
            result.problems.append(f"line {lineno}: {_problem(exc)}")
            continue
        result.records += 1
    return result


async def import_jsonl(
    db: Database,
    *,
    user_id: str,
    path: Path,
    batch_size: int = BATCH_SIZE,
    on_start: Progress = _nothing,
    on_progress: Progress = _nothing,
) -> ImportStats:
    """Import ``path`` for ``user_id``: validate everything, then store in batches.

    Raises LookupError for an unknown user and :class:`ImportFileError` (nothing written)
    when a line is invalid or names a contact that neither the file nor the user has.
    """
    now = system_clock()
    scan = scan_file(path, now_ms=now)
    async with db.read() as conn:
        if not await auth_store.user_exists(conn, user_id):
            raise LookupError("no such user")
        for contact_id, lineno in sorted(scan.unknown_contacts.items(), key=lambda kv: kv[1]):
            found = ids.is_id(contact_id) and await contacts_store.get_contact(
                conn, user_id, contact_id
            )
            if not found and len(scan.problems) < _MAX_PROBLEMS:
                scan.problems.append(
                    f"line {lineno}: contactId: {contact_id!r} is neither a contact line "
                    "earlier in the file nor a contact of the user"
                )
    if scan.problems:
        raise ImportFileError(scan.problems)
    on_start(scan.records)
    stats = ImportStats(skipped_lines=scan.skipped)
    id_map: dict[str, str] = {}
    contacts: list[tuple[str | None, ContactFields]] = []
    messages: list[tuple[int, MessageIn]] = []

    async def flush() -> None:
        batch_now = system_clock()
        pending_contacts, pending_messages = list(contacts), list(messages)

        async def work(conn: AsyncConnection) -> tuple[dict[str, str], int, list[Any]]:
            new_map: dict[str, str] = {}
            created = 0
            for old_id, fields in pending_contacts:
                row, was_created = await contacts_service.find_or_create_contact(
                    conn, user_id=user_id, fields=fields, now_ms=batch_now, prefix=""
                )
                created += int(was_created)
                if old_id is not None:
                    new_map[old_id] = row.id
            items = []
            for lineno, msg in pending_messages:
                if msg.contactId is not None:
                    mapped = new_map.get(msg.contactId) or id_map.get(msg.contactId, msg.contactId)
                    msg = msg.model_copy(update={"contactId": mapped})
                items.append(
                    messages_service.prepare_message(
                        msg, now_ms=batch_now, prefix=f"line {lineno}: "
                    )
                )
            results = (
                await messages_service.ingest(conn, user_id=user_id, items=items, now_ms=batch_now)
                if items
                else []
            )
            return new_map, created, results

        try:
            new_map, created, results = await messages_service.run_ingest_transaction(db, work)
        except ChatSessionsError as exc:  # e.g. a contact erased while the import ran
            stored = stats.messages_stored + stats.messages_duplicate
            raise ImportFileError(
                [
                    exc.message,
                    f"the {stored} message(s) before this batch are stored; "
                    "running the import again skips those with an externalId",
                ]
            ) from None
        id_map.update(new_map)
        stats.contacts_created += created
        stats.contacts_matched += len(pending_contacts) - created
        stats.messages_stored += sum(1 for r in results if not r.duplicate)
        stats.messages_duplicate += sum(1 for r in results if r.duplicate)
        on_progress(len(pending_contacts) + len(pending_messages))
        contacts.clear()
        messages.clear()

    for lineno, obj in _lines(path):
        kind = obj.get("kind") if isinstance(obj, dict) else None
        if kind == "contact":
            old_id = obj.get("contactId")
            contacts.append(
                (old_id if isinstance(old_id, str) else None, ContactFields.model_validate(obj))
            )
        elif kind == "message":
            msg = MessageIn.model_validate(obj)
            if msg.externalId is None and msg.messageSid is None:
                stats.without_external_id += 1
            messages.append((lineno, msg))
        if len(contacts) >= batch_size or len(messages) >= batch_size:
            await flush()
    if contacts or messages:
        await flush()
    return stats


_CONTACT_COLUMNS = (
    tables.contacts.c.id,
    tables.contacts.c.user_id,
    tables.contacts.c.first_name,
    tables.contacts.c.last_name,
    tables.contacts.c.phone,
    tables.contacts.c.email,
    tables.contacts.c.channel,
    tables.contacts.c.external_id,
    tables.contacts.c.instagram_id,
    tables.contacts.c.is_bot_active,
    tables.contacts.c.do_not_disturb,
    tables.contacts.c.created_at_ms,
)
_MESSAGE_COLUMNS = (
    tables.messages.c.id,
    tables.messages.c.contact_id,
    tables.messages.c.session_id,
    tables.messages.c.direction,
    tables.messages.c.role,
    tables.messages.c.type,
    tables.messages.c.content,
    tables.messages.c.media_url,
    tables.messages.c.ts_ms,
    tables.messages.c.external_id,
)
