"""Instagram messaging (`object: instagram`).

Proof: Meta's ``X-Hub-Signature-256`` (``meta.py``). Each ``entry[].messaging[]`` item
with a ``message`` is stored (``mid`` as its ``externalId``, the event's epoch-ms
``timestamp``), the contact found or created by ``externalId`` ``instagram:<IGSID>``; echoes
(``is_echo``) are outbound. ``accountId`` (the Instagram account id) filters out other accounts' entries.
"""

from __future__ import annotations

from collections.abc import Mapping

from chatsessions.channels import meta
from chatsessions.channels.base import ChannelConfig, ConfigModel, Translation

__all__ = ["TYPE", "Config", "translate", "verify"]

TYPE = "instagram"
Config: type[ConfigModel] = meta.MetaConfig


def verify(raw_body: bytes, headers: Mapping[str, str], config: ChannelConfig, *, url: str) -> None:
    """Meta's signature over the raw body (the URL plays no part)."""
    meta.verify_signature(raw_body, headers, config)


def translate(raw_body: bytes, config: ChannelConfig, *, content_type: str) -> Translation:
    """Messages and echoes of the payload; delivery, read and other events are ignored."""
    return meta.translate_messaging(raw_body, config, prefix=TYPE)
