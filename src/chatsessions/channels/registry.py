"""The platforms a channel can be: one module each, named here once."""

from __future__ import annotations

from chatsessions.channels import instagram, messenger, telegram, twilio, whatsapp
from chatsessions.channels.base import Platform

__all__ = ["META_TYPES", "PLATFORMS", "platform_of"]

PLATFORMS: dict[str, Platform] = {
    whatsapp.TYPE: whatsapp,
    messenger.TYPE: messenger,
    instagram.TYPE: instagram,
    twilio.TYPE: twilio,
    telegram.TYPE: telegram,
}
"""Every channel type, by the ``type`` a channel is created with."""

META_TYPES = frozenset({whatsapp.TYPE, messenger.TYPE, instagram.TYPE})
"""Types that answer Meta's subscription handshake (``GET …/webhook?hub.mode=subscribe``)."""


def platform_of(channel_type: str) -> Platform:
    """The module of a channel type (types are checked when a channel is created)."""
    return PLATFORMS[channel_type]
