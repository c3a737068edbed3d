"""The database schema (SQLAlchemy Core). Migrations in ``migrations/`` create it.

Every table carries ``user_id`` first in its key, so every query is scoped by tenant and
served by an index that starts with it. Times are epoch milliseconds (BIGINT): exact,
identical on SQLite and PostgreSQL, and cheap to compare.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    case,
    literal_column,
    or_,
    text,
)
from sqlalchemy.sql.elements import Grouping

__all__ = [
    "EXPORT_WINDOW",
    "api_keys",
    "channel_counters",
    "channels",
    "console_sign_ins",
    "contacts",
    "messages",
    "metadata",
    "server_secrets",
    "sessions",
    "timeout_changes",
    "users",
    "webhook_deliveries",
    "webhook_endpoints",
    "webhook_events",
]

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _id() -> String:
    # Byte-order ("C") collation on PostgreSQL so that ties sort the same as on SQLite.
    return String(20).with_variant(String(20, collation="C"), "postgresql")


users = Table(
    "users",
    metadata,
    Column("id", _id(), nullable=False),
    Column("name", String(255), nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("id"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", _id(), nullable=False),
    Column("user_id", _id(), nullable=False),
    Column("key_hash", String(64), nullable=False),
    Column("prefix", String(12), nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("revoked_at_ms", BigInteger, nullable=True),
    PrimaryKeyConstraint("id"),
    UniqueConstraint("key_hash"),
    ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
    Index(None, "user_id"),
)

# The session timeout history of a user: the value in force at time t is the row with the
# greatest effective_from_ms <= t. The first row starts at MIN_TIME.
timeout_changes = Table(
    "timeout_changes",
    metadata,
    Column("user_id", _id(), nullable=False),
    Column("effective_from_ms", BigInteger, nullable=False),
    Column("timeout_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("user_id", "effective_from_ms"),
    ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
)

contacts = Table(
    "contacts",
    metadata,
    Column("user_id", _id(), nullable=False),
    Column("id", _id(), nullable=False),
    Column("first_name", String(255), nullable=True),
    Column("last_name", String(255), nullable=True),
    Column("phone", String(32), nullable=True),
    Column("email", String(320), nullable=True),
    Column("channel", String(64), nullable=True),
    Column("external_id", String(255), nullable=True),
    Column("instagram_id", String(255), nullable=True),
    Column("is_bot_active", Boolean, nullable=False),
    Column("do_not_disturb", Boolean, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    # PostgreSQL: 0 until a single message to the contact is written under its lock (1
    # from the start for a contact made through the API, contacts.service.create_contact);
    # from then on moved by every transaction that changes the contact's sessions or
    # messages, under the contact's lock. A single message written without that lock
    # commits only if it is unchanged since its read (messages.store.write_unlocked).
    # SQLite (one writer at a time) leaves it at 0.
    Column("write_seq", BigInteger, nullable=False, server_default=text("0")),
    PrimaryKeyConstraint("user_id", "id"),
    # SQLite: table constraints (its foreign-key checks read the parent's primary key
    # directly, and its planner prefers the index with more equalities). PostgreSQL: the
    # partial unique indexes below instead.
    UniqueConstraint("user_id", "phone").ddl_if(dialect="sqlite"),
    UniqueConstraint("user_id", "email").ddl_if(dialect="sqlite"),
    UniqueConstraint("user_id", "external_id").ddl_if(dialect="sqlite"),
    ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
)
# A contact's identifiers are unique per user where present. On PostgreSQL as partial
# indexes (WHERE ... IS NOT NULL: the same uniqueness, NULLs being distinct), so that no
# index but the primary key can serve a probe by (user_id, id): the foreign-key checks of
# every inserted message and session (PostgreSQL's own queries) and ingest's lock. With
# full indexes and no statistics (autovacuum not run yet), those probes were a tie which
# the smallest index won, e.g. uq_contacts_user_id_phone when the tenant's contacts had no
# phone: a scan of every contact of the tenant per probe (0.15 ms each at 1,000 contacts,
# 60-90 ms of a 1,000-message batch in the lock alone; bench/findings.md, seventh round).
# A lookup by identifier ("phone = ?" or "IN (...)") implies IS NOT NULL: it still probes.
for _column in ("phone", "email", "external_id"):
    Index(
        f"uq_contacts_user_id_{_column}_present",  # another name than SQLite's constraint
        contacts.c.user_id,
        contacts.c[_column],
        unique=True,
        postgresql_where=contacts.c[_column].is_not(None),
    ).ddl_if(dialect="postgresql")

sessions = Table(
    "sessions",
    metadata,
    Column("user_id", _id(), nullable=False),
    Column("id", _id(), nullable=False),
    Column("contact_id", _id(), nullable=False),
    Column("start_ms", BigInteger, nullable=False),
    Column("last_ms", BigInteger, nullable=False),
    # last_ms + the timeout in force at last_ms: open while now < expires_ms (and not closed).
    Column("expires_ms", BigInteger, nullable=False),
    # Explicit close time (POST /v1/sessions/{id}/close), null otherwise.
    Column("closed_at_ms", BigInteger, nullable=True),
    # max(last_ms, closed_at_ms): what "recent" and the order of every listing use.
    Column("activity_ms", BigInteger, nullable=False),
    Column("message_count", Integer, nullable=False),
    Column("inbound_count", Integer, nullable=False),
    Column("outbound_count", Integer, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    # The expires_ms for which ChatSessionClosed (inactivity) was announced; null: never.
    Column("close_notified_ms", BigInteger, nullable=True),
    # Analytics figures (chatsessions.sessions.figures), kept by the write path: the first
    # inbound message's time, the first response (ms), the sum and count of reply times,
    # and the first inbound message still waiting for an answer (null: none).
    Column("first_inbound_ms", BigInteger, nullable=True),
    Column("first_response_ms", BigInteger, nullable=True),
    Column("reply_sum_ms", BigInteger, server_default="0", nullable=False),
    Column("reply_count", Integer, server_default="0", nullable=False),
    Column("unanswered_since_ms", BigInteger, nullable=True),
    PrimaryKeyConstraint("user_id", "id"),
    ForeignKeyConstraint(
        ["user_id", "contact_id"], ["contacts.user_id", "contacts.id"], ondelete="CASCADE"
    ),
    Index("ix_sessions_contact_start", "user_id", "contact_id", "start_ms"),
)
# Analytics selects sessions by start; on PostgreSQL the index carries every column it
# reads, so a range is an index-only scan (SQLite: the key alone).
Index(
    "ix_sessions_start",
    sessions.c.user_id,
    sessions.c.start_ms,
    postgresql_include=[
        "contact_id",
        "last_ms",
        "inbound_count",
        "outbound_count",
        "first_response_ms",
        "reply_sum_ms",
        "reply_count",
    ],
)
# Keyset indexes in the listing order (activity newest first, ties by id ascending), so
# that a page is one index range read on both backends.
Index("ix_sessions_recent", sessions.c.user_id, sessions.c.activity_ms.desc(), sessions.c.id)
Index(
    "ix_sessions_contact_activity",
    sessions.c.user_id,
    sessions.c.contact_id,
    sessions.c.activity_ms.desc(),
    sessions.c.id,
)

messages = Table(
    "messages",
    metadata,
    Column("user_id", _id(), nullable=False),
    Column("id", _id(), nullable=False),
    Column("contact_id", _id(), nullable=False),
    Column("session_id", _id(), nullable=False),
    Column("direction", String(8), nullable=False),
    Column("role", String(16), nullable=False),
    Column("type", String(32), nullable=False),
    Column("content", Text, nullable=True),
    Column("media_url", Text, nullable=True),
    Column("ts_ms", BigInteger, nullable=False),
    Column("external_id", String(255), nullable=True),
    Column("created_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("user_id", "id"),
    UniqueConstraint("user_id", "external_id"),
    ForeignKeyConstraint(
        ["user_id", "contact_id"], ["contacts.user_id", "contacts.id"], ondelete="CASCADE"
    ),
    Index("ix_messages_contact_ts", "user_id", "contact_id", "ts_ms"),
)

# A session's messages in order (time, then id). On SQLite with their direction too
# (ix_messages_session_keys): the figures' reads of a batch's sessions (sessions.store:
# their keys, time, id and direction) are then read from the index alone, where each key
# otherwise cost a lookup of its row: shape a's read ahead, ~600 sessions of ~20
# messages, 18 -> 9 ms (bench/ingest-findings.md, 21st round). PostgreSQL keeps the four
# columns: its reads of recently written rows visit the table anyway (pages not yet
# all-visible), and the wider index gained nothing there, alternated.
Index(
    "ix_messages_session_ts",
    messages.c.user_id,
    messages.c.session_id,
    messages.c.ts_ms,
    messages.c.id,
).ddl_if(dialect="postgresql")
Index(
    "ix_messages_session_keys",
    messages.c.user_id,
    messages.c.session_id,
    messages.c.ts_ms,
    messages.c.id,
    messages.c.direction,
).ddl_if(dialect="sqlite")

# Server-wide secrets shared by every process (e.g. the cursor signing key).
server_secrets = Table(
    "server_secrets",
    metadata,
    Column("name", String(64), nullable=False),
    Column("value", String(255), nullable=False),
    PrimaryKeyConstraint("name"),
)

MIN_TIME_MS = -(2**62)

# --- Webhooks (docs/contract.md#webhooks) ---

webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("user_id", _id(), nullable=False),
    Column("id", _id(), nullable=False),
    Column("url", Text, nullable=False),
    Column("description", String(500), nullable=True),
    # JSON list of the event types the endpoint is subscribed to.
    Column("events", Text, nullable=False),
    Column("secret", String(100), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("disabled_reason", String(16), nullable=True),  # "gone" (410) | "failing"
    Column("disabled_at_ms", BigInteger, nullable=True),
    # Start of the current run of failed attempts (null after a success).
    Column("failing_since_ms", BigInteger, nullable=True),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("user_id", "id"),
    ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
)

# The outbox: one row per event, its body fixed when the change that caused it was written.
webhook_events = Table(
    "webhook_events",
    metadata,
    Column("user_id", _id(), nullable=False),
    Column("id", _id(), nullable=False),
    Column("contact_id", _id(), nullable=True),
    Column("type", String(32), nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("user_id", "id"),
    ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
    # Erasing a contact erases its events (and, below, their deliveries) even without
    # webhooks.store.erase_contact_events.
    ForeignKeyConstraint(
        ["user_id", "contact_id"], ["contacts.user_id", "contacts.id"], ondelete="CASCADE"
    ),
    Index("ix_webhook_events_contact", "user_id", "contact_id"),
)

# One row per (event, endpoint). ``id`` grows in emission order: the order per contact.
# ``next_attempt_ms`` is set while pending (a claimed row carries its lease's end) and null
# once delivered or failed.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), autoincrement=True, nullable=False),
    Column("user_id", _id(), nullable=False),
    Column("endpoint_id", _id(), nullable=False),
    Column("event_id", _id(), nullable=False),
    Column("contact_id", _id(), nullable=True),
    Column("type", String(32), nullable=False),
    Column("status", String(16), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_ms", BigInteger, nullable=True),
    Column("last_status_code", Integer, nullable=True),
    Column("last_error", String(255), nullable=True),
    Column("last_response", Text, nullable=True),  # at most 1 KiB of the answer
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("id"),
    UniqueConstraint("endpoint_id", "event_id"),
    ForeignKeyConstraint(
        ["user_id", "endpoint_id"],
        ["webhook_endpoints.user_id", "webhook_endpoints.id"],
        ondelete="CASCADE",
    ),
    ForeignKeyConstraint(
        ["user_id", "event_id"],
        ["webhook_events.user_id", "webhook_events.id"],
        ondelete="CASCADE",
    ),
    Index("ix_webhook_deliveries_due", "next_attempt_ms"),
    Index("ix_webhook_deliveries_chain", "endpoint_id", "contact_id", "status", "id"),
    Index("ix_webhook_deliveries_endpoint", "user_id", "endpoint_id", "id"),
    Index("ix_webhook_deliveries_contact", "user_id", "contact_id"),
    Index("ix_webhook_deliveries_event", "user_id", "event_id"),
)

# Sessions that may still owe a ChatSessionClosed (inactivity): not explicitly closed and
# not announced for their current expiry. The sweeper reads them by user and by when the
# close is due: the later of the expiry and the time the session was stored (a back-filled
# session past its timeout is due at once). Partial, so only those sessions are indexed.
SESSION_CLOSE_PENDING = and_(
    sessions.c.closed_at_ms.is_(None),
    or_(
        sessions.c.close_notified_ms.is_(None),
        sessions.c.close_notified_ms < sessions.c.expires_ms,
    ),
)
SESSION_CLOSE_DUE = case(
    (sessions.c.expires_ms >= sessions.c.created_at_ms, sessions.c.expires_ms),
    else_=sessions.c.created_at_ms,
)
Index(
    "ix_sessions_close_due",
    sessions.c.user_id,
    Grouping(SESSION_CLOSE_DUE),  # PostgreSQL needs an index expression in parentheses
    postgresql_where=SESSION_CLOSE_PENDING,
    sqlite_where=SESSION_CLOSE_PENDING,
)

# Messages in a time window across a tenant's contacts (chat exports). On PostgreSQL a
# partial index whose predicate only the exports state (EXPORT_WINDOW; every stored
# message satisfies it): ingest's reads of a session's messages by time take the session
# as an equality and the time as a range, which this index could serve too. Without
# statistics both indexes look like one row and the smaller one, this, won the tie: a scan
# of the tenant's messages of that time per session (312 against 5 ms for 300 sessions at
# 11,100 stored messages; bench/findings.md, fourteenth round). A query can use a partial
# index only where it implies the predicate: those reads never do.
EXPORT_WINDOW = messages.c.ts_ms >= literal_column("0")
"""What a query states to read messages through the time index on PostgreSQL (timestamps
are never negative: messages.service.parse_timestamp)."""
Index("ix_messages_user_ts", messages.c.user_id, messages.c.ts_ms).ddl_if(dialect="sqlite")
Index(
    "ix_messages_user_ts_exports",
    messages.c.user_id,
    messages.c.ts_ms,
    postgresql_where=EXPORT_WINDOW,
).ddl_if(dialect="postgresql")

# Fixed-window request counters shared by every process (CHATSESSIONS_RATE_LIMIT without
# Redis): one row per (bucket, window).
rate_limit_counters = Table(
    "rate_limit_counters",
    metadata,
    Column("bucket", String(64), nullable=False),
    Column("window_start_ms", BigInteger, nullable=False),
    Column("count", Integer, nullable=False),
    PrimaryKeyConstraint("bucket", "window_start_ms"),
)

# One row per signed-in console browser: the SHA-256 of the token its cookie carries.
# Signing out deletes the row; revoking the API key it signed in with ends it too.
console_sign_ins = Table(
    "console_sign_ins",
    metadata,
    Column("token_hash", String(64), nullable=False),
    Column("user_id", _id(), nullable=False),
    Column("api_key_id", _id(), nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("expires_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("token_hash"),
    ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
    ForeignKeyConstraint(["api_key_id"], ["api_keys.id"], ondelete="CASCADE"),
    Index(None, "user_id"),
    Index(None, "expires_at_ms"),
)

# --- Channels: messages straight in from messaging platforms ---

# ``config``: the JSON of the settings that are not secret (account id, public URL).
# ``secret_box``: the HMAC keys (and the masks shown for hashed tokens), encrypted with a
# server key that is not in the database (channels/vault.py). ``token_hash``: SHA-256 of
# the Meta verify token or the Telegram secret token.
channels = Table(
    "channels",
    metadata,
    Column("user_id", _id(), nullable=False),
    Column("id", _id(), nullable=False),
    Column("type", String(16), nullable=False),
    Column("name", String(255), nullable=True),
    Column("config", Text, nullable=False),
    Column("token_hash", String(64), nullable=True),
    Column("secret_box", Text, nullable=True),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("user_id", "id"),
    # The webhook URL names the channel alone (the platform has no API key).
    UniqueConstraint("id"),
    ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
)

# A channel's counters, spread over a few rows (``slot``) so that concurrent payloads of
# one channel do not queue on one row lock until commit; a read sums the slots.
channel_counters = Table(
    "channel_counters",
    metadata,
    Column("user_id", _id(), nullable=False),
    Column("channel_id", _id(), nullable=False),
    Column("slot", Integer, nullable=False),
    Column("received", BigInteger, nullable=False),
    Column("stored", BigInteger, nullable=False),
    Column("duplicates", BigInteger, nullable=False),
    Column("ignored", BigInteger, nullable=False),
    Column("rejected", BigInteger, nullable=False),
    Column("last_event_at_ms", BigInteger, nullable=True),
    Column("last_error", String(255), nullable=True),
    Column("last_error_at_ms", BigInteger, nullable=True),
    PrimaryKeyConstraint("user_id", "channel_id", "slot"),
    ForeignKeyConstraint(
        ["user_id", "channel_id"], ["channels.user_id", "channels.id"], ondelete="CASCADE"
    ),
)
