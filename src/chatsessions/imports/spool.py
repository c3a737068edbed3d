"""The first pass's messages kept on disk for the second, so an export is parsed once.

The first pass must read the whole export before anything is stored (nothing is
half-imported); keeping what it read in memory would grow with the chat (a million
messages), and parsing the export again would double the parsing. So each message goes
to a temporary file in chunks of compact tuples (``marshal``: Python's fastest
serialisation of plain values), read back chunk by chunk: memory stays flat.
"""

from __future__ import annotations

import marshal
import tempfile
from collections.abc import Iterator
from typing import Any

__all__ = ["Spool", "SpooledMessage"]

SpooledMessage = tuple[str, str, str, "int | None", "tuple[int, int, int, int, int, int] | None"]
"""author, type, text, epoch ms (absolute times) or None, wall time or None."""

_CHUNK = 1000


class Spool:
    """An append-then-read sequence of messages on disk (deleted when closed)."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        self._chunk: list[Any] = []
        self.count = 0

    def add(self, message: SpooledMessage) -> None:
        """Append one message."""
        self._chunk.append(message)
        if len(self._chunk) == _CHUNK:
            self._flush()

    def _flush(self) -> None:
        # Length-prefixed bytes: marshal.load() on a file reads it in many tiny calls.
        data = marshal.dumps(self._chunk)
        self._file.write(len(data).to_bytes(8, "little") + data)
        self.count += len(self._chunk)
        self._chunk = []

    def finish(self) -> None:
        """No more messages: write what is buffered."""
        if self._chunk:
            self._flush()

    def __iter__(self) -> Iterator[SpooledMessage]:
        """The messages in the order added (one reader at a time)."""
        self._file.seek(0)
        while size := self._file.read(8):
            chunk: list[SpooledMessage] = marshal.loads(
                self._file.read(int.from_bytes(size, "little"))
            )
            yield from chunk

    def close(self) -> None:
        """Delete the file."""
        self._file.close()
