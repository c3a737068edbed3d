"""contacts: ``write_seq``, a counter that every transaction changing a contact's sessions
or messages moves (PostgreSQL), so that a single message can be written without taking
the contact's lock and commit only if nothing changed since it read

Revision ID: 0009_contact_write_seq
Revises: 0008_export_time_index
Create Date: 2026-12-07 13:45:00

Why: a single message under the contact's lock took five round trips (BEGIN, the lock,
the read under it, the write, COMMIT); read and guarded write in autocommit take two
(messages.store.write_unlocked; bench/findings.md, sixteenth round). Adding a column with
a constant default rewrites nothing on PostgreSQL 11 and later (a catalog change) nor on
SQLite.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_contact_write_seq"
down_revision = "0008_export_time_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "contacts",
        sa.Column("write_seq", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
    )
    if op.get_bind().dialect.name == "postgresql":
        # Room on each page for the new version of a row whose write_seq moved, so that
        # the update is a heap-only tuple (no new entry in the contacts' four indexes):
        # with full pages 40 % of a batch's updates were not (bench/findings.md, sixteenth
        # round). Pages written from now on; VACUUM FULL applies it to the others.
        op.execute("ALTER TABLE contacts SET (fillfactor = 70)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE contacts RESET (fillfactor)")
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("write_seq")
