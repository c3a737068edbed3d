"""Contacts looked up by identifier and locked by id, as ingest does for contacts named
inline: one index probe per value, also on tables PostgreSQL has no statistics of (never
analyzed: autovacuum not run yet), where "IN (...)" / "= ANY(...)" had it read every
contact of the tenant and filter them.

PostgreSQL only: the plans are PostgreSQL's (SQLite's planner has fixed rules).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from chatsessions.contacts import store as contacts_store
from tests.conftest import BACKENDS, T0, create_tenant
from tests.messages.test_probe_plans import (
    _fresh_database,
    _message,
    _nodes,
    _store,
    explain_prepared,
)


async def _plan(conn: Any, stmt: Any, params: dict[str, Any]) -> dict[str, Any]:
    """The plan PostgreSQL makes for ``stmt`` with these values (a custom plan, as ingest's
    statements after its probe phase are planned)."""
    return await explain_prepared(
        conn, stmt, params, "SET LOCAL plan_cache_mode = force_custom_plan"
    )


def _assert_probes(plan: dict[str, Any], index: str) -> None:
    for node in _nodes(plan):
        assert node["Node Type"] not in {"Seq Scan", "Bitmap Heap Scan"}, plan
        if node.get("Relation Name") == "contacts":
            shown = orjson.dumps(plan).decode()
            assert node["Node Type"] == "Index Scan", shown
            assert node["Index Name"] == index, shown
            assert "Filter" not in node, shown  # the values are the index's condition


@pytest.mark.parametrize("backend_name", [b for b in BACKENDS if b == "postgresql"])
async def test_lookups_by_phone_and_locks_by_id_probe_one_key_each(backend_name: str) -> None:
    async with _fresh_database() as (database, conn):
        tenant = await create_tenant(database)
        for batch in range(2):  # 2,000 contacts with a phone, never analyzed
            await _store(
                database,
                tenant.user_id,
                [
                    _message(f"+1555{batch:03d}{n:04d}", batch * 1000 + n, T0 - 1000)
                    for n in range(1000)
                ],
            )
        phones = ["+15550000007", "+15550010003", "+15559990000"]
        ids = sorted(r[0] for r in await conn.fetch("SELECT id FROM contacts LIMIT 3"))

        plan = await _plan(
            conn, contacts_store._FIND_BY_PG["phone"], {"user_id": tenant.user_id, "values": phones}
        )
        _assert_probes(plan, "uq_contacts_user_id_phone_present")
        async with conn.transaction():
            plan = await _plan(
                conn, contacts_store._LOCK_PG, {"user_id": tenant.user_id, "ids": ids}
            )
        _assert_probes(plan, "pk_contacts")
