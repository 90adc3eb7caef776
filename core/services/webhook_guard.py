"""Guard against server-side request forgery through webhook endpoint URLs.

An endpoint URL is a request this server will make on staff's behalf. Unless the
installation allows it (``webhooks_allow_private``), a URL whose host resolves to a
loopback, private, link-local (cloud metadata lives there), shared, reserved or
multicast address is refused: when the endpoint is registered, and again before every
attempt, since what a name resolves to may change after it was checked. And the attempt
connects to the very address that was checked (``pin_url``): the HTTP client is given
the address, with the name kept in the ``Host`` header and as the TLS server name (SNI
and certificate check), so a name that re-resolves between the check and the connection
(DNS rebinding) cannot send the request elsewhere.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

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


Address = ipaddress.IPv4Address | ipaddress.IPv6Address
#: resolves ``(host, port)`` to ``getaddrinfo``-like tuples (the event loop's by default)
Resolver = Callable[[str, int], Awaitable[list[Any]]]


async def _system_resolve(host: str, port: int) -> list[Any]:
    return await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)


async def _addresses(url: str, resolve: Resolver | None) -> list[Address]:
    """What the URL's host stands for now: the literal address, or every address the
    name resolves to; raises ``UnsafeUrl`` when it does not resolve."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await (resolve or _system_resolve)(
            host, parts.port or (443 if parts.scheme == "https" else 80))
    except OSError:
        raise UnsafeUrl(f"the host {host!r} does not resolve", field="url") from None
    found = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not found:
        raise UnsafeUrl(f"the host {host!r} does not resolve", field="url")
    return found


def _refuse_private(host: str, addresses: list[Address]) -> None:
    for address in addresses:
        if forbidden(address):
            raise UnsafeUrl(f"the host {host!r} resolves to {address}, a loopback, private, "
                            "link-local or metadata address (refused unless "
                            "ORDNUNG_WEBHOOKS_ALLOW_PRIVATE=true)", field="url")


async def check_url(url: str, *, allow_private: bool,
                    resolve: Resolver | None = None) -> str:
    """``url`` if this server may call it; raises ``UnsafeUrl`` otherwise."""
    check_shape(url)
    if allow_private:
        return url
    _refuse_private(urlsplit(url).hostname or "", await _addresses(url, resolve))
    return url


@dataclass(frozen=True)
class Target:
    """Where one attempt connects: ``url`` names the checked address itself; ``headers``
    and ``extensions`` (httpx's ``sni_hostname``) carry the name it was checked for."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, Any] = field(default_factory=dict)


async def pin_url(url: str, *, allow_private: bool,
                  resolve: Resolver | None = None) -> Target:
    """Check ``url`` (as ``check_url``) and pin it to the address checked: the name is
    resolved once, here, and the request goes to that address whatever the name
    resolves to a moment later."""
    check_shape(url)
    parts = urlsplit(url)
    host = parts.hostname or ""
    addresses = await _addresses(url, resolve)
    if not allow_private:
        _refuse_private(host, addresses)
    try:
        ipaddress.ip_address(host)
        return Target(url)  # a literal: nothing to re-resolve
    except ValueError:
        pass
    address = addresses[0]
    literal = f"[{address}]" if address.version == 6 else str(address)
    netloc = f"{literal}:{parts.port}" if parts.port else literal
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    return Target(urlunsplit(parts._replace(netloc=netloc)), {"host": parts.netloc},
                  extensions)
