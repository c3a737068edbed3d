"""webhooks: endpoints, outbox events, deliveries; sessions.close_notified_ms

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 01:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _id() -> sa.types.TypeEngine[str]:
    return sa.String(length=20).with_variant(sa.String(length=20, collation="C"), "postgresql")


_CLOSE_PENDING = sa.text(
    "closed_at_ms IS NULL AND (close_notified_ms IS NULL OR close_notified_ms < expires_ms)"
)


_CLOSE_DUE = sa.text(
    "(CASE WHEN expires_ms >= created_at_ms THEN expires_ms ELSE created_at_ms END)"
)


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("user_id", _id(), nullable=False),
        sa.Column("id", _id(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("events", sa.Text(), nullable=False),
        sa.Column("secret", sa.String(length=100), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.String(length=16), nullable=True),
        sa.Column("disabled_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("failing_since_ms", sa.BigInteger(), nullable=True),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_webhook_endpoints_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "id", name=op.f("pk_webhook_endpoints")),
    )
    op.create_table(
        "webhook_events",
        sa.Column("user_id", _id(), nullable=False),
        sa.Column("id", _id(), nullable=False),
        sa.Column("contact_id", _id(), nullable=True),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_webhook_events_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id", "contact_id"],
            ["contacts.user_id", "contacts.id"],
            name=op.f("fk_webhook_events_user_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "id", name=op.f("pk_webhook_events")),
    )
    op.create_index("ix_webhook_events_contact", "webhook_events", ["user_id", "contact_id"])
    op.create_table(
        "webhook_deliveries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("user_id", _id(), nullable=False),
        sa.Column("endpoint_id", _id(), nullable=False),
        sa.Column("event_id", _id(), nullable=False),
        sa.Column("contact_id", _id(), nullable=True),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_ms", sa.BigInteger(), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=255), nullable=True),
        sa.Column("last_response", sa.Text(), nullable=True),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id", "endpoint_id"],
            ["webhook_endpoints.user_id", "webhook_endpoints.id"],
            name=op.f("fk_webhook_deliveries_user_id_webhook_endpoints"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id", "event_id"],
            ["webhook_events.user_id", "webhook_events.id"],
            name=op.f("fk_webhook_deliveries_user_id_webhook_events"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint(
            "endpoint_id", "event_id", name=op.f("uq_webhook_deliveries_endpoint_id_event_id")
        ),
    )
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries", ["next_attempt_ms"])
    op.create_index(
        "ix_webhook_deliveries_chain",
        "webhook_deliveries",
        ["endpoint_id", "contact_id", "status", "id"],
    )
    op.create_index(
        "ix_webhook_deliveries_endpoint", "webhook_deliveries", ["user_id", "endpoint_id", "id"]
    )
    op.create_index(
        "ix_webhook_deliveries_contact", "webhook_deliveries", ["user_id", "contact_id"]
    )
    op.create_index("ix_webhook_deliveries_event", "webhook_deliveries", ["user_id", "event_id"])

    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("close_notified_ms", sa.BigInteger(), nullable=True))
    op.create_index(
        "ix_sessions_close_due",
        "sessions",
        ["user_id", _CLOSE_DUE],
        postgresql_where=_CLOSE_PENDING,
        sqlite_where=_CLOSE_PENDING,
    )


def downgrade() -> None:
    op.drop_index("ix_sessions_close_due", table_name="sessions")
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_column("close_notified_ms")
    for name in (
        "ix_webhook_deliveries_event",
        "ix_webhook_deliveries_contact",
        "ix_webhook_deliveries_endpoint",
        "ix_webhook_deliveries_chain",
        "ix_webhook_deliveries_due",
    ):
        op.drop_index(name, table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index("ix_webhook_events_contact", table_name="webhook_events")
    op.drop_table("webhook_events")
    op.drop_table("webhook_endpoints")
