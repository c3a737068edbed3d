"""Signing in to the console over HTTP, as a browser does."""

from __future__ import annotations

import re

import httpx

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token of the first form on a page."""
    found = CSRF.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, api_key: str) -> httpx.Response:
    """Open the sign-in form and post the key; returns the answer to the post."""
    form = await client.get("/console/sign-in")
    assert form.status_code == 200
    return await client.post(
        "/console/sign-in", data={"csrf": csrf_of(form.text), "apiKey": api_key}
    )
