"""Operational endpoints: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

import hmac

from fastapi import Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from chatsessions.errors import Unauthorized
from chatsessions.web import DB, DomainRouter, json_response

router = DomainRouter(tags=["operations"])

REQUESTS = Counter(
    "chatsessions_http_requests_total", "HTTP requests", ["method", "route", "status"]
)
IN_FLIGHT = Gauge(
    "chatsessions_http_requests_in_flight",
    "HTTP requests being served now (this one included); a graceful shutdown waits for them",
)
LATENCY = Histogram(
    "chatsessions_http_request_duration_seconds",
    "HTTP request duration",
    ["method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


@router.get("/healthz", summary="Liveness", operation_id="getHealth")
async def healthz() -> Response:
    """The process is up."""
    return json_response({"success": True, "status": "ok"})


@router.get("/readyz", summary="Readiness (database reachable)", operation_id="getReadiness")
async def readyz(db: DB) -> Response:
    """200 when the database answers, 503 otherwise."""
    try:
        await db.ping()
    except Exception:
        return json_response(
            {"success": False, "error": "database unreachable", "code": "unavailable"}, 503
        )
    return json_response({"success": True, "status": "ready", "database": db.dialect})


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    operation_id="getMetrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request) -> Response:
    """Prometheus text format; needs the metrics token when one is configured."""
    token = request.app.state.settings.metrics_token
    if token:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise Unauthorized()
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
