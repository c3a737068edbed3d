"""messages: on SQLite the index of a session's messages in order also holds each
message's direction (``ix_messages_session_keys`` replaces ``ix_messages_session_ts``), so
that the figures' reads of a session's message keys (time, id, direction) are read from
the index alone

Revision ID: 0010_session_keys_index
Revises: 0009_contact_write_seq
Create Date: 2026-12-08 01:00:00

Why: ingest reads the keys of the stored messages its figures need
(``sessions.store._MESSAGE_KEYS_AROUND_SQLITE``, ``_MESSAGE_KEYS_SQLITE``); with the
direction outside the index each key cost a lookup of its row in the table, half the
read's time (bench/ingest-findings.md, 21st round). The index is built in the
migration's transaction: SQLite's writes wait for it (1.3 s for 1,000,000 messages here,
built with sqlite3 on rows of the bench's shape). PostgreSQL keeps its index: its reads
of recently written rows visit the table anyway, and the wider index gained nothing
there.
"""

from __future__ import annotations

from alembic import op

revision = "0010_session_keys_index"
down_revision = "0009_contact_write_seq"
branch_labels = None
depends_on = None

_KEYS = ["user_id", "session_id", "ts_ms", "id"]


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.create_index("ix_messages_session_keys", "messages", [*_KEYS, "direction"])
    op.drop_index("ix_messages_session_ts", table_name="messages")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.create_index("ix_messages_session_ts", "messages", _KEYS)
    op.drop_index("ix_messages_session_keys", table_name="messages")
