"""The shopper's IP address for risk rules: taken only from a source the API trusts.

Fraud rules count orders per IP address. An address that is the same for many
shoppers (a storefront's server, a reverse proxy) turns every busy storefront into
a "velocity attack"; an address the shopper chose lets anyone dodge the rule or
frame someone else. So, for a placement (``POST /orders``, ``POST /carts/{id}/order``):

* an **admin key** is a server-side backend (a storefront's server): the shopper's
  address is what it sends as ``client.ip``, validated; its own connection address
  is never the shopper's;
* a **publishable storefront key** or a **customer token** runs in the shopper's
  browser or app: it may not send ``client.ip`` (422). Its address is read from the
  connection only when trusted proxies are configured (``trusted_proxies``,
  ``ORDNUNG_TRUSTED_PROXIES``): a connection from one of them is followed back
  through ``X-Forwarded-For`` (from the right, past every trusted proxy) to the
  first address that is not one; any other connection is the shopper's own.
  Without trusted proxies the connection tells nothing, and IP rules do not apply.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from litestar import Request

from ordnung.core import Engine
from ordnung.core.domain.access import Principal
from ordnung.core.errors import InvalidInput

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

FORWARDED_FOR = b"x-forwarded-for"


@functools.lru_cache(maxsize=8)
def networks(values: tuple[str, ...]) -> tuple[Network, ...]:
    """The configured proxies as networks (a bare address is a one-address network)."""
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values)


def exact(text: str) -> Address | None:
    """``text`` as an IP address (IPv4-mapped IPv6 as IPv4), or None."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse(value: str | None) -> Address | None:
    """An address as proxies write it (``192.0.2.1``, ``[2001:db8::1]:443``,
    ``192.0.2.1:80``), or None if it is not one."""
    text = (value or "").strip()
    if text.startswith("[") and "]" in text:
        text = text[1:text.index("]")]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    return exact(text)


def connection_ip(peer: str | None, forwarded_for: Sequence[str],
                  proxies: Sequence[Network]) -> str | None:
    """The shopper's address behind the connection from ``peer``, or None.

    ``forwarded_for`` are the ``X-Forwarded-For`` header values in the order they came.
    Each trusted proxy appends the address it was connected from, so the list is read
    from the right and only as long as the sender is a trusted proxy: whatever a
    client wrote to the left of that is its own claim and is never believed.
    """
    if not proxies:
        return None
    address = parse(peer)
    hops = [hop for value in forwarded_for for hop in value.split(",")]
    while address is not None and any(address in net for net in proxies):
        if not hops:
            return None  # the proxy's own request, or it forwarded nothing: unknown
        address = parse(hops.pop())
    return None if address is None else str(address)


def client_facts(request: Request[Any, Any, Any], principal: Principal,
                 sent: Mapping[str, str]) -> dict[str, str]:
    """The ``client`` facts (ip, user agent...) a placement hands the risk rules."""
    facts = dict(sent)
    if principal.kind == "admin":
        if "ip" in facts:
            address = exact(facts["ip"])
            if address is None:
                raise InvalidInput(f"client.ip must be an IP address, not {facts['ip']!r}",
                                   field="client.ip")
            facts["ip"] = str(address)
        return facts
    if "ip" in facts:
        raise InvalidInput("client.ip cannot be set with a storefront key or a customer "
                           "token: the address is taken from the connection (through "
                           "trusted proxies), or sent by a backend with an admin key",
                           field="client.ip")
    forwarded = [v.decode("latin-1") for k, v in request.scope["headers"]
                 if k.lower() == FORWARDED_FOR]
    peer = request.client.host if request.client is not None else None
    engine: Engine = request.app.state.engine
    proxies = networks(tuple(engine.config.trusted_proxies))
    shopper = connection_ip(peer, forwarded, proxies)
    if shopper is not None:
        facts["ip"] = shopper
    return facts
