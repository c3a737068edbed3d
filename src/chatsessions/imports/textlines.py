"""Reading a text export line by line: strict UTF-8, line numbers, no file held whole."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from chatsessions.imports.model import ImportFileError

__all__ = ["numbered_lines"]

_BOM = b"\xef\xbb\xbf"


def numbered_lines(stream: BinaryIO, file: str) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` for each line, without its line ending.

    Lines are split on ``\\n`` only (a message may hold U+2028 and the like, which belong
    to its text). Bytes that are not UTF-8 (a binary file, a cut in the middle of a
    character) and NUL characters are errors naming the line.
    """
    for number, line in enumerate(stream, start=1):
        raw = line
        if number == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ImportFileError(
                file, f"line {number}", f"is not UTF-8 text (byte {exc.start + 1})"
            ) from None
        if text.endswith("\n"):
            text = text[:-2] if text.endswith("\r\n") else text[:-1]
        if "\x00" in text:
            raise ImportFileError(file, f"line {number}", "holds a NUL character")
        yield number, text
