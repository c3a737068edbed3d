"""session figures: first inbound, first response, reply-time sum and count, and the
unanswered turn's start on each session row (analytics reads them instead of the messages),
and the index analytics selects sessions by

Revision ID: 0006_session_figures
Revises: 0005_console_sign_ins
Create Date: 2026-12-06 16:30:00

The new columns are filled from the stored messages by one statement (a copy of
``sessions.store._REFIGURE`` as it was when this migration was written): on a large
database this reads every message once, in the order of ``ix_messages_session_ts``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_session_figures"
down_revision = "0005_console_sign_ins"
branch_labels = None
depends_on = None

_COLUMNS = (
    sa.Column("first_inbound_ms", sa.BigInteger(), nullable=True),
    sa.Column("first_response_ms", sa.BigInteger(), nullable=True),
    sa.Column("reply_sum_ms", sa.BigInteger(), server_default="0", nullable=False),
    sa.Column("reply_count", sa.Integer(), server_default="0", nullable=False),
    sa.Column("unanswered_since_ms", sa.BigInteger(), nullable=True),
)

_FILL = """
WITH ordered AS (
    SELECT m.user_id, m.session_id, m.direction, m.ts_ms,
           SUM(CASE WHEN m.direction = 'outbound' THEN 1 ELSE 0 END) OVER (
               PARTITION BY m.user_id, m.session_id ORDER BY m.ts_ms, m.id
               ROWS UNBOUNDED PRECEDING)
           - CASE WHEN m.direction = 'outbound' THEN 1 ELSE 0 END AS turn
    FROM messages AS m
), turns AS (
    SELECT user_id, session_id, turn,
           MIN(CASE WHEN direction = 'inbound' THEN ts_ms END) AS asked_ms,
           MIN(CASE WHEN direction = 'outbound' THEN ts_ms END) AS answered_ms,
           ROW_NUMBER() OVER (  -- 1: the first turn holding an inbound message
               PARTITION BY user_id, session_id
               ORDER BY MIN(CASE WHEN direction = 'inbound' THEN ts_ms END) IS NULL, turn
           ) AS asked_rank
    FROM ordered GROUP BY user_id, session_id, turn
), figures AS (
    SELECT user_id, session_id,
           MIN(asked_ms) AS first_inbound_ms,
           MAX(CASE WHEN asked_rank = 1 THEN answered_ms - asked_ms END) AS first_response_ms,
           COALESCE(SUM(answered_ms - asked_ms), 0) AS reply_sum_ms,
           COUNT(answered_ms - asked_ms) AS reply_count,
           MAX(CASE WHEN answered_ms IS NULL THEN asked_ms END) AS unanswered_since_ms
    FROM turns GROUP BY user_id, session_id
)
UPDATE sessions SET first_inbound_ms = f.first_inbound_ms,
    first_response_ms = f.first_response_ms, reply_sum_ms = f.reply_sum_ms,
    reply_count = f.reply_count, unanswered_since_ms = f.unanswered_since_ms
FROM figures AS f
WHERE sessions.user_id = f.user_id AND sessions.id = f.session_id
"""


def upgrade() -> None:
    for column in _COLUMNS:
        op.add_column("sessions", column)
    op.execute(_FILL)
    op.create_index(
        "ix_sessions_start",
        "sessions",
        ["user_id", "start_ms"],
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


def downgrade() -> None:
    op.drop_index("ix_sessions_start", table_name="sessions")
    with op.batch_alter_table("sessions") as batch:
        for column in reversed(_COLUMNS):
            batch.drop_column(column.name)
