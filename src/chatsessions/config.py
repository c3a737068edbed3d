"""Configuration: one ``Settings`` class read from ``CHATSESSIONS_*`` environment variables.

Values are validated and normalised at start-up; a nonsensical value fails fast with a
message naming the variable.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["Settings", "get_settings", "normalise_database_url"]

DEFAULT_DATABASE_URL = "sqlite:///./data/chatsessions.db"
_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour|day)s?\s*$", re.IGNORECASE)
_PERIOD_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def normalise_database_url(url: str) -> str:
    """Return the SQLAlchemy async URL for a user-facing database URL.

    >>> normalise_database_url("postgresql://u@h:5432/db")
    'postgresql+asyncpg://u@h:5432/db'
    """
    url = url.strip()
    if url.startswith(("postgres://", "postgresql://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
        return url
    if url.startswith("postgresql+"):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url.split("://", 1)[1]
    if url.startswith("sqlite+"):
        return "sqlite+aiosqlite://" + url.split("://", 1)[1]
    raise ValueError(
        "CHATSESSIONS_DATABASE_URL must start with sqlite:// or postgresql:// "
        f"(got {url.split('://', 1)[0]!r})"
    )


def parse_rate(value: str) -> tuple[int, int]:
    """Parse ``"600/minute"`` into ``(600, 60)`` (requests, period seconds)."""
    m = _RATE_RE.match(value)
    if not m or int(m.group(1)) < 1:
        raise ValueError(f"expected N/second|minute|hour|day, got {value!r}")
    return int(m.group(1)), _PERIOD_SECONDS[m.group(2).lower()]


class Settings(BaseSettings):
    """Every setting of the service; see docs/operations.md for the table."""

    model_config = SettingsConfigDict(env_prefix="CHATSESSIONS_", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    database_connect_timeout: float = Field(default=5.0, gt=0)
    database_pool_size: int = Field(default=20, ge=1)
    # Connections opened beyond the pool for a burst, closed again when returned to a
    # full pool. Each costs PostgreSQL a backend start and the driver its type
    # introspection and statement preparation: with 16 requests in flight on a pool of
    # 10 + 10, ~30 connections a second were opened and closed (docs/performance.md).
    database_max_overflow: int = Field(default=0, ge=0)
    # Test each pooled connection with a round trip before use. Off: a connection the
    # server dropped fails its request once (503) and the pool is refreshed; the ping
    # costs three round trips per checkout on PostgreSQL (docs/performance.md).
    database_pre_ping: bool = False
    # PostgreSQL: ANALYZE the ingest tables when a load outgrew their statistics (a tenant
    # the planner believes smaller than half of what was written for it, or a table whose
    # row count doubled or halved), in the background (planner_stats).
    analyze_after_loads: bool = True
    # PostgreSQL: store a single message to a known contact without the contact's lock
    # (a read, then a write that commits only if no writer of the contact came between;
    # docs/architecture.md). Off while processes of a version before migration 0009 still
    # write (their writes do not move write_seq): the locked path only.
    unlocked_single_writes: bool = True
    # SQLite: how long a write waits for the write lock another process holds (a CLI
    # import, a second server) before it fails with 503.
    database_busy_timeout: float = Field(default=30.0, gt=0)
    # SQLite: the WAL size (4 KiB pages) at which a commit copies it back into the database
    # file (PRAGMA wal_autocheckpoint; SQLite's own default is 1,000). Random message ids
    # and externalIds dirty a page per message in their indexes: at 1,000 pages every
    # large batch checkpointed, writing the same index pages again and again, and batches
    # grew ~2.8x slower from 0 to 1,000,000 messages (bench/findings.md, eleventh round).
    sqlite_wal_autocheckpoint: int = Field(default=30_000, ge=0)
    # SQLite: each connection's page cache, in MiB (PRAGMA cache_size; SQLite's own default
    # is 2 MiB). A batch's inserts touch pages all over five message indexes (random
    # externalIds, each contact's sessions): with 2 MiB they were read back from the file
    # again and again once the database outgrew it (bench/ingest-findings.md, 21st round).
    # Filled only as pages are read, up to this much per connection of the pool.
    sqlite_cache_mib: int = Field(default=64, ge=1)
    allow_user_id_auth: bool = True
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    rate_limit: str | None = None
    auth_failure_limit: int = Field(default=20, ge=1)
    redis_url: str | None = None
    metrics_token: str | None = None
    secret_key: str | None = None
    # Where the server key that encrypts channel secrets is kept when secret_key is unset
    # (generated on first use). Unset: beside the SQLite database, or ./data/ with
    # PostgreSQL. Never in the database: a dump alone must not reveal those secrets.
    secret_key_file: str | None = None
    default_timeout_minutes: int = Field(default=60, ge=1, le=43200)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_batch_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    docs_enabled: bool = True
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    webhook_allow_private: bool = False
    log_level: str = "info"
    # One log line per request (uvicorn's access log). Off by default: /metrics counts
    # requests by route and status, and the line costs ~6% of a listing's CPU.
    access_log: bool = False
    # SIGTERM: stop accepting, let in-flight requests finish for up to this long.
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        normalised = normalise_database_url(value)
        if normalised.startswith("sqlite") and (
            normalised.endswith(":memory:") or normalised.rstrip("/").endswith("aiosqlite:")
        ):
            raise ValueError(
                "CHATSESSIONS_DATABASE_URL: an in-memory SQLite database is not shared between "
                "connections or processes; use a file, e.g. sqlite:///./data/chatsessions.db"
            )
        return value.strip()

    @field_validator("trusted_proxies", "cors_origins", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)
        return value

    @field_validator("rate_limit")
    @classmethod
    def _check_rate(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parse_rate(value)
        return value

    @property
    def async_database_url(self) -> str:
        """The SQLAlchemy URL with the async driver chosen."""
        return normalise_database_url(self.database_url)

    @property
    def is_sqlite(self) -> bool:
        """True when the embedded SQLite backend is configured."""
        return self.async_database_url.startswith("sqlite")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
