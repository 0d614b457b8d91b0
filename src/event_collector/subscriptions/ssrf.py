"""Webhook SSRF policy: private, loopback, link-local and unspecified addresses are refused unless
the operator allow-lists them (``EC_WEBHOOK_ALLOWED_HOSTS``: host names or CIDR networks).

Subscriptions check the URL's host when they are written (a literal IP or ``localhost``); the
dispatcher checks the resolved addresses again at send time with :func:`is_address_allowed`.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
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
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_internal(address: IPAddress) -> bool:
    """Private, loopback, link-local, unspecified, multicast, reserved or carrier-grade NAT."""
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_unspecified
        or address.is_multicast
        or address.is_reserved
        or (isinstance(address, ipaddress.IPv4Address) and address in _CGNAT)
    )


def _is_local_name(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")


def is_allow_listed(host: str, address: IPAddress | None, allowed: Sequence[str]) -> bool:
    host = host.lower().rstrip(".")
    for entry in allowed:
        entry = entry.strip().lower().rstrip(".")
        if not entry:
            continue
        if "/" in entry:
            if address is not None:
                network = ipaddress.ip_network(entry, strict=False)
                if address.version == network.version and address in network:
                    return True
            continue
        if host == entry.strip("[]"):
            return True
        entry_ip = literal_ip(entry)
        if entry_ip is not None and address is not None and entry_ip == address:
            return True
    return False


def is_address_allowed(host: str, address: IPAddress, allowed: Sequence[str]) -> bool:
    """For the dispatcher: may a request to ``host`` go to the resolved ``address``?"""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not is_internal(address) or is_allow_listed(host, address, allowed)


def webhook_url_problem(url: str, allowed: Sequence[str]) -> str | None:
    """Why a webhook URL is refused at write time, or None when it may be stored."""
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    address = literal_ip(host)
    if address is not None:
        if is_internal(address) and not is_allow_listed(host, address, allowed):
            return (
                "points at a private, loopback, link-local or unspecified address; "
                "the operator can allow it with EC_WEBHOOK_ALLOWED_HOSTS"
            )
        return None
    if _is_local_name(host) and not is_allow_listed(host, None, allowed):
        return "points at localhost; the operator can allow it with EC_WEBHOOK_ALLOWED_HOSTS"
    return None
