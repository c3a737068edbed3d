"""Logging with secrets masked: API keys and userId values never reach a log line."""

from __future__ import annotations

import logging
import re

__all__ = ["MaskSecretsFilter", "configure_logging", "mask"]

_PATTERNS = [
    (re.compile(r"csk_[0-9A-Za-z]{4,}"), "csk_***"),
    (re.compile(r"((?:apiKey|userId|api_key|user_id)=)[^&\s\"']*", re.IGNORECASE), r"\1***"),
    (re.compile(r"(bearer\s+)\S+", re.IGNORECASE), r"\1***"),
]


def mask(text: str) -> str:
    """Replace keys and ``userId``/``apiKey`` query values with ``***``."""
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


class MaskSecretsFilter(logging.Filter):
    """Masks secrets in the formatted message of every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask the record's message and arguments in place.

        Arguments keep their shape: uvicorn's access formatter unpacks ``record.args``.
        """
        if isinstance(record.msg, str) and not record.args:
            # Only a message without arguments: masking a format string could eat "%s".
            record.msg = mask(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(mask(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: mask(v) if isinstance(v, str) else v for k, v in record.args.items()}
        return True


def configure_logging(level: str = "info") -> None:
    """Install the mask on our loggers and uvicorn's (access and error)."""
    mask_filter = MaskSecretsFilter()
    for name in ("uvicorn", "uvicorn.access", "uvicorn.error", "chatsessions"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, MaskSecretsFilter) for f in logger.filters):
            logger.addFilter(mask_filter)
        for handler in logger.handlers:
            if not any(isinstance(f, MaskSecretsFilter) for f in handler.filters):
                handler.addFilter(mask_filter)
    logging.getLogger("chatsessions").setLevel(level.upper())
