"""channels: one row per connected platform, and its counters

Revision ID: 0004_channels
Revises: 0003
Create Date: 2026-12-06 13:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_channels"
down_revision = "0003"
branch_labels = None
depends_on = None


def _id() -> sa.types.TypeEngine[str]:
    return sa.String(length=20).with_variant(sa.String(length=20, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "channels",
        sa.Column("user_id", _id(), nullable=False),
        sa.Column("id", _id(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=True),
        sa.Column("secret_box", sa.Text(), nullable=True),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_channels_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "id", name=op.f("pk_channels")),
        sa.UniqueConstraint("id", name=op.f("uq_channels_id")),
    )
    op.create_table(
        "channel_counters",
        sa.Column("user_id", _id(), nullable=False),
        sa.Column("channel_id", _id(), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("received", sa.BigInteger(), nullable=False),
        sa.Column("stored", sa.BigInteger(), nullable=False),
        sa.Column("duplicates", sa.BigInteger(), nullable=False),
        sa.Column("ignored", sa.BigInteger(), nullable=False),
        sa.Column("rejected", sa.BigInteger(), nullable=False),
        sa.Column("last_event_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("last_error", sa.String(length=255), nullable=True),
        sa.Column("last_error_at_ms", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id", "channel_id"],
            ["channels.user_id", "channels.id"],
            name=op.f("fk_channel_counters_user_id_channels"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "channel_id", "slot", name=op.f("pk_channel_counters")),
    )


def downgrade() -> None:
    op.drop_table("channel_counters")
    op.drop_table("channels")
