"""Property: a random conversation rendered as each format's export reads back the same
(authors, texts, times to the format's precision), whatever the locale's date and clock."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from chatsessions.imports import whatsapp
from chatsessions.imports.model import Source
from tests.imports.helpers import read, simple

ME, THEM = "Corner Shop", "Layla Haddad"
START = datetime(2021, 1, 1, tzinfo=UTC)
_HEADERISH = re.compile(r"^[\u200e]*(\[|\d)")

line_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufeff"),
    min_size=1,
    max_size=30,
)


def _usable(lines: list[str]) -> bool:
    """Texts a person could send that the export cannot tell from its own markup are
    left out: a continuation line that starts like a message line, a first line that is
    an attachment placeholder or starts with the mark iOS puts on its notices."""
    first = lines[0]
    if whatsapp._OMITTED.fullmatch(first.lstrip("\u200e")) or first.startswith("\u200e"):
        return False
    if not first.strip() or lines[-1].strip() == "" or "](" in first:
        return False
    return not any(_HEADERISH.match(line) or line.startswith("#") for line in lines[1:])


message = st.tuples(
    st.booleans(),  # from the business?
    st.lists(line_text, min_size=1, max_size=3).filter(_usable).map("\n".join),
    st.integers(min_value=0, max_value=4 * 24 * 3600),  # seconds after the previous one
)
conversation = st.lists(message, min_size=1, max_size=25).filter(
    lambda msgs: any(not mine for mine, _, _ in msgs)  # the contact wrote something
)


def _times(msgs: list[tuple[bool, str, int]], precision_s: int) -> list[datetime]:
    out, t = [], START
    for _, _, gap in msgs:
        t += timedelta(seconds=gap - gap % precision_s)
        out.append(t)
    return out


def _expected(
    msgs: list[tuple[bool, str, int]], times: list[datetime]
) -> list[tuple[str, str, str, int]]:
    return [
        ("outbound" if mine else "inbound", "text", text, int(t.timestamp() * 1000))
        for (mine, text, _), t in zip(msgs, times, strict=True)
    ]


def _clock(t: datetime, twelve: bool, seconds: bool, ampm: str) -> str:
    hms = f":{t.second:02d}" if seconds else ""
    if not twelve:
        return f"{t.hour:02d}:{t.minute:02d}{hms}"
    hour = t.hour % 12 or 12
    suffix = ampm.replace("A", "P").replace("a", "p") if t.hour >= 12 else ampm
    return f"{hour}:{t.minute:02d}{hms}{suffix}"


@settings(max_examples=60, deadline=None)
@given(
    msgs=conversation,
    order=st.sampled_from(["dmy", "mdy", "ymd"]),
    ios=st.booleans(),
    twelve=st.booleans(),
    seconds=st.booleans(),
    ampm=st.sampled_from([" AM", "\u202fAM", "\u00a0a.\u00a0m.", " a. m.", " a.m.", " am"]),
    sep=st.sampled_from(["/", ".", "-"]),
)
def test_whatsapp_round_trip(
    msgs: list[tuple[bool, str, int]],
    order: str,
    ios: bool,
    twelve: bool,
    seconds: bool,
    ampm: str,
    sep: str,
) -> None:
    times = _times(msgs, 1 if seconds else 60)
    out = []
    for (mine, text, _), t in zip(msgs, times, strict=True):
        y = f"{t.year}" if order == "ymd" else f"{t.year % 100:02d}"
        fields = {
            "dmy": (t.day, t.month, y),
            "mdy": (t.month, t.day, y),
            "ymd": (y, t.month, t.day),
        }[order]
        day = sep.join(str(f) for f in fields)
        clock = _clock(t, twelve, seconds, ampm)
        author = ME if mine else THEM
        out.append(
            f"[{day}, {clock}] {author}: {text}" if ios else f"{day}, {clock} - {author}: {text}"
        )
    source = Source.from_bytes("chat.txt", ("\n".join(out) + "\n").encode())
    _, rows = read([source], format="whatsapp", me=ME, date_order=order)
    assert simple(rows) == _expected(msgs, times)


@settings(max_examples=40, deadline=None)
@given(msgs=conversation)
def test_signal_round_trip(msgs: list[tuple[bool, str, int]]) -> None:
    times = _times(msgs, 60)
    lines = [
        f"[{t:%Y-%m-%d %H:%M}] {'Me' if mine else THEM}: {text}"
        for (mine, text, _), t in zip(msgs, times, strict=True)
    ]
    source = Source.from_bytes("chat.md", ("\n".join(lines) + "\n").encode())
    _, rows = read([source], format="signal", me="Me")
    assert simple(rows) == _expected(msgs, times)


@settings(max_examples=40, deadline=None)
@given(msgs=conversation, entities=st.booleans())
def test_telegram_round_trip(msgs: list[tuple[bool, str, int]], entities: bool) -> None:
    times = _times(msgs, 1)
    messages = []
    for i, ((mine, text, _), t) in enumerate(zip(msgs, times, strict=True)):
        body: object = [text[:1], {"type": "bold", "text": text[1:]}] if entities else text
        messages.append(
            {
                "id": i,
                "type": "message",
                "date_unixtime": str(int(t.timestamp())),
                "from": ME if mine else THEM,
                "text": body,
            }
        )
    data = json.dumps(
        {"name": THEM, "type": "personal_chat", "id": 1, "messages": messages}
    ).encode()
    _, rows = read([Source.from_bytes("result.json", data)], format="telegram", me=ME)
    assert simple(rows) == _expected(msgs, times)


@settings(max_examples=40, deadline=None)
@given(msgs=conversation, split=st.integers(min_value=0, max_value=25))
def test_meta_round_trip_in_two_parts(msgs: list[tuple[bool, str, int]], split: int) -> None:
    times = _times(msgs, 1)

    def meta(s: str) -> str:  # how Meta writes text: UTF-8 bytes read as Latin-1
        return s.encode("utf-8").decode("latin-1")

    entries = [
        {
            "sender_name": meta(ME if mine else THEM),
            "timestamp_ms": int(t.timestamp() * 1000),
            "content": meta(text),
        }
        for (mine, text, _), t in zip(msgs, times, strict=True)
    ][::-1]  # newest first
    newest, oldest = entries[: min(split, len(entries))], entries[min(split, len(entries)) :]
    parts = [
        Source.from_bytes(
            f"message_{n}.json", json.dumps({"participants": [], "messages": part}).encode()
        )
        for n, part in ((1, newest), (2, oldest))
    ]
    _, rows = read(parts, format="messenger", me=ME)
    assert simple(rows) == _expected(msgs, times)
