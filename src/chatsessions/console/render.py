"""Templates, formatting and the headers every console page carries."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from chatsessions.timeutil import parse_iso_ms

__all__ = ["CSP", "STATIC_DIR", "duration", "localtime", "page", "reltime"]

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"

# No inline script or style anywhere: scripts and styles come from /console/static only.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def localtime(iso: str | None, tz: ZoneInfo) -> str:
    """``2026-10-24 23:30:00 CEST`` for a UTC ISO time, in the operator's zone."""
    if not iso:
        return ""
    local = datetime.fromtimestamp(parse_iso_ms(iso) / 1000, tz)
    return local.strftime("%Y-%m-%d %H:%M:%S ") + (local.tzname() or "")


def reltime(iso: str | None, now_ms: int) -> str | None:
    """``5 min ago`` for a time within the past day, else None (the absolute time is shown)."""
    if not iso:
        return None
    ago = (now_ms - parse_iso_ms(iso)) // 1000
    if ago < 0 or ago >= 86_400:
        return None
    if ago < 60:
        return "just now"
    if ago < 3600:
        return f"{ago // 60} min ago"
    return f"{ago // 3600} h ago"


def duration(seconds: float | None) -> str:
    """``1 min 30 s`` for 90 seconds; ``—`` for none."""
    if seconds is None:
        return "—"
    whole = round(seconds)
    if whole < 60:
        return f"{seconds:g} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


_env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["localtime"] = localtime
_env.filters["reltime"] = reltime
_env.filters["duration"] = duration


def page(template: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    """Render a page with the console's security headers."""
    html = _env.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status_code, headers=HEADERS)
