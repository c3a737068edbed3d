"""The application factory: routes, error mapping, middleware, lifespan."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatsessions import __version__
from chatsessions.analytics.api import router as analytics_router
from chatsessions.auth.api import AuthFailureThrottle
from chatsessions.channels.api import HOT_ROUTES as HOT_CHANNEL_ROUTES
from chatsessions.channels.api import router as channels_router
from chatsessions.config import Settings, get_settings
from chatsessions.console import pages as console_pages
from chatsessions.contacts.api import router as contacts_router
from chatsessions.db import Database, is_unavailable
from chatsessions.errors import (
    ChatSessionsError,
    InvalidParameter,
    MethodNotAllowed,
    NotFound,
    Unavailable,
)
from chatsessions.exports.api import router as exports_router
from chatsessions.imports.api import router as imports_router
from chatsessions.logging_setup import configure_logging, mask
from chatsessions.messages.api import HOT_ROUTES as HOT_INGEST_ROUTES
from chatsessions.messages.api import router as messages_router
from chatsessions.messages.group_commit import GroupCommit
from chatsessions.ops.api import IN_FLIGHT, LATENCY, REQUESTS
from chatsessions.ops.api import router as ops_router
from chatsessions.ratelimit import RateLimiter
from chatsessions.sessions.api import HOT_ROUTES as HOT_LISTING_ROUTES
from chatsessions.sessions.api import router as sessions_router
from chatsessions.settings.api import router as settings_router
from chatsessions.timeutil import Clock, system_clock
from chatsessions.web import HotRoutes, format_loc, json_response, shadowed_routes
from chatsessions.webhooks import worker as webhooks_worker
from chatsessions.webhooks.api import router as webhooks_router

__all__ = ["GC_THRESHOLDS", "create_app", "create_served_app", "freeze_startup_objects"]

log = logging.getLogger("chatsessions")


def _error_response(exc: ChatSessionsError) -> Response:
    return json_response(exc.body(), exc.status_code, headers=exc.headers)


class SecurityHeaders:
    """Adds ``X-Content-Type-Options: nosniff``; counts requests (and those in flight) for
    /metrics."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        IN_FLIGHT.inc()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-content-type-options", b"nosniff"))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            IN_FLIGHT.dec()
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            REQUESTS.labels(scope["method"], path, str(status)).inc()
            LATENCY.labels(scope["method"], path).observe(time.perf_counter() - started)


GC_THRESHOLDS = (50_000, 20, 100)
"""The garbage collector's thresholds in a serving process (CPython's: 700, 10, 10)."""


def freeze_startup_objects() -> None:
    """Move every object alive after start-up (modules, the app, its routes and models:
    several hundred thousand) out of the garbage collector's sight, and make its passes
    over young objects rarer (:data:`GC_THRESHOLDS`).

    A full collection walks every tracked object: with those it took 50-60 ms, every few
    seconds under load, and the requests in flight (a whole group of ingest, see
    ``messages.group_commit``) waited for it (the tail of the channel bench,
    docs/performance.md). They live as long as the process, so nothing is lost by never
    collecting them.

    A request's objects are freed by their reference counts as it ends; the collector
    only finds cycles. At CPython's thresholds it still ran ~50 young and ~4 middle passes
    per 1,000-message batch, 15 ms of ~98 ms of CPU (shape a of bench/ingest_shapes.py; b:
    7.5 of 58 ms). Every 50,000 net allocations it runs about once per batch, and cyclic
    garbage waits at most that long.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def create_served_app() -> FastAPI:
    """The application ``chatsessions serve`` runs (uvicorn's factory): ``create_app``
    that freezes its start-up objects (:func:`freeze_startup_objects`) once started. Not
    for tests, whose many apps come and go in one process."""
    app = create_app()
    app.state.freeze_startup_objects = True
    return app


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock = system_clock,
    database: Database | None = None,
) -> FastAPI:
    """Build the ASGI app. Tests pass their own settings, clock and database."""
    settings = settings or get_settings()
    configure_logging(settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        background = webhooks_worker.Background(app.state.db, clock=clock)
        await background.start()  # webhook delivery and silence sweeps, in every process
        if app.state.freeze_startup_objects:
            freeze_startup_objects()
        yield
        await background.stop()
        if database is None:
            await app.state.db.dispose()

    app = FastAPI(
        title="chatsessions",
        version=__version__,
        summary="Chat sessions API, wire-compatible with DM Champ's v1 Chat Sessions API",
        docs_url="/docs" if settings.docs_enabled else None,
        redoc_url=None,
        openapi_url="/openapi.json" if settings.docs_enabled else None,
        lifespan=lifespan,
    )
    # "/v1/chat-sessions/recent/" is a JSON 404, not a body-less redirect.
    app.router.redirect_slashes = False
    app.state.settings = settings
    app.state.clock = clock
    app.state.freeze_startup_objects = False
    app.state.db = database or Database(settings)
    # Concurrent single messages and channel deliveries of a tenant share a transaction.
    app.state.group_commit = GroupCommit(app.state.db)
    app.state.auth_throttle = AuthFailureThrottle(settings.auth_failure_limit)
    app.state.rate_limiter = (
        RateLimiter(settings.rate_limit, db=app.state.db, redis_url=settings.redis_url)
        if settings.rate_limit
        else None
    )

    for router in (ops_router, sessions_router, messages_router, contacts_router, settings_router):
        app.include_router(router)
    app.include_router(exports_router)
    app.include_router(webhooks_router)
    app.include_router(channels_router)
    app.include_router(imports_router)
    app.include_router(analytics_router)
    console_pages.install(app)
    if shadowed := shadowed_routes(app.router.routes):
        # Within a domain the router orders literal paths first (web.DomainRouter); across
        # domains the include order decides, so a clash is a mistake to fix at once.
        raise RuntimeError(f"routes shadowed by an earlier route (path, by): {shadowed}")
    _install_error_handlers(app)
    # Innermost of our middleware (added first): SecurityHeaders and CORS see the hot
    # routes' requests as any other.
    app.add_middleware(
        HotRoutes,
        router=app.router,
        hot=[*HOT_LISTING_ROUTES, *HOT_INGEST_ROUTES, *HOT_CHANNEL_ROUTES],
        error_type=ChatSessionsError,
        on_error=_known_error,
    )
    app.add_middleware(SecurityHeaders)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
        )
    _install_openapi(app)
    return app


async def _known_error(_request: Request, exc: Exception) -> Response:
    """The JSON error of one of our errors (:mod:`chatsessions.errors`)."""
    assert isinstance(exc, ChatSessionsError)
    return _error_response(exc)


def _install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ChatSessionsError, _known_error)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = tuple(p for p in first.get("loc", ()) if p not in ("query", "path", "body", "header"))
        return _error_response(InvalidParameter(format_loc(loc), str(first.get("msg"))))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return _error_response(NotFound("no such endpoint"))
        if exc.status_code == 405:
            not_allowed = MethodNotAllowed("method not allowed on this endpoint")
            not_allowed.headers = dict(exc.headers or {})  # Allow: the methods that are
            return _error_response(not_allowed)
        err = ChatSessionsError(str(exc.detail))
        return json_response(
            {**err.body(), "code": "invalid_parameter" if exc.status_code < 500 else "internal"},
            exc.status_code,
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        # Starlette runs this handler in its outermost middleware, outside SecurityHeaders:
        # the header that middleware adds to every other response is set here.
        if is_unavailable(exc):
            log.warning("database unavailable: %s", mask(type(exc).__name__))
            response = _error_response(Unavailable("the database is unreachable; retry shortly"))
        else:
            log.error(
                "unhandled error on %s %s: %s",
                request.method,
                mask(request.url.path),
                type(exc).__name__,
                exc_info=exc,
            )
            response = _error_response(ChatSessionsError("internal error"))
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def _install_openapi(app: FastAPI) -> None:
    def custom_openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            routes=app.routes,
            servers=[{"url": "/", "description": "this server; the API base URL is <host>/v1"}],
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        # Request bodies are inlined (parsed by hand): lift their $defs into components.
        for path_item in schema.get("paths", {}).values():
            for op in path_item.values():
                body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
                inline = body.get("schema")
                if isinstance(inline, dict) and "$defs" in inline:
                    components.update(inline.pop("$defs"))
        components["Error"] = {
            "type": "object",
            "required": ["success", "error", "code"],
            "properties": {
                "success": {"type": "boolean", "const": False},
                "error": {"type": "string", "description": "what is wrong, naming the parameter"},
                "code": {
                    "type": "string",
                    "enum": [
                        "invalid_parameter",
                        "unauthorized",
                        "not_found",
                        "method_not_allowed",
                        "conflict",
                        "payload_too_large",
                        "rate_limited",
                        "internal",
                        "unavailable",
                    ],
                },
            },
        }
        error_ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        described = {
            "400": "Invalid parameter or body (names the parameter)",
            "401": "Missing or invalid credentials",
            "404": "Not found (or not the caller's)",
            "409": "Conflict (e.g. a duplicate contact)",
            "413": "Body over the limit",
            "429": "Rate limited (see Retry-After)",
            "500": "Internal error (no internals disclosed)",
            "503": "Database unreachable",
        }
        for path, path_item in schema.get("paths", {}).items():
            for op in path_item.values():
                responses = op.setdefault("responses", {})
                responses.pop("422", None)  # validation failures are 400, never 422
                for code, text in described.items():
                    if not path.startswith("/v1") and code not in ("500", "503"):
                        continue
                    responses.setdefault(code, {"description": text, "content": error_ref})
        schema.setdefault("components", {})["securitySchemes"] = {
            "ApiKeyQuery": {"type": "apiKey", "in": "query", "name": "apiKey"},
            "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            "Bearer": {"type": "http", "scheme": "bearer"},
        }
        schema["security"] = [{"ApiKeyQuery": []}, {"ApiKeyHeader": []}, {"Bearer": []}]
        app.openapi_schema = schema
        return schema

    app.openapi = custom_openapi  # type: ignore[method-assign]
