"""Loading a JSON export whole, with errors that name the file and the place."""

from __future__ import annotations

from typing import Any

import orjson

from chatsessions.imports.model import ImportFileError, Source

__all__ = ["load_json"]


def load_json(source: Source) -> Any:
    """The parsed document. JSON exports are one document, so they are read whole (the
    apps split long chats into parts: Meta's ``message_N.json`` hold 10,000 messages each)."""
    with source.open() as stream:
        data = stream.read()
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        cut = "end of data" in exc.msg  # a file cut short (an interrupted copy or upload)
        problem = "is not valid JSON" + (" (the file ends too soon)" if cut else "")
        raise ImportFileError(
            source.name, f"line {exc.lineno} column {exc.colno}", f"{problem}: {exc.msg}"
        ) from None


def field_error(source: Source, where: str, problem: str) -> ImportFileError:
    """An error about a JSON field (``where`` as ``messages[3].from``)."""
    return ImportFileError(source.name, where, problem)
