"""Migrations: several processes starting at once migrate safely, once, on both backends."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from chatsessions.config import Settings
from chatsessions.db import Database
from tests.conftest import _create_pg_database, _drop_pg_database


async def _fresh_url(backend: str, tmp_path: Path) -> tuple[str, str | None]:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/fresh.db", None
    name, url = await _create_pg_database()
    return url, name


@pytest.mark.parametrize("backend_name", ["sqlite", "postgresql"])
async def test_concurrent_migrations_run_once(backend_name: str, tmp_path: Path) -> None:
    url, pg_name = await _fresh_url(backend_name, tmp_path)
    try:
        env = {**os.environ, "CHATSESSIONS_DATABASE_URL": url}
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "chatsessions.cli", "migrate"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for _ in range(4)
        ]
        for p in procs:
            _out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err.decode()
        db = Database(Settings(database_url=url))
        async with db.read() as conn:
            versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
            tables = (await conn.execute(text("SELECT count(*) FROM users"))).scalar_one()
        await db.dispose()
        assert len(versions) == 1
        assert tables == 0
    finally:
        if pg_name is not None:
            await _drop_pg_database(pg_name)
