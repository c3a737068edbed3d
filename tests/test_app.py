"""The application ``chatsessions serve`` runs: its start-up objects are frozen out of the
garbage collector (full collections stalled whole ingest groups) and the collector passes
over young objects rarely (they cost 15 % of a batch's CPU), while the apps tests build
are left alone."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatsessions.app import create_app, create_served_app
from chatsessions.config import get_settings
from chatsessions.db import migrate


@pytest.fixture
async def sqlite_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    """The environment of a served app: a migrated SQLite database."""
    monkeypatch.setenv("CHATSESSIONS_DATABASE_URL", f"sqlite:///{tmp_path}/app.db")
    monkeypatch.setenv("CHATSESSIONS_SECRET_KEY_FILE", str(tmp_path / "secret.key"))
    get_settings.cache_clear()
    await migrate(get_settings())
    yield
    get_settings.cache_clear()


async def test_the_served_app_freezes_its_start_up_objects(sqlite_env: None) -> None:
    gc.unfreeze()
    thresholds = gc.get_threshold()
    try:
        built = create_app()
        async with built.router.lifespan_context(built):
            assert gc.get_freeze_count() == 0
            assert gc.get_threshold() == thresholds
        served = create_served_app()
        async with served.router.lifespan_context(served):
            # The app, its routes and the modules' objects are among them.
            assert gc.get_freeze_count() > 10_000
            # A young-generation pass only after 50,000 net allocations: not dozens of
            # times in a batch of 1,000 messages.
            assert gc.get_threshold()[0] >= 50_000
            before = gc.get_stats()[0]["collections"]
            garbage = [[n] for n in range(30_000)]  # a request's worth of objects
            del garbage
            assert gc.get_stats()[0]["collections"] - before <= 1
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
