"""The demo tenant behind ``chatsessions demo`` (and ``make run``).

Fifty contacts on five channels with a week of conversations: bursts of messages that make
several sessions per contact, a few of them open right now, most closed by inactivity, two
closed explicitly. The content is drawn from a seeded random generator, so every load looks
the same apart from "now". Everything is stored through the service layer (the same code
the HTTP routes call), so the demo exercises the real session rule.

Keys are stored only as hashes, so the demo's key is kept in a file beside the SQLite
database (``data/demo-tenant.json``, mode 0600) for ``demo --if-missing`` to print again.

>>> plan = build_plan(random.Random(7), now_ms=1_795_000_000_000)
>>> len(plan.contacts)
50
"""

from __future__ import annotations

import itertools
import os
import random
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions import tables
from chatsessions.auth import service as auth_service
from chatsessions.config import Settings
from chatsessions.contacts import service as contacts_service
from chatsessions.contacts.schemas import ContactIn
from chatsessions.db import Database
from chatsessions.errors import Unauthorized
from chatsessions.messages import service as messages_service
from chatsessions.messages.schemas import MessageIn
from chatsessions.sessions import service as sessions_service
from chatsessions.timeutil import system_clock

__all__ = [
    "DEFAULT_SEED",
    "DemoStats",
    "DemoTenant",
    "build_plan",
    "console_url",
    "curl_line",
    "demo_file_path",
    "demo_stats",
    "existing_demo",
    "load_demo",
    "read_demo_file",
    "write_demo_file",
]

DEFAULT_SEED = 20261126
DEMO_FILE_NAME = "demo-tenant.json"
CONTACTS = 50
LIVE_CONTACTS = 9  # their last session is open now ...
EXPLICIT_CLOSES = 2  # ... except for these, closed explicitly at load time
BATCH = 250
MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR

_FIRST_NAMES = (
    "Olivia Liam Emma Noah Ava Mateo Sofia Lucas Amara Hiroshi Priya Diego Chloe Omar Hannah "
    "Kwame Isabella Ethan Mia Arjun Zoe Santiago Leila Jonas Grace Tariq Elena Daniel Aisha "
    "Marco Yuki Samuel Fatima Lukas Nora Gabriel Ingrid Rafael Maya Wei Lucía Oscar Ana Felix "
    "Layla Tomás Sara Victor Julia Ravi"
)
_LAST_NAMES = (
    "Smith Garcia Johnson Nguyen Patel Kim Müller Rossi Okafor Silva Cohen Tanaka Dubois "
    "Hernandez Andersson Kowalski Brown Martinez Ali Novak Walker Costa Haddad Schmidt Lopez "
    "Mensah Ivanova Fischer Chen Taylor O'Brien Jensen"
)
_CHANNELS = (("whatsapp", 40), ("instagram", 20), ("sms", 15), ("widget", 15), ("custom", 10))
_MAIL_DOMAINS = ("example.com", "example.org", "example.net")

# Conversation scripts. U: the contact; B: the bot; A: a human agent; UM/BM: media (text is
# the caption, the file name follows "|"); T: a tool call of the bot (type tool_use).
_SCRIPTS: tuple[tuple[tuple[str, str], ...], ...] = (
    (
        ("U", "Hi, where is my order #{order}?"),
        ("B", "Let me check that for you, {first}."),
        ("T", '{{"tool":"lookup_order","input":{{"orderId":"{order}"}}}}'),
        ("B", "Order #{order} shipped yesterday and should arrive by Friday."),
        ("U", "Great, thanks!"),
    ),
    (
        ("U", "Can I book a table for 4 tomorrow at 7pm?"),
        ("B", "We have 7:00pm or 7:30pm free. Which one works?"),
        ("U", "7:30 please"),
        ("T", '{{"tool":"create_booking","input":{{"people":4,"time":"19:30"}}}}'),
        ("B", "Booked! See you tomorrow at 7:30pm."),
        ("U", "👍"),
    ),
    (
        ("U", "How much is the premium plan?"),
        ("B", "Premium is $49/month, billed monthly, cancel anytime."),
        ("U", "Does it include WhatsApp?"),
        ("B", "Yes: WhatsApp, Instagram and SMS are all included."),
        ("U", "Ok I'll think about it"),
    ),
    (
        ("U", "I was charged twice this month"),
        ("B", "Sorry about that! Let me connect you with a teammate."),
        ("A", "Hi {first}, Maya from billing here. I can see the duplicate charge."),
        ("A", "I've refunded it; it should show in 3-5 business days."),
        ("U", "Thank you so much"),
    ),
    (
        ("UM", "Here's the receipt|receipt-{order}.jpg"),
        ("B", "Thanks, got it. Checking now."),
        ("T", '{{"tool":"verify_receipt","input":{{"orderId":"{order}"}}}}'),
        ("B", "All good, your warranty is registered until {year}."),
    ),
    (("U", "Are you open on Sunday?"), ("B", "We're open Sunday 10am-4pm."), ("U", "perfect")),
    (
        ("U", "I need to change my delivery address"),
        ("B", "Sure, what's the new address?"),
        ("U", "{street}"),
        ("T", '{{"tool":"update_address","input":{{"orderId":"{order}"}}}}'),
        ("B", "Done, order #{order} will go to {street}."),
    ),
    (
        ("U", "The app keeps logging me out"),
        ("B", "Sorry! Which version are you on?"),
        ("U", "Latest one from the app store"),
        ("A", "Hi, Sam from support. Could you sign out and in again?"),
        ("U", "That worked!"),
        ("A", "Great, have a nice day {first}!"),
    ),
    (
        ("U", "Do you have the blue one in size M?"),
        ("B", "Yes, 3 left in stock."),
        ("BM", "Here it is|product-blue-m.jpg"),
        ("U", "Love it, ordering now"),
    ),
    (
        ("B", "Hi {first}! Your appointment is tomorrow at 10am. Reply YES to confirm."),
        ("U", "YES"),
        ("B", "Confirmed, see you then!"),
    ),
    (
        ("U", "hello?"),
        ("B", "Hi {first}! How can I help today?"),
        ("U", "Is there a discount for students?"),
        ("B", "Yes, 20% off with a valid student ID."),
        ("UM", "Like this?|student-id.png"),
        ("A", "That's fine, I've applied the discount to your account."),
    ),
    (
        ("U", "Can I return shoes I bought online in store?"),
        ("B", "Yes, within 30 days with the receipt."),
        ("U", "ok thanks"),
    ),
)
_FOLLOW_UP = ("U", "Sorry, one more thing")
_STREETS = ("221B Baker Street, London", "12 Rue de Rivoli, Paris", "500 Market St, San Francisco")
_EXTERNAL_PREFIX = {"whatsapp": "wamid.", "instagram": "ig_mid.", "sms": "SM", "widget": "wgt_"}
_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class DemoTenant:
    """The demo user and a key of it."""

    user_id: str
    api_key: str


@dataclass(frozen=True)
class DemoStats:
    """What the demo tenant holds."""

    contacts: int
    messages: int
    sessions: int
    open_now: int


@dataclass(frozen=True)
class PlannedMessage:
    """One demo message: its time and its ``POST /v1/messages`` body (without contactId)."""

    ts_ms: int
    body: dict[str, object]


@dataclass
class PlannedContact:
    """One demo contact and its sessions, oldest first."""

    fields: ContactIn
    sessions: list[list[PlannedMessage]] = field(default_factory=list)
    close_last: bool = False


@dataclass
class DemoPlan:
    """Everything the demo stores, decided before anything is written."""

    contacts: list[PlannedContact]

    @property
    def message_count(self) -> int:
        """How many messages the plan holds."""
        return sum(len(s) for c in self.contacts for s in c.sessions)


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalnum())


def _token(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(_ALNUM) for _ in range(n))


def _contact(rng: random.Random, i: int, first: str, used_phones: set[str]) -> ContactIn:
    channel = rng.choices([c for c, _ in _CHANNELS], [w for _, w in _CHANNELS])[0]
    last = rng.choice(_LAST_NAMES.split()) if rng.random() > 0.1 else None
    phone = None
    while phone is None or phone in used_phones:
        phone = (
            f"+447700900{rng.randrange(1000):03d}"
            if rng.random() < 0.15
            else f"+1555{rng.randrange(10**7):07d}"
        )
    used_phones.add(phone)
    email = None
    if channel == "widget" or rng.random() < 0.35:
        local = f"{_ascii(first)}.{_ascii(last)}" if last else f"{_ascii(first)}{i}"
        email = f"{local}@{rng.choice(_MAIL_DOMAINS)}"
    if channel == "widget" and rng.random() < 0.5:
        phone = None  # a website visitor who left only an email
    anonymous = i == 0 and phone is not None  # one contact known only by its number
    if anonymous:
        email = None
    return ContactIn(
        firstName=None if anonymous else first,
        lastName=None if anonymous else last,
        phoneNumber=phone,
        email=email,
        channel=channel,
        externalId=f"crm-{10000 + i}" if channel == "custom" else None,
        instagramId=f"@{_ascii(first)}.{_token(rng, 4).lower()}"
        if channel == "instagram"
        else None,
        is_bot_active=rng.random() > 0.15,
        do_not_disturb=rng.random() < 0.05,
    )


def _burst(rng: random.Random, contact: ContactIn, end_ms: int) -> list[PlannedMessage]:
    """One conversation ending at ``end_ms``; every gap is far below the 60-minute timeout."""
    script = rng.choice(_SCRIPTS)
    turns = script if rng.random() < 0.6 else script[: rng.randint(2, len(script))]
    if rng.random() < 0.3:  # a follow-up question later in the same session
        turns = (*turns, _FOLLOW_UP, *rng.choice(_SCRIPTS))
    values = {
        "first": contact.firstName or "there",
        "order": f"A{rng.randint(1000, 9999)}",
        "street": rng.choice(_STREETS),
        "year": str(2027 + rng.randint(0, 2)),
    }
    offsets = [0]
    for prev, cur in itertools.pairwise(turns):
        if cur == _FOLLOW_UP:
            gap = rng.uniform(5, 40) * MINUTE
        elif prev[0] in ("U", "UM"):
            gap = rng.uniform(2, 25) * 1000
        elif prev[0] == "T":
            gap = rng.uniform(1, 4) * 1000
        else:
            gap = rng.uniform(20, 9 * 60) * 1000
        offsets.append(offsets[-1] + int(gap) + rng.randint(0, 999))
    start = end_ms - offsets[-1]
    channel = contact.channel or "widget"
    messages: list[PlannedMessage] = []
    for (kind, text), offset in zip(turns, offsets, strict=True):
        body = text.format(**values)
        inbound = kind in ("U", "UM")
        msg: dict[str, object] = {
            "direction": "inbound" if inbound else "outbound",
            "role": "user" if inbound else ("agent" if kind == "A" else "assistant"),
            "type": "text",
            "content": body,
            "timestamp": start + offset,
        }
        if kind in ("UM", "BM"):
            caption, name = body.split("|")
            msg.update(
                type="media", content=caption, mediaUrl=f"https://cdn.example.com/demo/{name}"
            )
        elif kind == "T":
            msg.update(type="tool_use")
        prefix = _EXTERNAL_PREFIX.get(channel, "msg_")
        msg["externalId"] = prefix + (
            "".join(rng.choice("0123456789abcdef") for _ in range(32))
            if channel == "sms"
            else _token(rng, 24)
        )
        messages.append(PlannedMessage(start + offset, msg))
    return messages


def build_plan(rng: random.Random, *, now_ms: int) -> DemoPlan:
    """Decide every contact and message of the demo (pure: no I/O, no clock)."""
    firsts = _FIRST_NAMES.split()
    rng.shuffle(firsts)
    used_phones: set[str] = set()
    contacts = [PlannedContact(_contact(rng, i, firsts[i], used_phones)) for i in range(CONTACTS)]
    live = set(rng.sample(range(CONTACTS), LIVE_CONTACTS))
    closed = set(rng.sample(sorted(live), EXPLICIT_CLOSES))
    week_ago = now_ms - 7 * DAY
    for i, planned in enumerate(contacts):
        if i in live:
            end = now_ms - int(rng.uniform(1, 18) * MINUTE)  # open now: last message minutes ago
        else:
            end = now_ms - int(rng.uniform(65, 36 * 60) * MINUTE)  # closed by inactivity
        wanted = rng.randint(2, 7)
        bursts: list[list[PlannedMessage]] = []
        while len(bursts) < wanted:
            burst = _burst(rng, planned.fields, end)
            start = burst[0].ts_ms
            if start < week_ago:
                break
            bursts.append(burst)
            end = start - int(rng.uniform(90, 40 * 60) * MINUTE)  # well past the timeout
        planned.sessions = list(reversed(bursts))
        planned.close_last = i in closed
    return DemoPlan(contacts)


async def load_demo(
    db: Database,
    *,
    seed: int = DEFAULT_SEED,
    on_start: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> DemoTenant:
    """Create the demo user and store its data; ``on_progress(n)`` as work gets done."""
    now = system_clock()
    plan = build_plan(random.Random(seed), now_ms=now)
    if on_start is not None:
        on_start(len(plan.contacts) + plan.message_count + EXPLICIT_CLOSES)
    advance = on_progress or (lambda _n: None)

    async def create(conn: AsyncConnection) -> tuple[auth_service.NewUser, list[str]]:
        user = await auth_service.create_user(
            conn, name="Demo tenant", timeout_minutes=60, now_ms=now
        )
        ids = []
        for planned in plan.contacts:
            row = await contacts_service.create_contact(
                conn, user_id=user.user_id, fields=planned.fields, now_ms=now
            )
            ids.append(row.id)
        return user, ids

    user, contact_ids = await db.run_write(create)
    advance(len(contact_ids))
    # Stored in time order, as a live system would receive them.
    queue = sorted(
        (
            (msg.ts_ms, ci, si, mi)
            for ci, planned in enumerate(plan.contacts)
            for si, session in enumerate(planned.sessions)
            for mi, msg in enumerate(session)
        ),
    )
    last_session_of: dict[int, str] = {}
    for start in range(0, len(queue), BATCH):
        chunk = queue[start : start + BATCH]
        batch_now = system_clock()
        items = [
            messages_service.prepare_message(
                MessageIn.model_validate(
                    {**plan.contacts[ci].sessions[si][mi].body, "contactId": contact_ids[ci]}
                ),
                now_ms=batch_now,
            )
            for _ts, ci, si, mi in chunk
        ]

        async def store(
            conn: AsyncConnection,
            items: list[messages_service.NewMessage] = items,
            at: int = batch_now,
        ) -> list[messages_service.StoredMessage]:
            return await messages_service.ingest(conn, user_id=user.user_id, items=items, now_ms=at)

        results = await messages_service.run_ingest_transaction(db, store)
        for (_ts, ci, _si, _mi), result in zip(chunk, results, strict=True):
            last_session_of[ci] = result.session_id  # the queue is in time order
        advance(len(chunk))
    for ci, planned in enumerate(plan.contacts):
        if not planned.close_last:
            continue

        async def close(conn: AsyncConnection, session_id: str = last_session_of[ci]) -> None:
            await sessions_service.close_session(
                conn,
                user_id=user.user_id,
                session_id=session_id,
                now_ms=system_clock(),
                message_limit=1,
            )

        await db.run_write(close)
        advance(1)
    return DemoTenant(user.user_id, user.api_key)


async def demo_stats(db: Database, user_id: str, *, now_ms: int) -> DemoStats:
    """Count the tenant's contacts, messages, sessions and sessions open at ``now_ms``."""
    c, m, s = tables.contacts.c, tables.messages.c, tables.sessions.c
    async with db.read() as conn:
        contacts = await conn.scalar(select(func.count()).where(c.user_id == user_id))
        messages = await conn.scalar(select(func.count()).where(m.user_id == user_id))
        sessions = await conn.scalar(select(func.count()).where(s.user_id == user_id))
        open_now = await conn.scalar(
            select(func.count()).where(
                s.user_id == user_id, s.closed_at_ms.is_(None), s.expires_ms > now_ms
            )
        )
    return DemoStats(int(contacts or 0), int(messages or 0), int(sessions or 0), int(open_now or 0))


def demo_file_path(settings: Settings) -> Path:
    """``demo-tenant.json`` beside the SQLite database file, else in ``./data/``."""
    url = settings.async_database_url
    if url.startswith("sqlite"):
        database = make_url(url).database
        if database and database != ":memory:":
            return Path(database).parent / DEMO_FILE_NAME
    return Path("data") / DEMO_FILE_NAME


def read_demo_file(path: Path) -> DemoTenant | None:
    """The tenant recorded in ``path``, or None when the file is missing or unreadable."""
    try:
        data = orjson.loads(path.read_bytes())
        return DemoTenant(str(data["userId"]), str(data["apiKey"]))
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
        return None


def write_demo_file(path: Path, tenant: DemoTenant) -> None:
    """Write ``{"userId", "apiKey"}`` to ``path`` with mode 0600 (atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(orjson.dumps({"userId": tenant.user_id, "apiKey": tenant.api_key}) + b"\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


async def existing_demo(db: Database, path: Path) -> DemoTenant | None:
    """The tenant recorded in ``path`` when its key still authenticates as its user."""
    tenant = read_demo_file(path)
    if tenant is None:
        return None
    creds = auth_service.Credentials(api_keys=(tenant.api_key,), user_ids=())
    try:
        caller = await auth_service.resolve_credentials(db, creds)
    except Unauthorized:
        return None
    return tenant if caller.user_id == tenant.user_id else None


def _base_url(host: str, port: int) -> str:
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def curl_line(api_key: str, *, host: str = "127.0.0.1", port: int = 8000) -> str:
    """A one-line curl of the recent sessions, ready to paste."""
    url = f"{_base_url(host, port)}/v1/chat-sessions/recent?hours=24&limit=5"
    return f"curl -s '{url}' -H 'X-API-Key: {api_key}'"


def console_url(*, host: str = "127.0.0.1", port: int = 8000) -> str:
    """Where the operator console answers (sign in there with the API key)."""
    return f"{_base_url(host, port)}/console"
