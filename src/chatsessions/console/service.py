"""What each console page shows, built from the same service functions as ``/v1``.

Every page's data comes from one function here; the templates only lay it out, and the
CSV downloads of the analytics page write the very tables the page shows.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

from chatsessions.analytics import service as analytics
from chatsessions.channels import service as channels_service
from chatsessions.channels import store as channels_store
from chatsessions.console import store
from chatsessions.contacts import service as contacts_service
from chatsessions.db import Database
from chatsessions.sessions import service as sessions_service
from chatsessions.sessions.schemas import ContactListingQuery, RecentListingQuery
from chatsessions.webhooks import service as webhooks_service
from chatsessions.webhooks import store as webhooks_store

__all__ = [
    "SessionFilters",
    "Table",
    "analytics_view",
    "bucket_sessions_view",
    "close_session",
    "contact_view",
    "contacts_view",
    "conversation_view",
    "sessions_view",
    "webhooks_view",
]

PAGE = 25
LISTING_PAGE = 50
MAX_SCANNED_PAGES = 10
CONTACT_PAGE = 50
MESSAGES_SHOWN = 1000


@dataclass(frozen=True)
class SessionFilters:
    """The sessions page's filters (the listing's, plus channel and a contact search)."""

    hours: int = 24
    status: str | None = None  # "opened" | "closed"
    channel: str | None = None
    search: str | None = None
    cursor: str | None = None

    def matches(self, session: dict[str, Any]) -> bool:
        """Whether a listed session passes the channel filter and the search."""
        if self.channel and (session["channel"] or "").lower() != self.channel.lower():
            return False
        if self.search:
            wanted = self.search.lower()
            name = (session["contact_name"] or "").lower()
            phone = session["contact_phone"] or ""
            # A query without letters is a phone number, matched on its digits.
            digits = "".join(ch for ch in wanted if ch.isdigit())
            by_phone = bool(digits) and not any(ch.isalpha() for ch in wanted)
            if wanted not in name and not (by_phone and digits in phone):
                return False
        return True


def _listing_params(filters: SessionFilters, cursor: str | None) -> RecentListingQuery:
    # Unfiltered, a listing page is a console page; filtered, larger pages are scanned.
    size = LISTING_PAGE if filters.channel or filters.search else PAGE
    raw = {"hours": [str(filters.hours)], "limit": [str(size)]}
    if filters.status:
        raw["status"] = [filters.status]
    if cursor:
        raw["cursor"] = [cursor]
    return RecentListingQuery.from_params(raw)


async def sessions_view(
    db: Database, *, user_id: str, filters: SessionFilters, now_ms: int
) -> dict[str, Any]:
    """A page of the recent listing, newest activity first, after the channel filter and
    the search: listing pages are read along their cursor chain until a page's worth
    matched (or ten pages were read), and ``next_cursor`` goes on from the last one read,
    so paging neither skips nor repeats a session."""
    shown: list[dict[str, Any]] = []
    cursor = filters.cursor
    filtered = bool(filters.channel or filters.search)
    async with db.read() as conn:
        for _ in range(MAX_SCANNED_PAGES):
            page = await sessions_service.list_sessions_page(
                db,
                conn,
                user_id=user_id,
                contact_id=None,
                params=_listing_params(filters, cursor),
                now_ms=now_ms,
            )
            shown.extend(s for s in page["sessions"] if filters.matches(s))
            cursor = page["next_cursor"]
            if cursor is None or not filtered or len(shown) >= PAGE:
                break
    return {"sessions": shown, "next_cursor": cursor}


async def conversation_view(
    db: Database, *, user_id: str, session_id: str, now_ms: int
) -> dict[str, Any]:
    """One session with its messages (oldest first), its contact, the contact's other
    sessions."""
    session = await sessions_service.get_session(
        db, user_id=user_id, session_id=session_id, now_ms=now_ms, message_limit=MESSAGES_SHOWN
    )
    async with db.read() as conn:
        contact = await contacts_service.get_owned_contact(
            conn, user_id=user_id, contact_id=session["contact_id"]
        )
        others = await sessions_service.list_sessions_page(
            db,
            conn,
            user_id=user_id,
            contact_id=contact.id,
            params=ContactListingQuery.from_params({"limit": ["20"]}),
            now_ms=now_ms,
        )
    return {
        "session": session,
        "contact": contacts_service.contact_as_json(contact),
        "others": [s for s in others["sessions"] if s["session_id"] != session_id],
    }


async def close_session(db: Database, *, user_id: str, session_id: str, now_ms: int) -> None:
    """The same close as ``POST /v1/sessions/{sessionId}/close``."""

    async def work(conn: Any) -> dict[str, Any]:
        return await sessions_service.close_session(
            conn, user_id=user_id, session_id=session_id, now_ms=now_ms, message_limit=1
        )

    await db.run_write(work)


async def contacts_view(
    db: Database, *, user_id: str, search: str | None, after: str | None
) -> dict[str, Any]:
    """A page of contacts (by id) matching the search."""
    async with db.read() as conn:
        rows = await store.search_contacts(
            conn, user_id=user_id, search=search, after=after, limit=CONTACT_PAGE + 1
        )
    more = len(rows) > CONTACT_PAGE
    rows = rows[:CONTACT_PAGE]
    return {
        "contacts": [contacts_service.contact_as_json(r) for r in rows],
        "next_after": rows[-1].id if more else None,
    }


async def contact_view(
    db: Database, *, user_id: str, contact_id: str, now_ms: int
) -> dict[str, Any]:
    """One contact and its sessions (newest first)."""
    async with db.read() as conn:
        contact = await contacts_service.get_owned_contact(
            conn, user_id=user_id, contact_id=contact_id
        )
        page = await sessions_service.list_sessions_page(
            db,
            conn,
            user_id=user_id,
            contact_id=contact_id,
            params=ContactListingQuery.from_params({"limit": ["100"]}),
            now_ms=now_ms,
        )
    return {"contact": contacts_service.contact_as_json(contact), "sessions": page["sessions"]}


@dataclass
class Table:
    """A table as shown on a page and as its CSV download."""

    name: str
    caption: str
    headers: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    # Per row, where its first cell leads (the sessions behind it), or None.
    links: list[str | None] = field(default_factory=list)

    def csv(self) -> str:
        """The same headers and cells, as CSV."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(self.headers)
        writer.writerows(["" if v is None else v for v in row] for row in self.rows)
        return out.getvalue()


DISTRIBUTION = (
    ("under 1 min", 0, 60_000),
    ("1–5 min", 60_000, 300_000),
    ("5–15 min", 300_000, 900_000),
    ("15–60 min", 900_000, 3_600_000),
    ("1–4 h", 3_600_000, 14_400_000),
    ("4 h or more", 14_400_000, None),
)


async def analytics_view(db: Database, *, user_id: str, span: analytics.Range) -> dict[str, Any]:
    """The analytics page: the summary's cards, the daily series, the heatmap and the
    first-response distribution, each also as a :class:`Table`."""
    # One snapshot: every table of the page counts the same sessions. The functions are
    # those of /v1/analytics (aggregated by the database on PostgreSQL).
    async with db.read(snapshot=True) as conn:
        summary = await analytics.summary(conn, user_id=user_id, span=span)
        series = {
            metric: await analytics.timeseries(
                conn, user_id=user_id, span=span, metric=metric, interval="day"
            )
            for metric in analytics.METRICS
        }
        heat = await analytics.heatmap(conn, user_id=user_id, span=span)
        bands = await analytics.first_response_bands(
            conn, user_id=user_id, span=span, bounds=[low for _label, low, _high in DISTRIBUTION]
        )
    cards = Table(
        "summary",
        "Summary",
        ["figure", "n", "median (s)", "p90 (s)", "mean (s)"],
        [
            [
                label,
                summary[key]["n"],
                summary[key]["median"],
                summary[key]["p90"],
                summary[key]["mean"],
            ]
            for key, label in (
                ("firstResponse", "first response"),
                ("replyTime", "reply time"),
                ("duration", "duration"),
            )
        ],
    )
    daily = Table(
        "daily",
        "Per day",
        ["day", "sessions", "messages in", "messages out", "first response median (s)", "n"],
    )
    first = series["firstResponseMedian"]["buckets"]
    buckets = series["sessions"]["buckets"]
    for i, bucket in enumerate(buckets):
        day_from = bucket["start"][:10]
        day_to = buckets[i + 1]["start"][:10] if i + 1 < len(buckets) else _next_day(day_from)
        query = {"from": day_from, "to": day_to}
        if span.channel:
            query["channel"] = span.channel
        daily.links.append("/console/analytics/sessions?" + urlencode(query))
        daily.rows.append(
            [
                bucket["start"][:10],
                bucket["value"],
                series["messagesIn"]["buckets"][i]["value"],
                series["messagesOut"]["buckets"][i]["value"],
                first[i]["value"],
                first[i]["n"],
            ]
        )
    heatmap = Table(
        "heatmap",
        "Session starts by weekday and hour",
        ["weekday", *[f"{h:02d}" for h in range(24)]],
        [[day, *heat["cells"][i]] for i, day in enumerate(heat["weekdays"])],
    )
    distribution = Table(
        "first-response",
        "First response distribution",
        ["first response", "sessions"],
        [[label, n] for (label, _low, _high), n in zip(DISTRIBUTION, bands, strict=True)],
    )
    peak = max((max(row) for row in heat["cells"]), default=0)
    heat_rows = [
        {
            "day": day,
            "cells": [
                {"value": v, "level": 0 if not v else 1 + (3 * v) // max(peak, 1)}
                for v in heat["cells"][i]
            ],
        }
        for i, day in enumerate(heat["weekdays"])
    ]
    return {
        "summary": summary,
        "heat_rows": heat_rows,
        "tables": {t.name: t for t in (cards, daily, heatmap, distribution)},
        "chart": {
            "days": [b["startUtc"] for b in series["sessions"]["buckets"]],
            "labels": [row[0] for row in daily.rows],
            "sessions": [row[1] for row in daily.rows],
        },
    }


def _next_day(day: str) -> str:
    return (date.fromisoformat(day) + timedelta(days=1)).isoformat()


BUCKET_SESSIONS_SHOWN = 200


async def bucket_sessions_view(
    db: Database, *, user_id: str, span: analytics.Range, now_ms: int
) -> dict[str, Any]:
    """The sessions that start in a range (a chart bucket's), oldest first, at most 200."""
    async with db.read() as conn:
        rows = await store.sessions_starting(
            conn,
            user_id=user_id,
            from_ms=span.from_ms,
            to_ms=span.to_ms,
            channel=span.channel,
            limit=BUCKET_SESSIONS_SHOWN + 1,
        )
    return {
        "sessions": [
            sessions_service.listed_row_as_json(r, now_ms=now_ms)
            for r in rows[:BUCKET_SESSIONS_SHOWN]
        ],
        "more": len(rows) > BUCKET_SESSIONS_SHOWN,
    }


async def webhooks_view(db: Database, *, user_id: str) -> dict[str, Any]:
    """Each channel with its counters and webhook path (secrets masked, as the API shows
    them), and each webhook endpoint with its ten most recent deliveries."""
    secret = await db.signing_secret()
    box = channels_service.vault_of(db.settings)
    out = []
    async with db.read(snapshot=True) as conn:
        rows = await channels_store.list_channels(conn, user_id)
        counts = (
            await channels_store.read_counts(conn, user_id, [r.id for r in rows]) if rows else {}
        )
        channels = [channels_service.channel_as_json(r, counts[r.id], box) for r in rows]
        for endpoint in await webhooks_store.list_endpoints(conn, user_id):
            page = await webhooks_service.deliveries_page(
                conn,
                user_id=user_id,
                endpoint_id=endpoint.id,
                limit=10,
                cursor=None,
                secret=secret,
                default_limit=10,
            )
            out.append(
                {
                    "endpoint": webhooks_service.endpoint_as_json(endpoint),
                    "deliveries": page["data"],
                }
            )
    return {"channels": channels, "webhooks": out}
