"""Buckets and heatmap cells hold exactly the sessions whose local start time (by the
zone database, computed here for each session on its own) falls in them, for zones with
daylight saving, half-hour and quarter-hour offsets."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatsessions.db import Database
from chatsessions.timeutil import format_ms
from tests.conftest import T0, create_tenant
from tests.factories import make_contact, post_message

ZONES = ["Europe/Amsterdam", "America/New_York", "Asia/Kathmandu", "Australia/Lord_Howe"]
FROM = T0 - 200 * 86_400_000  # covers both 2026 daylight-saving changes of each zone


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    starts=st.lists(st.integers(FROM, T0 - 1), min_size=1, max_size=6, unique=True),
    zone=st.sampled_from(ZONES),
    interval=st.sampled_from(["hour", "day"]),
)
async def test_each_session_lands_in_the_bucket_of_its_local_start(
    client: httpx.AsyncClient, database: Database, starts: list[int], zone: str, interval: str
) -> None:
    tenant = await create_tenant(database)
    for start in starts:  # one contact each: every message opens its own session
        contact = await make_contact(client, tenant.auth)
        await post_message(client, tenant.auth, contact, start)
    tz = ZoneInfo(zone)
    span = {"from": format_ms(min(starts)), "to": format_ms(max(starts) + 1), "tz": zone}

    def local(ms: int) -> datetime:
        return datetime.fromtimestamp(ms / 1000, tz)

    def key(ms: int) -> str:
        t = local(ms)
        if interval == "day":
            return t.date().isoformat()
        return t.replace(minute=0, second=0, microsecond=0).isoformat()  # offset included

    expected = Counter(key(s) for s in starts)
    r = await client.get(
        "/v1/analytics/timeseries", params={**span, "interval": interval}, headers=tenant.auth
    )
    assert r.status_code == 200, r.text
    buckets = r.json()["data"]["buckets"]
    got = {b["start"][: 10 if interval == "day" else None]: b["value"] for b in buckets}
    assert {k: v for k, v in got.items() if v} == dict(expected)
    heat = await client.get("/v1/analytics/heatmap", params=span, headers=tenant.auth)
    cells = heat.json()["data"]["cells"]
    assert Counter(
        {(d, h): v for d, row in enumerate(cells) for h, v in enumerate(row) if v}
    ) == Counter((local(s).weekday(), local(s).hour) for s in starts)
