"""console sign-ins: one row per signed-in console browser (deleted at sign-out)

Revision ID: 0005_console_sign_ins
Revises: 0004_channels
Create Date: 2026-12-06 14:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_console_sign_ins"
down_revision = "0004_channels"
branch_labels = None
depends_on = None


def _id() -> sa.types.TypeEngine[str]:
    return sa.String(length=20).with_variant(sa.String(length=20, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "console_sign_ins",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", _id(), nullable=False),
        sa.Column("api_key_id", _id(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name="pk_console_sign_ins"),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name="fk_console_sign_ins_user_id_users",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name="fk_console_sign_ins_api_key_id_api_keys",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_console_sign_ins_user_id", "console_sign_ins", ["user_id"])
    op.create_index("ix_console_sign_ins_expires_at_ms", "console_sign_ins", ["expires_at_ms"])


def downgrade() -> None:
    op.drop_table("console_sign_ins")
