"""HTTP plumbing shared by every domain's routes: dependencies, parameters, bodies, JSON.

Routes stay thin: they parse with these helpers, call a service, and return
:func:`json_response`. Every failure raised here is a :mod:`chatsessions.errors` error
naming the parameter, mapped to the JSON error shape in one place (``app.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import AfterValidator, BaseModel, TypeAdapter, ValidationError
from starlette.routing import BaseRoute, Match, Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from chatsessions.db import Database
from chatsessions.errors import InvalidParameter, PayloadTooLarge
from chatsessions.timeutil import Clock

__all__ = [
    "DB",
    "ClockDep",
    "DomainRouter",
    "HotRoutes",
    "NoNulStr",
    "RequestOnlyRoute",
    "flattened_routes",
    "json_response",
    "literal_routes_first",
    "path_parameter",
    "read_json_body",
    "shadowed_routes",
    "validate_body",
]

M = TypeVar("M", bound=BaseModel)


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    return value


NoNulStr = Annotated[str, AfterValidator(_no_nul)]
"""A string without NUL characters (PostgreSQL cannot store them; both backends agree)."""


# Dependencies are ``async def``: FastAPI runs a plain ``def`` dependency in a worker
# thread, a thread hop per request for a one-line lookup (8% of a listing's CPU).
async def get_db(request: Request) -> Database:
    """The process's database handle."""
    db: Database = request.app.state.db
    return db


async def get_clock(request: Request) -> Clock:
    """The injected clock (epoch ms)."""
    clock: Clock = request.app.state.clock
    return clock


DB = Annotated[Database, Depends(get_db)]
ClockDep = Annotated[Clock, Depends(get_clock)]


def json_response(
    content: Any, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """Serialise with orjson (fast, exact) into a JSON response."""
    return Response(
        orjson.dumps(content),
        status_code=status_code,
        media_type="application/json",
        headers=dict(headers) if headers else None,
    )


class RequestOnlyRoute(APIRoute):
    """A route whose endpoint takes the ``Request`` alone and returns a ``Response``.

    FastAPI's request handler (dependency solving, parameter validation, response
    serialisation) is skipped: about a quarter of the CPU of a listing request. For the
    hottest read routes, which authenticate and parse their query themselves; their
    parameters are declared with ``openapi_extra`` and their body with
    ``response_model``, so the OpenAPI document is the same. Errors raised by the
    endpoint reach the app's handlers as from any route.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The endpoint itself."""
        endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            response: Response = await endpoint(request)
            return response

        return handler


ErrorHandler = Callable[[Request, Exception], Coroutine[Any, Any, Response]]


def _segments(path: str) -> list[str | None]:
    """A path template's segments, ``None`` for a parameter."""
    return [None if seg.startswith("{") else seg for seg in path.strip("/").split("/")]


def _shadows(earlier: BaseRoute, later: BaseRoute) -> bool:
    """Whether ``earlier``, matched first, would take requests meant for ``later``, a more
    literal route: the same segments, each equal or a parameter of ``earlier``."""
    if not isinstance(earlier, Route | APIRoute) or not isinstance(later, Route | APIRoute):
        return False
    if earlier.methods and later.methods and not (earlier.methods & later.methods):
        return False
    a, b = _segments(earlier.path), _segments(later.path)
    if len(a) != len(b) or a == b:
        return False
    return all(x is None or x == y for x, y in zip(a, b, strict=True)) and b.count(None) < a.count(
        None
    )


def literal_routes_first(routes: list[BaseRoute]) -> None:
    """Reorder ``routes`` in place so that no route is shadowed by a parameter route
    registered before it (``/v1/chat-sessions/export`` before ``/v1/chat-sessions/{id}``),
    keeping the order of every other pair."""
    i = 0
    while i < len(routes):
        for j in range(i):
            if _shadows(routes[j], routes[i]):
                routes.insert(j, routes.pop(i))
                break
        i += 1


def flattened_routes(routes: Sequence[BaseRoute]) -> list[BaseRoute]:
    """Every route in the order the app's router tries them (included routers expanded)."""
    out: list[BaseRoute] = []
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            out.extend(flattened_routes(included.routes))
        else:
            out.append(route)
    return out


def shadowed_routes(routes: Sequence[BaseRoute]) -> list[tuple[str, str]]:
    """``(shadowed, by)`` paths of routes that an earlier route would always take."""
    flat = flattened_routes(routes)
    return [
        (getattr(later, "path", "?"), getattr(earlier, "path", "?"))
        for i, later in enumerate(flat)
        for earlier in flat[:i]
        if _shadows(earlier, later)
    ]


class DomainRouter(APIRouter):
    """The router of one domain (``sessions/api.py``, …). A more literal path matches first
    whatever the order routes are added in: ``GET /v1/chat-sessions/export`` added after
    ``GET /v1/chat-sessions/{contactId}`` is still served. (Across domains the app checks
    at start-up that no route is shadowed, see ``app.py``.)"""

    def add_api_route(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        """Add the route, then move it ahead of any parameter route that would take it."""
        super().add_api_route(path, endpoint, **kwargs)
        literal_routes_first(self.routes)


class HotRoutes:
    """ASGI middleware serving a few hot :class:`RequestOnlyRoute` routes before FastAPI's
    exception middleware, exit stack and router: about a tenth of the CPU of a listing
    request (callgrind: 0.34 M instructions of a 1.19 M one-session page).

    A request the route matches fully (path and method) goes to its endpoint, matched by
    the route itself (``route.matches``, so paths, parameters and the ``route`` scope key
    are the router's); an error of ``error_type`` the endpoint raises gets the app's own
    handler for it, and any other error propagates as it would from the router. Every
    other request (another path, a method the route does not allow) passes through, and so
    does one that a route ahead of the hot route in the router's order matches too: a hot
    route never shadows a route the router would have chosen. Installed inside the app's
    outer middleware, which sees these requests as any other; built when the app serves
    its first request, once every route is registered.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        router: Router,
        hot: Sequence[APIRoute],
        error_type: type[Exception],
        on_error: ErrorHandler,
    ) -> None:
        self.app = app
        routes = flattened_routes(router.routes)

        def position(hot_route: APIRoute) -> int:
            # The router's own route object, or its copy (older FastAPI copied on include).
            return next(
                i
                for i, r in enumerate(routes)
                if r is hot_route
                or (
                    isinstance(r, APIRoute)
                    and (r.path, r.methods, r.endpoint)
                    == (hot_route.path, hot_route.methods, hot_route.endpoint)
                )
            )

        # Each hot route with the routes ahead of it that could match the same requests.
        self.routes = [
            (route, [r for r in routes[:at] if _shadows(route, r)])
            for at, route in sorted((position(h), h) for h in hot)
        ]
        self.error_type = error_type
        self.on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a hot route, or pass the request on."""
        if scope["type"] == "http":
            for route, ahead in self.routes:
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    if any(r.matches(scope)[0] is Match.FULL for r in ahead):
                        break  # the router's choice
                    scope.update(child_scope)
                    request = Request(scope, receive, send)
                    try:
                        response: Response = await route.endpoint(request)
                    except Exception as exc:
                        if not isinstance(exc, self.error_type):
                            raise
                        response = await self.on_error(request, exc)
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def path_parameter(name: str) -> dict[str, Any]:
    """A path parameter as the OpenAPI document declares it (read from ``path_params``)."""
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


async def read_json_body(request: Request, *, limit: int) -> Any:
    """Read and parse the body as JSON whatever the Content-Type says, within ``limit`` bytes."""
    return parse_json_body(await read_body(request, limit=limit))


async def read_body(request: Request, *, limit: int) -> bytes:
    """The body's bytes, or 413 past ``limit`` bytes (declared or read)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json_body(body: bytes) -> Any:
    """A body parsed as JSON, or 400 naming ``body``."""
    if not body.strip():
        raise InvalidParameter("body", "a JSON object is required")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidParameter("body", f"is not valid JSON ({exc.msg})") from None


def format_loc(loc: tuple[int | str, ...], prefix: str = "") -> str:
    """``("messages", 3, "direction")`` → ``messages[3].direction``."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part:
            out += f".{part}" if out else str(part)
    return out or "body"


def validate_body(model: type[M], data: Any, *, prefix: str = "") -> M:
    """Validate parsed JSON against ``model``; the first error becomes a 400 naming the field."""
    if not isinstance(data, dict):
        raise InvalidParameter(prefix or "body", "must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_from_validation(exc, prefix) from None


def invalid_from_validation(exc: ValidationError, prefix: str = "") -> InvalidParameter:
    """The first pydantic error as an :class:`InvalidParameter` naming the field."""
    first = exc.errors(include_url=False)[0]
    loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    msg = str(first["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return InvalidParameter(format_loc(loc, prefix), msg)


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    """An inline OpenAPI request body for ``model`` (bodies are parsed by hand, see above)."""
    schema = TypeAdapter(model).json_schema(ref_template="#/components/schemas/{model}")
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    }
