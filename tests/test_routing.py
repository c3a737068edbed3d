"""Routing: a literal path always wins over a parameter path, for the router and for the
hot routes served ahead of it (web.HotRoutes), whatever order routes are added in."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response

from chatsessions.app import create_app
from chatsessions.config import Settings
from chatsessions.db import Database
from chatsessions.sessions import api as sessions_api
from chatsessions.web import DomainRouter, json_response, shadowed_routes
from tests.conftest import FakeClock, Tenant
from tests.factories import make_contact


async def _export(_request: Request) -> Response:
    return json_response({"success": True, "served_by": "literal"})


@pytest.fixture
def literal_route_added_later() -> Iterator[None]:
    """``GET /v1/chat-sessions/export`` added to the sessions domain after its
    ``{contactId}`` listing (as a later change would add it), removed afterwards."""
    router = sessions_api.router
    before = list(router.routes)
    router.add_api_route("/chat-sessions/export", _export, methods=["GET"])
    try:
        yield
    finally:
        router.routes[:] = before
        router.add_api_route("/chat-sessions/export", _export, methods=["GET"])
        router.routes[:] = before  # the add bumped FastAPI's route cache; now drop it again


async def test_a_literal_route_added_later_is_served(
    literal_route_added_later: None,
    backend_settings: Settings,
    database: Database,
    tenant: Tenant,
) -> None:
    app = create_app(backend_settings, clock=FakeClock(), database=database)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        r = await client.get("/v1/chat-sessions/export", headers=tenant.auth)
        assert r.status_code == 200 and r.json()["served_by"] == "literal", r.text
        # The hot listings still serve everything else.
        contact = await make_contact(client, tenant.auth)
        r = await client.get(f"/v1/chat-sessions/{contact}", headers=tenant.auth)
        assert r.status_code == 200 and r.json()["count"] == 0, r.text
        r = await client.get("/v1/chat-sessions/recent?hours=1", headers=tenant.auth)
        assert r.status_code == 200 and "sessions" in r.json(), r.text


def test_a_route_shadowed_across_domains_is_reported() -> None:
    first, second = DomainRouter(prefix="/v1"), DomainRouter(prefix="/v1")
    first.add_api_route("/things/{thingId}", _export, methods=["GET"])
    second.add_api_route("/things/special", _export, methods=["GET"])
    second.add_api_route("/things/{thingId}", _export, methods=["POST"])  # another method
    app = FastAPI()
    app.include_router(first)
    app.include_router(second)
    assert shadowed_routes(app.router.routes) == [("/v1/things/special", "/v1/things/{thingId}")]


def test_within_a_domain_literal_routes_move_ahead() -> None:
    router = DomainRouter(prefix="/v1")
    router.add_api_route("/things/{thingId}", _export, methods=["GET"])
    router.add_api_route("/things/{thingId}/parts", _export, methods=["GET"])
    router.add_api_route("/things/special", _export, methods=["GET"])
    paths = [getattr(r, "path", "") for r in router.routes]
    assert paths == ["/v1/things/special", "/v1/things/{thingId}", "/v1/things/{thingId}/parts"]
    assert shadowed_routes(router.routes) == []


def test_the_app_has_no_shadowed_route() -> None:
    app = create_app(Settings(database_url="sqlite:////tmp/unused-routing.db", secret_key="k"))
    assert shadowed_routes(app.router.routes) == []
