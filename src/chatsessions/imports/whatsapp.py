"""WhatsApp's "Export chat" text, from Android and iOS, as ``.txt`` or the ``.zip``.

Android writes ``15/01/2023, 10:30 - Jane: Hi`` and iOS ``[15/01/2023, 10:30:12] Jane: Hi``
(iOS may put U+200E, the left-to-right mark, before a line or a text). The date follows
the phone's locale (any order, two- or four-digit year, ``/ . -``), the time a 24-hour or
12-hour clock (``PM``, ``p.m.``, ``p. m.``, with an ordinary, no-break or narrow no-break
space), with or without seconds. A line that does not start a message continues the one
before (multi-line messages keep their newlines). Lines without an author (Android) or
whose text starts with U+200E and is not an attachment (iOS) are WhatsApp's own notices.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from typing import BinaryIO

from chatsessions.imports.model import (
    ImportedMessage,
    ImportFileError,
    ParseOptions,
    Source,
    WallTime,
)
from chatsessions.imports.textlines import numbered_lines

__all__ = ["CHANNEL", "DATE_ORDER", "parse"]

CHANNEL = "whatsapp"
DATE_ORDER: str | None = None  # the locale decides; the shared code detects it

_LRM = "\u200e"
_DATE = r"(\d{1,4})[./\-](\d{1,2})[./\-](\d{1,4})"
_TIME = r"(\d{1,2})[:.](\d{2})(?:[:.](\d{2}))?"
# "PM", "pm", "p.m.", "p. m.", "p.\u00a0m.": \s covers the no-break and narrow no-break spaces.
_AMPM = r"(?:\s*([AaPp])\.?\s*[Mm]\.?)?"
_ANDROID = re.compile(rf"{_DATE},?\s+{_TIME}{_AMPM}\s+[-\u2013]\s(.*)", re.DOTALL)
_IOS = re.compile(rf"\[{_DATE},?\s+{_TIME}{_AMPM}\]\s(.*)", re.DOTALL)
_OMITTED = re.compile(
    r"(?:<Media omitted>|<attached: [^>]*>|.* \(file attached\)"
    r"|(?:image|video|audio|sticker|GIF|document|Contact card) omitted|.*document omitted)",
    re.IGNORECASE,
)


def _open_text(source: Source, stack: ExitStack) -> BinaryIO:
    """The chat text: the file itself, or the chat member of a ``.zip`` (read as a stream)."""
    raw = stack.enter_context(source.open())
    head = raw.read(4)
    raw.seek(0)
    if head != b"PK\x03\x04":
        return raw
    try:
        archive = stack.enter_context(zipfile.ZipFile(raw))
        names = [n for n in archive.namelist() if n.lower().endswith(".txt")]
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ImportFileError(source.name, "", f"is not a readable .zip ({exc})") from None
    chosen = [n for n in names if n.rsplit("/", 1)[-1] == "_chat.txt"] or [
        n for n in names if n.rsplit("/", 1)[-1].startswith("WhatsApp Chat")
    ]
    if not chosen and len(names) == 1:
        chosen = names
    if len(chosen) != 1:
        raise ImportFileError(
            source.name, "", "the .zip holds no single chat text (_chat.txt or WhatsApp Chat….txt)"
        )
    member = stack.enter_context(archive.open(chosen[0]))
    return member  # type: ignore[return-value]  # a ZipExtFile reads as a binary stream


def _wall(match: re.Match[str], file: str, number: int) -> WallTime:
    f1, f2, f3, hh, mm, ss, ampm = match.group(1, 2, 3, 4, 5, 6, 7)
    hour, minute, second = int(hh), int(mm), int(ss) if ss else 0
    if ampm is not None:
        if not 1 <= hour <= 12:
            raise ImportFileError(file, f"line {number}", f"hour {hour} on a 12-hour clock")
        hour = hour % 12 + (12 if ampm in "Pp" else 0)
    if hour > 23 or minute > 59 or second > 59:
        raise ImportFileError(file, f"line {number}", f"no such time {hh}:{mm}")
    return (int(f1), int(f2), int(f3), hour, minute, second)


def _finish(
    file: str, number: int, author: str, wall: WallTime, lines: list[str], ios: bool
) -> ImportedMessage:
    text = "\n".join(lines) if len(lines) > 1 else lines[0]
    first = lines[0].lstrip(_LRM)
    # The cheap test first: a placeholder starts with "<" or ends with ")" or "omitted".
    if (first[:1] == "<" or first[-1:] in (")", "d")) and _OMITTED.fullmatch(first):
        return ImportedMessage(file, number, author, text.lstrip(_LRM), "media", None, wall)
    if ios and text.startswith(_LRM):
        # iOS marks its own notices ("‎Messages and calls are end-to-end encrypted.") so.
        return ImportedMessage(file, number, author, text, "system", None, wall)
    return ImportedMessage(file, number, author, text, "text", None, wall)


def _parse_one(source: Source) -> Iterator[ImportedMessage]:
    file = source.name
    with ExitStack() as stack:
        stream = _open_text(source, stack)
        pending: tuple[int, str, WallTime, list[str], bool] | None = None
        lines = numbered_lines(stream, file)
        try:
            for number, line in lines:
                bare = line.lstrip(_LRM)
                ios = bare.startswith("[")
                match = (
                    (_IOS if ios else _ANDROID).match(bare) if bare[:1] in "[0123456789" else None
                )
                if match is None:
                    if pending is not None:
                        pending[3].append(line)
                    elif line.strip():
                        raise ImportFileError(
                            file,
                            f"line {number}",
                            "is not a WhatsApp message line (expected 'date, time - author: text' "
                            "or '[date, time] author: text')",
                        )
                    continue
                if pending is not None:
                    yield _finish(file, *pending)
                    pending = None
                wall = _wall(match, file, number)
                rest = match.group(8)
                author, sep, text = rest.partition(": ")
                if not sep or not author.strip(_LRM + " "):
                    # Android's notices have no author ("Messages and calls are end-to-end…").
                    yield ImportedMessage(file, number, "", rest, "system", None, wall)
                    continue
                pending = (number, author.strip(_LRM + " "), wall, [text], ios)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            # A .zip cut short or damaged: its member fails while being read.
            raise ImportFileError(file, "", f"is not a readable .zip ({exc})") from None
        if pending is not None:
            yield _finish(file, *pending)


def parse(sources: Sequence[Source], options: ParseOptions) -> Iterator[ImportedMessage]:
    """The messages of one chat's export (several files are read one after the other)."""
    del options  # nothing to choose: an export holds one chat
    for source in sources:
        yield from _parse_one(source)
