"""Signal, as written by ``signal-export`` (Markdown: ``[2023-01-15, 10:30] Jane: Hi``).

Signal Desktop has no export of its own; the community tool ``signal-export`` writes one
Markdown file per chat. A message starts with ``[YYYY-MM-DD HH:MM]`` (a comma after the
date and seconds are accepted too); the lines after it continue it. An attachment is a
Markdown link to the exported file (``![photo](./media/…)``), stored as type ``media``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import ExitStack

from chatsessions.imports.model import (
    ImportedMessage,
    ImportFileError,
    ParseOptions,
    Source,
    WallTime,
)
from chatsessions.imports.textlines import numbered_lines

__all__ = ["CHANNEL", "DATE_ORDER", "parse"]

CHANNEL = "signal"
DATE_ORDER: str | None = "ymd"  # ISO dates whatever the locale

_HEADER = re.compile(
    r"\[(\d{4})-(\d{2})-(\d{2}),?\s+(\d{2}):(\d{2})(?::(\d{2}))?\]\s(.*)", re.DOTALL
)
_ATTACHMENTS = re.compile(r"(?:\s*!?\[[^\]\n]*\]\([^)\n]+\))+\s*")


def _finish(
    file: str, number: int, author: str, wall: WallTime, lines: list[str]
) -> ImportedMessage:
    text = "\n".join(lines[1:] if lines[0] == "" else lines).rstrip("\n")
    kind = "media" if text and _ATTACHMENTS.fullmatch(text) else "text"
    return ImportedMessage(file, number, author, text, kind, None, wall)


def _parse_one(source: Source) -> Iterator[ImportedMessage]:
    file = source.name
    with ExitStack() as stack:
        stream = stack.enter_context(source.open())
        pending: tuple[int, str, WallTime, list[str]] | None = None
        for number, line in numbered_lines(stream, file):
            match = _HEADER.match(line) if line.startswith("[") else None
            if match is None:
                if pending is not None:
                    pending[3].append(line)
                elif line.strip() and not line.startswith("#"):
                    raise ImportFileError(
                        file,
                        f"line {number}",
                        "is not a signal-export message line (expected '[YYYY-MM-DD HH:MM] author: text')",
                    )
                continue
            if pending is not None:
                yield _finish(file, *pending)
                pending = None
            y, mo, d, hh, mm, ss, rest = match.groups()
            hour, minute, second = int(hh), int(mm), int(ss) if ss else 0
            if hour > 23 or minute > 59 or second > 59:
                raise ImportFileError(file, f"line {number}", f"no such time {hh}:{mm}")
            wall = (int(y), int(mo), int(d), hour, minute, second)
            author, sep, text = rest.partition(": ")
            if not sep and rest.endswith(":") and "\n" not in rest:
                # "Jane:" alone: the text (often an attachment) is on the next lines.
                author, sep, text = rest[:-1], ":", ""
            if not sep or not author.strip():
                yield ImportedMessage(file, number, "", rest, "system", None, wall)
                continue
            pending = (number, author.strip(), wall, [text])
        if pending is not None:
            yield _finish(file, *pending)


def parse(sources: Sequence[Source], options: ParseOptions) -> Iterator[ImportedMessage]:
    """The messages of one chat's Markdown export."""
    del options
    for source in sources:
        yield from _parse_one(source)
