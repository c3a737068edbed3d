"""Analytics API against a small dataset whose answers are worked out by hand below.

The dataset (tenant timeout 60 min; times UTC, 2026; Europe/Amsterdam leaves summer
time on Sunday 25 October at 01:00Z, 03:00 CEST → 02:00 CET):

=====  =========  =========================================  =========================
 id     contact    messages (i = inbound, o = outbound)       hand-computed
=====  =========  =========================================  =========================
 S5     bob/sms    Fri 10-23 12:00:00 o                       no first response
 S1     ann/wa     Sat 10-24 21:30:00 i, 21:30:30 i,           first response 90 s,
                   21:31:30 o, 21:40:00 i, 21:42:00 o          replies 90, 120 → 105 s,
                                                               duration 720 s
 S2     bob/sms    Sun 10-25 01:30:00 o, 01:35:00 i,           first response 10 s,
                   01:35:10 o                                  reply 10 s, duration 310 s
 S3     cy/wa      Sun 10-25 23:30:00 i, 23:31:00 i            unanswered, duration 60 s
 S4     ann/wa     Mon 10-26 10:00:00 i, 10:05:00 o,           first response 300 s,
                   10:06:00 i, 10:07:00 i, 10:10:00 o,         replies 300, 240 → 270 s,
                   10:11:00 o                                  duration 660 s
=====  =========  =========================================  =========================

Local times: S1 Sat 23:30 CEST, S2 Sun 02:30 CET, S3 Mon 00:30 CET, S4 Mon 11:00 CET in
Amsterdam; S1 Sat 17:30, S2 Sat 21:30, S3 Sun 19:30, S4 Mon 06:00 EDT in New York.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from chatsessions.timeutil import parse_iso_ms
from tests.conftest import Tenant
from tests.factories import make_contact, post_message

S = 1000


@dataclass
class Scene:
    ann: str
    bob: str
    cy: str


async def _talk(
    client: httpx.AsyncClient, tenant: Tenant, contact: str, lines: list[tuple[str, str]]
) -> None:
    for when, direction in lines:
        await post_message(
            client,
            tenant.auth,
            contact,
            parse_iso_ms(when),
            direction="inbound" if direction == "i" else "outbound",
        )


async def _scene(client: httpx.AsyncClient, tenant: Tenant) -> Scene:
    auth = tenant.auth
    ann = await make_contact(client, auth, channel="whatsapp")
    bob = await make_contact(client, auth, channel="sms")
    cy = await make_contact(client, auth, channel="WhatsApp")
    await _talk(client, tenant, bob, [("2026-10-23T12:00:00Z", "o")])
    await _talk(
        client,
        tenant,
        ann,
        [
            ("2026-10-24T21:30:00Z", "i"),
            ("2026-10-24T21:30:30Z", "i"),
            ("2026-10-24T21:31:30Z", "o"),
            ("2026-10-24T21:40:00Z", "i"),
            ("2026-10-24T21:42:00Z", "o"),
        ],
    )
    await _talk(
        client,
        tenant,
        bob,
        [
            ("2026-10-25T01:30:00Z", "o"),
            ("2026-10-25T01:35:00Z", "i"),
            ("2026-10-25T01:35:10Z", "o"),
        ],
    )
    await _talk(client, tenant, cy, [("2026-10-25T23:30:00Z", "i"), ("2026-10-25T23:31:00Z", "i")])
    # Posted out of order: the figures depend on timestamps, not on arrival.
    await _talk(
        client,
        tenant,
        ann,
        [
            ("2026-10-26T10:11:00Z", "o"),
            ("2026-10-26T10:00:00Z", "i"),
            ("2026-10-26T10:07:00Z", "i"),
            ("2026-10-26T10:05:00Z", "o"),
            ("2026-10-26T10:06:00Z", "i"),
            ("2026-10-26T10:10:00Z", "o"),
        ],
    )
    return Scene(ann, bob, cy)


async def _get(client: httpx.AsyncClient, tenant: Tenant, path: str, **params: str) -> Any:
    r = await client.get(f"/v1/analytics/{path}", params=params, headers=tenant.auth)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True
    return body["data"]


def _stats(n: int, median: float | None, p90: float | None, mean: float | None) -> dict[str, Any]:
    return {"n": n, "median": median, "p90": p90, "mean": mean}


async def test_summary_in_utc(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await _scene(client, tenant)
    data = await _get(client, tenant, "summary", **{"from": "2026-10-24", "to": "2026-10-27"})
    assert data["from"] == "2026-10-24T00:00:00.000Z"
    assert data["to"] == "2026-10-27T00:00:00.000Z"
    assert data["tz"] == "UTC"
    # S1, S2, S3, S4 (S5 starts the day before).
    assert data["sessions"] == 4
    assert data["contacts"] == 3
    assert data["messagesIn"] == 9
    assert data["messagesOut"] == 7
    assert data["unanswered"] == 1
    # [10, 90, 300]: nearest rank 50 % → 2nd, 90 % → 3rd.
    assert data["firstResponse"] == _stats(3, 90, 300, 133.333)
    # Per-session means [10, 105, 270].
    assert data["replyTime"] == _stats(3, 105, 270, 128.333)
    # [60, 310, 660, 720]: 50 % of 4 → 2nd; 90 % → 4th; mean 1750 / 4.
    assert data["duration"] == _stats(4, 310, 720, 437.5)


async def test_summary_in_amsterdam_reads_dates_in_that_zone(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await _scene(client, tenant)
    data = await _get(
        client,
        tenant,
        "summary",
        **{"from": "2026-10-24", "to": "2026-10-26", "tz": "Europe/Amsterdam"},
    )
    # Midnight CEST, and midnight CET after the change.
    assert (data["from"], data["to"]) == ("2026-10-23T22:00:00.000Z", "2026-10-25T23:00:00.000Z")
    # S1 and S2; S3 starts at 00:30 on the 26th in Amsterdam (still the 25th in UTC).
    assert data["sessions"] == 2
    assert (data["messagesIn"], data["messagesOut"], data["unanswered"]) == (4, 4, 0)
    assert data["firstResponse"] == _stats(2, 10, 90, 50)
    utc = await _get(client, tenant, "summary", **{"from": "2026-10-24", "to": "2026-10-26"})
    assert utc["sessions"] == 3


async def test_summary_of_one_channel_any_case(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await _scene(client, tenant)
    data = await _get(
        client,
        tenant,
        "summary",
        **{"from": "2026-10-24", "to": "2026-10-27", "channel": "WHATSAPP"},
    )
    # S1, S3, S4 (ann and cy, whose channel is spelled "WhatsApp").
    assert (data["sessions"], data["contacts"]) == (3, 2)
    assert (data["messagesIn"], data["messagesOut"], data["unanswered"]) == (8, 5, 1)
    assert data["firstResponse"] == _stats(2, 90, 300, 195)


async def test_daily_series_across_the_change_to_winter_time(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await _scene(client, tenant)
    data = await _get(
        client,
        tenant,
        "timeseries",
        **{"from": "2026-10-24", "to": "2026-10-27", "tz": "Europe/Amsterdam", "interval": "day"},
    )
    assert data["metric"] == "sessions"
    assert [(b["start"], b["startUtc"], b["value"], b["n"]) for b in data["buckets"]] == [
        ("2026-10-24T00:00:00+02:00", "2026-10-23T22:00:00.000Z", 1, 1),
        # 25 hours long: S2 (02:30 CET) in, S3 (00:30 on the 26th) out.
        ("2026-10-25T00:00:00+02:00", "2026-10-24T22:00:00.000Z", 1, 1),
        ("2026-10-26T00:00:00+01:00", "2026-10-25T23:00:00.000Z", 2, 2),
    ]
    utc = await _get(client, tenant, "timeseries", **{"from": "2026-10-24", "to": "2026-10-27"})
    assert [b["value"] for b in utc["buckets"]] == [1, 2, 1]


async def test_hourly_series_has_the_repeated_hour_twice(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await _scene(client, tenant)
    data = await _get(
        client,
        tenant,
        "timeseries",
        **{
            "from": "2026-10-25T00:00",
            "to": "2026-10-25T04:00",
            "tz": "Europe/Amsterdam",
            "interval": "HOUR",
        },
    )
    assert [(b["start"], b["value"]) for b in data["buckets"]] == [
        ("2026-10-25T00:00:00+02:00", 0),
        ("2026-10-25T01:00:00+02:00", 0),
        ("2026-10-25T02:00:00+02:00", 0),
        ("2026-10-25T02:00:00+01:00", 1),  # S2 at 01:30Z
        ("2026-10-25T03:00:00+01:00", 0),
    ]


async def test_series_of_messages_and_first_response_median(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await _scene(client, tenant)
    span = {"from": "2026-10-24", "to": "2026-10-27"}
    inbound = await _get(client, tenant, "timeseries", metric="messagesIn", **span)
    assert [(b["value"], b["n"]) for b in inbound["buckets"]] == [(3, 1), (3, 2), (3, 1)]
    outbound = await _get(client, tenant, "timeseries", metric="messagesout", **span)
    assert [b["value"] for b in outbound["buckets"]] == [2, 2, 3]
    first = await _get(client, tenant, "timeseries", metric="firstResponseMedian", **span)
    # The 25th: S2 answered after 10 s, S3 never (not counted in n).
    assert [(b["value"], b["n"]) for b in first["buckets"]] == [(90, 1), (10, 1), (300, 1)]


async def test_weekly_series_starts_on_monday(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await _scene(client, tenant)
    data = await _get(
        client, tenant, "timeseries", interval="week", **{"from": "2026-10-21", "to": "2026-11-02"}
    )
    assert [(b["start"], b["value"]) for b in data["buckets"]] == [
        ("2026-10-19T00:00:00+00:00", 4),  # from the 21st: S5, S1, S2, S3
        ("2026-10-26T00:00:00+00:00", 1),
    ]


@pytest.mark.parametrize(
    ("zone", "cells"),
    [
        ("Europe/Amsterdam", {(5, 23): 1, (6, 2): 1, (0, 0): 1, (0, 11): 1}),
        ("America/New_York", {(5, 17): 1, (5, 21): 1, (6, 19): 1, (0, 6): 1}),
    ],
)
async def test_heatmap_by_local_weekday_and_hour(
    client: httpx.AsyncClient, tenant: Tenant, zone: str, cells: dict[tuple[int, int], int]
) -> None:
    await _scene(client, tenant)
    data = await _get(
        client, tenant, "heatmap", **{"from": "2026-10-24", "to": "2026-10-27", "tz": zone}
    )
    assert data["weekdays"][0] == "Monday"
    assert len(data["cells"]) == 7 and all(len(row) == 24 for row in data["cells"])
    got = {(d, h): v for d, row in enumerate(data["cells"]) for h, v in enumerate(row) if v}
    assert got == cells
    assert data["sessions"] == 4


async def test_another_tenants_sessions_are_not_counted(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    await _scene(client, tenant)
    theirs = await make_contact(client, other_tenant.auth, channel="whatsapp")
    await post_message(client, other_tenant.auth, theirs, parse_iso_ms("2026-10-25T12:00:00Z"))
    span = {"from": "2026-10-24", "to": "2026-10-27"}
    mine = await _get(client, tenant, "summary", **span)
    assert (mine["sessions"], mine["messagesIn"]) == (4, 9)
    other = await _get(client, other_tenant, "summary", **span)
    assert (other["sessions"], other["contacts"], other["messagesIn"], other["unanswered"]) == (
        1,
        1,
        1,
        1,
    )
    heat = await _get(client, other_tenant, "heatmap", **span)
    assert sum(map(sum, heat["cells"])) == 1


async def test_an_empty_range_has_null_figures(client: httpx.AsyncClient, tenant: Tenant) -> None:
    data = await _get(client, tenant, "summary", **{"from": "2020-01-01", "to": "2020-01-02"})
    assert data["sessions"] == 0
    assert data["firstResponse"] == _stats(0, None, None, None)


@pytest.mark.parametrize(
    ("path", "params", "named"),
    [
        ("summary", {"tz": "Mars/Olympus"}, "tz"),
        ("summary", {"tz": "../../etc/passwd"}, "tz"),
        ("summary", {"from": "yesterday"}, "from"),
        ("summary", {"to": "2026-13-01"}, "to"),
        ("summary", {"from": "2026-10-27", "to": "2026-10-24"}, "to"),
        ("summary", {"channel": "x" * 65}, "channel"),
        ("heatmap", {"from": "2026-10-24", "to": "2026-10-24"}, "to"),
        ("timeseries", {"metric": "revenue"}, "metric"),
        ("timeseries", {"interval": "minute"}, "interval"),
        ("timeseries", {"interval": "hour", "from": "2020-01-01", "to": "2026-01-01"}, "interval"),
    ],
)
async def test_bad_parameters_are_400_naming_them(
    client: httpx.AsyncClient, tenant: Tenant, path: str, params: dict[str, str], named: str
) -> None:
    r = await client.get(f"/v1/analytics/{path}", params=params, headers=tenant.auth)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == "invalid_parameter"
    assert body["error"].startswith(f"{named}:")


async def test_analytics_require_a_key(client: httpx.AsyncClient) -> None:
    for path in ("summary", "timeseries", "heatmap"):
        r = await client.get(f"/v1/analytics/{path}")
        assert r.status_code == 401
