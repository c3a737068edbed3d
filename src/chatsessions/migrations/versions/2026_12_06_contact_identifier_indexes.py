"""contacts: on PostgreSQL the unique (user_id, phone / email / external_id) constraints
become partial unique indexes (``uq_contacts_user_id_<column>_present``, WHERE the
identifier IS NOT NULL), so that a probe by the primary key (user_id, id) has one index
that can serve it, with or without statistics

Revision ID: 0007_contact_identifier_indexes
Revises: 0006_session_figures
Create Date: 2026-12-06 19:00:00

The uniqueness is unchanged (NULLs are distinct in a unique constraint too). Why: without
statistics PostgreSQL's foreign-key checks on ``contacts`` (one per inserted message and
session) and ingest's lock probed the smallest user_id-led unique index instead of the
primary key, i.e. scanned the tenant's contacts per probe (``tables.py``,
bench/findings.md). Dropping a constraint locks ``contacts`` exclusively until the
migration commits, i.e. while the three indexes are built (no CONCURRENTLY inside a
migration's transaction): 2.8 s for a million contacts here (docs/operations.md).
SQLite keeps its table constraints: nothing to do there (rebuilding the table would
need its foreign keys off, and SQLite's own checks are not affected).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_contact_identifier_indexes"
down_revision = "0006_session_figures"
branch_labels = None
depends_on = None

_COLUMNS = ("phone", "email", "external_id")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for column in _COLUMNS:
        op.drop_constraint(f"uq_contacts_user_id_{column}", "contacts", type_="unique")
        op.create_index(
            f"uq_contacts_user_id_{column}_present",
            "contacts",
            ["user_id", column],
            unique=True,
            postgresql_where=sa.text(f"{column} IS NOT NULL"),
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for column in _COLUMNS:
        op.drop_index(f"uq_contacts_user_id_{column}_present", table_name="contacts")
        op.create_unique_constraint(
            f"uq_contacts_user_id_{column}", "contacts", ["user_id", column]
        )
