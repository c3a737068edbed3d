"""The shapes shared by every parser: what a parser yields, what it is given, its errors."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, NamedTuple

from chatsessions.errors import InvalidParameter

__all__ = [
    "DATE_ORDERS",
    "ImportFileError",
    "ImportedMessage",
    "ParseOptions",
    "Source",
    "WallTime",
]

DATE_ORDERS = ("dmy", "mdy", "ymd")

WallTime = tuple[int, int, int, int, int, int]
"""A wall-clock time as written: the three date fields in the file's order, then hour,
minute, second. The date order and the time zone are applied by the shared code."""


class ImportedMessage(NamedTuple):
    """One message of an export, as the parser read it (a tuple: a million of them stream
    through the import, so each one is kept small and cheap to build)."""

    file: str  # the source's name (errors name it)
    line: int  # where it starts: a line number (text formats) or a message index (JSON)
    author: str
    text: str
    type: str  # "text", "media", or "system" (the app's own notice: counted, not stored)
    ts_ms: int | None  # absolute time (JSON formats), else None
    wall: WallTime | None  # wall-clock time (text formats), else None


@dataclass(frozen=True)
class ParseOptions:
    """What a parser may need besides the bytes."""

    chat: str | None = None  # the chat to take from a whole-account export (Telegram)


@dataclass(frozen=True)
class Source:
    """One input file; ``open`` may be called more than once (the import reads twice:
    once to validate everything, once to store)."""

    name: str
    open: Callable[[], BinaryIO]

    @classmethod
    def from_path(cls, path: str) -> Source:
        """A file on disk."""
        return cls(path, lambda: open(path, "rb"))

    @classmethod
    def from_bytes(cls, name: str, data: bytes) -> Source:
        """Bytes held in memory (an HTTP request body)."""
        return cls(name, lambda: io.BytesIO(data))


class ImportFileError(InvalidParameter):
    """The export cannot be read: names the file and the line (or field) at fault."""

    def __init__(self, file: str, where: str, problem: str) -> None:
        super().__init__(file, f"{where}: {problem}" if where else problem)
        self.file = file
        self.where = where
        self.problem = problem
