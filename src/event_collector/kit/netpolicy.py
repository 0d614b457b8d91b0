"""The outbound network policy (SSRF guard) for webhooks: one rule, applied when a subscription
is written and again, on the resolved addresses, at every send.

The rule: a webhook may only reach **public** addresses. Private, loopback, link-local,
unspecified, multicast, reserved and carrier-grade NAT addresses (IPv4-mapped IPv6 addresses
judged as the IPv4 address they map) are refused, unless the operator allow-lists them with
``EC_WEBHOOK_ALLOWED_HOSTS``: host names (matched as written) or CIDR networks / addresses.

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


def is_public(address: IPAddress) -> bool:
    """Whether ``address`` is a public unicast address (see the module docstring)."""
    address = unmapped(address)
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
                "points at a private, loopback, link-local or unspecified address; "
                f"the operator can allow it with {ALLOW_SETTING}"
            )
        return None
    if _is_local_name(host) and not is_allow_listed(host, None, allowed):
        return f"points at localhost; the operator can allow it with {ALLOW_SETTING}"
    return None


def address_refusal(host: str, address: IPAddress, allowed: Sequence[str]) -> str | None:
    """Why a request to ``host`` may not go to ``address`` (one it resolved to), or None."""
    address = unmapped(address)
    if is_public(address) or is_allow_listed(host, address, allowed):
        return None
    return (
        f"refused: {host} resolves to the non-public address {address} "
        f"(allow it with {ALLOW_SETTING})"
    )
