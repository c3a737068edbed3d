"""The schema the migrations build is exactly the one ``tables.py`` declares.

The code reads and writes through ``tables.py``; the database is built by Alembic. A
column, index or constraint added to one and not the other would pass every test that
happens not to touch it, and fail in production. Checked on both backends, on a database
migrated from empty (the suite's own): Alembic's comparison for tables, columns, types,
keys and plain indexes, and for indexes on expressions (which it cannot reflect) the
definitions the database itself holds, against the same tables created from ``tables.py``
beside them.
"""

from __future__ import annotations

import re
import secrets
import warnings
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, text

from chatsessions import tables
from chatsessions.db import Database


def _declared_for(dialect: str) -> Any:
    """Alembic's filter: ``tables.py`` objects declared for another backend only
    (``.ddl_if(dialect=...)``, e.g. contacts' identifier keys) are not this one's."""

    def include(obj: Any, _name: Any, _type: str, reflected: bool, _compare_to: Any) -> bool:
        ddl_if = getattr(obj, "_ddl_if", None)
        return reflected or ddl_if is None or ddl_if.dialect in (None, dialect)

    return include


def _differences(sync_conn: Connection) -> list[Any]:
    context = MigrationContext.configure(
        sync_conn,
        opts={"compare_type": True, "include_object": _declared_for(sync_conn.dialect.name)},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "can't reflect expression-based index": see below
        found = compare_metadata(context, tables.metadata)
    expression_indexes = _expression_index_names()
    # An expression index shows as removed-and-added under its own name: compared below.
    return [
        d
        for d in found
        if not (
            isinstance(d, tuple)
            and d[0] in ("add_index", "remove_index")
            and d[1].name in expression_indexes
        )
    ]


def _expression_index_names() -> set[str]:
    return {
        str(index.name)
        for table in tables.metadata.tables.values()
        for index in table.indexes
        if any(not hasattr(e, "table") for e in index.expressions)
    }


def _index_definitions(sync_conn: Connection, schema: str) -> dict[str, str]:
    """Index name → its definition as the database stores it, the schema name removed."""
    if sync_conn.dialect.name == "postgresql":
        rows = sync_conn.execute(
            text("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = :s"),
            {"s": schema},
        ).all()
        return {name: definition.replace(f"{schema}.", "") for name, definition in rows}
    rows = sync_conn.execute(
        text(
            f"SELECT name, sql FROM {schema}.sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        )
    ).all()
    return {name: _normalised_sqlite(sql, schema) for name, sql in rows}


def _normalised_sqlite(sql: str, schema: str) -> str:
    # SQLite keeps the DDL as it was written (PostgreSQL normalises it): compare the words,
    # not the quoting, spacing or redundant parentheses of the two writers.
    sql = sql.replace(f"{schema}.", "").replace('"', "")
    return " ".join(re.sub(r"[()]", " ", sql).lower().split())


def _declared_beside(sync_conn: Connection) -> dict[str, str]:
    """Create ``tables.py``'s schema in a scratch schema (SQLite: an attached database)
    and read its index definitions; the scratch schema is removed again."""
    scratch = "declared_" + secrets.token_hex(4)
    postgres = sync_conn.dialect.name == "postgresql"
    if postgres:  # DDL is transactional: the caller's rollback removes the schema
        sync_conn.execute(text(f"CREATE SCHEMA {scratch}"))
    else:
        sync_conn.execute(text(f"ATTACH DATABASE ':memory:' AS {scratch}"))
    translated = sync_conn.execution_options(schema_translate_map={None: scratch})
    tables.metadata.create_all(translated)
    return _index_definitions(sync_conn, scratch)


async def test_migrated_schema_equals_tables_py(database: Database) -> None:
    async with database.engine.connect() as conn:
        differences = await conn.run_sync(_differences)
    assert differences == [], "migrations and tables.py disagree:\n" + "\n".join(
        map(repr, differences)
    )


async def test_migrated_indexes_on_expressions_equal_tables_py(database: Database) -> None:
    async with database.engine.connect() as conn:
        schema = "public" if not database.is_sqlite else "main"
        migrated = await conn.run_sync(lambda c: _index_definitions(c, schema))
        try:
            declared = await conn.run_sync(_declared_beside)
        finally:
            await conn.rollback()
    names = _expression_index_names()
    assert names, "tables.py declares indexes on expressions: this test must see them"
    # Partial indexes too: Alembic does not compare their WHERE clauses.
    partial = {
        str(index.name)
        for table in tables.metadata.tables.values()
        for index in table.indexes
        if index.dialect_options[conn.dialect.name]["where"] is not None
    }
    assert partial, "tables.py declares partial indexes: this test must see them"
    names |= partial
    for name in sorted(names):
        assert migrated.get(name) == declared.get(name), name
