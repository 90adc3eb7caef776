"""Guard against server-side request forgery through webhook endpoint URLs.

An endpoint URL is a request this server will make on staff's behalf. Unless the
installation allows it (``webhooks_allow_private``), a URL whose host resolves to a
loopback, private, link-local (cloud metadata lives there), shared, reserved or
multicast address is refused: when the endpoint is registered, and again before every
attempt, since what a name resolves to may change after it was checked.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from ordnung.core.errors import InvalidInput

#: addresses of cloud metadata services besides the link-local 169.254.169.254
METADATA = {ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")}


class UnsafeUrl(InvalidInput):
    """An endpoint URL this server must not call."""

    type = "webhook-url-refused"


def check_shape(url: str) -> str:
    """An absolute http(s) URL with a host, no credentials; raises ``UnsafeUrl``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl(f"not a valid URL: {exc}", field="url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeUrl("the URL must be absolute, http or https, with a host", field="url")
    if parts.username or parts.password:
        raise UnsafeUrl("the URL must not carry credentials", field="url")
    if port == 0:
        raise UnsafeUrl("the URL's port must not be 0", field="url")
    if len(url) > 2000:
        raise UnsafeUrl("the URL is longer than 2000 characters", field="url")
    return url


def forbidden(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    return not address.is_global or address.is_multicast or address in METADATA


async def check_url(url: str, *, allow_private: bool) -> str:
    """``url`` if this server may call it; raises ``UnsafeUrl`` otherwise."""
    check_shape(url)
    if allow_private:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, parts.port or (443 if parts.scheme == "https" else 80),
            type=socket.SOCK_STREAM)
    except OSError:
        raise UnsafeUrl(f"the host {host!r} does not resolve", field="url") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if forbidden(address):
            raise UnsafeUrl(f"the host {host!r} resolves to {address}, a loopback, private, "
                            "link-local or metadata address (refused unless "
                            "ORDNUNG_WEBHOOKS_ALLOW_PRIVATE=true)", field="url")
    return url
