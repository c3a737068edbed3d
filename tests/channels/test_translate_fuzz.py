"""Hostile payloads: whatever JSON (or form) a verified delivery carries, translating it
gives messages or a clean refusal (a ``ValueError``: 400), never another error (a 500 the
platform would retry for days)."""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from chatsessions.channels.base import ChannelConfig, Translation
from chatsessions.channels.registry import PLATFORMS
from tests.channels.payloads import messaging_message, messaging_payload, tg_update, wa_text

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=30,
)
KEYS = ["entry", "changes", "value", "messages", "messaging", "message", "from", "id", "mid",
        "timestamp", "type", "text", "body", "contacts", "wa_id", "profile", "name", "chat",
        "sender", "recipient", "attachments", "payload", "url", "is_echo", "date", "message_id",
        "statuses", "message_echoes", "edited_message", "caption", "location", "latitude"]  # fmt: skip


def _mutate(value: Any, data: st.DataObject) -> Any:
    """Replace some values of a well-formed payload with arbitrary JSON."""
    if isinstance(value, dict):
        out = {k: _mutate(v, data) for k, v in value.items()}
        if data.draw(st.integers(0, 3)) == 0:
            out[data.draw(st.sampled_from(KEYS))] = data.draw(json_values)
        return out
    if isinstance(value, list):
        return [_mutate(v, data) for v in value]
    return data.draw(json_values) if data.draw(st.integers(0, 4)) == 0 else value


def _translate(kind: str, body: bytes, content_type: str = "application/json") -> None:
    try:
        out = PLATFORMS[kind].translate(body, ChannelConfig(type=kind), content_type=content_type)
    except ValueError:  # pydantic's and orjson's errors are ValueErrors: a 400
        return
    assert isinstance(out, Translation)
    for m in out.messages:
        assert m.external_id and m.direction in ("inbound", "outbound") and m.type


SEEDS = {
    "whatsapp": wa_text("wamid.F1"),
    "messenger": messaging_payload("page", "1", [messaging_message("m1", user="2", account="1")]),
    "instagram": messaging_payload(
        "instagram", "1", [messaging_message("m1", user="2", account="1")]
    ),
    "telegram": tg_update(1, message_id=1),
}


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(sorted(SEEDS)), data=st.data())
def test_mutated_payloads_translate_or_are_refused_cleanly(kind: str, data: st.DataObject) -> None:
    _translate(kind, json.dumps(_mutate(SEEDS[kind], data)).encode())  # big ints too


@settings(max_examples=100, deadline=None)
@given(kind=st.sampled_from(sorted(PLATFORMS)), value=json_values)
def test_arbitrary_json_translates_or_is_refused_cleanly(kind: str, value: Any) -> None:
    _translate(kind, json.dumps(value).encode())


@settings(max_examples=100, deadline=None)
@given(
    body=st.binary(max_size=200),
    fields=st.lists(st.tuples(st.text(max_size=12), st.text(max_size=20)), max_size=8),
)
def test_twilio_forms_translate_or_are_refused_cleanly(
    body: bytes, fields: list[tuple[str, str]]
) -> None:
    from urllib.parse import urlencode

    _translate("twilio", body, "application/x-www-form-urlencoded")
    _translate("twilio", urlencode(fields).encode(), "application/x-www-form-urlencoded")
    _translate("twilio", orjson.dumps(dict(fields)), "application/json")
