"""HTTP plumbing shared by every domain's routes: dependencies, parameters, bodies, JSON.

Routes stay thin: they parse with these helpers, call a service, and return
:func:`json_response`. Every failure raised here is a :mod:`chatsessions.errors` error
naming the parameter, mapped to the JSON error shape in one place (``app.py``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import Depends, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import AfterValidator, BaseModel, TypeAdapter, ValidationError
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from chatsessions.db import Database
from chatsessions.errors import InvalidParameter, PayloadTooLarge
from chatsessions.timeutil import Clock

__all__ = [
    "DB",
    "ClockDep",
    "HotRoutes",
    "NoNulStr",
    "RequestOnlyRoute",
    "json_response",
    "parse_bool",
    "parse_positive_int",
    "path_parameter",
    "query_parameter",
    "read_json_body",
    "validate_body",
]

M = TypeVar("M", bound=BaseModel)
_DIGITS = re.compile(r"[0-9]+")  # used with fullmatch: "5\n" is not plain digits


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


class HotRoutes:
    """ASGI middleware serving a few hot :class:`RequestOnlyRoute` routes before FastAPI's
    exception middleware, exit stack and router: about a tenth of the CPU of a listing
    request (callgrind: 0.34 M instructions of a 1.19 M one-session page).

    A request the route matches fully (path and method) goes to its endpoint, matched by
    the route itself (``route.matches``, so paths, parameters and the ``route`` scope key
    are the router's); an error of ``error_type`` the endpoint raises gets the app's own
    handler for it, and any other error propagates as it would from the router. Every
    other request (another path, a method the route does not allow) passes through.
    Installed inside the app's outer middleware, which sees these requests as any other.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: Sequence[APIRoute],
        error_type: type[Exception],
        on_error: ErrorHandler,
    ) -> None:
        self.app = app
        self.routes = list(routes)
        self.error_type = error_type
        self.on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a hot route, or pass the request on."""
        if scope["type"] == "http":
            for route in self.routes:
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
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


def query_parameter(name: str, description: str) -> dict[str, Any]:
    """An optional query parameter as the OpenAPI document declares it, for a route that
    parses its query by hand (``app.py`` gives the typed ones their real schema)."""
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": description,
    }


def path_parameter(name: str) -> dict[str, Any]:
    """A path parameter as the OpenAPI document declares it (read from ``path_params``)."""
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def query_value(params: Mapping[str, str], name: str) -> str | None:
    """A query parameter's value; given empty counts as absent."""
    value = params.get(name)
    if value is None or value == "":
        return None
    return value


def parse_positive_int(
    params: Mapping[str, str],
    name: str,
    *,
    default: int | None,
    cap: int | None = None,
) -> int | None:
    """A plain-decimal integer ≥ 1 (``1e3``, ``0x10``, ``+5``, ``-1``, ``0`` are refused).

    Values above ``cap`` count as ``cap``.
    """
    raw = query_value(params, name)
    if raw is None:
        return default
    if not _DIGITS.fullmatch(raw):
        raise InvalidParameter(
            name, f"must be a whole number ≥ 1 in plain digits, got {raw[:40]!r}"
        )
    digits = raw.lstrip("0")  # int() refuses over 4,300 digits, leading zeros included
    if not digits:
        raise InvalidParameter(name, f"must be ≥ 1, got {raw[:40]!r}")
    if cap is not None and len(digits) > len(str(cap)):
        return cap
    if len(digits) > 4000:
        raise InvalidParameter(name, "is too large")
    value = int(digits)
    return min(value, cap) if cap is not None else value


def parse_bool(params: Mapping[str, str], name: str, *, default: bool) -> bool:
    """``true/false/1/0`` in any case."""
    raw = query_value(params, name)
    if raw is None:
        return default
    lowered = raw.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise InvalidParameter(name, f"must be true, false, 1 or 0, got {raw[:40]!r}")


async def read_json_body(request: Request, *, limit: int) -> Any:
    """Read and parse the body as JSON whatever the Content-Type says, within ``limit`` bytes."""
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
    body = b"".join(chunks)
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
