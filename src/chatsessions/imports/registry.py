"""The formats an import understands: one module each, with ``parse`` and its traits.

Adding a format is one module with ``CHANNEL``, ``DATE_ORDER`` and
``parse(sources, options) -> Iterator[ImportedMessage]``, and a line here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from chatsessions.imports import instagram, messenger, signal, telegram, whatsapp
from chatsessions.imports.model import ImportedMessage, ParseOptions, Source

__all__ = ["FORMATS", "Format"]

Parser = Callable[[Sequence[Source], ParseOptions], Iterator[ImportedMessage]]


@dataclass(frozen=True)
class Format:
    """One export format."""

    name: str
    channel: str  # the contact's channel when the import creates it
    date_order: str | None  # fixed by the format (ISO dates), or None: detected per file
    parse: Parser


FORMATS: dict[str, Format] = {
    module.__name__.rsplit(".", 1)[-1]: Format(
        module.__name__.rsplit(".", 1)[-1], module.CHANNEL, module.DATE_ORDER, module.parse
    )
    for module in (whatsapp, telegram, signal, instagram, messenger)
}
