"""The migration that adds the figure columns fills them from the stored messages: a
database upgraded from the previous version answers analytics exactly as if its messages
had arrived through the write path (checked against the definitions, on both backends).
And `chatsessions refigure` repairs figures that a previous version's process left stale
during a rolling upgrade."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from chatsessions.config import Settings
from chatsessions.db import MIGRATIONS_DIR, create_engine_for, migrate
from tests.conftest import _create_pg_database, _drop_pg_database
from tests.figures_oracle import figures_by_definition

BEFORE = "0005_console_sign_ins"
# Two tenants' sessions as an older version stored them: (session, [(ts, direction), ...]).
# Ties on the time are ordered by message id (m01 < m02 ...), as the service orders them.
STORED = {
    "u1": {
        "s1": [(1_000, "inbound"), (2_000, "inbound"), (5_000, "outbound"), (9_000, "inbound")],
        "s2": [(50_000, "outbound"), (60_000, "inbound"), (60_000, "outbound")],
        "s3": [(90_000, "outbound")],
    },
    "u2": {
        "s4": [(1_000, "inbound"), (3_000, "outbound"), (4_000, "inbound"), (10_000, "outbound")],
    },
}


def _upgrade(sync_conn: Any, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, revision)


async def _store_old(engine: Any) -> None:
    """The rows of STORED, as a version before the figure columns wrote them."""
    async with engine.begin() as conn:
        n = 0
        for user, sessions in STORED.items():
            await conn.execute(
                text("INSERT INTO users (id, name, created_at_ms) VALUES (:u, 'x', 0)"),
                {"u": user},
            )
            await conn.execute(
                text(
                    "INSERT INTO contacts (user_id, id, is_bot_active, do_not_disturb, "
                    "created_at_ms, updated_at_ms) VALUES (:u, 'c1', true, false, 0, 0)"
                ),
                {"u": user},
            )
            for sid, msgs in sessions.items():
                inbound = sum(1 for _ts, d in msgs if d == "inbound")
                await conn.execute(
                    text(
                        "INSERT INTO sessions (user_id, id, contact_id, start_ms, last_ms, "
                        "expires_ms, activity_ms, message_count, inbound_count, "
                        "outbound_count, created_at_ms, updated_at_ms) VALUES (:u, :s, 'c1', "
                        ":start, :last, :last, :last, :n, :i, :o, 0, 0)"
                    ),
                    {
                        "u": user,
                        "s": sid,
                        "start": msgs[0][0],
                        "last": msgs[-1][0],
                        "n": len(msgs),
                        "i": inbound,
                        "o": len(msgs) - inbound,
                    },
                )
                for ts, direction in msgs:
                    n += 1
                    await conn.execute(
                        text(
                            "INSERT INTO messages (user_id, id, contact_id, session_id, "
                            "direction, role, type, ts_ms, created_at_ms) VALUES "
                            "(:u, :m, 'c1', :s, :d, 'user', 'text', :ts, 0)"
                        ),
                        {"u": user, "m": f"m{n:02d}", "s": sid, "d": direction, "ts": ts},
                    )


async def _figures(engine: Any) -> dict[tuple[str, str], tuple[Any, ...]]:
    """Every session's stored figures, by (user, session)."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT user_id, id, first_inbound_ms, first_response_ms, reply_sum_ms, "
                    "reply_count, unanswered_since_ms FROM sessions"
                )
            )
        ).all()
    return {(r[0], r[1]): tuple(r[2:]) for r in rows}


@asynccontextmanager
async def _upgraded_old_database(
    backend_name: str, tmp_path: Path
) -> AsyncIterator[tuple[str, AsyncEngine]]:
    """A database of the backend at the previous version holding STORED, then upgraded
    (migrated to the newest version): its URL and an engine on it."""
    pg_name = None
    if backend_name == "sqlite":
        url = f"sqlite:///{tmp_path}/old.db"
    else:
        pg_name, url = await _create_pg_database()
    settings = Settings(database_url=url)
    engine = create_engine_for(settings)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_upgrade, BEFORE)
            await conn.commit()
        await _store_old(engine)
        await migrate(settings)
        yield url, engine
    finally:
        await engine.dispose()
        if pg_name is not None:
            await _drop_pg_database(pg_name)


@pytest.mark.parametrize("backend_name", ["sqlite", "postgresql"])
async def test_upgrade_fills_the_figures_from_the_messages(
    backend_name: str, tmp_path: Path
) -> None:
    async with _upgraded_old_database(backend_name, tmp_path) as (_url, engine):
        found = await _figures(engine)
        expected = {
            (user, sid): figures_by_definition(msgs)
            for user, sessions in STORED.items()
            for sid, msgs in sessions.items()
        }
        assert found == expected
        # The hand-worked values of s1 and s2, so the oracle itself is pinned down.
        assert found["u1", "s1"] == (1_000, 4_000, 4_000, 1, 9_000)
        assert found["u1", "s2"] == (60_000, 0, 0, 1, None)


@pytest.mark.parametrize("backend_name", ["sqlite", "postgresql"])
async def test_refigure_command_repairs_stale_figures(backend_name: str, tmp_path: Path) -> None:
    async with _upgraded_old_database(backend_name, tmp_path) as (url, engine):
        # A previous version's process, still running during the upgrade, appends a
        # message and updates its session without knowing the figure columns.
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO messages (user_id, id, contact_id, session_id, direction, "
                    "role, type, ts_ms, created_at_ms) VALUES "
                    "('u1', 'm99', 'c1', 's1', 'outbound', 'agent', 'text', 12000, 0)"
                )
            )
            await conn.execute(
                text(
                    "UPDATE sessions SET last_ms = 12000, message_count = message_count + 1, "
                    "outbound_count = outbound_count + 1 WHERE user_id = 'u1' AND id = 's1'"
                )
            )
        stale = await _figures(engine)
        s1 = [*STORED["u1"]["s1"], (12_000, "outbound")]
        assert stale["u1", "s1"] != figures_by_definition(s1)

        env = {k: v for k, v in os.environ.items() if not k.startswith("CHATSESSIONS_")}
        env["CHATSESSIONS_DATABASE_URL"] = url
        proc = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "chatsessions.cli", "refigure"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert "figures recomputed for 4 sessions" in proc.stderr
        expected = {
            (user, sid): figures_by_definition(s1 if sid == "s1" else msgs)
            for user, sessions in STORED.items()
            for sid, msgs in sessions.items()
        }
        assert await _figures(engine) == expected
        assert expected["u1", "s1"] == (1_000, 4_000, 7_000, 2, None)  # 9 s answered at 12 s
