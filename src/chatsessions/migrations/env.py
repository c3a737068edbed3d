"""Alembic environment: runs on the connection handed in by ``chatsessions.db.migrate``."""

from __future__ import annotations

from alembic import context

from chatsessions.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only the programmatic path is supported
    raise RuntimeError("run migrations with `chatsessions migrate`")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
