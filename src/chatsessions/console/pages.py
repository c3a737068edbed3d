"""The console's routes (HTML; kept out of the OpenAPI document). Each page signs the
operator in from the cookie, calls one function of :mod:`chatsessions.console.service`
(the same services as ``/v1``, in process) and renders a template."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlencode
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from chatsessions.analytics import service as analytics
from chatsessions.analytics.schemas import RangeQuery, Zone
from chatsessions.auth.api import AuthFailureThrottle, client_address
from chatsessions.console import auth, service
from chatsessions.console.render import HEADERS, STATIC_DIR, page
from chatsessions.db import Database
from chatsessions.errors import ChatSessionsError, InvalidParameter, NotFound, Unauthorized
from chatsessions.queryparams import PositiveInt
from chatsessions.web import DomainRouter

__all__ = ["install", "router"]

router = DomainRouter(prefix="/console", include_in_schema=False)
FORM_LIMIT = 16 * 1024
THEMES = ("system", "light", "dark")
TZ_COOKIE, THEME_COOKIE = "cs_tz", "cs_theme"
_ZONE = Zone()
UTC = ZoneInfo("UTC")


def install(app: FastAPI) -> None:
    """Route the console and serve its static files (vendored; nothing from a CDN)."""
    app.include_router(router)
    app.mount("/console/static", StaticFiles(directory=STATIC_DIR), name="console-static")


def _state(request: Request) -> tuple[Database, Callable[[], int]]:
    return request.app.state.db, request.app.state.clock


def _zone(request: Request) -> ZoneInfo:
    try:
        return _ZONE.parse(request.cookies.get(TZ_COOKIE) or "UTC")
    except ValueError:
        return UTC


def _theme(request: Request) -> str:
    theme = request.cookies.get(THEME_COOKIE, "system")
    return theme if theme in THEMES else "system"


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=HEADERS)


async def _form(request: Request) -> dict[str, str]:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_LIMIT:
            raise InvalidParameter("body", "form is too large")
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items()}


async def _signed_in(request: Request) -> auth.SignedIn | None:
    db, clock = _state(request)
    secret = await db.signing_secret()
    async with db.read() as conn:
        return await auth.resolve_cookie(
            conn, secret=secret, cookie=request.cookies.get(auth.COOKIE), now_ms=clock()
        )


def _context(
    request: Request, user: auth.SignedIn | None, nav: str, **extra: Any
) -> dict[str, Any]:
    zone = _zone(request)
    return {
        "user": user,
        "csrf": user.csrf if user else None,
        "tz": zone,
        "theme": _theme(request),
        "now_ms": _state(request)[1](),
        "nav": nav,
        "here": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        **extra,
    }


Handler = Callable[[Request, auth.SignedIn], Awaitable[Response]]


async def _guarded(request: Request, nav: str, handler: Handler) -> Response:
    """Sign-in required; errors become an HTML page with the error's status."""
    user = await _signed_in(request)
    if user is None:
        return _redirect("/console/sign-in")
    try:
        return await handler(request, user)
    except ChatSessionsError as exc:
        return page(
            "error.html",
            _context(request, user, nav, status=exc.status_code, message=exc.message),
            status_code=exc.status_code,
        )


async def _check_csrf(request: Request, user: auth.SignedIn, form: dict[str, str]) -> None:
    secret = await _state(request)[0].signing_secret()
    if not auth.valid_csrf(secret, "session", user.token, form.get("csrf")):
        raise _CsrfRefused()


class _CsrfRefused(ChatSessionsError):
    status_code = 403
    code = "forbidden"

    def __init__(self) -> None:
        super().__init__("the form has expired or did not come from this console; reload and retry")


@router.get("", operation_id="consoleHome")
async def home(request: Request) -> Response:
    """The sessions page, or the sign-in page."""
    user = await _signed_in(request)
    return _redirect("/console/sessions" if user else "/console/sign-in")


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


@router.get("/sign-in", operation_id="consoleSignInForm")
async def sign_in_form(request: Request) -> Response:
    """The sign-in form, with a CSRF token bound to a fresh pre-sign-in cookie."""
    secret = await _state(request)[0].signing_secret()
    pre = request.cookies.get(auth.PRE_COOKIE) or auth.new_pre_token()
    response = page(
        "sign_in.html",
        _context(request, None, "sign-in", form_csrf=auth.csrf_token(secret, "sign-in", pre)),
    )
    response.set_cookie(
        auth.PRE_COOKIE,
        pre,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/console",
    )
    return response


@router.post("/sign-in", operation_id="consoleSignIn")
async def sign_in(request: Request) -> Response:
    """Check the API key (throttled like the API's authentication) and set the cookie."""
    db, clock = _state(request)
    throttle: AuthFailureThrottle = request.app.state.auth_throttle
    address = client_address(request, request.app.state.settings)
    secret = await db.signing_secret()
    form = await _form(request)
    pre = request.cookies.get(auth.PRE_COOKIE)
    error, status, retry = None, 200, None
    if pre is None or not auth.valid_csrf(secret, "sign-in", pre, form.get("csrf")):
        error, status = "The form has expired; please sign in again.", 403
    elif (retry := throttle.retry_after(address)) is not None:
        error, status = f"Too many failed attempts; try again in {retry} s.", 429
    else:
        try:
            token = await auth.sign_in(db, api_key=form.get("apiKey", ""), now_ms=clock())
        except Unauthorized:
            throttle.record_failure(address)
            error, status = "That API key is not valid.", 401
        else:
            done = _redirect("/console/sessions")
            done.set_cookie(
                auth.COOKIE,
                auth.cookie_value(secret, token),
                max_age=auth.LIFETIME_MS // 1000,
                httponly=True,
                samesite="strict",
                secure=_secure(request),
                path="/console",
            )
            done.delete_cookie(auth.PRE_COOKIE, path="/console")
            return done
    pre = pre or auth.new_pre_token()
    response = page(
        "sign_in.html",
        _context(
            request, None, "sign-in", error=error, form_csrf=auth.csrf_token(secret, "sign-in", pre)
        ),
        status_code=status,
    )
    if status == 429 and retry is not None:
        response.headers["Retry-After"] = str(retry)
    response.set_cookie(
        auth.PRE_COOKIE,
        pre,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/console",
    )
    return response


@router.post("/sign-out", operation_id="consoleSignOut")
async def sign_out(request: Request) -> Response:
    """End the console session (its record is deleted: the cookie is worthless after)."""

    async def handler(request: Request, user: auth.SignedIn) -> Response:
        await _check_csrf(request, user, await _form(request))
        await auth.end_sign_in(_state(request)[0], token=user.token)
        response = _redirect("/console/sign-in")
        response.delete_cookie(auth.COOKIE, path="/console")
        return response

    return await _guarded(request, "sign-out", handler)


@router.post("/preferences", operation_id="consoleSetPreferences")
async def preferences(request: Request) -> Response:
    """The operator's time zone and colour theme (cookies)."""

    async def handler(request: Request, user: auth.SignedIn) -> Response:
        form = await _form(request)
        await _check_csrf(request, user, form)
        back = form.get("back", "/console/sessions")
        response = _redirect(
            back if back.startswith("/console") and "//" not in back else "/console"
        )
        if "tz" in form:
            try:
                zone = _ZONE.parse(form["tz"])
            except ValueError as exc:
                raise InvalidParameter("tz", str(exc)) from None
            response.set_cookie(
                TZ_COOKIE, zone.key, max_age=365 * 86400, samesite="strict", path="/console"
            )
        if form.get("theme") in THEMES:
            response.set_cookie(
                THEME_COOKIE, form["theme"], max_age=365 * 86400, samesite="strict", path="/console"
            )
        return response

    return await _guarded(request, "preferences", handler)


def _query(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    return value if value not in (None, "") else None


_HOURS = PositiveInt(cap=876_000)


def _filters(request: Request) -> service.SessionFilters:
    hours = _query(request, "hours")
    status = _query(request, "status")
    if status not in (None, "opened", "closed"):
        raise InvalidParameter("status", "must be opened or closed")
    try:
        parsed_hours = _HOURS.parse(hours) if hours else 24
    except ValueError as exc:
        raise InvalidParameter("hours", str(exc)) from None
    return service.SessionFilters(
        hours=parsed_hours,
        status=status,
        channel=_query(request, "channel"),
        search=_query(request, "q"),
        cursor=_query(request, "cursor"),
    )


@router.get("/sessions", operation_id="consoleSessions")
async def sessions_page(request: Request) -> Response:
    """Recent sessions with filters, search and keyset paging."""

    async def handler(request: Request, user: auth.SignedIn) -> Response:
        db, clock = _state(request)
        filters = _filters(request)
        view = await service.sessions_view(
            db, user_id=user.user_id, filters=filters, now_ms=clock()
        )
        next_url = None
        if view["next_cursor"]:
            params = {k: v for k, v in request.query_params.items() if k != "cursor" and v}
            next_url = "/console/sessions?" + urlencode({**params, "cursor": view["next_cursor"]})
        return page(
            "sessions.html",
            _context(request, user, "sessions", filters=filters, next_url=next_url, **view),
        )

    return await _guarded(request, "sessions", handler)


@router.get("/sessions/{sessionId}", operation_id="consoleConversation")
async def conversation_page(request: Request, sessionId: str) -> Response:
    """One conversation, its contact and the contact's other sessions."""

    async def handler(request: Request, user: auth.SignedIn) -> Response:
        db, clock = _state(request)
        view = await service.conversation_view(
            db, user_id=user.user_id, session_id=sessionId, now_ms=clock()
        )
        return page("conversation.html", _context(request, user, "sessions", **view))

    return await _guarded(request, "sessions", handler)


@router.post("/sessions/{sessionId}/close", operation_id="consoleCloseSession")
async def close_session(request: Request, sessionId: str) -> Response:
    """Close the session (the API's close) and show it again."""

    async def handler(request: Request, user: auth.SignedIn) -> Response:
        await _check_csrf(request, user, await _form(request))
        db, clock = _state(request)
        await service.close_session(db, user_id=user.user_id, session_id=sessionId, now_ms=clock())
        return _redirect(f"/console/sessions/{sessionId}")

    return await _guarded(request, "sessions", handler)


@router.get("/contacts", operation_id="consoleContacts")
async def contacts_page(request: Request) -> Response:
    """Contacts, searchable by name, phone or email."""

    async def handler(request: Request, user: auth.SignedIn) -> Response:
        search = _query(request, "q")
        view = await service.contacts_view(
            _state(request)[0], user_id=user.user_id, search=search, after=_query(request, "after")
        )
        next_url = None
        if view["next_after"]:
            next_url = "/console/contacts?" + urlencode(
                {"q": search or "", "after": view["next_after"]}
            )
        return page(
            "contacts.html",
            _context(request, user, "contacts", search=search, next_url=next_url, **view),
        )

    return await _guarded(request, "contacts", handler)


@router.get("/contacts/{contactId}", operation_id="consoleContact")
async def contact_page(request: Request, contactId: str) -> Response:
    """One contact with its sessions."""

    async def handler(request: Request, user: auth.SignedIn) -> Response:
        db, clock = _state(request)
        view = await service.contact_view(
            db, user_id=user.user_id, contact_id=contactId, now_ms=clock()
        )
        return page("contact.html", _context(request, user, "contacts", **view))

    return await _guarded(request, "contacts", handler)


def _span(request: Request) -> analytics.Range:
    raw = {name: request.query_params.getlist(name) for name in ("from", "to", "channel")}
    raw["tz"] = [_zone(request).key]
    return analytics.resolve_range(RangeQuery.from_params(raw), now_ms=_state(request)[1]())


@router.get("/analytics", operation_id="consoleAnalytics")
async def analytics_page(request: Request) -> Response:
    """Cards, the daily chart, the heatmap and the first-response distribution."""

    async def handler(request: Request, user: auth.SignedIn) -> Response:
        span = _span(request)
        view = await service.analytics_view(_state(request)[0], user_id=user.user_id, span=span)
        return page(
            "analytics.html",
            _context(
                request,
                user,
                "analytics",
                span=span,
                query=request.url.query,
                request_from=_query(request, "from"),
                request_to=_query(request, "to"),
                **view,
            ),
        )

    return await _guarded(request, "analytics", handler)


@router.get("/analytics/sessions", operation_id="consoleAnalyticsBucketSessions")
async def analytics_bucket_sessions(request: Request) -> Response:
    """The sessions behind a bucket of the analytics page (those starting in the range)."""

    async def handler(request: Request, user: auth.SignedIn) -> Response:
        span = _span(request)
        db, clock = _state(request)
        view = await service.bucket_sessions_view(
            db, user_id=user.user_id, span=span, now_ms=clock()
        )
        return page("bucket.html", _context(request, user, "analytics", span=span, **view))

    return await _guarded(request, "analytics", handler)


@router.get("/analytics/csv/{table}", operation_id="consoleAnalyticsCsv")
async def analytics_csv(request: Request, table: str) -> Response:
    """One of the analytics page's tables as CSV: the same rows as on screen."""

    async def handler(request: Request, user: auth.SignedIn) -> Response:
        span = _span(request)
        view = await service.analytics_view(_state(request)[0], user_id=user.user_id, span=span)
        found = view["tables"].get(table)
        if found is None:
            raise NotFound("no such table")
        return Response(
            found.csv(),
            media_type="text/csv; charset=utf-8",
            headers={**HEADERS, "Content-Disposition": f'attachment; filename="{found.name}.csv"'},
        )

    return await _guarded(request, "analytics", handler)


@router.get("/webhooks", operation_id="consoleWebhooks")
async def webhooks_page(request: Request) -> Response:
    """Each webhook endpoint's recent deliveries (and, later, the channels)."""

    async def handler(request: Request, user: auth.SignedIn) -> Response:
        view = await service.webhooks_view(_state(request)[0], user_id=user.user_id)
        return page("webhooks.html", _context(request, user, "webhooks", **view))

    return await _guarded(request, "webhooks", handler)
