"""Routes of the conversation analytics: summary, time series and heatmap of the sessions
that start in a range (docs/analytics.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.responses import Response

from chatsessions.analytics import service
from chatsessions.analytics.schemas import HeatmapQuery, SummaryQuery, TimeseriesQuery
from chatsessions.auth.api import CurrentUser
from chatsessions.web import DB, ClockDep, DomainRouter, json_response

__all__ = ["router"]

router = DomainRouter(prefix="/v1/analytics", tags=["analytics"])


@router.get(
    "/summary",
    summary="Counts, first response, reply time and duration of the sessions in a range",
    operation_id="getAnalyticsSummary",
    openapi_extra=SummaryQuery.openapi(),
)
async def get_summary(
    caller: CurrentUser,
    db: DB,
    clock: ClockDep,
    query: Annotated[SummaryQuery, Depends(SummaryQuery.from_request)],
) -> Response:
    """Sessions that start in `[from, to)`: counts, and `n`, `median`, `p90`, `mean` (seconds)
    of first response, reply time and duration."""
    span = service.resolve_range(query, now_ms=clock())
    async with db.read() as conn:
        data = await service.summary(conn, user_id=caller.user_id, span=span)
    return json_response({"success": True, "data": data})


@router.get(
    "/timeseries",
    summary="One metric per hour, day or week (in `tz`) of the sessions in a range",
    operation_id="getAnalyticsTimeseries",
    openapi_extra=TimeseriesQuery.openapi(),
)
async def get_timeseries(
    caller: CurrentUser,
    db: DB,
    clock: ClockDep,
    query: Annotated[TimeseriesQuery, Depends(TimeseriesQuery.from_request)],
) -> Response:
    """Buckets are calendar hours, days or ISO weeks of `tz`, correct across daylight saving."""
    span = service.resolve_range(query, now_ms=clock())
    metric, interval = service.timeseries_choice(query)
    async with db.read() as conn:
        data = await service.timeseries(
            conn, user_id=caller.user_id, span=span, metric=metric, interval=interval
        )
    return json_response({"success": True, "data": data})


@router.get(
    "/heatmap",
    summary="Session starts by weekday and hour (in `tz`)",
    operation_id="getAnalyticsHeatmap",
    openapi_extra=HeatmapQuery.openapi(),
)
async def get_heatmap(
    caller: CurrentUser,
    db: DB,
    clock: ClockDep,
    query: Annotated[HeatmapQuery, Depends(HeatmapQuery.from_request)],
) -> Response:
    """A 7 × 24 table of session starts: `cells[weekday][hour]`, Monday first."""
    span = service.resolve_range(query, now_ms=clock())
    async with db.read() as conn:
        data = await service.heatmap(conn, user_id=caller.user_id, span=span)
    return json_response({"success": True, "data": data})
