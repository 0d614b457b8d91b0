"""The outbound network policy (SSRF guard) for webhooks: one rule, applied when a subscription
is written and again, on the resolved addresses, at every send.

The rule: a webhook may only reach **public** addresses. Private, loopback, link-local,
unspecified, multicast, reserved and carrier-grade NAT addresses are refused, unless the operator
allow-lists them with ``EC_WEBHOOK_ALLOWED_HOSTS``: host names (matched as written) or CIDR
networks / addresses. IPv6 addresses that carry an IPv4 address are judged by the IPv4 address
too (a router would deliver them to it): IPv4-mapped ``::ffff:0:0/96``, 6to4 ``2002::/16``,
NAT64 ``64:ff9b::/96`` (the last 32 bits) and Teredo ``2001::/32`` (server and client); the
local-use NAT64 prefix ``64:ff9b:1::/48`` is refused outright.

A refusal at send time says "refused: not a public address" and never the address: the
test endpoint and ``lastError`` are shown to the tenant, who must not learn what an internal
host name resolves to.

* When a subscription is written (:func:`url_refusal`) the URL's host is judged as written: a
  literal address, or ``localhost``; other names are not resolved then (they may legitimately
  not resolve yet).
* At send time (``delivery/senders/webhook.py``) the name is resolved and every address it
  resolves to is judged (:func:`address_refusal`); the connection is then pinned to a vetted
  address, so DNS cannot rebind between the check and the connect.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOW_SETTING = "EC_WEBHOOK_ALLOWED_HOSTS"
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL_USE = ipaddress.ip_network("64:ff9b:1::/48")
NOT_PUBLIC = "refused: not a public address"
_LEGACY_IPV4 = re.compile(r"^[0-9a-fA-FxX.]+$")


def literal_ip(host: str) -> IPAddress | None:
    """The address a host names literally (IPv4, IPv6, or the legacy ``127.1`` / ``0x7f.1``
    / ``2130706433`` forms resolvers still accept), or None for a host name."""
    candidate = host.strip("[]")
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        if not _LEGACY_IPV4.match(candidate) or not any(ch.isdigit() for ch in candidate):
            return None
        try:
            address = ipaddress.IPv4Address(socket.inet_aton(candidate))
        except OSError:
            return None
    return unmapped(address)


def unmapped(address: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address (``::ffff:127.0.0.1``) as the IPv4 address it maps."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (6to4, NAT64, Teredo); [] for none."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address.teredo is not None:
        return list(address.teredo)
    if address in _NAT64:
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    return []


def is_public(address: IPAddress) -> bool:
    """Whether ``address`` is a public unicast address (see the module docstring)."""
    address = unmapped(address)
    if isinstance(address, ipaddress.IPv6Address):
        if address in _NAT64_LOCAL_USE:
            return False
        if address in _NAT64:  # (in ::/8, "reserved"): exactly as public as the IPv4 it carries
            return is_public(embedded_ipv4(address)[0])
    if not all(is_public(carried) for carried in embedded_ipv4(address)):
        return False
    return not (
        not address.is_global
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_unspecified
        or address.is_multicast
        or address.is_reserved
        or (isinstance(address, ipaddress.IPv4Address) and address in _CGNAT)
    )


def is_allow_listed(host: str, address: IPAddress | None, allowed: Sequence[str]) -> bool:
    """Whether the operator allows ``host`` (by name) or ``address`` (by network or address)."""
    host = host.lower().rstrip(".").strip("[]")
    for entry in allowed:
        entry = entry.strip().lower().rstrip(".")
        if not entry:
            continue
        if "/" in entry:
            if address is not None:
                try:
                    network = ipaddress.ip_network(entry, strict=False)
                except ValueError:
                    continue
                if address.version == network.version and unmapped(address) in network:
                    return True
            continue
        if host == entry.strip("[]"):
            return True
        entry_ip = literal_ip(entry)
        if entry_ip is not None and address is not None and entry_ip == unmapped(address):
            return True
    return False


def _is_local_name(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")


def url_refusal(url: str, allowed: Sequence[str]) -> str | None:
    """Why a webhook URL may not be stored (judged as written), or None."""
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    address = literal_ip(host)
    if address is not None:
        if not is_public(address) and not is_allow_listed(host, address, allowed):
            return (
                "points at a non-public address (private, loopback, link-local, unspecified, "
                f"or an IPv6 address carrying one); the operator can allow it with {ALLOW_SETTING}"
            )
        return None
    if _is_local_name(host) and not is_allow_listed(host, None, allowed):
        return f"points at localhost; the operator can allow it with {ALLOW_SETTING}"
    return None


def address_refusal(host: str, address: IPAddress, allowed: Sequence[str]) -> str | None:
    """Why a request to ``host`` may not go to ``address`` (one it resolved to), or None.

    The reason names neither the address nor the host: it reaches the tenant."""
    address = unmapped(address)
    if is_public(address) or is_allow_listed(host, address, allowed):
        return None
    return NOT_PUBLIC
