"""Where webhooks may be sent (docs/contract.md#webhooks Safety): https URLs whose host resolves to global
addresses only, checked at creation and again at each delivery.

The delivery then connects to the very address that was checked (no second DNS lookup
that an attacker could answer differently), so a hostname cannot be rebound to an
internal address between the check and the request.

>>> is_allowed_address(ipaddress.ip_address("8.8.8.8"))
True
>>> is_allowed_address(ipaddress.ip_address("::ffff:127.0.0.1"))
False
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = [
    "CheckedTarget",
    "Unresolvable",
    "UnsafeUrl",
    "check_new_url",
    "check_url",
    "is_allowed_address",
    "parse_webhook_url",
    "resolve_host",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215 local-use: never global
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")
MAX_URL_LENGTH = 2048
RESOLVE_TIMEOUT_S = 5.0


class UnsafeUrl(ValueError):
    """The URL is not one webhooks may be sent to; the message says why."""


@dataclass(frozen=True)
class CheckedTarget:
    """A URL and the addresses it was checked to resolve to (the ones to connect to)."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _SIX_TO_FOUR:
        return ip.sixtofour
    # IPv4-compatible (::a.b.c.d, deprecated) forms
    if int(ip) >> 32 == 0:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_allowed_address(ip: IPAddress) -> bool:
    """True for a global unicast address (embedded IPv4 forms judged by their IPv4)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _NAT64_LOCAL or ip.scope_id:
            return False
        inner = _embedded_ipv4(ip)
        if inner is not None:
            return is_allowed_address(inner)
    return bool(
        ip.is_global
        and not ip.is_multicast
        and not ip.is_private
        and not ip.is_loopback
        and not ip.is_link_local
        and not ip.is_reserved
        and not ip.is_unspecified
    )


async def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (tests replace this function to fake DNS)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    out: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        addr = str(sockaddr[0])
        if addr not in out:
            out.append(addr)
    return out


def parse_webhook_url(url: str, *, allow_private: bool) -> tuple[str, str, int]:
    """Check the URL's shape: ``(scheme, host, port)`` or :class:`UnsafeUrl`."""
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"must be at most {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise UnsafeUrl("must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeUrl("is not a valid URL") from None
    scheme = parts.scheme.lower()
    allowed = ("https", "http") if allow_private else ("https",)
    if scheme not in allowed:
        raise UnsafeUrl("must be an https URL")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("must not contain credentials")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UnsafeUrl("must name a host")
    return scheme, host, port if port is not None else (443 if scheme == "https" else 80)


class Unresolvable(UnsafeUrl):
    """The host does not resolve (no such name, no DNS answer in time)."""


async def check_url(url: str, *, allow_private: bool) -> CheckedTarget:
    """Validate ``url`` and resolve its host; every address must be allowed.

    With ``allow_private`` (``CHATSESSIONS_WEBHOOK_ALLOW_PRIVATE``) http and non-global
    addresses pass too. Raises :class:`UnsafeUrl` (:class:`Unresolvable` when the host
    does not resolve).
    """
    scheme, host, port = parse_webhook_url(url, allow_private=allow_private)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT_S):
                addresses = await resolve_host(host, port)
        except (OSError, UnicodeError, TimeoutError):
            raise Unresolvable(f"host {host!r} does not resolve") from None
        if not addresses:
            raise Unresolvable(f"host {host!r} does not resolve")
    if not allow_private:
        for addr in addresses:
            ip = ipaddress.ip_address(addr.split("%", 1)[0])
            if not is_allowed_address(ip):
                raise UnsafeUrl("must resolve to public internet addresses only")
    return CheckedTarget(url=url, scheme=scheme, host=host, port=port, addresses=tuple(addresses))


async def check_new_url(url: str, *, allow_private: bool) -> None:
    """The check when an endpoint is created: as :func:`check_url`, except that a host name
    that does not resolve yet is accepted (a domain being set up, or no DNS here). That is
    safe because every delivery checks again and connects only to checked addresses; a
    literal address, or a name resolving to any non-global address, is refused now.
    """
    try:
        await check_url(url, allow_private=allow_private)
    except Unresolvable:
        return
