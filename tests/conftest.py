"""Fixtures: a real database per backend (SQLite file and PostgreSQL), the real ASGI app.

Each backend gets one fresh database for the whole run (a new PostgreSQL database is
created and dropped); tests isolate themselves by creating their own tenants, which is
exactly the isolation the product promises. PostgreSQL is required: when it cannot be
reached the run fails, unless CHATSESSIONS_TEST_SKIP_POSTGRES=1 says otherwise.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from hypothesis import settings as hypothesis_settings

from chatsessions.app import create_app
from chatsessions.auth import service as auth_service
from chatsessions.config import Settings
from chatsessions.db import Database, migrate

# CI runs the property tests with a fixed seed (reproducible landings); local runs draw new
# cases every time and keep finding what a fixed seed cannot.
if os.environ.get("CI"):
    hypothesis_settings.register_profile("ci", derandomize=True)
    hypothesis_settings.load_profile("ci")

PG_ADMIN_URL = os.environ.get(
    "CHATSESSIONS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
SKIP_PG = os.environ.get("CHATSESSIONS_TEST_SKIP_POSTGRES") == "1"
BACKENDS = ["sqlite"] if SKIP_PG else ["sqlite", "postgresql"]
T0 = 1_795_000_000_000  # 2026-11-18T…Z: a fixed "now" for tests that move time


class FakeClock:
    """An injectable clock (epoch ms) that tests move by hand."""

    def __init__(self, now_ms: int = T0) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, ms: int) -> None:
        """Move time forward by ``ms``."""
        self.now_ms += ms


async def _create_pg_database() -> tuple[str, str]:
    name = "cs_test_" + secrets.token_hex(6)
    try:
        conn = await asyncpg.connect(PG_ADMIN_URL, timeout=10)
    except Exception as exc:  # pragma: no cover - the environment is broken
        pytest.fail(
            f"PostgreSQL is required for the test suite but {PG_ADMIN_URL} is unreachable: {exc}. "
            "Start it (see README) or set CHATSESSIONS_TEST_SKIP_POSTGRES=1 locally."
        )
    try:
        # A linguistic (ICU) default collation, unlike byte order: an id column that lost
        # its COLLATE "C" would sort differently from SQLite and the order tests would fail.
        await conn.execute(
            f'CREATE DATABASE "{name}" TEMPLATE template0 '
            "LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
        )
    finally:
        await conn.close()
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return name, f"{base}/{name}"


async def _drop_pg_database(name: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def without_autovacuum(database: Database) -> None:
    """Keep autovacuum off the ingest tables of a test's own PostgreSQL database: a test of
    what the statistics are (none, stale, the service's own ANALYZE) must not depend on
    whether the machine's autovacuum came round during it."""
    async with database.read() as conn:
        for table in ("contacts", "sessions", "messages"):
            await conn.exec_driver_sql(f"ALTER TABLE {table} SET (autovacuum_enabled = off)")


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The storage backend under test."""
    return str(request.param)


@pytest_asyncio.fixture(scope="session")
async def backend_settings(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Settings]:
    """Settings pointing at a fresh, migrated database of the backend."""
    pg_name = None
    if backend == "sqlite":
        path: Path = tmp_path_factory.mktemp("sqlite") / "test.db"
        url = f"sqlite:///{path}"
    else:
        pg_name, url = await _create_pg_database()
    settings = Settings(database_url=url, auth_failure_limit=10_000, secret_key="test-secret")
    await migrate(settings)
    yield settings
    if pg_name is not None:
        await _drop_pg_database(pg_name)


@pytest_asyncio.fixture(scope="session")
async def database(backend_settings: Settings) -> AsyncIterator[Database]:
    """The database handle shared by the tests of one backend."""
    db = Database(backend_settings)
    yield db
    await db.dispose()


@pytest.fixture
def clock() -> FakeClock:
    """A clock at T0 that the test can move."""
    return FakeClock()


@pytest.fixture
def app(backend_settings: Settings, database: Database, clock: FakeClock) -> Any:
    """The real ASGI app on the backend's database, with the injected clock."""
    return create_app(backend_settings, clock=clock, database=database)


@pytest_asyncio.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the app in process (no network)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@dataclass
class Tenant:
    """A user with a valid key; ``auth`` goes into request headers."""

    user_id: str
    api_key: str

    @property
    def auth(self) -> dict[str, str]:
        """Headers that authenticate as this tenant."""
        return {"X-API-Key": self.api_key}


async def create_tenant(
    database: Database, *, timeout_minutes: int = 60, now_ms: int = T0
) -> Tenant:
    """A fresh user (tenant) with one key."""

    async def work(conn: Any) -> auth_service.NewUser:
        return await auth_service.create_user(
            conn, name="test", timeout_minutes=timeout_minutes, now_ms=now_ms
        )

    user = await database.run_write(work)
    return Tenant(user.user_id, user.api_key)


@pytest_asyncio.fixture
async def tenant(database: Database) -> Tenant:
    """A fresh tenant for this test."""
    return await create_tenant(database)


@pytest_asyncio.fixture
async def other_tenant(database: Database) -> Tenant:
    """A second, unrelated tenant."""
    return await create_tenant(database)


_backend_outcomes: dict[str, int] = {"postgresql": 0, "backend_tests": 0}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Count passed PostgreSQL tests, so a run that silently skipped them fails."""
    if report.when == "call" and report.passed:
        if "[postgresql" in report.nodeid:
            _backend_outcomes["postgresql"] += 1
        if "[sqlite" in report.nodeid or "[postgresql" in report.nodeid:
            _backend_outcomes["backend_tests"] += 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when storage tests ran but none of them on PostgreSQL."""
    if SKIP_PG or _backend_outcomes["backend_tests"] == 0:
        return
    if _backend_outcomes["postgresql"] == 0:
        session.exitstatus = 1
        print("\nERROR: no PostgreSQL test passed; PostgreSQL tests are required.")
