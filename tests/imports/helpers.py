"""Helpers of the import tests: read a fixture through both passes, build times."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chatsessions.imports import service
from chatsessions.imports.model import Source
from chatsessions.imports.plan import Plan
from tests.conftest import T0

FIXTURES = Path(__file__).parent / "fixtures"


def utc(*parts: int) -> int:
    """Epoch ms of a UTC time given as year, month, day, hour, minute[, second]."""
    return int(datetime(*parts, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


def read(
    files: str | list[str] | list[Source], *, now_ms: int = T0, **options: Any
) -> tuple[Plan, list[service.Row]]:
    """Both passes over fixture files (or sources), no database: the plan and the rows."""
    names = [files] if isinstance(files, str) else files
    sources = [n if isinstance(n, Source) else Source.from_path(str(FIXTURES / n)) for n in names]
    plan = service.prepare(sources, service.ImportOptions(**options), now_ms=now_ms)
    try:
        return plan, list(service.rows(plan))
    finally:
        assert plan.spool is not None
        plan.spool.close()


def simple(rows: list[service.Row]) -> list[tuple[str, str, str, int]]:
    """Rows without their externalIds: direction, type, content, time."""
    return [(d, k, c, ts) for d, k, c, ts, _ext in rows]
