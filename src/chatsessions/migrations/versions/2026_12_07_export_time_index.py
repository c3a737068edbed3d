"""messages: on PostgreSQL the (user_id, ts_ms) index of chat exports becomes partial
(``ix_messages_user_ts_exports``, WHERE ts_ms >= 0, which every stored message satisfies
and only the exports' query states), so that ingest's reads of a session's messages by
time have one index that can serve them, with or without statistics

Revision ID: 0008_export_time_index
Revises: 0007_contact_identifier_indexes
Create Date: 2026-12-07 10:40:00

Why: without statistics the read of a session's messages around a late message
(``sessions.store._MESSAGE_KEYS_AROUND_PG``) tied between ``ix_messages_session_ts`` and
this smaller index, which won and scanned the tenant's messages of that time for every
session (``tables.py``, bench/findings.md, fourteenth round). The new index is built
before the old one is dropped; building it takes a SHARE lock on ``messages`` (writes
wait, reads do not) until the migration commits (no CONCURRENTLY inside a migration's
transaction; docs/operations.md). SQLite keeps its index: its planner does not make that
choice.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_export_time_index"
down_revision = "0007_contact_identifier_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.create_index(
        "ix_messages_user_ts_exports",
        "messages",
        ["user_id", "ts_ms"],
        postgresql_where=sa.text("ts_ms >= 0"),
    )
    op.drop_index("ix_messages_user_ts", table_name="messages")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.create_index("ix_messages_user_ts", "messages", ["user_id", "ts_ms"])
    op.drop_index("ix_messages_user_ts_exports", table_name="messages")
