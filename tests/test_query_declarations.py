"""Each route's query is declared once (chatsessions.queryparams): what the OpenAPI
document says about a parameter is what the route accepts, and every parameter it
documents is really read."""

from __future__ import annotations

import re
from typing import Any

import httpx
from hypothesis import given
from hypothesis import strategies as st

from chatsessions.exports.schemas import ExportParams
from chatsessions.queryparams import Flag, PositiveInt, Word
from chatsessions.sessions.schemas import RecentListingQuery
from tests.conftest import Tenant

_WORDS: list[Word] = [
    meta
    for model in (RecentListingQuery, ExportParams)
    for field in model.model_fields.values()
    for meta in field.metadata
    if isinstance(meta, Word)
]


def _accepts(parser: Any, raw: str) -> bool:
    try:
        parser.parse(raw)
    except ValueError:
        return False
    return True


def _case_variants() -> st.SearchStrategy[tuple[Word, str]]:
    def vary(word: Word) -> st.SearchStrategy[tuple[Word, str]]:
        spellings = [s for s, _ in word.spellings]
        return st.tuples(
            st.just(word),
            st.sampled_from(spellings).flatmap(
                lambda s: st.lists(st.booleans(), min_size=len(s), max_size=len(s)).map(
                    lambda up: "".join(c.upper() if u else c for c, u in zip(s, up, strict=True))
                )
            ),
        )

    return st.sampled_from(_WORDS).flatmap(vary)


@given(_case_variants())
def test_every_spelling_a_word_parameter_accepts_matches_its_documented_pattern(
    case: tuple[Word, str],
) -> None:
    word, raw = case
    assert _accepts(word, raw)
    assert re.fullmatch(word.json_schema()["pattern"], raw)


@given(st.sampled_from(_WORDS), st.text(max_size=20))
def test_a_word_parameter_accepts_exactly_what_its_pattern_documents(word: Word, raw: str) -> None:
    assert _accepts(word, raw) == bool(re.fullmatch(word.json_schema()["pattern"], raw))


@given(st.text(max_size=12))
def test_a_positive_integer_parameter_accepts_exactly_plain_digits_at_least_one(raw: str) -> None:
    documented = raw.isascii() and raw.isdigit() and int(raw) >= 1
    assert _accepts(PositiveInt(cap=1000), raw) == documented


def test_flags_accept_the_documented_booleans() -> None:
    for raw, value in [("true", True), ("FALSE", False), ("1", True), ("0", False)]:
        assert Flag().parse(raw) is value
    assert not _accepts(Flag(), "yes")


def _bad_value(schema: dict[str, Any]) -> str | None:
    if schema.get("type") == "integer":
        return "1e3"
    if schema.get("type") == "boolean":
        return "maybe"
    if "pattern" in schema:
        return "no-such-word"
    return None


async def test_every_documented_query_parameter_is_read(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """A bad value of each typed query parameter the document lists is a 400 naming it:
    a declared parameter that the route never read would be accepted silently."""
    document = (await client.get("/openapi.json")).json()
    checked = 0
    for path, item in document["paths"].items():
        url = re.sub(r"\{[^}]+\}", "A" * 20, path)
        for method, op in item.items():
            for param in op.get("parameters", []):
                bad = param["in"] == "query" and _bad_value(param["schema"])
                if not bad:
                    continue
                r = await client.request(
                    method.upper(), url, params={param["name"]: bad}, headers=tenant.auth
                )
                assert r.status_code == 400, (method, path, param["name"], r.text)
                assert param["name"] in r.json()["error"], (path, r.json())
                checked += 1
    assert checked >= 15  # the listings, one session, close, exports, deliveries
